// Seekable gzip: checkpoints built in one pass must let every span, and any
// range across spans, inflate to exactly the bytes a full gunzip gives; for
// single and multi-member gzip, with corrupt and truncated input rejected.

import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { describe, it } from 'node:test';
import zlib from 'node:zlib';
import { CheckpointBuilder } from '../src/gzip/checkpoint-builder.js';
import { BlockInflater } from '../src/gzip/native-inflate.js';
import { RawSpanBuilder } from '../src/gzip/raw-span-builder.js';
import { inflateSpans, needsWindow, spanAt, spanOutputRange, spanRange } from '../src/gzip/span-reader.js';
import type { SpanTable } from '../src/gzip/types.js';
import { ClipError } from '../src/errors.js';
import { createPrng } from './helpers/prng.js';

/** Deterministic text-like data: compressible, with long-distance repeats. */
function sampleData(size: number, seed = 1): Buffer {
  const words = ['lorem', 'ipsum', 'dolor', 'sit', 'amet', 'clip', 'span', 'window', 'layer', 'tar', '\n', 'α', '世界'];
  const prng = createPrng(seed);
  const rand = (): number => prng.int(2 ** 31);
  const parts: Buffer[] = [];
  let n = 0;
  while (n < size) {
    const r = rand();
    const b = r % 17 === 0 ? Buffer.from(Array.from({ length: 64 }, () => rand() & 0xff)) : Buffer.from(words[r % words.length]! + ' ');
    parts.push(b);
    n += b.length;
  }
  return Buffer.concat(parts).subarray(0, size);
}

function build(gz: Buffer, spanSize: number, chunk = 65536): { table: SpanTable; output: Buffer } {
  const out: Buffer[] = [];
  const b = new CheckpointBuilder(spanSize, (c) => out.push(Buffer.from(c)));
  for (let i = 0; i < gz.length; i += chunk) b.push(gz.subarray(i, i + chunk));
  return { table: b.finish(), output: Buffer.concat(out) };
}

async function readRange(table: SpanTable, gz: Buffer, start: number, end: number): Promise<Buffer> {
  const first = spanAt(table, start);
  const last = spanAt(table, end - 1);
  const data = await inflateSpans(table, first, last, gz.subarray(spanRange(table, first).start, spanRange(table, last).end));
  const base = spanOutputRange(table, first).start;
  return data.subarray(start - base, end - base);
}

async function checkAllSpans(table: SpanTable, gz: Buffer, plain: Buffer): Promise<void> {
  assert.equal(table.uncompressedSize, plain.length);
  assert.equal(table.compressedSize, gz.length);
  assert.equal(table.digests.length, table.checkpoints.length);
  for (let i = 0; i < table.checkpoints.length; i++) {
    const r = spanRange(table, i);
    assert.ok(createHash('sha256').update(gz.subarray(r.start, r.end)).digest().equals(table.digests[i]!), `digest of span ${i}`);
    const o = spanOutputRange(table, i);
    const data = await inflateSpans(table, i, i, gz.subarray(r.start, r.end));
    assert.ok(data.equals(plain.subarray(o.start, o.end)), `span ${i} inflates to the original bytes`);
  }
}

