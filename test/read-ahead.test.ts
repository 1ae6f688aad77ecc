// Read-ahead without a profile (content/read-ahead.ts), through a real
// registry with a proxy that counts blob bytes: after a read misses, the rest
// of its file comes in the background, so reading on costs no more fetches;
// the small file after it in the tar comes along; a random workload over a
// large file pays at most the bound in extra bytes; off, a reader fetches only
// what its reads need; and bytes fetched ahead are the right bytes.

import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { buildIndex, FileReader, loadIndex, lookupPath, writeIndex, type ClipIndex } from '../src/clip.js';
import { spanAt, spanRange } from '../src/gzip/span-reader.js';
import { startFaultProxy, type FaultProxy } from './helpers/fault-proxy.js';
import { buildImage, type BuiltImage } from './helpers/image-builder.js';
import { createPrng } from './helpers/prng.js';
import { pushImage, startRegistry, type RegistryHandle } from './helpers/registry.js';

const SPAN = 64 * 1024;
const t = { sec: 1_700_000_000, nsec: 0 };
// Incompressible, so that spans are about as big compressed as not and the layer is read span by span.
const prng = createPrng(41);
const LIB = prng.bytes(1024 * 1024);
const NEXT = prng.bytes(20 * 1024);
const BIG = prng.bytes(8 * 1024 * 1024);

describe('read-ahead', () => {
  let registry: RegistryHandle;
  let proxy: FaultProxy;
  let work: string;
  let image: BuiltImage;
  let index: ClipIndex;

  before(async () => {
    registry = await startRegistry();
    proxy = await startFaultProxy(registry.host);
    work = await mkdtemp(path.join(tmpdir(), 'clip-read-ahead-'));
    image = await buildImage({
      tag: 'ra',
      layers: [
        {
          entries: [
            { type: 'dir', path: 'lib', mode: 0o755, mtime: t },
            { type: 'file', path: 'lib/a.so', mode: 0o644, data: LIB, mtime: t },
            { type: 'file', path: 'lib/b.py', mode: 0o644, data: NEXT, mtime: t },
            { type: 'file', path: 'lib/big.bin', mode: 0o644, data: BIG, mtime: t },
          ],
        },
      ],
    });
    await pushImage(image.dir, 'ra', registry.host, 'ahead/ra');
    // A window at every span: a fetch is of the spans it names, nothing before them.
    const file = path.join(work, 'ra.clip');
    await writeIndex(file, await buildIndex(`${proxy.host}/ahead/ra:ra`, { spanSize: SPAN, windowEvery: SPAN }));
    index = await loadIndex(file);
  });
  after(async () => {
    await proxy?.close();
    await registry?.stop();
    if (image) await rm(image.dir, { recursive: true, force: true });
    if (work) await rm(work, { recursive: true, force: true });
  });

  /** Compressed bytes of the spans that cover [offset, offset + length) of a file. */
  function spanBytes(file: string, offset: number, length: number): number {
    const node = lookupPath(index, file);
    const table = index.layers[node.layer]!.spans;
    const first = spanAt(table, node.offset + offset);
    const last = spanAt(table, node.offset + offset + length - 1);
    return spanRange(table, last).end - spanRange(table, first).start;
  }

  it('after a miss, the rest of the file and the file after it come in the background: reading on fetches nothing more', async () => {
    const reader = await FileReader.open(index, { readAhead: { floor: 4 * 1024 * 1024 } });
    try {
      const lib = lookupPath(index, 'lib/a.so');
      const before = proxy.blobBytes;
      assert.ok((await reader.read(lib, 0, 4096)).equals(LIB.subarray(0, 4096)));
      await reader.readAheadIdle();
      const afterMiss = proxy.blobBytes - before;
      assert.ok(afterMiss >= LIB.length, `the whole file was fetched (${afterMiss} bytes)`);
      // Page-fault order, as a loader reads a library: not front to back.
      for (const at of [900 * 1024, 128 * 1024, 512 * 1024, LIB.length - 4096]) {
        assert.ok((await reader.read(lib, at, 4096)).equals(LIB.subarray(at, at + 4096)), `bytes at ${at}`);
      }
      const next = lookupPath(index, 'lib/b.py');
      assert.ok((await reader.read(next, 0, next.size)).equals(NEXT), 'the file after it in the tar');
      assert.equal(proxy.blobBytes - before, afterMiss, 'every later read was served from what came ahead');
      const stats = reader.readAhead!;
      assert.ok(stats.used > 0 && stats.used >= stats.missed, `read-ahead was used: ${JSON.stringify(stats)}`);
    } finally {
      await reader.close();
    }
  });

  it('off, a reader fetches only the spans its reads need', async () => {
    const reader = await FileReader.open(index, { readAhead: false });
    try {
      const lib = lookupPath(index, 'lib/a.so');
      const before = proxy.blobBytes;
      assert.ok((await reader.read(lib, 0, 4096)).equals(LIB.subarray(0, 4096)));
      await reader.readAheadIdle();
      assert.equal(proxy.blobBytes - before, spanBytes('lib/a.so', 0, 4096));
      assert.equal(reader.readAhead, undefined);
    } finally {
      await reader.close();
    }
  });

  it('random reads over a large file pay at most the bound in extra bytes, and get the right bytes', async () => {
    const floor = 256 * 1024;
    const offsets = Array.from({ length: 40 }, (_, i) => createPrng(100 + i).int(BIG.length - 4096));
    const fetchedWith = async (readAhead: false | { floor: number }): Promise<number> => {
      const reader = await FileReader.open(index, { readAhead });
      try {
        const big = lookupPath(index, 'lib/big.bin');
        const before = proxy.blobBytes;
        for (const at of offsets) {
          assert.ok((await reader.read(big, at, 4096)).equals(BIG.subarray(at, at + 4096)), `bytes at ${at}`);
          await reader.readAheadIdle();
        }
        return proxy.blobBytes - before;
      } finally {
        await reader.close();
      }
    };
    const without = await fetchedWith(false);
    const withAhead = await fetchedWith({ floor });
    const bound = Math.max(floor, 0.1 * without);
    assert.ok(withAhead > without, 'it did read ahead');
    // The bound is on spans ahead and unread; one span more is the granularity of a fetch.
    assert.ok(withAhead - without <= bound + SPAN + 1024, `extra ${withAhead - without} bytes, bound ${bound}`);
  });
});
