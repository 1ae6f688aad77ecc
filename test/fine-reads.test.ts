// Fine-grained verified reads (format v6): a 4 KiB read inside a 4 MiB span
// fetches only the span's first chunks, as far as the read needs, through a
// counting proxy in front of a real registry; every byte matches the layer;
// reads across chunk and span edges are right; a corrupted chunk in the
// registry fails the read (EIO through a mount), never a wrong byte.
// Verified prefixes go to the disk cache: a new reader on that cache serves
// reads inside one with nothing fetched, and fetches only the chunks after it
// for a read beyond it. With read-ahead, the rest of a span a read takes a
// prefix of comes alongside.

import assert from 'node:assert/strict';
import { mkdir, open, readdir } from 'node:fs/promises';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { FileReader, loadIndex, lookupPath } from '../src/clip.js';
import { createHash } from 'node:crypto';
import { LayerReader } from '../src/content/layer-reader.js';
import { planPrefix } from '../src/content/prefix-plan.js';
import { SpanCache } from '../src/content/span-cache.js';
import { SpanMemory } from '../src/content/span-memory.js';
import { openBlobSource } from '../src/content/sources/open.js';
import { spanOutputRange, spanRange } from '../src/gzip/span-reader.js';
import { CHUNK_SIZE } from '../src/gzip/types.js';
import type { ClipIndex } from '../src/index/types.js';
import type { BlobSource } from '../src/oci/types.js';
import { runClip } from './helpers/cli.js';
import type { FaultProxy } from './helpers/fault-proxy.js';
import { buildImage, type BuiltImage } from './helpers/image-builder.js';
import type { ClipWorkspace } from './helpers/mounts.js';
import { createPrng } from './helpers/prng.js';
import { startProxiedImage, type ProxiedImage } from './helpers/proxied-busybox.js';
import { corruptBlobInRegistry } from './helpers/registry.js';

const SPAN = 4 * 1024 * 1024;

