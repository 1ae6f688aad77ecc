// Sparse windows end to end: an image (text, source-like and random files,
// a multi-member gzip layer) pushed to a real registry and indexed with a
// window at every 64 KiB checkpoint. Every file read through the library
// FileReader, across all spans, equals its original bytes; the index is much
// smaller than one with whole windows; and the file says format version 5.

import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import zlib from 'node:zlib';
import { loadIndex } from '../src/clip.js';
import { FileReader } from '../src/content/file-reader.js';
import { ClipError } from '../src/errors.js';
import { CheckpointBuilder } from '../src/gzip/checkpoint-builder.js';
import { inflateSpans, spanRange } from '../src/gzip/span-reader.js';
import { decodeIndex, encodeIndex } from '../src/index/format.js';
import { lookupPath } from '../src/image/lookup.js';
import { indexImage } from '../src/indexer/index-image.js';
import { mapBody, openClip, sealClip, splice } from './helpers/clip-body.js';
import { buildImage, type BuiltImage } from './helpers/image-builder.js';
import { oneLayerIndex } from './helpers/one-layer-index.js';
import { createPrng } from './helpers/prng.js';
import { pushImage, startRegistry, type RegistryHandle } from './helpers/registry.js';
import type { TarEntrySpec } from './helpers/tar-writer.js';

const KiB = 1024;
const SPAN = 64 * KiB;

/** Files of text-like, line-structured and random bytes, 1 KiB to 400 KiB. */
function files(seed: number, count: number): TarEntrySpec[] {
  const p = createPrng(seed);
  const out: TarEntrySpec[] = [{ type: 'dir', path: `d${seed}`, mode: 0o755 }];
  for (let i = 0; i < count; i++) {
    const size = p.range(1 * KiB, 400 * KiB);
    const kind = p.int(4);
    let data: Buffer;
    if (kind === 0) data = p.bytes(size);
    else if (kind === 1) {
      const lines: string[] = [];
      for (let n = 0; lines.join('').length < size; n++) lines.push(`def f${n}(x):\n    return x * ${p.int(1000)} + ${n}\n`);
      data = Buffer.from(lines.join('')).subarray(0, size);
    } else data = p.compressible(size);
    out.push({ type: 'file', path: `d${seed}/f${i}.${kind === 0 ? 'bin' : 'txt'}`, mode: 0o644, data });
  }
  return out;
}

