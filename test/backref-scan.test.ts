// The back-reference scanner (src/gzip/backref-scan.ts) against streams zlib
// made: at every checkpoint of many layers (levels 1, 6, 9; dynamic, fixed
// and stored blocks; random, text and mixed data; unaligned checkpoints), a
// window whose unreferenced bytes are replaced by noise still resumes native
// zlib byte-identically, and on text most window bytes are unreferenced. Then
// hostile streams: each is refused with a ClipError, none loops or reads past
// its input.

import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import zlib from 'node:zlib';
import { ClipError } from '../src/errors.js';
import { sparseWindow, windowReferences } from '../src/gzip/backref-scan.js';
import { CheckpointBuilder } from '../src/gzip/checkpoint-builder.js';
import { inflateSpans, spanOutputRange, spanRange } from '../src/gzip/span-reader.js';
import type { SpanTable } from '../src/gzip/types.js';
import { DeflateBits } from './helpers/deflate-bits.js';
import { createPrng } from './helpers/prng.js';

const KiB = 1024;
const WINDOW = 32 * KiB;

/** The repository's own TypeScript sources and tests: real text (about 1.5 MB). */
function sourceText(): Buffer {
  const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
  const parts: Buffer[] = [];
  const walk = (dir: string): void => {
    for (const e of readdirSync(dir, { withFileTypes: true }).sort((a, b) => a.name.localeCompare(b.name))) {
      if (e.isDirectory()) walk(path.join(dir, e.name));
      else if (e.name.endsWith('.ts')) parts.push(readFileSync(path.join(dir, e.name)));
    }
  };
  walk(path.join(root, 'src'));
  walk(path.join(root, 'test'));
  return Buffer.concat(parts);
}

/** Random and text chunks in turn: zlib mixes stored and Huffman blocks. */
function mixed(seed: number, size: number): Buffer {
  const p = createPrng(seed);
  const parts: Buffer[] = [];
  for (let n = 0; n < size;) {
    const len = p.range(4 * KiB, 96 * KiB);
    parts.push(p.int(2) === 0 ? p.bytes(len) : p.compressible(len));
    n += len;
  }
  return Buffer.concat(parts).subarray(0, size);
}

/** Zeros with a little text: long stretches without a byte-aligned block boundary. */
function zerosWithText(size: number): Buffer {
  const b = Buffer.alloc(size);
  for (let off = 1000; off < size; off += 150 * KiB) b.write(`marker ${off} `.repeat(20), off);
  return b;
}

function build(gz: Buffer, spanSize: number): SpanTable {
  const b = new CheckpointBuilder(spanSize, () => {}, spanSize);
  for (let i = 0; i < gz.length; i += 65536) b.push(gz.subarray(i, i + 65536));
  return b.finish();
}

interface Stats {
  windows: number;
  referenced: number;
  windowBytes: number;
  unaligned: number;
}

/**
 * Checks every windowed checkpoint of `gz`'s table: the stored (sparse)
 * window resumes to exactly the original output, and so does the window
 * with its unreferenced bytes replaced by noise (zeros could match by chance).
 */
async function checkAll(plain: Buffer, gz: Buffer, spanSize: number, seed: number): Promise<Stats> {
  const t = build(gz, spanSize);
  const noise = createPrng(seed);
  const stats: Stats = { windows: 0, referenced: 0, windowBytes: 0, unaligned: 0 };
  for (let i = 1; i < t.checkpoints.length; i++) {
    const cp = t.checkpoints[i]!;
    assert.ok(cp.window.length > 0 && cp.sparse, `checkpoint ${i} keeps a sparse window`);
    const { start, end } = spanRange(t, i);
    const out = spanOutputRange(t, i);
    const want = plain.subarray(out.start, out.end);
    // Through the read path, with the window as stored in the index.
    assert.ok((await inflateSpans(t, i, i, gz.subarray(start, end))).equals(want), `span ${i} with its sparse window`);
    // The scan again, from the original window, and noise where nothing refers.
    const full = plain.subarray(Math.max(0, cp.out - WINDOW), cp.out);
    const refs = windowReferences(gz.subarray(cp.in, Math.min(gz.length, cp.in + 256 * KiB)), cp.bits ?? 0, full.length);
    assert.ok(zlib.inflateRawSync(cp.window).equals(sparseWindow(full, refs)), `checkpoint ${i}: stored window = zeroed window`);
    const noisy = Buffer.from(full);
    for (let k = 0; k < noisy.length; k++) if (refs[k] === 0) noisy[k] = noise.int(256);
    const noisyTable: SpanTable = {
      ...t,
      checkpoints: t.checkpoints.map((c, k) => (k === i ? { ...c, window: zlib.deflateRawSync(noisy) } : c)),
    };
    assert.ok((await inflateSpans(noisyTable, i, i, gz.subarray(start, end))).equals(want), `span ${i} with noise outside its references`);
    stats.windows++;
    stats.referenced += refs.reduce((a, b) => a + b, 0);
    stats.windowBytes += full.length;
    if ((cp.bits ?? 0) > 0) stats.unaligned++;
  }
  return stats;
}

