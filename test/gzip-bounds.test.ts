// Bounds on what gzip input can cost: zero-filled layers (no byte-aligned
// block boundaries) still get spans of a few MiB, read back byte-exactly
// through the reader and a real mount; a crafted endless block, a body longer
// than its descriptor, a gzip bomb and a hostile index that inflates to more
// than it declares are all refused with a clear error.

import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { mkdir, mkdtemp, open, rm } from 'node:fs/promises';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import zlib from 'node:zlib';
import { loadIndex } from '../src/clip.js';
import { LayerReader } from '../src/content/layer-reader.js';
import { ClipError } from '../src/errors.js';
import { CheckpointBuilder } from '../src/gzip/checkpoint-builder.js';
import { inflateSpans, spanOutputRange, spanRange } from '../src/gzip/span-reader.js';
import { MAX_SPAN_OUTPUT, type SpanTable } from '../src/gzip/types.js';
import { decodeIndex, encodeIndex } from '../src/index/format.js';
import { indexImage } from '../src/indexer/index-image.js';
import { exceedsRatio, RATIO_FLOOR } from '../src/indexer/index-layer.js';
import { openBlobSource } from '../src/content/sources/open.js';
import { runClip } from './helpers/cli.js';
import { DeflateBits } from './helpers/deflate-bits.js';
import { oneLayerIndex } from './helpers/one-layer-index.js';
import { buildImage, hostArchitecture, type BuiltImage } from './helpers/image-builder.js';
import { buildTar } from './helpers/tar-writer.js';
import { clipWorkspace, sweepClipMounts, type ClipWorkspace } from './helpers/mounts.js';
import { replaceLayerBlob } from './helpers/mutate-image.js';
import { createPrng } from './helpers/prng.js';
import { isMounted } from '../src/fuse/index.js';

const MiB = 1024 * 1024;
/** What one span may cover: 2 x spanSize of output, plus the block that ends it (zlib's are at most ~8.5 MB). */
const spanBound = (spanSize: number): number => 2 * spanSize + 9 * MiB;

function build(gz: Buffer, spanSize: number, chunk = 65536): SpanTable {
  const b = new CheckpointBuilder(spanSize, () => {});
  for (let i = 0; i < gz.length; i += chunk) b.push(gz.subarray(i, i + chunk));
  return b.finish();
}

function spanOutputs(t: SpanTable): number[] {
  return t.checkpoints.map((_, i) => spanOutputRange(t, i).end - spanOutputRange(t, i).start);
}

/** Zeros with a little text between them: mostly no byte-aligned boundaries. */
function zeroLayer(size: number): Buffer {
  const b = Buffer.alloc(size);
  for (let off = 5 * MiB; off < size; off += 23 * MiB) b.write(`marker at ${off}\n`, off);
  return b;
}

