// Start-up profiles say how far into each span the workload read (`until`),
// and a mount of an index with marks (format v6) warms only those prefixes:
// a workload that reads a little of two 4 MiB spans records where it stopped,
// and a later mount with that profile fetches fewer bytes than the whole
// spans it lists (counted by the proxy in front of a real registry), then
// serves the workload's reads with the right bytes and no further fetch.

import assert from 'node:assert/strict';
import { mkdir, open, readFile } from 'node:fs/promises';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { after, before, describe, it } from 'node:test';
import { LayerReader } from '../src/content/layer-reader.js';
import { openBlobSource } from '../src/content/sources/open.js';
import { warmFromProfile } from '../src/content/startup-profile.js';
import { mapProfile, type ProfileEntry } from '../src/index/startup-profile.js';
import { indexImage } from '../src/indexer/index-image.js';
import { spanOutputRange, spanRange } from '../src/gzip/span-reader.js';
import { loadIndex } from '../src/index/load.js';
import type { ClipIndex } from '../src/index/types.js';
import { runClip } from './helpers/cli.js';
import type { FaultProxy } from './helpers/fault-proxy.js';
import { buildImage, type BuiltImage } from './helpers/image-builder.js';
import { daemonLog, type ClipWorkspace } from './helpers/mounts.js';
import { createPrng } from './helpers/prng.js';
import { startProxiedImage, type ProxiedImage } from './helpers/proxied-busybox.js';

const KiB = 1024;
const MiB = 1024 * KiB;
/** Where the workload reads in data/big.txt, and how much. */
const READS: [number, number][] = [
  [1 * MiB, 64 * KiB],
  [6 * MiB, 32 * KiB],
];

