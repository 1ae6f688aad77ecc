// A hostile .clip must not poison the span cache for other images: it claims
// the layer digest of a genuine image, points at a layout it controls whose
// "blob" under that digest holds other bytes, and carries span digests that
// match those bytes. Mounted once, it must leave nothing that a later mount
// of the genuine image, sharing the cache directory, would serve.
// Likewise for the verified prefixes of fine reads (format v6) on disk: one
// that a hostile index verified against other chunk digests, or one planted
// under the genuine prefix's own name, is never served to the genuine index.

import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { copyFile, mkdir, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { encodeIndex, loadIndex } from '../src/clip.js';
import { LayerReader } from '../src/content/layer-reader.js';
import { planPrefix } from '../src/content/prefix-plan.js';
import { SpanCache } from '../src/content/span-cache.js';
import { prefixIdentity, SpanIdentities } from '../src/content/span-identity.js';
import { openBlobSource } from '../src/content/sources/open.js';
import { isMounted } from '../src/fuse/index.js';
import { spanOutputRange, spanRange } from '../src/gzip/span-reader.js';
import { CHUNK_SIZE } from '../src/gzip/types.js';
import { indexImage } from '../src/indexer/index-image.js';
import { runClip } from './helpers/cli.js';
import { buildImage, type BuiltImage } from './helpers/image-builder.js';
import { clipWorkspace, sweepClipMounts, type ClipWorkspace } from './helpers/mounts.js';
import { createPrng } from './helpers/prng.js';

const SIZE = 200_000;
// Same names and sizes, so both layers' tars (and their single span) have the same length.
const layer = (fill: string) => ({ entries: [{ type: 'file' as const, path: 'data.txt', data: fill.repeat(SIZE / fill.length) }] });

async function waitFor(cond: () => Promise<boolean>, what: string): Promise<void> {
  for (let i = 0; i < 400; i++) {
    if (await cond()) return;
    await new Promise((r) => setTimeout(r, 25));
  }
  throw new Error(`timed out waiting for ${what}`);
}

async function spanFiles(dir: string): Promise<string[]> {
  const all = await readdir(dir, { recursive: true }).catch(() => [] as string[]);
  return all.filter((f) => f.endsWith('.span'));
}

describe('span cache and hostile indexes', () => {
  let ws: ClipWorkspace;
  let genuine: BuiltImage;
  let other: BuiltImage;
  before(async () => {
    sweepClipMounts();
    ws = await clipWorkspace('poison');
    genuine = await buildImage({ tag: 'genuine', layers: [layer('genuine!')] });
    other = await buildImage({ tag: 'other', layers: [layer('HOSTILE!')] });
  });
  after(async () => {
    sweepClipMounts();
    for (const img of [genuine, other]) if (img) await rm(img.dir, { recursive: true, force: true });
    if (ws) await rm(ws.dir, { recursive: true, force: true });
  });

  async function mountRead(index: string, mp: string, cacheDir: string): Promise<string> {
    await mkdir(mp, { recursive: true });
    const m = await runClip(['mount', index, mp, '--cache-dir', cacheDir], { env: ws.env });
    assert.equal(m.code, 0, m.stderr);
    try {
      const text = await readFile(path.join(mp, 'data.txt'), 'utf8');
      // The span is written to the cache after the read returns: wait for it before unmounting.
      await waitFor(async () => (await spanFiles(cacheDir)).length > 0, 'the span to be cached');
      return text;
    } finally {
      const u = await runClip(['umount', mp], { env: ws.env });
      assert.equal(u.code, 0, u.stderr);
      assert.ok(!isMounted(mp));
    }
  }

  it('a hostile index claiming a genuine layer digest does not change what the genuine image serves', async () => {
    const genuineIndex = path.join(ws.dir, 'genuine.clip');
    const otherIndex = path.join(ws.dir, 'other.clip');
    await indexImage(`oci:${genuine.dir}:genuine`, { output: genuineIndex, spanSize: 4 << 20 });
    await indexImage(`oci:${other.dir}:other`, { output: otherIndex, spanSize: 4 << 20 });

    // The hostile layout: the other image's layer bytes stored under the genuine layer's digest.
    const digest = genuine.layers[0]!.digest;
    const hostileDir = path.join(ws.dir, 'hostile-layout');
    await mkdir(path.join(hostileDir, 'blobs', 'sha256'), { recursive: true });
    await copyFile(path.join(other.dir, 'oci-layout'), path.join(hostileDir, 'oci-layout'));
    await writeFile(path.join(hostileDir, 'blobs', 'sha256', digest.slice('sha256:'.length)), other.layers[0]!.blob);
    const hostile = await loadIndex(otherIndex);
    const genuineRecord = (await loadIndex(genuineIndex)).layers[0]!;
    assert.equal(
      hostile.layers[0]!.spans.uncompressedSize,
      genuineRecord.spans.uncompressedSize,
      'same span length, so a cache keyed by (digest, span) would hit',
    );
    hostile.layers[0] = { ...hostile.layers[0]!, digest, diffId: genuineRecord.diffId };
    hostile.image = { ...hostile.image, location: `oci:${hostileDir}` };
    const hostileIndex = path.join(ws.dir, 'hostile.clip');
    await writeFile(hostileIndex, encodeIndex(hostile));

    const cacheDir = path.join(ws.dir, 'shared-cache');
    const served = await mountRead(hostileIndex, path.join(ws.dir, 'mnt-hostile'), cacheDir);
    assert.ok(
      served === 'HOSTILE!'.repeat(SIZE / 8),
      `the hostile index serves the bytes it describes, got ${JSON.stringify(served.slice(0, 16))}...`,
    );

    const text = await mountRead(genuineIndex, path.join(ws.dir, 'mnt-genuine'), cacheDir);
    assert.ok(
      text === 'genuine!'.repeat(SIZE / 8),
      `the genuine image must serve its own bytes, not the cached hostile span; got ${JSON.stringify(text.slice(0, 16))}...`,
    );
  });

  it('a prefix on disk verified against other chunk digests, or planted under the genuine name, is not served', async () => {
    // Text-like, 6 MiB: a gzip layer over the small-layer size, 4 MiB spans of many chunks.
    const data = createPrng(21).compressible(6 * 1024 * 1024);
    const big = await buildImage({ tag: 'big', layers: [{ entries: [{ type: 'file', path: 'big.txt', data }] }] });
    try {
      const indexFile = path.join(ws.dir, 'big.clip');
      await indexImage(`oci:${big.dir}:big`, { output: indexFile, spanSize: 4 << 20 });
      const index = await loadIndex(indexFile);
      const layerRecord = index.layers[0]!;
      const t = layerRecord.spans;
      assert.ok(t.fine && t.checkpoints.length >= 2, 'format v6, several spans');
      const r = spanRange(t, 1);
      const o = spanOutputRange(t, 1);
      const at = o.start + 100000;
      const tar = big.layers[0]!.tar;
      const want = tar.subarray(at, at + 4096);
      const chunks = planPrefix(t, 1, at + 4096)!.chunks;
      const dir = path.join(ws.dir, 'prefix-cache');

      // A hostile layout and index: a byte of span 1's first chunk changed under the genuine digest,
      // that chunk's digest restated to match; the span identity as the genuine index has it.
      let planted = false;
      for (const k of [5000, 9000, 20000, 30000, 40000, 50000]) {
        const blob = Buffer.from(big.layers[0]!.blob);
        blob[r.start + k] = blob[r.start + k]! ^ 0x01;
        const hostileDir = path.join(ws.dir, `hostile-prefix-${k}`);
        await mkdir(path.join(hostileDir, 'blobs', 'sha256'), { recursive: true });
        await copyFile(path.join(big.dir, 'oci-layout'), path.join(hostileDir, 'oci-layout'));
        await writeFile(path.join(hostileDir, 'blobs', 'sha256', layerRecord.digest.slice('sha256:'.length)), blob);
        const chunk0 = createHash('sha256')
          .update(blob.subarray(r.start, r.start + CHUNK_SIZE))
          .digest();
        const fine = t.fine.map((f, i) => (i === 1 ? { marks: f.marks, chunks: [chunk0, ...f.chunks.slice(1)] } : f));
        const hostile = [{ ...layerRecord, spans: { ...t, fine } }];
        const source = await openBlobSource(`oci:${hostileDir}`);
        try {
          const reader = new LayerReader(hostile, source, { disk: new SpanCache(dir) });
          const got = await reader.read(0, at, 4096).catch(() => undefined);
          await reader.diskWrites();
          if (!got || got.equals(want)) continue;
        } finally {
          await source.close();
        }
        assert.ok(
          (await spanFiles(dir)).some((f) => f.includes('-prefix-')),
          'the hostile index left its prefix on disk',
        );
        planted = true;

        const genuineSource = await openBlobSource(index.image.location);
        try {
          // A new reader of the genuine index (new memory, the same directory) reads its own bytes.
          const honest = new LayerReader(index.layers, genuineSource, { disk: new SpanCache(dir) });
          assert.ok((await honest.read(0, at, 4096)).equals(want), 'the genuine index does not read the hostile prefix');

          // Planted under the genuine prefix's own name, as a well-formed cache file: checked against the chunk digests, dropped.
          const identity = prefixIdentity(new SpanIdentities(layerRecord).of(1), t.fine[1]!.chunks, chunks, chunks * CHUNK_SIZE);
          const key = { layer: layerRecord.digest, span: 1, identity, prefix: true };
          const cache = new SpanCache(dir);
          await cache.drop(key);
          await cache.put(key, blob.subarray(r.start, r.start + chunks * CHUNK_SIZE));
          assert.ok(await new SpanCache(dir).knows(key), 'the planted prefix is in place');
          const fresh = new LayerReader(index.layers, genuineSource, { disk: new SpanCache(dir) });
          assert.ok((await fresh.read(0, at, 4096)).equals(want), 'a planted prefix that does not match the chunk digests is not served');
          await fresh.diskWrites();
          const back = await new SpanCache(dir).get(key, chunks * CHUNK_SIZE);
          assert.ok(back?.equals(big.layers[0]!.blob.subarray(r.start, r.start + chunks * CHUNK_SIZE)), 'replaced by the verified prefix');
        } finally {
          await genuineSource.close();
        }
        break;
      }
      assert.ok(planted, 'some tampered byte inflated to other bytes for the hostile index (the attempt was real)');
    } finally {
      await rm(big.dir, { recursive: true, force: true });
    }
  });
});