describe('gzip of zeros: spans bounded by output', () => {
  const plain = zeroLayer(64 * MiB);
  for (const level of [1, 6, 9]) {
    it(`level ${level}: every span within the bound, each inflates exactly, digests cover exactly its range`, async () => {
      const gz = zlib.gzipSync(plain, { level });
      const spanSize = MiB;
      const t = build(gz, spanSize);
      const outs = spanOutputs(t);
      assert.ok(Math.max(...outs) <= spanBound(spanSize), `largest span ${Math.max(...outs)}`);
      assert.ok(t.checkpoints.length >= 64 / 11, `${t.checkpoints.length} spans for 64 MiB`);
      assert.ok(
        t.checkpoints.some((c) => (c.bits ?? 0) > 0),
        'some checkpoints start mid-byte',
      );
      for (let i = 0; i < t.checkpoints.length; i++) {
        const r = spanRange(t, i);
        assert.ok(createHash('sha256').update(gz.subarray(r.start, r.end)).digest().equals(t.digests[i]!), `digest of span ${i}`);
        const o = spanOutputRange(t, i);
        const got = await inflateSpans(t, i, i, gz.subarray(r.start, r.end));
        assert.ok(got.equals(plain.subarray(o.start, o.end)), `span ${i} (bits ${t.checkpoints[i]!.bits ?? 0})`);
      }
      // Several spans at once, across unaligned checkpoints.
      const last = t.checkpoints.length - 1;
      const all = await inflateSpans(t, 1, last, gz.subarray(spanRange(t, 1).start, spanRange(t, last).end));
      assert.ok(all.equals(plain.subarray(t.checkpoints[1]!.out)));
    });
  }

  it('placement does not depend on how the input is chunked', () => {
    const gz = zlib.gzipSync(plain, { level: 6 });
    const key = (t: SpanTable): string => t.checkpoints.map((c) => `${c.in}.${c.bits ?? 0}:${c.out}`).join(' ');
    const a = key(build(gz, MiB, 65536));
    assert.equal(key(build(gz, MiB, 4093)), a);
    assert.equal(key(build(gz, MiB, 1 << 20)), a);
  });

  it('checkpoints with bit offsets round-trip through the .clip format (version 4)', async () => {
    const gz = zlib.gzipSync(plain, { level: 9 });
    // Whole windows and no marks: sparse ones need version 5 (test/backref-scan.test.ts), marks version 6.
    const { fine: _fine, ...sparse } = build(gz, MiB);
    const t = { ...sparse, checkpoints: sparse.checkpoints.map(({ sparse: _, ...c }) => c) };
    const index = oneLayerIndex(t, MiB);
    const file = encodeIndex(index);
    assert.equal(file.readUInt16LE(8), 4, 'format version 4');
    const back = decodeIndex(file).layers[0]!.spans;
    assert.deepEqual(
      back.checkpoints.map((c) => [c.in, c.bits ?? 0, c.out]),
      t.checkpoints.map((c) => [c.in, c.bits ?? 0, c.out]),
    );
    // Without unaligned checkpoints the file stays at the older version.
    const aligned = {
      ...t,
      checkpoints: t.checkpoints.filter((c) => !c.bits),
      digests: t.digests.filter((_, i) => !t.checkpoints[i]!.bits),
    };
    assert.equal(encodeIndex(oneLayerIndex(aligned, MiB)).readUInt16LE(8), 1);
  });

  it('a single deflate block of more than MAX_SPAN_OUTPUT is refused, naming the offset', () => {
    // One fixed-Huffman block: a literal, then matches of 258 bytes at distance 1.
    const s = new DeflateBits().fixedHeader(true).literal(0);
    for (let n = 1; n <= MAX_SPAN_OUTPUT + MiB; n += 258) s.run258();
    s.endOfBlock();
    const gz = Buffer.concat([Buffer.from([0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 3]), s.bytes(), Buffer.alloc(8)]);
    assert.throws(
      () => build(gz, MiB),
      (e: unknown) =>
        e instanceof ClipError && e.code === 'BAD_GZIP' && /compressed offset 10\b/.test(e.message) && /crafted/.test(e.message),
    );
  });
});

