// READs of cached bytes answered in the FUSE reader threads
// (content/shared-blocks.ts, fs/tree-responder.ts): the protocol between the
// main thread, which copies spans into an arena of blocks, and the threads,
// which pin and read them (right bytes across block and span edges, a clock
// that never takes a pinned slot, a layer that goes frees its slots, indexes
// that place spans otherwise never share a table); and a real mount whose
// second pass of O_DIRECT reads never reaches the main thread.

import assert from 'node:assert/strict';
import { constants } from 'node:fs';
import { mkdir, mkdtemp, open, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { buildIndex, FileReader, lookupPath, type ClipIndex } from '../src/clip.js';
import { ReadPool } from '../src/content/read-pool.js';
import { BLOCK, SharedBlocks, SharedBlocksView } from '../src/content/shared-blocks.js';
import { ImageFileSystem } from '../src/fs/image-fs.js';
import { TREE_RESPONDER_MODULE, type TreesInit } from '../src/fs/tree-responder.js';
import { serveFuse, type FuseServer } from '../src/fuse/index.js';
import type { LayerRecord } from '../src/index/types.js';
import { buildImage } from './helpers/image-builder.js';
import { createPrng } from './helpers/prng.js';

/** A layer record as far as the blocks look at it: digest, span output starts, size. */
function layerOf(digest: string, starts: number[], size: number): LayerRecord {
  return { digest, spans: { checkpoints: starts.map((out) => ({ out })), uncompressedSize: size } } as unknown as LayerRecord;
}

describe('shared blocks: the protocol', () => {
  const size = 5 * BLOCK + 1000;
  // Spans: one of 2.5 blocks, one of 0 bytes, one of 2.5 blocks + 1000.
  const starts = [0, 2.5 * BLOCK, 2.5 * BLOCK];
  const bytes = createPrng(3).bytes(size);
  const spanData = (i: number): Buffer => bytes.subarray(starts[i], i + 1 < starts.length ? starts[i + 1]! : size);

  function read(view: SharedBlocksView, table: SharedArrayBuffer, from: number, to: number): Buffer | undefined {
    const parts: Buffer[] = [];
    const pinned: number[] = [];
    try {
      return view.collect(SharedBlocksView.layer(table), from, to, parts, pinned) ? Buffer.concat(parts) : undefined;
    } finally {
      view.unpin(pinned);
    }
  }

  it('serves the right bytes across block and span edges, only what was published whole', () => {
    const blocks = new SharedBlocks(16 * BLOCK);
    const view = new SharedBlocksView(blocks.init);
    const layer = layerOf('sha256:aa', starts, size);
    const lease = blocks.acquire([layer]);
    const table = lease.value[0]!;
    assert.equal(read(view, table, 0, 10), undefined, 'nothing held yet');
    // A prefix of span 0 that covers its first block and part of the second: only the first is published.
    blocks.publish(layer, 0, spanData(0).subarray(0, BLOCK + 5));
    assert.equal(blocks.held(), 1);
    assert.ok(read(view, table, 100, BLOCK)!.equals(bytes.subarray(100, BLOCK)));
    assert.equal(read(view, table, 100, BLOCK + 1), undefined, 'the second block is not whole');
    for (let i = 0; i < starts.length; i++) blocks.publish(layer, i, spanData(i));
    assert.equal(blocks.held(), 3 + 3, 'span 0 in 3 blocks, span 1 in none, span 2 in 3');
    for (const [from, to] of [
      [0, size],
      [BLOCK - 1, BLOCK + 1],
      [2.5 * BLOCK - 10, 2.5 * BLOCK + 10],
      [size - 1, size],
      [3 * BLOCK, 4 * BLOCK + 77],
    ] as const) {
      assert.ok(read(view, table, from, to)!.equals(bytes.subarray(from, to)), `bytes ${from}-${to}`);
    }
    assert.equal(read(view, table, 0, size + 1), undefined, 'past the layer');
    void lease.release();
  });

  it('reuses slots least recently used first, never one a reader pins, and frees a layer no image holds', async () => {
    const blocks = new SharedBlocks(3 * BLOCK);
    const view = new SharedBlocksView(blocks.init);
    const spanStarts = [0, BLOCK, 2 * BLOCK, 3 * BLOCK, 4 * BLOCK];
    const data = createPrng(4).bytes(5 * BLOCK);
    const layer = layerOf('sha256:bb', spanStarts, data.length);
    const lease = blocks.acquire([layer]);
    const table = SharedBlocksView.layer(lease.value[0]!);
    const pub = (i: number): void => blocks.publish(layer, i, data.subarray(i * BLOCK, (i + 1) * BLOCK));
    // A reader pins block 0 and keeps it while three more spans come in.
    pub(0);
    const parts: Buffer[] = [];
    const pinned: number[] = [];
    assert.ok(view.collect(table, 0, BLOCK, parts, pinned));
    for (const i of [1, 2, 3, 4]) pub(i);
    assert.ok(parts[0]!.equals(data.subarray(0, BLOCK)), 'the pinned block was not overwritten');
    view.unpin(pinned);
    const heldNow = [0, 1, 2, 3, 4].filter((i) => {
      const p: number[] = [];
      const ok = view.collect(table, i * BLOCK, (i + 1) * BLOCK, [], p);
      view.unpin(p);
      return ok;
    });
    assert.equal(heldNow.length, 3, `three slots, three blocks held (${heldNow.join(',')})`);
    assert.ok(heldNow.includes(0) && heldNow.includes(4), `the pinned block stayed, the newest came in (${heldNow.join(',')})`);
    await lease.release();
    assert.equal(blocks.held(), 0, 'a layer no image holds has no blocks');
    blocks.publish(layer, 0, data.subarray(0, BLOCK));
    assert.equal(blocks.held(), 0, 'nor gets any');
  });

  it('gives indexes of one layer with spans placed otherwise tables of their own', async () => {
    const blocks = new SharedBlocks(8 * BLOCK);
    const a = blocks.acquire([layerOf('sha256:cc', [0, BLOCK], 2 * BLOCK)]);
    const b = blocks.acquire([layerOf('sha256:cc', [0, BLOCK], 2 * BLOCK)]);
    const c = blocks.acquire([layerOf('sha256:cc', [0, BLOCK / 2], 2 * BLOCK)]);
    assert.equal(a.value[0], b.value[0], 'alike: one table');
    assert.notEqual(a.value[0], c.value[0], 'placed otherwise: another');
    for (const l of [a, b, c]) await l.release();
  });
});

describe('shared blocks: READs answered in the reader threads', () => {
  let dir: string;
  let index: ClipIndex;
  let content: Buffer;
  const servers: FuseServer[] = [];

  before(async () => {
    dir = await mkdtemp(path.join(tmpdir(), 'clip-blocks-'));
    content = createPrng(9).compressible(3 * 1024 * 1024 + 12345);
    const image = await buildImage({
      dir: path.join(dir, 'layout'),
      layers: [
        {
          entries: [
            { type: 'file', path: 'small.txt', data: 'small\n' },
            { type: 'file', path: 'big.bin', data: content },
          ],
        },
      ],
    });
    index = await buildIndex(`oci:${image.dir}:latest`, { spanSize: 256 * 1024 });
  });
  after(async () => {
    for (const s of servers) await s.close().catch(() => undefined);
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  it('the second pass of O_DIRECT reads is answered from shared blocks, byte for byte, without the main thread', async () => {
    const pool = new ReadPool({ sharedBytes: 64 * 1024 * 1024 });
    const reader = await FileReader.open(index, { pool, readAhead: false });
    const image = new ImageFileSystem(index, reader);
    let mainReads = 0;
    const read = image.read.bind(image);
    image.read = (...args) => {
      mainReads++;
      return read(...args);
    };
    const tables = pool.blocks!.acquire(index.layers);
    const init: TreesInit = { trees: [[0, image.sharedTree(), tables.value]], blocks: pool.blocks!.init };
    const mp = path.join(dir, 'mnt');
    await mkdir(mp);
    servers.push(await serveFuse(mp, image, { responder: { module: TREE_RESPONDER_MODULE, init }, readers: 2 }));

    // O_DIRECT: every read reaches the filesystem (no page cache), 100 KiB at a time, so reads straddle blocks.
    // Asynchronous: this thread serves the mount's main-thread requests.
    const pass = async (): Promise<Buffer> => {
      const f = await open(path.join(mp, 'big.bin'), constants.O_RDONLY | constants.O_DIRECT);
      const out: Buffer[] = [];
      try {
        for (;;) {
          const b = Buffer.alloc(100 * 1024);
          const { bytesRead } = await f.read(b, 0, b.length, null);
          if (bytesRead === 0) break;
          out.push(b.subarray(0, bytesRead));
        }
      } finally {
        await f.close();
      }
      return Buffer.concat(out);
    };
    assert.ok((await pass()).equals(content), 'first pass: the right bytes');
    const first = mainReads;
    assert.ok(first > 0, 'the first pass was read on the main thread');
    assert.ok(pool.blocks!.held() >= Math.floor(content.length / BLOCK), `blocks published: ${pool.blocks!.held()}`);
    assert.ok((await pass()).equals(content), 'second pass: the right bytes');
    assert.equal(mainReads, first, 'no read of the second pass reached the main thread');
    assert.equal(lookupPath(index, 'big.bin').size, content.length);
    await tables.release();
  });
});