const pct = (s: Stats): string => `${((100 * s.referenced) / s.windowBytes).toFixed(1)}% of ${s.windows} windows referenced`;

describe('back-reference scan of zlib streams', () => {
  const text = sourceText();
  const prngText = createPrng(3).compressible(3 * 1024 * KiB);
  const random = createPrng(4).bytes(1024 * KiB);
  const mix = mixed(5, 3 * 1024 * KiB);

  for (const level of [1, 6, 9]) {
    it(`level ${level}, dynamic blocks: text resumes exactly from sparse windows, most bytes unreferenced`, async () => {
      for (const [name, plain] of [
        ['source text', text],
        ['prng text', prngText],
      ] as const) {
        // Spans of 32 KiB: the sources are a few hundred KiB.
        const s = await checkAll(plain, zlib.gzipSync(plain, { level }), 32 * KiB, level);
        console.log(`level ${level}, ${name}: ${pct(s)}`);
        assert.ok(s.windows >= (name === 'source text' ? 5 : 10), `${name}: ${s.windows} checkpoints checked`);
        assert.ok(s.referenced > 0, `${name}: some window bytes are referenced`);
        assert.ok(s.referenced < s.windowBytes / 2, `${name}: ${pct(s)}, expected under 50%`);
      }
    });

    it(`level ${level}, fixed blocks (Z_FIXED) and mixed stored/Huffman blocks resume exactly`, async () => {
      const fixed = await checkAll(prngText, zlib.gzipSync(prngText, { level, strategy: zlib.constants.Z_FIXED }), 64 * KiB, 10 + level);
      console.log(`level ${level}, fixed: ${pct(fixed)}`);
      assert.ok(fixed.windows >= 10 && fixed.referenced < fixed.windowBytes / 2);
      const m = await checkAll(mix, zlib.gzipSync(mix, { level }), 64 * KiB, 20 + level);
      console.log(`level ${level}, mixed: ${pct(m)}`);
      assert.ok(m.windows >= 10);
    });
  }

  it('random data (stored blocks) references nothing; level 0 (stored only) references nothing', async () => {
    for (const level of [0, 6]) {
      const s = await checkAll(random, zlib.gzipSync(random, { level }), 64 * KiB, 30 + level);
      assert.ok(s.windows >= 10, `level ${level}: ${s.windows} checkpoints`);
      assert.equal(s.referenced, 0, `level ${level}: ${pct(s)}`);
    }
  });

  it('checkpoints that start mid-byte (long runs of zeros) resume exactly', async () => {
    const plain = zerosWithText(24 * 1024 * KiB);
    const s = await checkAll(plain, zlib.gzipSync(plain, { level: 9 }), 64 * KiB, 40);
    console.log(`zeros: ${pct(s)}, ${s.unaligned} unaligned`);
    assert.ok(s.unaligned > 0, 'some checkpoints start mid-byte');
  });

  it('a window whose referenced bytes are changed does not resume (the scan finds real references)', async () => {
    const gz = zlib.gzipSync(prngText, { level: 6 });
    const t = build(gz, 64 * KiB);
    let differ = 0;
    for (let i = 1; i < t.checkpoints.length; i++) {
      const cp = t.checkpoints[i]!;
      const full = prngText.subarray(cp.out - WINDOW, cp.out);
      const refs = windowReferences(gz.subarray(cp.in, cp.in + 256 * KiB), cp.bits ?? 0, full.length);
      const broken = Buffer.from(full);
      for (let k = 0; k < broken.length; k++) if (refs[k] === 1) broken[k] = broken[k]! ^ 0xff;
      const table = { ...t, checkpoints: t.checkpoints.map((c, k) => (k === i ? { ...c, window: zlib.deflateRawSync(broken) } : c)) };
      const { start, end } = spanRange(t, i);
      const o = spanOutputRange(t, i);
      const got = await inflateSpans(table, i, i, gz.subarray(start, end));
      if (!got.equals(prngText.subarray(o.start, o.end))) differ++;
    }
    assert.equal(differ, t.checkpoints.length - 1, 'every checkpoint depends on the bytes found');
  });
});

