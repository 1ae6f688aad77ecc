// Start-up profiles: a mount with --record-profile writes the spans read, in
// order, at unmount; a later mount with --profile fetches them all before any
// read, so the workload's reads need no request. A profile of another image
// is refused at mount.

import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { mkdir, readFile, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { isMounted } from '../src/fuse/index.js';
import { indexImage } from '../src/indexer/index-image.js';
import { needsWindow, spanRange } from '../src/gzip/span-reader.js';
import { loadIndex } from '../src/index/load.js';
import { readStarts, type ProfileEntry } from '../src/index/startup-profile.js';
import { buildBusyboxImage } from './helpers/busybox-image.js';
import { runClip } from './helpers/cli.js';
import type { BuiltImage } from './helpers/image-builder.js';
import { clipWorkspace, sweepClipMounts, type ClipWorkspace, daemonLog } from './helpers/mounts.js';
import { pushImage, startRegistry, type RegistryHandle } from './helpers/registry.js';

const FILE = 'usr/share/random.bin';

interface StatsRow {
  layer: string;
  fetchedBytes: number;
  requests: number;
}

describe('start-up profiles', () => {
  let registry: RegistryHandle;
  let image: BuiltImage;
  let ws: ClipWorkspace;
  let index: string;
  let want: Buffer;

  before(async () => {
    sweepClipMounts();
    registry = await startRegistry();
    image = await buildBusyboxImage();
    await pushImage(image.dir, image.tag, registry.host, 'profile/busybox');
    ws = await clipWorkspace('profile');
    index = path.join(ws.dir, 'busybox.clip');
    await indexImage(`${registry.host}/profile/busybox:${image.tag}`, { output: index, spanSize: 256 * 1024 });
    const layer = image.layers[1]!;
    const e = layer.tarLayout.find((x) => x.path.endsWith(FILE))!;
    want = layer.tar.subarray(e.dataOffset, e.dataOffset + e.size);
  });
  after(async () => {
    sweepClipMounts();
    await registry?.stop();
    if (image) await rm(image.dir, { recursive: true, force: true });
    if (ws) await rm(ws.dir, { recursive: true, force: true });
  });

  async function stats(mp: string): Promise<StatsRow[]> {
    const r = await runClip(['stats', mp, '--json'], { env: ws.env });
    assert.equal(r.code, 0, r.stderr);
    return JSON.parse(r.stdout.toString()) as StatsRow[];
  }
  const requests = (rows: StatsRow[]): number => rows.reduce((a, r) => a + r.requests, 0);

  it('records the spans read, then fetches them before the workload reads', async () => {
    const profile = path.join(ws.dir, 'busybox.profile');
    const mp = path.join(ws.dir, 'mnt');
    await mkdir(mp);
    let m = await runClip(['mount', index, mp, '--cache-dir', path.join(ws.dir, 'cache-1'), '--record-profile', profile], { env: ws.env });
    assert.equal(m.code, 0, m.stderr);
    try {
      assert.ok((await readFile(path.join(mp, FILE))).equals(want));
    } finally {
      await runClip(['umount', mp], { env: ws.env });
    }
    const recorded = JSON.parse(await readFile(profile, 'utf8')) as { clipStartupProfile: number; spans: [string, number, number][] };
    assert.equal(recorded.clipStartupProfile, 2);
    assert.ok(recorded.spans.length >= 8, `${recorded.spans.length} spans recorded for a 2 MiB file in 256 KiB spans`);
    assert.ok(
      recorded.spans.every(([d]) => d === image.layers[1]!.digest),
      'only the layer that was read',
    );
    // Spans are named by their uncompressed range in the layer, which must cover the file.
    const table = (await loadIndex(index)).layers[1]!.spans;
    const starts = new Set(table.checkpoints.map((c) => c.out));
    assert.ok(
      recorded.spans.every(([, start, end]) => starts.has(start) && end > start),
      'each entry starts a span of the index',
    );
    const e = image.layers[1]!.tarLayout.find((x) => x.path.endsWith(FILE))!;
    assert.ok(
      recorded.spans.some(([, start, end]) => start <= e.dataOffset && e.dataOffset < end),
      "the file's first byte is covered",
    );

    // A new cache: without the profile every span would be fetched on demand.
    m = await runClip(['mount', index, mp, '--cache-dir', path.join(ws.dir, 'cache-2'), '--profile', profile], { env: ws.env });
    assert.equal(m.code, 0, m.stderr);
    try {
      // Nothing reads yet; the profile's spans arrive by themselves.
      for (let i = 0; i < 200 && !(await daemonLog(ws)).includes('start-up profile fetched'); i++)
        await new Promise((r) => setTimeout(r, 50));
      const before = await stats(mp);
      assert.ok(requests(before) > 0, 'the profile was fetched before any read');
      const got = await readFile(path.join(mp, FILE));
      assert.equal(createHash('sha256').update(got).digest('hex'), createHash('sha256').update(want).digest('hex'));
      assert.equal(requests(await stats(mp)), requests(before), 'the read needed no request');
    } finally {
      await runClip(['umount', mp], { env: ws.env });
      assert.ok(!isMounted(mp));
    }
  });

  it('an index made with the profile places checkpoints with windows where its reads begin: a start fetches no more than the profiled spans', async () => {
    const profile = path.join(ws.dir, 'busybox.profile'); // recorded by the test before
    const guided = path.join(ws.dir, 'guided.clip');
    await indexImage(`${registry.host}/profile/busybox:${image.tag}`, { output: guided, spanSize: 256 * 1024, profile });
    const idx = await loadIndex(guided);
    const recorded = JSON.parse(await readFile(profile, 'utf8')) as { spans: ProfileEntry[] };
    const digest = image.layers[1]!.digest;
    const layer = idx.layers.find((l) => l.digest === digest)!;
    // Where the profiled reads begin: a span starts there in the new index, and keeps its window.
    const begins = [...(readStarts(recorded.spans).get(digest) ?? [])];
    assert.ok(begins.length > 0);
    const spanOf = new Map(layer.spans.checkpoints.map((c, i) => [c.out, i]));
    for (const at of begins) {
      const i = spanOf.get(at);
      assert.ok(i !== undefined, `a profiled read begins at ${at}: a span of the new index starts there`);
      assert.ok(!needsWindow(layer.spans, i), `span ${i} starts a profiled run: it keeps its window`);
    }
    // The file's first read began inside its first span: the profile says from which block boundary.
    const first = recorded.spans[0]!;
    assert.equal(first.length, 5, `the first entry names where its read began: ${JSON.stringify(first)}`);
    // What the spans the profile lists take compressed, in the index it was recorded on.
    const old = (await loadIndex(index)).layers[1]!.spans;
    const oldSpan = new Map(old.checkpoints.map((c, i) => [c.out, i]));
    const listed = recorded.spans.reduce((a, [, start]) => {
      const r = spanRange(old, oldSpan.get(start)!);
      return a + r.end - r.start;
    }, 0);
    const mp = path.join(ws.dir, 'mnt-guided');
    await mkdir(mp);
    const m = await runClip(['mount', guided, mp, '--cache-dir', path.join(ws.dir, 'cache-guided')], { env: ws.env });
    assert.equal(m.code, 0, m.stderr);
    try {
      assert.ok((await readFile(path.join(mp, FILE))).equals(want));
      const fetched = (await stats(mp)).reduce((a, r) => a + r.fetchedBytes, 0);
      assert.ok(
        fetched < listed,
        `fetched ${fetched} bytes, less than the ${listed} of the spans listed: reads fetch from where they begin`,
      );
    } finally {
      await runClip(['umount', mp], { env: ws.env });
    }
    await assert.rejects(
      indexImage(`${registry.host}/profile/busybox:${image.tag}`, { output: path.join(ws.dir, 'x.clip'), spanSize: 128 * 1024, profile }),
      /recorded on an index with span size 262144/,
    );
  });

  it('a profile recorded on an index placed otherwise: its ranges are fetched from the spans there that cover them, so the file reads with no request', async () => {
    const profile = path.join(ws.dir, 'busybox.profile'); // recorded on the 256 KiB index
    const fine = path.join(ws.dir, 'fine.clip');
    await indexImage(`${registry.host}/profile/busybox:${image.tag}`, { output: fine, spanSize: 128 * 1024 });
    const starts = new Set((await loadIndex(fine)).layers[1]!.spans.checkpoints.map((c) => c.out));
    const recorded = JSON.parse(await readFile(profile, 'utf8')) as { spans: [string, number, number][] };
    const missing = recorded.spans.filter(([, start]) => !starts.has(start)).length;
    assert.ok(
      missing > 0 && missing < recorded.spans.length,
      `${missing} of ${recorded.spans.length} profiled offsets start no 128 KiB span`,
    );
    const mp = path.join(ws.dir, 'mnt-fine');
    await mkdir(mp);
    const m = await runClip(['mount', fine, mp, '--cache-dir', path.join(ws.dir, 'cache-fine'), '--profile', profile], { env: ws.env });
    assert.equal(m.code, 0, m.stderr);
    try {
      for (let i = 0; i < 200 && !(await daemonLog(ws)).includes('start-up profile fetched'); i++)
        await new Promise((r) => setTimeout(r, 50));
      const before = await stats(mp);
      assert.ok(requests(before) > 0, 'the profile was fetched before any read');
      assert.ok((await readFile(path.join(mp, FILE))).equals(want));
      assert.equal(requests(await stats(mp)), requests(before), 'the read needed no request');
      assert.ok(!(await daemonLog(ws)).includes('entries outside the layers of this index skipped'));
    } finally {
      await runClip(['umount', mp], { env: ws.env });
    }
  });

  it('refuses a profile of another image, and a file that is not a profile', async () => {
    const mp = path.join(ws.dir, 'mnt-bad');
    await mkdir(mp);
    const other = path.join(ws.dir, 'other.profile');
    await writeFile(other, JSON.stringify({ clipStartupProfile: 2, manifestDigest: `sha256:${'0'.repeat(64)}`, spans: [] }));
    let m = await runClip(['mount', index, mp, '--profile', other], { env: ws.env });
    assert.equal(m.code, 1);
    assert.match(m.stderr.toString(), /start-up profile .* was recorded on image sha256:0+, not sha256:/);
    assert.ok(!isMounted(mp));
    m = await runClip(['mount', index, mp, '--profile', index], { env: ws.env });
    assert.equal(m.code, 1);
    assert.match(m.stderr.toString(), /is not a clip start-up profile/);
    assert.ok(!isMounted(mp));
  });
});
