// A ReadPool shared by the readers of two images that have the same base
// layer (different top layers, different repositories of one registry):
// the base layer's spans are fetched once for both, fetches in flight are
// shared, one memory bound holds for both, a hostile index that claims the
// base layer's digest with another description gets nothing of the other
// image's cache, and the registry client lives as long as a reader uses it.
// Bytes and requests are counted by a proxy in front of the registry.

import assert from 'node:assert/strict';
import { copyFile, mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import {
  buildIndex,
  FileReader,
  isClipError,
  LayerReader,
  loadIndex,
  lookupPath,
  ReadPool,
  writeIndex,
  type ClipIndex,
  type ReadEvents,
} from '../src/clip.js';
import { openBlobSource } from '../src/content/sources/open.js';
import { spanOutputRange } from '../src/gzip/span-reader.js';
import { startFaultProxy, type FaultProxy } from './helpers/fault-proxy.js';
import { buildImage, type BuiltImage, type LayerSpec } from './helpers/image-builder.js';
import { createPrng } from './helpers/prng.js';
import { pushImage, startRegistry, type RegistryHandle } from './helpers/registry.js';

const SPAN = 64 * 1024;
const BASE_FILE = 'base/random.bin';
/** Incompressible, so the layer is above SMALL_LAYER and read span by span. */
const BASE_BYTES = createPrng(7).bytes(1536 * 1024);
const t = { sec: 1_700_000_000, nsec: 0 };
const base: LayerSpec = {
  entries: [
    { type: 'dir', path: 'base', mode: 0o755, mtime: t },
    { type: 'file', path: BASE_FILE, mode: 0o644, data: BASE_BYTES, mtime: t },
  ],
};
const top = (name: string): LayerSpec => ({ entries: [{ type: 'file', path: `${name}.txt`, mode: 0o644, data: `${name}\n`, mtime: t }] });

/** Per reader: what its reads reported. */
class Counts implements ReadEvents {
  requests = 0;
  fetchedBytes = 0;
  memoryHits = 0;
  diskHits = 0;
  misses = 0;
  fetched(_layer: string, bytes: number): void {
    this.requests++;
    this.fetchedBytes += bytes;
  }
  cacheHit(_layer: string, where: 'memory' | 'disk'): void {
    if (where === 'memory') this.memoryHits++;
    else this.diskHits++;
  }
  cacheMiss(): void {
    this.misses++;
  }
  storedBytes = 0;
  cacheStored(_layer: string, bytes: number): void {
    this.storedBytes += bytes;
  }
  cacheEvicted(): void {}
  verifyFailed(): void {}
  retried(): void {}
  inflated(): void {}
}

async function waitFor(cond: () => Promise<boolean>, what: string): Promise<void> {
  for (let i = 0; i < 400; i++) {
    if (await cond()) return;
    await new Promise((r) => setTimeout(r, 25));
  }
  throw new Error(`timed out waiting for ${what}`);
}

describe('read pool: two images sharing a base layer', () => {
  let registry: RegistryHandle;
  let proxy: FaultProxy;
  let work: string;
  const images: BuiltImage[] = [];
  let indexA: ClipIndex;
  let indexB: ClipIndex;

  before(async () => {
    registry = await startRegistry();
    // Idle connections stay open on the proxy's side, so only the client closing them ends them.
    proxy = await startFaultProxy(registry.host, { keepAliveMs: 10 * 60_000 });
    work = await mkdtemp(path.join(tmpdir(), 'clip-read-pool-'));
    const a = await buildImage({ tag: 'a', layers: [base, top('a')] });
    const b = await buildImage({ tag: 'b', layers: [base, top('b')] });
    images.push(a, b);
    assert.equal(a.layers[0]!.digest, b.layers[0]!.digest, 'the two images share their base layer blob');
    assert.notEqual(a.layers[1]!.digest, b.layers[1]!.digest);
    await pushImage(a.dir, 'a', registry.host, 'pool/a');
    await pushImage(b.dir, 'b', registry.host, 'pool/b');
    // Indexed through the proxy, so the readers' requests pass it; a window at every span keeps fetches one span each.
    const load = async (repo: string, tag: string): Promise<ClipIndex> => {
      const file = path.join(work, `${tag}.clip`);
      await writeIndex(file, await buildIndex(`${proxy.host}/${repo}:${tag}`, { spanSize: SPAN, windowEvery: SPAN }));
      return loadIndex(file);
    };
    indexA = await load('pool/a', 'a');
    indexB = await load('pool/b', 'b');
    assert.ok(indexA.layers[0]!.spans.checkpoints.length > 10, 'the base layer has many spans');
  });
  after(async () => {
    await proxy?.close();
    await registry?.stop();
    for (const img of images) await rm(img.dir, { recursive: true, force: true });
    if (work) await rm(work, { recursive: true, force: true });
  });

  async function readers(pool: ReadPool): Promise<{ a: FileReader; b: FileReader; ea: Counts; eb: Counts }> {
    const ea = new Counts();
    const eb = new Counts();
    // No read-ahead: these tests count the fetches each read makes (read-ahead.test.ts covers it).
    const a = await FileReader.open(indexA, { pool, events: ea, readAhead: false });
    const b = await FileReader.open(indexB, { pool, events: eb, readAhead: false });
    return { a, b, ea, eb };
  }

  it('a base-layer file read through both readers is fetched once, counted as a fetch for A and memory hits for B', async () => {
    const pool = new ReadPool();
    const { a, b, ea, eb } = await readers(pool);
    try {
      const bytes0 = proxy.blobBytes;
      const nodeA = lookupPath(indexA, BASE_FILE);
      assert.ok((await a.read(nodeA, 0, nodeA.size)).equals(BASE_BYTES));
      const fetched = proxy.blobBytes - bytes0;
      assert.ok(fetched >= BASE_BYTES.length, `A fetched the file's spans (${fetched} bytes)`);

      const requests1 = proxy.blobRequests;
      const bytes1 = proxy.blobBytes;
      const nodeB = lookupPath(indexB, BASE_FILE);
      assert.ok((await b.read(nodeB, 0, nodeB.size)).equals(BASE_BYTES));
      assert.equal(proxy.blobBytes - bytes1, 0, 'B read the shared layer without fetching a byte');
      assert.equal(proxy.blobRequests - requests1, 0);

      assert.equal(ea.fetchedBytes, fetched, "A's events count the fetch");
      assert.equal(eb.requests, 0, "B's events count no fetch");
      assert.equal(eb.misses, 0);
      assert.equal(eb.memoryHits, indexB.layers[0]!.spans.checkpoints.length, 'every span of the base layer was a memory hit for B');
    } finally {
      await a.close();
      await b.close();
    }

    // The control: a reader outside the pool fetches the layer again.
    const alone = await FileReader.open(indexB);
    try {
      const bytes2 = proxy.blobBytes;
      await alone.read(lookupPath(indexB, BASE_FILE), 0, BASE_BYTES.length);
      assert.ok(proxy.blobBytes - bytes2 >= BASE_BYTES.length, 'without the pool the bytes are fetched again');
    } finally {
      await alone.close();
    }
  });

  it('concurrent reads of the same span through both readers make one request', async () => {
    const pool = new ReadPool();
    const { a, b, ea, eb } = await readers(pool);
    try {
      const offset = 700_000;
      const want = BASE_BYTES.subarray(offset, offset + 100);
      const requests0 = proxy.blobRequests;
      const [fromA, fromB] = await Promise.all([
        a.read(lookupPath(indexA, BASE_FILE), offset, 100),
        b.read(lookupPath(indexB, BASE_FILE), offset, 100),
      ]);
      assert.ok(fromA.equals(want));
      assert.ok(fromB.equals(want));
      assert.equal(proxy.blobRequests - requests0, 1, 'one request for both readers');
      assert.equal(ea.requests + eb.requests, 1);
      assert.equal(ea.memoryHits + eb.memoryHits, 1, 'the second reader waited on the first one’s fetch');
    } finally {
      await a.close();
      await b.close();
    }
  });

  it('one memory bound holds across both readers: what B reads pushes out what A read', async () => {
    const bound = 3 * SPAN;
    const pool = new ReadPool({ memoryBytes: bound });
    const { a, b } = await readers(pool);
    try {
      const nodeA = lookupPath(indexA, BASE_FILE);
      const nodeB = lookupPath(indexB, BASE_FILE);
      assert.ok((await a.read(nodeA, 0, 10)).equals(BASE_BYTES.subarray(0, 10)));
      const requests0 = proxy.blobRequests;
      assert.ok((await a.read(nodeA, 5, 10)).equals(BASE_BYTES.subarray(5, 15)));
      assert.equal(proxy.blobRequests, requests0, "A's span is in memory");

      for (let offset = 4 * SPAN; offset < BASE_BYTES.length; offset += SPAN) {
        assert.ok((await b.read(nodeB, offset, 100)).equals(BASE_BYTES.subarray(offset, offset + 100)));
        const held = pool.stats().memoryBytes;
        assert.ok(held <= bound, `${held} bytes in memory after B read at ${offset}, bound ${bound}`);
        assert.ok(held > 0);
      }
      const requests1 = proxy.blobRequests;
      assert.ok((await a.read(nodeA, 0, 10)).equals(BASE_BYTES.subarray(0, 10)));
      assert.equal(proxy.blobRequests - requests1, 1, "B's reads evicted A's span: one bound for both readers");
    } finally {
      await a.close();
      await b.close();
    }
  });

  it('closing one reader leaves the others working; closing the last closes the shared client and its connections', async () => {
    // Earlier tests closed their readers: their connections go (a leaked connection pool would stay).
    await waitFor(async () => (await proxy.connections()) === 0, 'earlier connections to close');
    const pool = new ReadPool();
    const { a, b } = await readers(pool);
    const a2 = await FileReader.open(indexA, { pool, readAhead: false });
    let open = [a, b, a2];
    try {
      assert.deepEqual(
        { sources: pool.stats().sources, connectionPools: pool.stats().connectionPools },
        { sources: 2, connectionPools: 1 },
        'one client per repository, one connection pool for the registry',
      );
      const nodeA = lookupPath(indexA, 'a.txt');
      const nodeB = lookupPath(indexB, 'b.txt');
      const base = lookupPath(indexA, BASE_FILE);
      assert.equal((await a.read(nodeA, 0, 10)).toString(), 'a\n');
      assert.ok((await proxy.connections()) > 0, 'the pool opened a connection');

      await a.close();
      await a.close(); // a second close gives nothing back twice
      open = [b, a2];
      assert.equal(pool.stats().sources, 2, "A's client stays: A2 reads the same repository");
      assert.ok((await a2.read(base, 2 * SPAN, 100)).equals(BASE_BYTES.subarray(2 * SPAN, 2 * SPAN + 100)));
      assert.equal((await b.read(nodeB, 0, 10)).toString(), 'b\n');

      await a2.close();
      open = [b];
      assert.deepEqual(
        { sources: pool.stats().sources, connectionPools: pool.stats().connectionPools },
        { sources: 1, connectionPools: 1 },
      );
      const requests0 = proxy.blobRequests;
      assert.ok((await b.read(lookupPath(indexB, BASE_FILE), 5 * SPAN, 100)).equals(BASE_BYTES.subarray(5 * SPAN, 5 * SPAN + 100)));
      assert.equal(proxy.blobRequests - requests0, 1, 'B still fetches through the shared connection pool');

      await b.close();
      open = [];
      assert.deepEqual(
        { sources: pool.stats().sources, connectionPools: pool.stats().connectionPools },
        { sources: 0, connectionPools: 0 },
      );
      await waitFor(async () => (await proxy.connections()) === 0, "the shared connection pool's connections to close");
    } finally {
      for (const r of open) await r.close();
    }
  });

  it("a fetch another image's reader started and could not finish does not fail this reader's read", async () => {
    const pool = new ReadPool();
    // The same description of the layers (so the same span identities), from a layout that holds none of the blobs.
    const empty = path.join(work, 'empty-layout');
    await mkdir(path.join(empty, 'blobs', 'sha256'), { recursive: true });
    await writeFile(path.join(empty, 'oci-layout'), '{"imageLayoutVersion":"1.0.0"}');
    await writeFile(path.join(empty, 'index.json'), '{"schemaVersion":2,"manifests":[]}');
    const broken = await FileReader.open({ ...indexA, image: { ...indexA.image, location: `oci:${empty}` } }, { pool });
    const a = await FileReader.open(indexA, { pool, readAhead: false });
    try {
      const node = lookupPath(indexA, BASE_FILE);
      const offset = 9 * SPAN + 10;
      const requests0 = proxy.blobRequests;
      const [fromBroken, fromA] = await Promise.allSettled([broken.read(node, offset, 100), a.read(node, offset, 100)]);
      assert.equal(fromBroken.status, 'rejected', 'the broken source cannot read the span');
      assert.equal(fromA.status, 'fulfilled', `A falls back to its own source: ${fromA.status === 'rejected' ? String(fromA.reason) : ''}`);
      assert.ok(fromA.value.equals(BASE_BYTES.subarray(offset, offset + 100)));
      assert.equal(proxy.blobRequests - requests0, 1, 'A fetched the span itself');
    } finally {
      await broken.close();
      await a.close();
    }
  });

  it('a span two readers both fetched counts as cached bytes once, for the one that wrote it to the shared disk cache', async () => {
    const pool = new ReadPool();
    const disk = pool.diskCache(path.join(work, 'count-cache'));
    const blobs = await openBlobSource(indexA.image.location);
    try {
      // Each with its own memory cache, so both fetch the span; the disk cache is the pool's one.
      const [ex, ey] = [new Counts(), new Counts()];
      const x = new LayerReader(indexA.layers, blobs, { disk, events: ex });
      const y = new LayerReader(indexA.layers, blobs, { disk, events: ey });
      const r = spanOutputRange(indexA.layers[0]!.spans, 3);
      await Promise.all([x.read(0, r.start, 10), y.read(0, r.start, 10)]);
      assert.equal(ex.requests + ey.requests, 2, 'both fetched');
      // Writes are queued in order: once this one is done, both readers' writes are.
      await disk.put({ layer: indexA.layers[0]!.digest, span: 0, identity: 'f'.repeat(64) }, Buffer.from('x'));
      assert.equal(ex.storedBytes + ey.storedBytes, r.end - r.start, 'one copy on disk, counted once');
    } finally {
      await blobs.close();
    }
  });

  it('refuses a second bound for a cache dir the pool already uses', async () => {
    const pool = new ReadPool();
    const cacheDir = path.join(work, 'bounded-cache');
    const a = await FileReader.open(indexA, { pool, cacheDir, cacheBytes: 1 << 20 });
    try {
      await assert.rejects(
        FileReader.open(indexB, { pool, cacheDir, cacheBytes: 2 << 20 }),
        (e: unknown) => isClipError(e) && e.code === 'BAD_ARGUMENT' && /already in use with a bound of 1048576 bytes/.test(e.message),
      );
      assert.equal(pool.stats().sources, 1, 'the refused reader holds no client');
    } finally {
      await a.close();
    }
  });
});

describe('read pool and a hostile index', () => {
  const SIZE = 200_000;
  // Same names and sizes, so both layers' tars (and their one span) have the same length.
  const layer = (fill: string): LayerSpec => ({
    entries: [{ type: 'file', path: 'data.txt', data: fill.repeat(SIZE / fill.length), mtime: t }],
  });
  let work: string;
  let genuine: BuiltImage;
  let other: BuiltImage;
  let genuineIndex: ClipIndex;
  let hostileIndex: ClipIndex;

  before(async () => {
    work = await mkdtemp(path.join(tmpdir(), 'clip-read-pool-hostile-'));
    genuine = await buildImage({ tag: 'genuine', layers: [layer('genuine!')] });
    other = await buildImage({ tag: 'other', layers: [layer('HOSTILE!')] });
    genuineIndex = await buildIndex(`oci:${genuine.dir}:genuine`, { spanSize: 4 << 20 });
    // The hostile index: the other image's description under the genuine layer digest, read from a layout it controls.
    const digest = genuine.layers[0]!.digest;
    const hostileDir = path.join(work, 'hostile-layout');
    await mkdir(path.join(hostileDir, 'blobs', 'sha256'), { recursive: true });
    await copyFile(path.join(other.dir, 'oci-layout'), path.join(hostileDir, 'oci-layout'));
    await writeFile(path.join(hostileDir, 'blobs', 'sha256', digest.slice('sha256:'.length)), other.layers[0]!.blob);
    const hostile = await buildIndex(`oci:${other.dir}:other`, { spanSize: 4 << 20 });
    assert.equal(hostile.layers[0]!.spans.uncompressedSize, genuineIndex.layers[0]!.spans.uncompressedSize);
    assert.equal(hostile.layers[0]!.spans.checkpoints.length, genuineIndex.layers[0]!.spans.checkpoints.length);
    hostile.layers[0] = { ...hostile.layers[0]!, digest, diffId: genuineIndex.layers[0]!.diffId };
    hostile.image = { ...hostile.image, location: `oci:${hostileDir}` };
    hostileIndex = hostile;
  });
  after(async () => {
    for (const img of [genuine, other]) if (img) await rm(img.dir, { recursive: true, force: true });
    if (work) await rm(work, { recursive: true, force: true });
  });

  async function readData(reader: FileReader, index: ClipIndex): Promise<string> {
    const node = lookupPath(index, 'data.txt');
    return (await reader.read(node, 0, node.size)).toString();
  }

  it('does not get the bytes the genuine image cached (same layer digest, other description)', async () => {
    const pool = new ReadPool();
    const cacheDir = path.join(work, 'cache-1');
    const eh = new Counts();
    const g = await FileReader.open(genuineIndex, { pool, cacheDir });
    const h = await FileReader.open(hostileIndex, { pool, cacheDir, events: eh });
    try {
      assert.equal(await readData(g, genuineIndex), 'genuine!'.repeat(SIZE / 8));
      const text = await readData(h, hostileIndex);
      assert.ok(
        text === 'HOSTILE!'.repeat(SIZE / 8),
        `the hostile index must get only what it describes, got ${JSON.stringify(text.slice(0, 16))}...`,
      );
      assert.equal(eh.memoryHits + eh.diskHits, 0, 'no cache hit for the hostile index');
    } finally {
      await g.close();
      await h.close();
    }
  });

  it('cannot plant bytes that the genuine image then reads', async () => {
    const pool = new ReadPool();
    const cacheDir = path.join(work, 'cache-2');
    const h = await FileReader.open(hostileIndex, { pool, cacheDir });
    const g = await FileReader.open(genuineIndex, { pool, cacheDir });
    try {
      assert.equal(await readData(h, hostileIndex), 'HOSTILE!'.repeat(SIZE / 8));
      const text = await readData(g, genuineIndex);
      assert.ok(
        text === 'genuine!'.repeat(SIZE / 8),
        `the genuine image must serve its own bytes, got ${JSON.stringify(text.slice(0, 16))}...`,
      );
    } finally {
      await h.close();
      await g.close();
    }
  });
});