function original(image: BuiltImage, file: string): Buffer {
  for (let i = image.layers.length - 1; i >= 0; i--) {
    const layer = image.layers[i]!;
    const e = layer.tarLayout.find((l) => l.path.replace(/^\.\//, '') === file);
    if (e) return layer.tar.subarray(e.dataOffset, e.dataOffset + e.size);
  }
  throw new Error(`${file} not in the image`);
}

describe('sparse windows end to end', () => {
  let registry: RegistryHandle;
  let image: BuiltImage;
  let work: string;
  let ref: string;
  const paths: string[] = [];
  before(async () => {
    registry = await startRegistry();
    const a = files(1, 60);
    const b = files(2, 40);
    image = await buildImage({ layers: [{ entries: a }, { entries: b, compression: 'gzip-multi', members: 4 }] });
    for (const e of [...a, ...b]) if (e.type === 'file') paths.push(e.path);
    work = await mkdtemp(path.join(tmpdir(), 'clip-sparse-'));
    await pushImage(image.dir, image.tag, registry.host, 'sparse/windows');
    ref = `${registry.host}/sparse/windows:${image.tag}`;
  });
  after(async () => {
    await registry?.stop();
    if (image) await rm(image.dir, { recursive: true, force: true });
    if (work) await rm(work, { recursive: true, force: true });
  });

  it('every file reads back exactly, and the index is much smaller than with whole windows', { timeout: 120_000 }, async () => {
    const sparseFile = path.join(work, 'sparse.clip');
    const fullFile = path.join(work, 'full.clip');
    await indexImage(ref, { output: sparseFile, spanSize: SPAN, windowEvery: SPAN });
    await indexImage(ref, { output: fullFile, spanSize: SPAN, windowEvery: SPAN, fullWindows: true });
    const sparseSize = (await stat(sparseFile)).size;
    const fullSize = (await stat(fullFile)).size;
    // Version 6 since both also carry marks and chunk digests (the version rule itself: the round-trip test below).
    assert.equal((await readFile(sparseFile)).readUInt16LE(8), 6, 'sparse windows (and marks): format version 6');
    assert.ok(
      (await loadIndex(fullFile)).layers.every((l) => l.spans.checkpoints.every((c) => !c.sparse)),
      'whole windows: none sparse',
    );

    const index = await loadIndex(sparseFile);
    const full = await loadIndex(fullFile);
    let windows = 0;
    let sparseWindowBytes = 0;
    let fullWindowBytes = 0;
    for (const [li, layer] of index.layers.entries()) {
      const cps = layer.spans.checkpoints;
      const fullCps = full.layers[li]!.spans.checkpoints;
      assert.deepEqual(
        cps.map((c) => [c.in, c.out]),
        fullCps.map((c) => [c.in, c.out]),
        'same checkpoints either way',
      );
      for (const [i, cp] of cps.entries()) {
        if (i === 0) continue;
        assert.ok(cp.window.length > 0 && cp.sparse === true, `layer ${li} checkpoint ${i}: a sparse window (the scan never gave up)`);
        assert.equal(zlib.inflateRawSync(cp.window).length, Math.min(32 * KiB, cp.out));
        windows++;
        sparseWindowBytes += cp.window.length;
        fullWindowBytes += fullCps[i]!.window.length;
      }
    }
    console.log(
      `${windows} windows: ${sparseWindowBytes} bytes sparse, ${fullWindowBytes} whole (${((100 * sparseWindowBytes) / fullWindowBytes).toFixed(1)}%); ` +
        `index ${sparseSize} bytes, ${fullSize} with whole windows (${((100 * sparseSize) / fullSize).toFixed(1)}%)`,
    );
    assert.ok(windows >= 40, `${windows} windows`);
    assert.ok(sparseSize < fullSize, 'the sparse index is smaller');
    assert.ok(sparseWindowBytes < fullWindowBytes / 2, 'sparse windows take less than half the bytes');

    // Every file, whole and in pieces that start inside spans, through the
    // read path that resumes at the checkpoints with the sparse windows.
    const reader = await FileReader.open(index);
    try {
      const p = createPrng(9);
      for (const file of paths) {
        const want = original(image, file);
        const node = lookupPath(index, file);
        assert.ok((await reader.read(node, 0, node.size)).equals(want), `${file} whole`);
        const offset = p.int(want.length);
        const got = await reader.read(node, offset, 1 + p.int(100 * KiB));
        assert.ok(got.equals(want.subarray(offset, offset + got.length)) && got.length > 0, `${file} at ${offset}`);
      }
      const spans = index.layers.reduce((a, l) => a + l.spans.checkpoints.length, 0);
      assert.ok(spans > 60, `${spans} spans read`);
    } finally {
      await reader.close();
    }
  });
});

describe('sparse windows in the .clip format', () => {
  const plain = createPrng(5).compressible(1024 * KiB);
  const gz = zlib.gzipSync(plain);
  const b = new CheckpointBuilder(SPAN, () => {}, SPAN);
  b.push(gz);
  const table = b.finish();

  it('the sparse flag round-trips (version 5); whole windows stay at an older version', () => {
    assert.ok(table.checkpoints.length > 5 && table.checkpoints.slice(1).every((c) => c.sparse));
    // Without the marks and chunk digests (version 6) a sparse index is version 5.
    const { fine: _fine, ...coarse } = table;
    const file = encodeIndex(oneLayerIndex(coarse, SPAN));
    assert.equal(file.readUInt16LE(8), 5);
    const back = decodeIndex(file).layers[0]!.spans.checkpoints;
    assert.deepEqual(
      back.map((c) => [c.in, c.out, c.sparse ?? false, c.window.toString('hex')]),
      table.checkpoints.map((c) => [c.in, c.out, c.sparse ?? false, c.window.toString('hex')]),
    );
    const whole = { ...coarse, checkpoints: table.checkpoints.map(({ sparse: _, ...c }) => c) };
    assert.ok(encodeIndex(oneLayerIndex(whole, SPAN)).readUInt16LE(8) < 5);
  });

  it('a sparse flag other than 0 or 1, or on a checkpoint without a window, is refused', () => {
    const c = openClip(encodeIndex(oneLayerIndex(table, SPAN)));
    const flags = mapBody(c.raw, c.version).fields.filter((f) => f.kind === 'cp-sparse');
    assert.equal(flags.length, table.checkpoints.length);
    const refuses = (raw: Buffer, message: RegExp): void =>
      assert.throws(
        () => decodeIndex(sealClip(c, raw)),
        (e: unknown) => e instanceof ClipError && e.code === 'BAD_INDEX' && message.test(e.message),
      );
    refuses(splice(c.raw, flags[1]!, Buffer.from([2])), /checkpoint 1 has window flag 2/);
    // Checkpoint 0 has no window: marking it sparse is a lie.
    refuses(splice(c.raw, flags[0]!, Buffer.from([1])), /checkpoint 0 is marked sparse but has no window/);
  });

  it('a window that does not inflate to exactly the 32 KiB before its checkpoint is refused at read', async () => {
    const i = 2;
    const { start, end } = spanRange(table, i);
    for (const size of [32 * KiB - 1, 100]) {
      const bad = {
        ...table,
        checkpoints: table.checkpoints.map((c, k) => (k === i ? { ...c, window: zlib.deflateRawSync(Buffer.alloc(size)) } : c)),
      };
      await assert.rejects(
        inflateSpans(bad, i, i, gz.subarray(start, end)),
        (e: unknown) =>
          e instanceof ClipError && e.code === 'BAD_INDEX' && new RegExp(`inflates to ${size} bytes, not the 32768`).test(e.message),
      );
    }
  });
});