/** Raises unless `fn` throws a BAD_GZIP ClipError whose message matches. */
function refused(fn: () => unknown, message: RegExp): void {
  assert.throws(fn, (e: unknown) => e instanceof ClipError && e.code === 'BAD_GZIP' && message.test(e.message));
}

/** A dynamic block header with the given literal/length and distance code lengths, sent as plain code lengths. */
function dynamicHeader(s: DeflateBits, lit: number[], dist: number[], final = true): DeflateBits {
  s.value(final ? 1 : 0, 1).value(2, 2);
  s.value(lit.length - 257, 5)
    .value(dist.length - 1, 5)
    .value(15, 4);
  // Code-length code: every length 0-15 with 4 bits (16 codes: complete), 16-18 unused.
  const order = [16, 17, 18, 0, 8, 7, 9, 6, 10, 5, 11, 4, 12, 3, 13, 2, 14, 1, 15];
  for (const sym of order) s.value(sym <= 15 ? 4 : 0, 3);
  for (const len of [...lit, ...dist]) s.code(len, 4);
  return s;
}

describe('back-reference scan of hostile streams', () => {
  it('refuses reserved block types, bad stored lengths and truncation', () => {
    refused(() => windowReferences(new DeflateBits().value(1, 1).value(3, 2).bytes(), 0, WINDOW), /reserved type 3/);
    const stored = new DeflateBits().value(1, 1).value(0, 2).value(0, 5).value(10, 16).value(10, 16).bytes();
    refused(() => windowReferences(stored, 0, WINDOW), /does not match its complement/);
    const ok = new DeflateBits().stored(Buffer.alloc(100), true).bytes();
    assert.equal(windowReferences(ok, 0, WINDOW).length, WINDOW);
    refused(() => windowReferences(ok.subarray(0, 50), 0, WINDOW), /stored block ends after/);
    // A stored block that reaches 32 KiB of output ends the scan: its data need not be there.
    const long = new DeflateBits().stored(Buffer.alloc(WINDOW), false).bytes();
    assert.equal(windowReferences(long.subarray(0, 10), 0, WINDOW).length, WINDOW);
    const fixed = new DeflateBits().fixedHeader(false).literal(1).literal(2).bytes();
    refused(() => windowReferences(fixed, 0, WINDOW), /ends in the middle of a block/);
    refused(() => windowReferences(Buffer.alloc(0), 0, WINDOW), /ends in the middle/);
  });

  it('refuses distances that reach before the window, and invalid symbols', () => {
    // A match at distance 1 right at the checkpoint with an empty window.
    const s = new DeflateBits().fixedHeader(true).run258().endOfBlock().bytes();
    refused(() => windowReferences(s, 0, 0), /reaches before the 0-byte window/);
    const w = windowReferences(s, 0, 1);
    assert.deepEqual([...w], [1], 'distance 1 references the last window byte');
    // Fixed distance symbol 30 (5 bits 11110) after length symbol 257 (7 bits 0000001).
    const d30 = new DeflateBits().fixedHeader(true).code(1, 7).code(30, 5).bytes();
    refused(() => windowReferences(d30, 0, WINDOW), /distance symbol 30/);
    // Fixed literal/length symbol 286 (8 bits 11000110).
    const l286 = new DeflateBits()
      .fixedHeader(true)
      .code(0xc0 + 6, 8)
      .bytes();
    refused(() => windowReferences(l286, 0, WINDOW), /literal\/length symbol 286/);
  });

  it('refuses malformed dynamic headers', () => {
    const lit = new Array<number>(257).fill(0);
    lit[0] = 1;
    lit[256] = 1;
    // Well-formed: two 1-bit literal codes, one 1-bit distance code.
    const good = dynamicHeader(new DeflateBits(), lit, [1]).code(0, 1).code(1, 1).bytes();
    assert.equal(windowReferences(good, 0, WINDOW).length, WINDOW);
    const over = [...lit];
    over[1] = 1;
    refused(() => windowReferences(dynamicHeader(new DeflateBits(), over, [1]).bytes(), 0, WINDOW), /over-subscribed/);
    const noEob = [...lit];
    noEob[256] = 0;
    noEob[1] = 1;
    refused(() => windowReferences(dynamicHeader(new DeflateBits(), noEob, [1]).bytes(), 0, WINDOW), /no end-of-block/);
    const incomplete = new Array<number>(257).fill(0);
    incomplete[0] = 2;
    incomplete[256] = 1;
    refused(
      () => windowReferences(dynamicHeader(new DeflateBits(), incomplete, [1]).bytes(), 0, WINDOW),
      /literal\/length code is incomplete/,
    );
    // HLIT 287 and HDIST 31 are beyond what deflate defines.
    const hlit = new DeflateBits().value(1, 1).value(2, 2).value(30, 5).value(0, 5).value(0, 4).bytes();
    refused(() => windowReferences(hlit, 0, WINDOW), /declares 287 literal\/length/);
    // A repeat (symbol 16) first: code-length code with only 16 and 0 (1 bit each).
    const rep = new DeflateBits().value(1, 1).value(2, 2).value(0, 5).value(0, 5).value(0, 4);
    rep.value(1, 3).value(0, 3).value(0, 3).value(1, 3); // lengths of 16, 17, 18, 0
    rep.code(1, 1); // 16 -> code 1 (symbol 0 -> code 0)
    refused(() => windowReferences(rep.bytes(), 0, WINDOW), /repeats before any/);
    // Zeros (symbol 18, 138 each) past the 258 codes declared.
    const past = new DeflateBits().value(1, 1).value(2, 2).value(0, 5).value(0, 5).value(0, 4);
    past.value(0, 3).value(0, 3).value(1, 3).value(1, 3); // 18 and 0: 1 bit each (0 -> 0, 18 -> 1)
    past.code(1, 1).value(127, 7).code(1, 1).value(127, 7);
    refused(() => windowReferences(past.bytes(), 0, WINDOW), /repeat past the codes declared/);
  });

  it('half a megabyte of empty blocks ends in a clear error, not a hang', () => {
    const s = new DeflateBits();
    for (let i = 0; i < 400_000; i++) s.fixedHeader(false).endOfBlock();
    refused(() => windowReferences(s.bytes(), 0, WINDOW), /ends in the middle of a block/);
  });

  it('random bytes: every input is refused with a ClipError or yields a window-sized map', () => {
    const p = createPrng(77);
    let accepted = 0;
    for (let k = 0; k < 3000; k++) {
      const input = p.bytes(p.range(0, 2048));
      const bits = p.int(8);
      const len = p.pick([0, 1, 100, WINDOW]);
      try {
        assert.equal(windowReferences(input, bits, len).length, len);
        accepted++;
      } catch (e) {
        if (!(e instanceof ClipError && e.code === 'BAD_GZIP')) throw e;
      }
    }
    console.log(`${accepted} of 3000 random inputs decode`);
  });

  it('refuses bit offsets and window lengths out of range', () => {
    assert.throws(() => windowReferences(Buffer.alloc(4), 8, WINDOW), RangeError);
    assert.throws(() => windowReferences(Buffer.alloc(4), 0, WINDOW + 1), RangeError);
  });
});