describe('start-up profiles with how far each span was read', () => {
  let fixture: ProxiedImage;
  let proxy: FaultProxy;
  let image: BuiltImage;
  let ws: ClipWorkspace;
  let file: string;
  let index: ClipIndex;
  let data: Buffer;

  before(async () => {
    data = createPrng(31).compressible(12 * MiB);
    const built = await buildImage({
      layers: [
        {
          entries: [
            { type: 'dir', path: 'data' },
            { type: 'file', path: 'data/big.txt', data },
          ],
        },
      ],
    });
    fixture = await startProxiedImage('until', 'text', built, '4M');
    ({ proxy, image, ws, index: file } = fixture);
    index = await loadIndex(file);
  });
  after(async () => {
    await fixture?.close();
  });

  /** The workload: READS of data/big.txt through the mount at `mp`, each checked against the file's bytes. */
  async function workload(mp: string): Promise<void> {
    const fh = await open(path.join(mp, 'data/big.txt'), 'r');
    try {
      for (const [at, length] of READS) {
        const buf = Buffer.alloc(length);
        const { bytesRead } = await fh.read(buf, 0, length, at);
        assert.equal(bytesRead, length);
        assert.ok(buf.equals(data.subarray(at, at + length)), `bytes at ${at}`);
      }
    } finally {
      await fh.close();
    }
  }

  it("an entry's range maps onto the spans here that cover it, the last read only to where the range ends; never past a span", () => {
    const layer = index.layers[0]!;
    const s0 = spanOutputRange(layer.spans, 0);
    const s1 = spanOutputRange(layer.spans, 1);
    // A span elsewhere that is spans 0 and 1 here, read to just before its end.
    assert.deepEqual(mapProfile(index, [[layer.digest, s0.start, s1.end, s1.end - 1]]).spans, [
      { layer: 0, span: 0 },
      { layer: 0, span: 1, until: s1.end - 1 },
    ]);
    // Another entry of span 1 reaching less does not shorten what is read of it; one read to its end makes it whole.
    assert.deepEqual(
      mapProfile(index, [
        [layer.digest, s1.start, s1.end, s1.end - 1],
        [layer.digest, s1.start, s1.end, s1.start + 5],
      ]).spans,
      [{ layer: 0, span: 1, until: s1.end - 1 }],
    );
    assert.deepEqual(
      mapProfile(index, [
        [layer.digest, s1.start, s1.end, s1.start + 5],
        [layer.digest, s1.start, s1.end],
      ]).spans,
      [{ layer: 0, span: 1 }],
    );
    // Read from a block boundary inside span 1 (`from`): span 1 alone, whatever the entry's start.
    assert.deepEqual(mapProfile(index, [[layer.digest, s0.start, s1.end, s1.start + 100, s1.start + 10]]).spans, [
      { layer: 0, span: 1, until: s1.start + 100 },
    ]);
    // Past the layer's end: nothing to read there.
    const size = layer.spans.uncompressedSize;
    assert.deepEqual(mapProfile(index, [[layer.digest, size, size + 10]]), { spans: [], skipped: 1 });
  });

  it('a span read part way whose profiled successor resumes from its whole output is warmed whole, not fetched twice', async () => {
    // Windows every 8 MiB: span 1 (at about 4 MiB) kept none, so it inflates from span 0's whole output.
    const sparse = path.join(ws.dir, 'windowless.clip');
    await indexImage(`${proxy.host}/until/text:${image.tag}`, { output: sparse, spanSize: 4 * MiB, windowEvery: 8 * MiB });
    const idx = await loadIndex(sparse);
    const t = idx.layers[0]!.spans;
    const blobs = await openBlobSource(idx.image.location);
    try {
      const reader = new LayerReader(idx.layers, blobs);
      assert.ok(reader.resumesFromPrevious(0, 1), 'span 1 has no window (the fixture places it so)');
      const before = proxy.blobBytes;
      await warmFromProfile(reader, [
        { layer: 0, span: 0, until: spanOutputRange(t, 0).start + 100 * KiB },
        { layer: 0, span: 1 },
      ]);
      assert.equal(proxy.blobBytes - before, spanRange(t, 1).end - spanRange(t, 0).start, 'spans 0 and 1, once');
      const at = spanOutputRange(t, 1).start + 5000;
      assert.ok((await reader.read(0, at, 4096)).equals(image.layers[0]!.tar.subarray(at, at + 4096)));
      assert.equal(proxy.blobBytes - before, spanRange(t, 1).end - spanRange(t, 0).start, 'and nothing more for a read of span 1');
    } finally {
      await blobs.close();
    }
  });

  it('a profiled mount fetches only the prefixes read, less than the whole spans it lists, and serves the right bytes', async () => {
    const profile = path.join(ws.dir, 'text.profile');
    const mp = path.join(ws.dir, 'mnt');
    await mkdir(mp);
    let m = await runClip(['mount', file, mp, '--cache-dir', path.join(ws.dir, 'cache-1'), '--record-profile', profile], { env: ws.env });
    assert.equal(m.code, 0, m.stderr);
    try {
      await workload(mp);
    } finally {
      const u = await runClip(['umount', mp], { env: ws.env });
      assert.equal(u.code, 0, u.stderr);
    }
    for (let i = 0; i < 200 && !(await readFile(profile).catch(() => undefined)); i++) await sleep(50);
    const entries = (JSON.parse(await readFile(profile, 'utf8')) as { spans: ProfileEntry[] }).spans;
    const layer = index.layers[0]!;
    const { spans } = mapProfile(index, entries);
    assert.ok(spans.length >= 2, `${spans.length} spans profiled`);
    // Each read ends inside its span: the profile says where (the largest offset read there, plus one).
    // (Reads that began past a mark of their span say from where, too: `from`, after `until`.)
    const partial = entries.filter((e) => e.length >= 4);
    assert.ok(partial.length >= 2, `entries with an until: ${JSON.stringify(entries)}`);
    for (const [, start, end, until] of partial) assert.ok(start < until! && until! < end);
    const whole = spans.reduce((sum, s) => {
      const r = spanRange(layer.spans, s.span);
      return sum + r.end - r.start;
    }, 0);

    // A new cache and that profile: the prefixes come by themselves, before any read.
    const before = proxy.blobBytes;
    m = await runClip(['mount', file, mp, '--cache-dir', path.join(ws.dir, 'cache-2'), '--profile', profile], { env: ws.env });
    assert.equal(m.code, 0, m.stderr);
    try {
      for (let i = 0; i < 400 && !(await daemonLog(ws)).includes('start-up profile fetched'); i++) await sleep(50);
      assert.match(await daemonLog(ws), /start-up profile fetched/);
      const warmed = proxy.blobBytes - before;
      assert.ok(warmed > 0, 'the profile was fetched');
      assert.ok(warmed < whole / 2, `warmed ${warmed} bytes for spans of ${whole} bytes`);
      // At least through the end of every read.
      for (const s of spans) assert.ok(s.until === undefined || s.until <= spanOutputRange(layer.spans, s.span).end);
      await workload(mp);
      assert.equal(proxy.blobBytes - before, warmed, 'the workload needed nothing more');
    } finally {
      const u = await runClip(['umount', mp], { env: ws.env });
      assert.equal(u.code, 0, u.stderr);
    }
  });
});