describe('inflate never exceeds what the index declares', () => {
  const plain = zeroLayer(16 * MiB);
  const gz = zlib.gzipSync(plain, { level: 6 });

  it('a span whose verified bytes inflate to more than declared fails with BAD_GZIP after at most one chunk more', async () => {
    // The hostile index: one span over the whole stream, declaring 1000 bytes.
    const t = build(gz, 4 * MiB);
    const forged: SpanTable = {
      ...t,
      uncompressedSize: 1000,
      checkpoints: [t.checkpoints[0]!],
      digests: [createHash('sha256').update(gz).digest()],
    };
    await assert.rejects(
      inflateSpans(forged, 0, 0, gz),
      (e: unknown) => e instanceof ClipError && e.code === 'BAD_GZIP' && /more than the 1000 bytes expected/.test(e.message),
    );
  });

  it('a span that declares more than MAX_SPAN_OUTPUT is refused before inflating', async () => {
    const t = build(gz, 4 * MiB);
    const forged: SpanTable = { ...t, uncompressedSize: MAX_SPAN_OUTPUT + 1, checkpoints: [t.checkpoints[0]!] };
    await assert.rejects(
      inflateSpans(forged, 0, 0, gz),
      (e: unknown) => e instanceof ClipError && e.code === 'BAD_INDEX' && /more than one span may cover/.test(e.message),
    );
  });

  it('a window that inflates to more than 32 KiB is refused', async () => {
    const rng = createPrng(3);
    const text = Buffer.from(Array.from({ length: 2 * MiB }, () => 97 + rng.int(8)));
    const t = build(zlib.gzipSync(text, { level: 6 }), 256 * 1024);
    const i = t.checkpoints.findIndex((c, k) => k > 0 && c.window.length > 0);
    assert.ok(i > 0);
    const forged: SpanTable = {
      ...t,
      checkpoints: t.checkpoints.map((c, k) => (k === i ? { ...c, window: zlib.deflateRawSync(Buffer.alloc(40_000)) } : c)),
    };
    await assert.rejects(
      inflateSpans(forged, i, i, Buffer.alloc(10)),
      (e: unknown) => e instanceof ClipError && e.code === 'BAD_INDEX' && /window of checkpoint/.test(e.message),
    );
  });
});

describe('zero-filled images: reads through the reader and a mount', () => {
  let image: BuiltImage;
  let work: string;
  let ws: ClipWorkspace;
  const zeros = zeroLayer(72 * MiB);
  const prng = createPrng(10);
  const head = Buffer.from(Array.from({ length: 300_000 }, () => prng.int(256)));
  before(async () => {
    sweepClipMounts();
    work = await mkdtemp(path.join(tmpdir(), 'clip-bounds-'));
    ws = await clipWorkspace('bounds');
    image = await buildImage({
      layers: [
        {
          entries: [
            { path: 'head.bin', type: 'file', data: head },
            { path: 'zeros.bin', type: 'file', data: zeros },
            { path: 'tail.txt', type: 'file', data: 'the end\n' },
          ],
        },
      ],
    });
  });
  after(async () => {
    sweepClipMounts();
    if (image) await rm(image.dir, { recursive: true, force: true });
    if (work) await rm(work, { recursive: true, force: true });
    if (ws) await rm(ws.dir, { recursive: true, force: true });
  });

  for (const level of [1, 6, 9]) {
    it(`gzip -${level}: spans within the bound and 150 random reads byte-exact`, async () => {
      const tar = image.layers[0]!.tar;
      await replaceLayerBlob(image, 0, zlib.gzipSync(tar, { level }));
      const out = path.join(work, `zeros-${level}.clip`);
      const spanSize = 512 * 1024;
      await indexImage(`oci:${image.dir}:${image.tag}`, { output: out, spanSize });
      const index = await loadIndex(out);
      const t = index.layers[0]!.spans;
      assert.ok(Math.max(...spanOutputs(t)) <= spanBound(spanSize), `largest span ${Math.max(...spanOutputs(t))}`);
      const blobs = await openBlobSource(index.image.location);
      const reader = new LayerReader(index.layers, blobs, { smallLayer: 0, memoryBytes: 32 * MiB });
      try {
        const rng = createPrng(level);
        for (let k = 0; k < 150; k++) {
          const offset = rng.int(tar.length);
          const length = k % 10 === 0 ? rng.int(4 * MiB) : 1 + rng.int(8192);
          const got = await reader.read(0, offset, length);
          assert.ok(got.equals(tar.subarray(offset, offset + length)), `[${offset}, +${length})`);
        }
      } finally {
        await blobs.close();
      }
    });
  }

  it('the reader refuses a hostile index whose verified span inflates to more than it declares', async () => {
    const blob = zlib.gzipSync(image.layers[0]!.tar, { level: 6 });
    await replaceLayerBlob(image, 0, blob);
    const out = path.join(work, 'zeros-hostile.clip');
    await indexImage(`oci:${image.dir}:${image.tag}`, { output: out, spanSize: MiB });
    const index = await loadIndex(out);
    const layer = index.layers[0]!;
    // One span over the whole blob, its digest right, its output declared as 4 KiB (no marks: read whole).
    const { fine: _fine, ...t } = layer.spans;
    const forged = {
      ...layer,
      spans: { ...t, uncompressedSize: 4096, checkpoints: [t.checkpoints[0]!], digests: [createHash('sha256').update(blob).digest()] },
    };
    const blobs = await openBlobSource(index.image.location);
    try {
      const reader = new LayerReader([forged], blobs, { smallLayer: 0 });
      // image-fs answers any read failure with EIO and logs it.
      await assert.rejects(
        reader.read(0, 0, 100),
        (e: unknown) => e instanceof ClipError && e.code === 'BAD_GZIP' && /more than the 4096 bytes expected/.test(e.message),
      );
    } finally {
      await blobs.close();
    }
  });

  it('a real mount reads the zero file byte-exactly at random offsets', async () => {
    const out = path.join(work, 'zeros-mount.clip');
    await replaceLayerBlob(image, 0, zlib.gzipSync(image.layers[0]!.tar, { level: 9 }));
    await indexImage(`oci:${image.dir}:${image.tag}`, { output: out, spanSize: 1 * MiB });
    const mp = path.join(ws.dir, 'mnt');
    await mkdir(mp, { recursive: true });
    const m = await runClip(['mount', out, mp], { env: ws.env });
    assert.equal(m.code, 0, m.stderr);
    try {
      const fh = await open(path.join(mp, 'zeros.bin'), 'r');
      try {
        const rng = createPrng(99);
        for (let k = 0; k < 40; k++) {
          const offset = rng.int(zeros.length);
          const buf = Buffer.alloc(1 + rng.int(256 * 1024));
          const { bytesRead } = await fh.read(buf, 0, buf.length, offset);
          assert.ok(
            buf.subarray(0, bytesRead).equals(zeros.subarray(offset, offset + buf.length)),
            `zeros.bin [${offset}, +${buf.length})`,
          );
        }
      } finally {
        await fh.close();
      }
    } finally {
      const u = await runClip(['umount', mp], { env: ws.env });
      assert.equal(u.code, 0, u.stderr);
      assert.ok(!isMounted(mp));
    }
  });
});