describe('fine-grained verified reads', () => {
  let fixture: ProxiedImage;
  let proxy: FaultProxy;
  let image: BuiltImage;
  let ws: ClipWorkspace;
  let file: string;
  let index: ClipIndex;

  before(async () => {
    const prng = createPrng(13);
    // Text-like data (about 3-4x smaller in gzip): 16 MiB, so 4 MiB spans have many chunks and marks.
    const built = await buildImage({
      layers: [
        {
          entries: [
            { type: 'dir', path: 'data' },
            { type: 'file', path: 'data/a.txt', data: prng.compressible(10 * 1024 * 1024) },
            { type: 'file', path: 'data/b.txt', data: prng.compressible(6 * 1024 * 1024) },
          ],
        },
      ],
    });
    fixture = await startProxiedImage('fine', 'text', built, '4M');
    ({ proxy, image, ws, index: file } = fixture);
    index = await loadIndex(file);
  });
  after(async () => {
    await fixture?.close();
  });

  const tar = (start: number, end: number): Buffer => image.layers[0]!.tar.subarray(start, end);

  it('the index has marks and chunk digests for every span', () => {
    const t = index.layers[0]!.spans;
    assert.ok(t.checkpoints.length >= 3, `${t.checkpoints.length} spans`);
    assert.ok(t.fine, 'format v6 marks');
    for (let i = 0; i < t.checkpoints.length; i++) {
      const r = spanRange(t, i);
      assert.equal(t.fine[i]!.chunks.length, Math.ceil((r.end - r.start) / CHUNK_SIZE));
      const o = spanOutputRange(t, i);
      // Marks every >= 64 KiB: a 4 MiB span gets some, and at most one per 64 KiB.
      if (o.end - o.start >= SPAN) assert.ok(t.fine[i]!.marks.length >= 8, `span ${i}: ${t.fine[i]!.marks.length} marks`);
    }
  });

  it('a 4 KiB read a fifth into a 4 MiB span fetches less than a quarter of it, and the right bytes', async () => {
    const t = index.layers[0]!.spans;
    const blobs = await openBlobSource(index.image.location);
    try {
      const reader = new LayerReader(index.layers, blobs);
      const o = spanOutputRange(t, 1);
      const r = spanRange(t, 1);
      assert.ok(o.end - o.start >= SPAN);
      const at = o.start + Math.floor((o.end - o.start) / 5);
      const before = proxy.blobBytes;
      const got = await reader.read(0, at, 4096);
      assert.ok(got.equals(tar(at, at + 4096)), 'byte-identical');
      const fetched = proxy.blobBytes - before;
      assert.ok(fetched > 0);
      assert.ok(fetched < (r.end - r.start) / 4, `fetched ${fetched} of a ${r.end - r.start}-byte span`);
      // A read further into the span needs more: fetched again (more chunks), still right.
      const later = o.start + Math.floor(((o.end - o.start) * 3) / 4);
      assert.ok((await reader.read(0, later, 4096)).equals(tar(later, later + 4096)));
      // Only the chunks after those held were fetched: no byte of the span twice.
      assert.ok(proxy.blobBytes - before <= r.end - r.start, `both reads fetched ${proxy.blobBytes - before} bytes`);
      // A read before the first one is served from the prefix held in memory.
      const held = proxy.blobBytes;
      assert.ok((await reader.read(0, o.start + 100, 4096)).equals(tar(o.start + 100, o.start + 4196)));
      assert.equal(proxy.blobBytes, held, 'no fetch for bytes a held prefix covers');
    } finally {
      await blobs.close();
    }
  });

  it('a new reader on the same disk cache serves a read inside an earlier prefix with nothing fetched, and continues beyond it', async () => {
    const t = index.layers[0]!.spans;
    const o = spanOutputRange(t, 1);
    const r = spanRange(t, 1);
    const at = o.start + Math.floor((o.end - o.start) / 5);
    const dir = path.join(ws.dir, 'prefix-cache');
    const files = async (): Promise<string[]> => (await readdir(dir, { recursive: true })).filter((f) => f.endsWith('.span'));
    const blobs = await openBlobSource(index.image.location);
    try {
      const first = new LayerReader(index.layers, blobs, { disk: new SpanCache(dir) });
      assert.ok((await first.read(0, at, 4096)).equals(tar(at, at + 4096)));
      await first.diskWrites();
      assert.equal((await files()).filter((f) => f.includes('-prefix-')).length, 1, 'the prefix is on disk');

      // A new reader (as a new daemon has): its own memory, a cache instance that scans the directory afresh.
      const second = new LayerReader(index.layers, blobs, { disk: new SpanCache(dir) });
      const bytes = proxy.blobBytes;
      const requests = proxy.blobRequests;
      assert.ok((await second.read(0, at, 4096)).equals(tar(at, at + 4096)), 'the same read, from disk');
      assert.ok((await second.read(0, o.start + 10, 8192)).equals(tar(o.start + 10, o.start + 8202)), 'an earlier read, from disk');
      assert.equal(proxy.blobBytes - bytes, 0, 'nothing fetched for reads inside the prefix on disk');
      assert.equal(proxy.blobRequests - requests, 0);

      // Beyond it: only the chunks after the prefix (the rest of the span, in one request).
      const held = planPrefix(t, 1, at + 4096)!.chunks;
      const later = o.start + Math.floor(((o.end - o.start) * 3) / 4);
      assert.ok((await second.read(0, later, 4096)).equals(tar(later, later + 4096)));
      assert.equal(proxy.blobBytes - bytes, r.end - r.start - held * CHUNK_SIZE, 'only the chunks after the prefix on disk');
      assert.equal(proxy.blobRequests - requests, 1);
      await second.diskWrites();
      // The whole span is cached now; the prefix it makes useless is gone.
      const now = await files();
      assert.equal(now.filter((f) => f.includes('-prefix-')).length, 0, now.join(' '));
      const third = new LayerReader(index.layers, blobs, { disk: new SpanCache(dir) });
      assert.ok((await third.read(0, later + 50000, 4096)).equals(tar(later + 50000, later + 54096)));
      assert.equal(proxy.blobBytes - bytes, r.end - r.start - held * CHUNK_SIZE, 'the whole span from disk');
    } finally {
      await blobs.close();
    }
  });

  it('a deeper read while a prefix of the span is in flight fetches only the chunks after it: no byte twice', async () => {
    const t = index.layers[0]!.spans;
    const o = spanOutputRange(t, 1);
    const r = spanRange(t, 1);
    const blobs = await openBlobSource(index.image.location);
    try {
      const reader = new LayerReader(index.layers, blobs);
      const bytes = proxy.blobBytes;
      const requests = proxy.blobRequests;
      // A start-up profile's prefix of span 1, and a read deeper into it before that prefix has arrived.
      const warm = reader.loadPrefix(0, 1, o.start + Math.floor((o.end - o.start) / 5));
      while (proxy.blobRequests === requests) await new Promise((res) => setTimeout(res, 1));
      const later = o.start + Math.floor(((o.end - o.start) * 3) / 4);
      assert.ok((await reader.read(0, later, 4096)).equals(tar(later, later + 4096)));
      await warm;
      assert.equal(proxy.blobBytes - bytes, r.end - r.start, 'the span once, in two requests');
      assert.equal(proxy.blobRequests - requests, 2);
      const early = o.start + 1000;
      assert.ok((await reader.read(0, early, 4096)).equals(tar(early, early + 4096)));
      assert.equal(proxy.blobBytes - bytes, r.end - r.start);
    } finally {
      await blobs.close();
    }
  });

  it('read-ahead: a read of a prefix fetches the rest of its span alongside, so a deeper read waits for nothing; no byte twice', async () => {
    const t = index.layers[0]!.spans;
    const o = spanOutputRange(t, 1);
    const r = spanRange(t, 1);
    const node = lookupPath(index, 'data/a.txt');
    const reader = await FileReader.open(index);
    try {
      const bytes = proxy.blobBytes;
      const requests = proxy.blobRequests;
      const at = o.start + Math.floor((o.end - o.start) / 5);
      assert.ok((await reader.read(node, at - node.offset, 4096)).equals(tar(at, at + 4096)));
      await reader.readAheadIdle();
      await reader.layerReader.diskWrites();
      // Span 1 came in two requests at once: the prefix the read needed and the rest of the span.
      const spanRequests = proxy.blobRequests - requests;
      const fetched = proxy.blobBytes - bytes;
      const later = o.start + Math.floor(((o.end - o.start) * 3) / 4);
      assert.ok((await reader.read(node, later - node.offset, 4096)).equals(tar(later, later + 4096)));
      assert.equal(proxy.blobRequests - requests, spanRequests, 'the deeper read fetched nothing');
      assert.equal(proxy.blobBytes - bytes, fetched);
      assert.ok(reader.layerReader.holds(0, 1), 'all of span 1 is held');
      // Span 1 and the spans after it that read-ahead took (the rest of the file and one more), each once.
      const ends = t.checkpoints.map((_, i) => spanRange(t, i).end - r.start);
      assert.ok(ends.slice(1).includes(fetched), `fetched ${fetched} bytes: whole spans from span 1 on, none twice`);
    } finally {
      await reader.close();
    }
  });

  it('reads across chunk, mark and span edges return the right bytes', async () => {
    const t = index.layers[0]!.spans;
    const blobs = await openBlobSource(index.image.location);
    try {
      const reader = new LayerReader(index.layers, blobs);
      const offsets: [number, number][] = [];
      for (let i = 0; i < t.checkpoints.length; i++) {
        const o = spanOutputRange(t, i);
        offsets.push([o.start - 2000, 4096], [o.start, 1], [o.end - 1, 1], [o.end - 4096, 4096]);
        for (const m of t.fine![i]!.marks.slice(0, 4)) offsets.push([m.out - 4096, 4096], [m.out - 1, 2], [m.out, 4096]);
      }
      // A read of several spans whose last ends mid-span.
      offsets.push([spanOutputRange(t, 0).start + 5, spanOutputRange(t, 1).start + 70000]);
      for (const [start, length] of offsets) {
        const s = Math.max(0, start);
        const got = await reader.read(0, s, length);
        const want = tar(s, Math.min(s + length, t.uncompressedSize));
        assert.ok(got.equals(want), `read ${s} +${length}`);
      }
    } finally {
      await blobs.close();
    }
  });

  it('a prefix planted by an index that states other chunk digests is never served to another index', async () => {
    const t = index.layers[0]!.spans;
    const r = spanRange(t, 1);
    const o = spanOutputRange(t, 1);
    const at = o.start + 100000;
    const real = await openBlobSource(index.image.location);
    try {
      // A hostile source and index: one byte of span 1 changed, its chunk digest restated to match,
      // everything else (layer digest, span digest, so the span identity) as the honest index says.
      let planted: Buffer | undefined;
      for (const k of [5000, 9000, 20000, 30000, 40000, 50000]) {
        const tamper = (b: Buffer, start: number): Buffer => {
          const out = Buffer.from(b);
          if (start <= r.start + k && r.start + k < start + b.length) out[r.start + k - start]! ^= 0x01;
          return out;
        };
        const hostileSource: BlobSource = {
          openBlob: (d) => real.openBlob(d),
          readRange: async (d, s, e) => tamper(await real.readRange(d, s, e), s),
          close: async () => undefined,
        };
        const chunk0 = tamper(await real.readRange(index.layers[0]!.digest, r.start, r.start + CHUNK_SIZE), r.start);
        const fine = t.fine!.map((f, i) =>
          i === 1 ? { marks: f.marks, chunks: [createHash('sha256').update(chunk0).digest(), ...f.chunks.slice(1)] } : f,
        );
        const hostile = [{ ...index.layers[0]!, spans: { ...t, fine } }];
        const memory = new SpanMemory(64 * 1024 * 1024);
        const got = await new LayerReader(hostile, hostileSource, { memory }).read(0, at, 4096).catch(() => undefined);
        if (!got || got.equals(tar(at, at + 4096))) continue;
        planted = got;
        // The honest reader shares that memory: it must fetch and verify its own prefix.
        const honest = await new LayerReader(index.layers, real, { memory }).read(0, at, 4096);
        assert.ok(honest.equals(tar(at, at + 4096)), 'the honest index reads the real bytes');
        break;
      }
      assert.ok(planted, 'some tampered byte inflated to wrong bytes for the hostile index (the attempt was real)');
    } finally {
      await real.close();
    }
  });

  it('a corrupted chunk in the registry gives EIO through a mount, never wrong bytes', async () => {
    const t = index.layers[0]!.spans;
    const o = spanOutputRange(t, 1);
    const r = spanRange(t, 1);
    // Flip a byte in span 1's first chunk: every prefix of span 1 holds it.
    await corruptBlobInRegistry(fixture.registry.dir, index.layers[0]!.digest, (d) => {
      d[r.start + 1000] = d[r.start + 1000]! ^ 0xff;
    });
    const mp = path.join(ws.dir, 'mnt');
    await mkdir(mp);
    const m = await runClip(['mount', file, mp, '--cache-dir', path.join(ws.dir, 'cache')], { env: ws.env });
    assert.equal(m.code, 0, m.stderr);
    try {
      // Where span 1's output falls in data/a.txt (its data starts after the tar headers).
      const entry = image.layers[0]!.tarLayout.find((e) => e.path.endsWith('data/a.txt'))!;
      const at = o.start + 300000 - entry.dataOffset;
      assert.ok(at > 0 && at + 4096 < entry.size);
      const fh = await open(path.join(mp, 'data/a.txt'), 'r');
      try {
        const buf = Buffer.alloc(4096);
        await assert.rejects(fh.read(buf, 0, 4096, at), { code: 'EIO' });
        // A read of span 0, whose chunks are intact, still works.
        const { bytesRead } = await fh.read(buf, 0, 4096, 0);
        assert.equal(bytesRead, 4096);
        assert.ok(buf.equals(tar(entry.dataOffset, entry.dataOffset + 4096)));
      } finally {
        await fh.close();
      }
    } finally {
      const u = await runClip(['umount', mp], { env: ws.env });
      assert.equal(u.code, 0, u.stderr);
    }
  });
});