describe('gzip checkpoints', () => {
  const plain = sampleData(12 * 1024 * 1024);
  const gz = zlib.gzipSync(plain, { level: 6 });

  it('the native block inflater stops at deflate block boundaries', () => {
    const inf = new BlockInflater();
    const out = Buffer.alloc(1 << 20);
    let off = 0;
    let boundaries = 0;
    let produced = 0;
    const input = gz.subarray(0, 1 << 20);
    while (off < input.length) {
      const s = inf.step(input, off, input.length - off, out, 0, out.length);
      off += s.consumed;
      produced += s.produced;
      if (s.boundary) boundaries++;
      if (s.consumed === 0 && s.produced === 0) break;
    }
    inf.close();
    assert.ok(boundaries > 5, `saw ${boundaries} boundaries`);
    assert.ok(plain.subarray(0, produced).equals(zlib.gunzipSync(gz, { finishFlush: zlib.constants.Z_SYNC_FLUSH }).subarray(0, produced)));
  });

  it('builds spaced checkpoints whose spans all inflate exactly', async () => {
    const { table, output } = build(gz, 1 << 20);
    assert.ok(output.equals(plain), 'onData sees the whole stream');
    assert.ok(table.checkpoints.length >= 8, `${table.checkpoints.length} checkpoints`);
    for (let i = 1; i < table.checkpoints.length; i++) {
      assert.ok(table.checkpoints[i]!.out - table.checkpoints[i - 1]!.out >= 1 << 20, 'checkpoints respect the span size');
      assert.ok(table.checkpoints[i]!.window.length > 0, 'windows are stored');
    }
    await checkAllSpans(table, gz, plain);
  });

  it('is independent of how the input is chunked', () => {
    const a = build(gz, 1 << 20, 65536).table;
    const b = build(gz, 1 << 20, 4093).table;
    assert.equal(a.uncompressedSize, b.uncompressedSize);
    assert.ok(b.checkpoints.length >= 8);
    assert.equal(a.checkpoints[0]!.in, 10, 'checkpoint 0 sits right after the 10-byte gzip header');
  });

  it('reads random ranges across spans byte-identically', async () => {
    const { table } = build(gz, 512 * 1024);
    let seed = 7;
    for (let k = 0; k < 60; k++) {
      seed = (seed * 48271) % 2147483647;
      const start = seed % plain.length;
      const len = 1 + ((seed >> 3) % (k % 5 === 0 ? 3 * 1024 * 1024 : 8192));
      const end = Math.min(plain.length, start + len);
      const got = await readRange(table, gz, start, end);
      assert.ok(got.equals(plain.subarray(start, end)), `range ${start}-${end}`);
    }
  });

  it('handles concatenated gzip members (pigz, mgzip), with zero padding after them', async () => {
    const parts: Buffer[] = [];
    let pos = 0;
    let i = 0;
    while (pos < plain.length) {
      const n = [300_000, 1_700_000, 50_000, 2_500_000][i++ % 4]!;
      parts.push(zlib.gzipSync(plain.subarray(pos, pos + n), { level: i % 9 }));
      pos += n;
    }
    const multi = Buffer.concat([...parts, Buffer.alloc(512)]);
    const { table, output } = build(multi, 256 * 1024, 30000);
    assert.ok(output.equals(plain));
    await checkAllSpans(table, multi, plain);
    const got = await readRange(table, multi, 250_000, 4_000_000);
    assert.ok(got.equals(plain.subarray(250_000, 4_000_000)));
  });

  it('rejects truncated and corrupt gzip with a clear error', () => {
    assert.throws(
      () => build(gz.subarray(0, gz.length >> 1), 1 << 20),
      (e: unknown) => e instanceof ClipError && /truncated/.test(e.message),
    );
    const bad = Buffer.from(gz);
    for (let i = 0; i < 64; i++) bad[(bad.length >> 2) + i * 997]! ^= 0xa5;
    assert.throws(
      () => build(bad, 1 << 20),
      (e: unknown) => e instanceof ClipError && e.code === 'BAD_GZIP',
    );
    assert.throws(() => build(Buffer.concat([gz, Buffer.from('garbage')]), 1 << 20), ClipError);
  });

  it('keeps windows only every windowEvery bytes; the other spans resume from the output before them', async () => {
    const out: Buffer[] = [];
    const b = new CheckpointBuilder(256 * 1024, (c) => out.push(Buffer.from(c)), 2 * 1024 * 1024);
    for (let i = 0; i < gz.length; i += 65536) b.push(gz.subarray(i, i + 65536));
    const table = b.finish();
    const windowless = table.checkpoints.filter((cp, i) => i > 0 && cp.window.length === 0).length;
    const windowed = table.checkpoints.length - windowless;
    assert.ok(windowless > 2 * windowed, `${windowless} checkpoints without a window, ${windowed} with`);
    for (let i = 1; i < table.checkpoints.length; i++) {
      if (table.checkpoints[i]!.window.length > 0) {
        assert.ok(table.checkpoints[i]!.out - lastWindowed(table, i - 1) >= 2 * 1024 * 1024, `window ${i} kept at the right spacing`);
      }
    }
    for (let i = 0; i < table.checkpoints.length; i++) {
      const r = spanRange(table, i);
      const o = spanOutputRange(table, i);
      const before = i > 0 ? plain.subarray(0, o.start) : undefined;
      const data = await inflateSpans(table, i, i, gz.subarray(r.start, r.end), before);
      assert.ok(data.equals(plain.subarray(o.start, o.end)), `span ${i} inflates to the original bytes`);
      if (needsWindow(table, i)) {
        await assert.rejects(inflateSpans(table, i, i, gz.subarray(r.start, r.end)), /no window in the index/);
      }
    }
  });

  it('a span that inflates to the wrong length is refused', async () => {
    const { table } = build(gz, 1 << 20);
    const r = spanRange(table, 1);
    const forged = { ...table, checkpoints: table.checkpoints.map((c, i) => (i === 2 ? { ...c, out: c.out + 1 } : c)) };
    await assert.rejects(inflateSpans(forged, 1, 1, gz.subarray(r.start, r.end)), /expected/);
  });
});

describe('uncompressed layers', () => {
  it('map ranges one to one with a digest per fixed-size span', async () => {
    const plain = sampleData(3 * 1024 * 1024 + 123);
    const b = new RawSpanBuilder(1 << 20, () => {});
    for (let i = 0; i < plain.length; i += 100_000) b.push(plain.subarray(i, i + 100_000));
    const table = b.finish();
    assert.equal(table.checkpoints.length, 4);
    await checkAllSpans(table, plain, plain);
    const exact = new RawSpanBuilder(1 << 20, () => {});
    exact.push(plain.subarray(0, 2 << 20));
    assert.equal(exact.finish().checkpoints.length, 2, 'no empty span at an exact boundary');
  });
});

/** Output offset of the last checkpoint at or before i that kept its window. */
function lastWindowed(table: SpanTable, i: number): number {
  while (i > 0 && table.checkpoints[i]!.window.length === 0) i--;
  return table.checkpoints[i]!.out;
}