describe('indexing is bounded by the descriptor', () => {
  let server: Server;
  let host: string;
  let bodyClosed: Promise<void>;
  const gz = zlib.gzipSync(buildTar([{ path: 'a.txt', type: 'file', data: 'hello\n' }]));
  const sha = (b: Buffer): string => `sha256:${createHash('sha256').update(b).digest('hex')}`;
  const config = Buffer.from(
    JSON.stringify({ architecture: hostArchitecture(), os: 'linux', rootfs: { type: 'layers', diff_ids: [sha(zlib.gunzipSync(gz))] } }),
  );
  const manifest = Buffer.from(
    JSON.stringify({
      schemaVersion: 2,
      mediaType: 'application/vnd.oci.image.manifest.v1+json',
      config: { mediaType: 'application/vnd.oci.image.config.v1+json', digest: sha(config), size: config.length },
      layers: [{ mediaType: 'application/vnd.oci.image.layer.v1.tar+gzip', digest: sha(gz), size: gz.length }],
    }),
  );
  before(async () => {
    let closed!: () => void;
    bodyClosed = new Promise((r) => (closed = r));
    server = createServer((req, res) => {
      const url = req.url ?? '';
      if (url === '/v2/' || url === '/v2') return res.writeHead(200).end();
      if (url.includes('/manifests/'))
        return res
          .writeHead(200, { 'content-type': 'application/vnd.oci.image.manifest.v1+json', 'content-length': manifest.length })
          .end(manifest);
      if (url.endsWith(sha(config))) return res.writeHead(200, { 'content-length': config.length }).end(config);
      if (url.endsWith(sha(gz))) {
        // The layer's bytes, then more, forever (no content-length).
        res.writeHead(200);
        res.write(gz);
        const more = Buffer.alloc(64 * 1024, 1);
        const pump = (): void => {
          while (!res.destroyed && res.write(more));
          if (!res.destroyed) res.once('drain', pump);
        };
        res.on('close', closed);
        pump();
        return;
      }
      res.writeHead(404).end();
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    host = `127.0.0.1:${(server.address() as AddressInfo).port}`;
  });
  after(async () => {
    server.closeAllConnections();
    await new Promise((r) => server.close(r));
  });

  it('a layer body that never ends is refused once it passes the manifest size, and the body is dropped', { timeout: 60_000 }, async () => {
    const out = path.join(tmpdir(), `clip-endless-${process.pid}.clip`);
    await assert.rejects(
      indexImage(`${host}/endless/app:v1`, { output: out }),
      (e: unknown) =>
        e instanceof ClipError && e.code === 'DIGEST_MISMATCH' && e.message.includes(`more than the ${gz.length} bytes the manifest says`),
    );
    await bodyClosed;
  });
});

describe('gzip bombs: the compression ratio is bounded', () => {
  let image: BuiltImage;
  let work: string;
  before(async () => {
    work = await mkdtemp(path.join(tmpdir(), 'clip-ratio-'));
    image = await buildImage({ layers: [{ entries: [{ path: 'zeros.bin', type: 'file', data: Buffer.alloc(RATIO_FLOOR + 4 * MiB) }] }] });
  });
  after(async () => {
    if (image) await rm(image.dir, { recursive: true, force: true });
    if (work) await rm(work, { recursive: true, force: true });
  });

  it('the bound is max(256 MiB, N x compressed); 0 turns it off', () => {
    assert.equal(exceedsRatio(RATIO_FLOOR, 1, 100), false, 'the floor always passes');
    assert.equal(exceedsRatio(RATIO_FLOOR + 1, 1, 100), true);
    assert.equal(exceedsRatio(1000 * MiB, 10 * MiB, 100), false);
    assert.equal(exceedsRatio(1000 * MiB + 1, 10 * MiB, 100), true);
    assert.equal(exceedsRatio(10 * RATIO_FLOOR, 1, 0), false);
  });

  it('a layer past the default ratio is refused, naming layer, ratio and flag; --max-ratio 0 indexes it', async () => {
    const layer = image.layers[0]!;
    const ref = `oci:${image.dir}:${image.tag}`;
    const out = path.join(work, 'bomb.clip');
    await assert.rejects(
      indexImage(ref, { output: out }),
      (e: unknown) =>
        e instanceof ClipError &&
        e.code === 'BAD_GZIP' &&
        e.message.includes(layer.digest) &&
        /ratio of 100:1/.test(e.message) &&
        /--max-ratio/.test(e.message),
    );
    const cli = await runClip(['index', ref, '-o', out]);
    assert.equal(cli.code, 1);
    assert.match(cli.stderr, /^clip: layer sha256:[0-9a-f]{64} inflates beyond a ratio of 100:1 .*--max-ratio/m);
    assert.doesNotMatch(cli.stderr, /\n\s+at /, 'no stack trace');
    const ok = await runClip(['index', ref, '-o', out, '--max-ratio', '0']);
    assert.equal(ok.code, 0, ok.stderr);
    assert.equal((await loadIndex(out)).layers[0]!.spans.uncompressedSize, layer.tar.length);
  });

  it('bad --max-ratio and --span-size values are refused clearly', async () => {
    const ref = `oci:${image.dir}:${image.tag}`;
    const bad = await runClip(['index', ref, '-o', path.join(work, 'x.clip'), '--max-ratio', 'lots']);
    assert.equal(bad.code, 1);
    assert.match(bad.stderr, /ratio/);
    const big = await runClip(['index', ref, '-o', path.join(work, 'x.clip'), '--span-size', '32M']);
    assert.equal(big.code, 1);
    assert.match(big.stderr, /^clip: span size 33554432 is too large \(maximum 16777216/m);
  });
});
