// Start-up profiles name spans by uncompressed offset, so a profile recorded
// on one index of an image prefetches the same bytes in another index of it
// whose spans are numbered otherwise (an index placed by another clip: one
// checkpoint fewer shifts every number after it). Offsets that start no span
// there are skipped and counted. Profiles by number (format 1) are read only
// where numbers cannot differ; the indexer keeps windows at profiled offsets.

import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { FileReader } from '../src/content/file-reader.js';
import { NO_EVENTS, type ReadEvents } from '../src/content/read-events.js';
import { loadProfile, ProfileRecorder, warmFromProfile } from '../src/content/startup-profile.js';
import { needsWindow, spanRange } from '../src/gzip/span-reader.js';
import type { SpanTable } from '../src/gzip/types.js';
import { profileReadStarts } from '../src/index/startup-profile.js';
import type { ClipIndex } from '../src/index/types.js';
import { buildIndex } from '../src/indexer/index-image.js';
import { buildImage, type BuiltImage } from './helpers/image-builder.js';
import { createPrng } from './helpers/prng.js';
import type { TarEntrySpec } from './helpers/tar-writer.js';

const KiB = 1024;
const SPAN = 128 * KiB;
const FILE = 'app/lib.so';

/** Text and random bytes around FILE, so that the gzip layer has many spans and FILE sits in the middle. */
function appLayer(): TarEntrySpec[] {
  const prng = createPrng(5);
  const files: TarEntrySpec[] = [{ type: 'dir', path: 'app/' }];
  for (let i = 0; i < 8; i++) {
    files.push({ type: 'file', path: `app/before${i}`, data: Buffer.concat([prng.compressible(200 * KiB), prng.bytes(100 * KiB)]) });
  }
  files.push({ type: 'file', path: FILE, data: Buffer.concat([prng.bytes(300 * KiB), prng.compressible(600 * KiB)]) });
  for (let i = 0; i < 4; i++) files.push({ type: 'file', path: `app/after${i}`, data: prng.bytes(200 * KiB) });
  return files;
}

/** Counts the registry requests of a reader. */
function countingEvents(): ReadEvents & { requests: number } {
  const events = {
    ...NO_EVENTS,
    requests: 0,
    fetched(): void {
      events.requests++;
    },
  };
  return events;
}

/** `index` with checkpoints `drop` of layer `layer` removed (their spans merged into the one before), digests recomputed from the blob. */
function withoutCheckpoints(index: ClipIndex, layer: number, drop: number[], blob: Buffer): ClipIndex {
  const old = index.layers[layer]!.spans;
  const keep = old.checkpoints.map((_, i) => i).filter((i) => !drop.includes(i));
  const spans: SpanTable = { ...old, checkpoints: keep.map((i) => old.checkpoints[i]!), digests: [] };
  spans.digests = spans.checkpoints.map((_, i) => {
    const r = spanRange(spans, i);
    return createHash('sha256').update(blob.subarray(r.start, r.end)).digest();
  });
  return { ...index, layers: index.layers.map((l, i) => (i === layer ? { ...l, spans } : l)) };
}

