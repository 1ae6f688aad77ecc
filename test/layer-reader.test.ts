// The read path's fetching policy, observed on a real OCI layout blob source:
// adjacent missing spans go in one request, concurrent readers of a span
// share one fetch, small layers are fetched whole, the disk cache stays under
// its bound (also after a restart) and prefetch fills it.

import assert from 'node:assert/strict';
import { mkdtemp, readdir, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { loadIndex } from '../src/clip.js';
import { LayerReader } from '../src/content/layer-reader.js';
import { prefetchLayers } from '../src/content/prefetch.js';
import { SpanCache, type SpanKey } from '../src/content/span-cache.js';
import { SpanIdentities } from '../src/content/span-identity.js';
import { needsWindow, spanOutputRange, spanRange } from '../src/gzip/span-reader.js';
import type { ClipIndex } from '../src/index/types.js';
import { indexImage } from '../src/indexer/index-image.js';
import { openBlobSource } from '../src/content/sources/open.js';
import type { BlobSource } from '../src/oci/types.js';
import { buildFixture } from './helpers/fixtures.js';
import type { BuiltImage } from './helpers/image-builder.js';

/** Counts the range requests a real blob source answers. */
function counting(inner: BlobSource): BlobSource & { ranges: [string, number, number][] } {
  const ranges: [string, number, number][] = [];
  return {
    ranges,
    openBlob: (d) => inner.openBlob(d),
    readRange: (d, s, e) => {
      ranges.push([d, s, e]);
      return inner.readRange(d, s, e);
    },
    close: () => inner.close(),
  };
}

/** Where the disk cache keeps span i of a layer as `index` describes it. */
function keyOf(index: ClipIndex, layer: number, i: number): SpanKey {
  const record = index.layers[layer]!;
  return { layer: record.digest, span: i, identity: new SpanIdentities(record).of(i) };
}

async function dirBytes(dir: string): Promise<number> {
  let total = 0;
  for (const e of await readdir(dir, { withFileTypes: true, recursive: true })) {
    // A file evicted between readdir and stat no longer counts.
    if (e.isFile())
      total += (await stat(path.join(e.parentPath ?? (e as unknown as { path: string }).path, e.name)).catch(() => ({ size: 0 }))).size;
  }
  return total;
}

describe('layer reader fetching', () => {
  let image: BuiltImage;
  let index: ClipIndex;
  let work: string;
  before(async () => {
    image = await buildFixture('large');
    work = await mkdtemp(path.join(tmpdir(), 'clip-reader-'));
    const out = path.join(work, 'large.clip');
    // Every checkpoint keeps its window here; sparse windows have a test of their own.
    await indexImage(`oci:${image.dir}:${image.tag}`, { output: out, spanSize: 64 * 1024, windowEvery: 64 * 1024 });
    index = await loadIndex(out);
  });
  after(async () => {
    if (image) await rm(image.dir, { recursive: true, force: true });
    if (work) await rm(work, { recursive: true, force: true });
  });

  const tarBytes = (layer: number, start: number, end: number): Buffer => image.layers[layer]!.tar.subarray(start, end);

  it('fetches adjacent missing spans in one request and dedups concurrent readers', async () => {
    const blobs = counting(await openBlobSource(index.image.location));
    const reader = new LayerReader(index.layers, blobs, { smallLayer: 0 });
    const table = index.layers[0]!.spans;
    assert.ok(table.checkpoints.length > 6, `${table.checkpoints.length} spans`);
    const start = spanOutputRange(table, 2).start + 10;
    const end = spanOutputRange(table, 5).end - 10;
    const got = await reader.read(0, start, end - start);
    assert.ok(got.equals(tarBytes(0, start, end)));
    assert.equal(blobs.ranges.length, 1, 'spans 2..5 in one Range GET');
    const again = spanOutputRange(table, 7).start;
    const reads = await Promise.all(Array.from({ length: 8 }, () => reader.read(0, again, 1000)));
    for (const r of reads) assert.ok(r.equals(tarBytes(0, again, again + 1000)));
    assert.equal(blobs.ranges.length, 2, 'eight concurrent readers of one span cause one request');
    await blobs.close();
  });

  it('fetches a small layer whole on its first miss', async () => {
    const blobs = counting(await openBlobSource(index.image.location));
    const reader = new LayerReader(index.layers, blobs, { smallLayer: Number.MAX_SAFE_INTEGER });
    const table = index.layers[1]!.spans;
    await reader.read(1, 100, 10);
    assert.deepEqual(blobs.ranges, [[index.layers[1]!.digest, 0, table.compressedSize]]);
    const mid = spanOutputRange(table, table.checkpoints.length - 1).start;
    assert.ok((await reader.read(1, mid, 50)).equals(tarBytes(1, mid, mid + 50)));
    assert.equal(blobs.ranges.length, 1, 'later reads of the layer need no request');
    await blobs.close();
  });

  it('keeps the disk cache under its bound, also when a new daemon finds it', async () => {
    const dir = path.join(work, 'bounded');
    const bound = 600 * 1024;
    const blobs = counting(await openBlobSource(index.image.location));
    let evicted = 0;
    const evictedLayers = new Set<string>();
    const cache = new SpanCache(dir, bound, (l, b) => {
      evicted += b;
      evictedLayers.add(l);
    });
    const reader = new LayerReader(index.layers, blobs, { disk: cache, memoryBytes: 0, smallLayer: 0 });
    const table = index.layers[0]!.spans;
    for (let i = 0; i < table.checkpoints.length; i++) {
      const r = spanOutputRange(table, i);
      assert.ok((await reader.read(0, r.start, r.end - r.start)).equals(tarBytes(0, r.start, r.end)));
      await new Promise((res) => setTimeout(res, 5));
      assert.ok(cache.size <= bound + 70 * 1024, `cache ${cache.size} within bound + one span`);
    }
    await new Promise((res) => setTimeout(res, 100));
    assert.ok(evicted > 0, 'least recently used spans were evicted');
    assert.deepEqual([...evictedLayers], [index.layers[0]!.digest], 'evictions are reported with the layer they belong to');
    assert.ok((await dirBytes(dir)) <= bound + 70 * 1024, 'bytes on disk within the bound');
    const restarted = new SpanCache(dir, 200 * 1024);
    await restarted.has(keyOf(index, 0, 0));
    assert.ok(restarted.size <= 200 * 1024);
    assert.ok((await dirBytes(dir)) <= 200 * 1024, 'a smaller bound at restart evicts down to it');
    await blobs.close();
  });

  it("two daemons sharing a cache directory keep it under one bound and use each other's spans", async () => {
    const dir = path.join(work, 'shared');
    const bound = 600 * 1024;
    const blobs = counting(await openBlobSource(index.image.location));
    const a = new LayerReader(index.layers, blobs, { disk: new SpanCache(dir, bound), memoryBytes: 0, smallLayer: 0 });
    const b = new LayerReader(index.layers, blobs, { disk: new SpanCache(dir, bound), memoryBytes: 0, smallLayer: 0 });
    const t0 = index.layers[0]!.spans;
    const t1 = index.layers[1]!.spans;
    const n = Math.min(t0.checkpoints.length, t1.checkpoints.length);
    assert.ok(n > 12, `${n} spans`);
    for (let i = 0; i < n; i++) {
      const r0 = spanOutputRange(t0, i);
      const r1 = spanOutputRange(t1, i);
      const [x, y] = await Promise.all([a.read(0, r0.start, r0.end - r0.start), b.read(1, r1.start, r1.end - r1.start)]);
      assert.ok(x.equals(tarBytes(0, r0.start, r0.end)) && y.equals(tarBytes(1, r1.start, r1.end)));
      await new Promise((res) => setTimeout(res, 5));
      const onDisk = await dirBytes(dir);
      const inFlight = r0.end - r0.start + (r1.end - r1.start) + 2 * 40; // the span each writer just wrote, with headers
      assert.ok(onDisk <= bound + inFlight, `${onDisk} bytes on disk: within one bound + one span per writer`);
    }
    // A span another daemon wrote is a hit for a: no request. Writes finish after the reads that queued them
    // return, and a write may evict: first let a and b settle, then a third daemon writes span k, then a reads it.
    await new Promise((res) => setTimeout(res, 50));
    await Promise.all([a.diskWrites(), b.diskWrites()]);
    let k = n - 1;
    while (spanOutputRange(t1, k).end - spanOutputRange(t1, k).start > bound / 4) k--;
    const last = spanOutputRange(t1, k);
    // A third daemon on the directory, with nothing in memory: its read is a disk hit, or a fetch it writes down.
    const c = new LayerReader(index.layers, blobs, { disk: new SpanCache(dir, bound), memoryBytes: 0, smallLayer: 0 });
    assert.ok((await c.read(1, last.start, last.end - last.start)).equals(tarBytes(1, last.start, last.end)));
    const probe = new SpanCache(dir);
    for (let i = 0; i < 200 && !(await probe.get(keyOf(index, 1, k), last.end - last.start)); i++)
      await new Promise((res) => setTimeout(res, 25));
    await c.diskWrites();
    assert.ok(await probe.get(keyOf(index, 1, k), last.end - last.start), `span ${k} is on disk`);
    const before = blobs.ranges.length;
    assert.ok((await a.read(1, last.start, last.end - last.start)).equals(tarBytes(1, last.start, last.end)));
    assert.equal(blobs.ranges.length, before, "served from another daemon's span");
    await blobs.close();
  });

  it('a span without a window in the index is fetched from the last checkpoint with one, or resumed from the span before', async () => {
    const out = path.join(work, 'sparse-windows.clip');
    await indexImage(`oci:${image.dir}:${image.tag}`, { output: out, spanSize: 64 * 1024, windowEvery: 512 * 1024 });
    const sparse = await loadIndex(out);
    const table = sparse.layers[0]!.spans;
    // A span with no window whose predecessor has none either.
    let i = 2;
    while (i < table.checkpoints.length && !(needsWindow(table, i) && needsWindow(table, i - 1))) i++;
    assert.ok(i < table.checkpoints.length - 1, 'the index has runs of spans without windows');
    let w = i;
    while (needsWindow(table, w)) w--;
    const blobs = counting(await openBlobSource(sparse.image.location));
    const reader = new LayerReader(sparse.layers, blobs, { smallLayer: 0 });
    const r = spanOutputRange(table, i);
    assert.ok((await reader.read(0, r.start + 5, 1000)).equals(tarBytes(0, r.start + 5, r.start + 1005)));
    assert.deepEqual(
      blobs.ranges,
      [[sparse.layers[0]!.digest, spanRange(table, w).start, spanRange(table, i).end]],
      'fetched from the checkpoint with a window',
    );
    const next = spanOutputRange(table, i + 1);
    assert.ok((await reader.read(0, next.start, 2000)).equals(tarBytes(0, next.start, next.start + 2000)));
    assert.deepEqual(
      blobs.ranges[1],
      [sparse.layers[0]!.digest, spanRange(table, i + 1).start, spanRange(table, i + 1).end],
      'the next span alone: resumed from the one before',
    );
    // Random reads over every layer, with a tiny memory cache and a disk cache: all byte-identical.
    const disk = new SpanCache(path.join(work, 'sparse-cache'));
    const small = new LayerReader(sparse.layers, blobs, { smallLayer: 0, memoryBytes: 256 * 1024, disk });
    let seed = 7;
    const rand = (n: number): number => (seed = (seed * 1103515245 + 12345) >>> 0) % n;
    for (let k = 0; k < 200; k++) {
      const l = rand(sparse.layers.length);
      const size = sparse.layers[l]!.spans.uncompressedSize;
      const start = rand(size);
      const len = 1 + rand(Math.min(300_000, size - start));
      assert.ok((await small.read(l, start, len)).equals(tarBytes(l, start, start + len)), `layer ${l} [${start}, +${len})`);
    }
    await blobs.close();
  });

  it('prefetch puts every span in the disk cache, after which reads need no request', async () => {
    const dir = path.join(work, 'prefetch');
    const blobs = counting(await openBlobSource(index.image.location));
    const reader = new LayerReader(index.layers, blobs, { disk: new SpanCache(dir), smallLayer: 0 });
    const bytes = await prefetchLayers(reader, index.layers, { bytesPerSecond: 1e12 });
    // Every compressed byte once, except that a checkpoint starting mid-byte
    // shares its byte with the span before it: fetched twice when the two
    // spans go in different requests.
    const compressed = index.layers.reduce((a, l) => a + l.spans.compressedSize, 0);
    const shared = index.layers.reduce((a, l) => a + l.spans.checkpoints.filter((c) => (c.bits ?? 0) > 0).length, 0);
    assert.ok(bytes >= compressed && bytes <= compressed + shared, `${bytes} bytes fetched for ${compressed} (${shared} shared)`);
    const requests = blobs.ranges.length;
    const fresh = new LayerReader(index.layers, blobs, { disk: new SpanCache(dir), smallLayer: 0 });
    const table = index.layers[1]!.spans;
    const mid = Math.floor(table.uncompressedSize / 2);
    assert.ok((await fresh.read(1, mid, 100_000)).equals(tarBytes(1, mid, mid + 100_000)));
    assert.equal(blobs.ranges.length, requests, 'served from the disk cache');
    assert.equal(await prefetchLayers(fresh, index.layers, { bytesPerSecond: 1e12 }), 0, 'nothing left to prefetch');
    await blobs.close();
  });
});