describe('start-up profiles by offset', () => {
  let image: BuiltImage;
  let work: string;
  let indexA: ClipIndex;
  let profile: string;
  /** Spans of index A the recording read, first read first. */
  let recorded: { layer: number; span: number; until?: number; lowest?: number }[];
  let want: Buffer;
  let fileOffset: number;

  before(async () => {
    work = await mkdtemp(path.join(tmpdir(), 'clip-profile-offsets-'));
    image = await buildImage({
      layers: [
        { entries: [{ type: 'file', path: 'etc/table', data: createPrng(9).compressible(400 * KiB) }], compression: 'none' },
        { entries: appLayer() },
      ],
    });
    // Every checkpoint keeps its window: a span is then fetched alone, not along with those before it.
    indexA = await buildIndex(`oci:${image.dir}:${image.tag}`, { spanSize: SPAN, windowEvery: SPAN });
    const e = image.layers[1]!.tarLayout.find((x) => x.path === FILE)!;
    fileOffset = e.dataOffset;
    want = image.layers[1]!.tar.subarray(e.dataOffset, e.dataOffset + e.size);
    // Record a profile on A: the spans reading FILE needs.
    const recorder = new ProfileRecorder();
    const reader = await FileReader.open(indexA, { onRead: recorder.record });
    try {
      assert.ok((await reader.layerReader.read(1, fileOffset, want.length)).equals(want));
    } finally {
      await reader.close();
    }
    profile = path.join(work, 'a.profile');
    await recorder.save(profile, indexA);
    recorded = recorder.spans;
  });
  after(async () => {
    if (image) await rm(image.dir, { recursive: true, force: true });
    if (work) await rm(work, { recursive: true, force: true });
  });

  it('a profile recorded on one index fetches the same bytes in an index numbered otherwise; a span that starts no span there is read from the one that covers it', async () => {
    const table = indexA.layers[1]!.spans;
    assert.ok(table.checkpoints.length > 12, `${table.checkpoints.length} spans`);
    const first = recorded[0]!.span;
    assert.ok(recorded.length >= 5 && first >= 3, `profiled spans ${recorded.map((s) => s.span).join(',')}`);
    // B: one checkpoint fewer before the profiled spans (every later number shifts) and one inside them.
    const inside = first + 2;
    const indexB = withoutCheckpoints(indexA, 1, [1, inside], image.layers[1]!.blob);
    const tableB = indexB.layers[1]!.spans;
    assert.ok(
      recorded.some((s) => tableB.checkpoints[s.span]?.out !== table.checkpoints[s.span]!.out),
      "in B, A's span numbers name other bytes",
    );

    const { spans, skipped } = await loadProfile(profile, indexB);
    assert.equal(skipped, 0, "the removed checkpoint's span is read as part of the span of B that covers it");
    const startsB = new Map(tableB.checkpoints.map((c, i) => [c.out, i]));
    const expected = recorded
      .filter((s) => s.span !== inside)
      .map((s) => ({ layer: 1, span: startsB.get(table.checkpoints[s.span]!.out)!, ...(s.until !== undefined ? { until: s.until } : {}) }));
    // The file ends inside its last span: how far it was read is in the profile.
    assert.ok(recorded[recorded.length - 1]!.until === fileOffset + want.length, 'the last span was read up to the end of the file');
    assert.deepEqual(spans, expected, "B's spans that cover A's profiled spans, in the recorded order, each once");

    // Warmed from the profile, B serves the file without a request.
    const events = countingEvents();
    const reader = await FileReader.open(indexB, { events });
    try {
      await warmFromProfile(reader.layerReader, spans);
      const warmed = events.requests;
      assert.ok(warmed > 0, 'the profile was fetched');
      assert.ok((await reader.layerReader.read(1, fileOffset, want.length)).equals(want), "B reads the file's bytes");
      assert.equal(events.requests, warmed, 'the read needed no request: the profile brought every span it needs');
    } finally {
      await reader.close();
    }
  });

  it('the same index: every entry maps back to the span recorded', async () => {
    const { spans, skipped } = await loadProfile(profile, indexA);
    assert.equal(skipped, 0);
    // Where a read began inside a span (`lowest`) is for indexing (`from`); a mount maps spans and how far they were read.
    assert.deepEqual(
      spans,
      recorded.map(({ layer, span, until }) => (until === undefined ? { layer, span } : { layer, span, until })),
    );
  });

  it('format 1 (spans by number) is read where numbers cannot differ, and refused for gzip spans', async () => {
    const v1 = async (body: object): Promise<string> => {
      const file = path.join(work, `v1-${Math.random().toString(36).slice(2)}.profile`);
      await writeFile(file, JSON.stringify({ clipStartupProfile: 1, manifestDigest: image.manifestDigest, ...body }));
      return file;
    };
    const raw = image.layers[0]!.digest;
    assert.ok(indexA.layers[0]!.spans.compression === 'none' && indexA.layers[0]!.spans.checkpoints.length >= 3);
    const ok = await loadProfile(
      await v1({
        spanSize: SPAN,
        spans: [
          [raw, 2],
          [raw, 0],
        ],
      }),
      indexA,
    );
    assert.deepEqual(ok, {
      spans: [
        { layer: 0, span: 2 },
        { layer: 0, span: 0 },
      ],
      skipped: 0,
    });
    await assert.rejects(
      loadProfile(await v1({ spanSize: SPAN, spans: [[image.layers[1]!.digest, 4]] }), indexA),
      /names spans by number \(format 1\): gzip layer sha256:[0-9a-f]+ may be numbered differently .*record it again/,
    );
    await assert.rejects(
      loadProfile(await v1({ spanSize: 2 * SPAN, spans: [[raw, 0]] }), indexA),
      /numbered in an index with span size 262144, this one has 131072/,
    );
    await assert.rejects(
      loadProfile(await v1({ spanSize: SPAN, spans: [[raw, 99]] }), indexA),
      /entry 0 \(sha256:[0-9a-f]+ span 99\) is not in the index/,
    );
  });

  it('clip index --profile keeps windows at the offsets where profiled runs begin', async () => {
    const at = (await profileReadStarts(profile, image.manifestDigest, SPAN)).get(image.layers[1]!.digest);
    const table = indexA.layers[1]!.spans;
    // Windows far apart (4 MiB), so that those the profile adds show.
    const sparseWindows = { spanSize: SPAN, windowEvery: 4 * 1024 * KiB };
    const plain = (await buildIndex(`oci:${image.dir}:${image.tag}`, sparseWindows)).layers[1]!.spans;
    const profiled = new Set(recorded.map((s) => s.span));
    const runStarts = [...profiled].filter((i) => i > 0 && !profiled.has(i - 1)).map((i) => table.checkpoints[i]!.out);
    assert.deepEqual(
      [...(at ?? [])].sort((a, b) => a - b),
      runStarts.sort((a, b) => a - b),
    );
    assert.ok(runStarts.length > 0);
    const guided = await buildIndex(`oci:${image.dir}:${image.tag}`, { ...sparseWindows, profile });
    const g = guided.layers[1]!.spans;
    assert.deepEqual(
      g.checkpoints.map((c) => c.out),
      table.checkpoints.map((c) => c.out),
      'the same placement',
    );
    assert.deepEqual(
      plain.checkpoints.map((c) => c.out),
      table.checkpoints.map((c) => c.out),
      'the same placement',
    );
    for (const out of runStarts) {
      const i = g.checkpoints.findIndex((c) => c.out === out);
      assert.ok(!needsWindow(g, i), `span ${i} starts a profiled run: it keeps its window`);
      assert.ok(needsWindow(plain, i), `span ${i} has no window without the profile (so the profile made the difference)`);
    }
  });
});
