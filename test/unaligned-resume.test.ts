// Resuming native inflate at a deflate block that starts at any bit of a byte:
// the empty-block prefix must have the right length modulo 8, decode to
// nothing, and leave later byte boundaries (stored blocks) where they were.

import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import zlib from 'node:zlib';
import { emptyBlocks, resumeInput } from '../src/gzip/unaligned-resume.js';
import { DeflateBits, shiftBits } from './helpers/deflate-bits.js';

const inflate = (b: Buffer, dictionary?: Buffer): Buffer =>
  zlib.inflateRawSync(b, { finishFlush: zlib.constants.Z_SYNC_FLUSH, ...(dictionary ? { dictionary } : {}) });

describe('unaligned resume', () => {
  it('empty-block prefixes have every residue 1-7 and inflate to nothing', () => {
    for (let bits = 1; bits < 8; bits++) {
      const p = emptyBlocks(bits);
      assert.equal(p.length % 8, bits, `prefix for ${bits}`);
      // The prefix followed by a final empty fixed block is a whole stream of no output.
      const s = new DeflateBits();
      for (const b of p) s.value(b, 1);
      s.fixedHeader(true).endOfBlock();
      const r = zlib.inflateRawSync(s.bytes(), { info: true }) as unknown as { buffer: Buffer; engine: { bytesWritten: number } };
      assert.equal(r.buffer.length, 0);
    }
  });

  it('resumes at all 8 bit offsets, across a stored block that must stay byte-aligned', () => {
    for (let bits = 0; bits < 8; bits++) {
      // Garbage (the previous block's tail) in the low bits, then a fixed
      // block of literals, then a stored block aligned to the real bytes.
      const s = new DeflateBits().value(0b1011011, bits).fixedHeader(false);
      for (const c of Buffer.from('hello ')) s.literal(c);
      s.endOfBlock().stored(Buffer.from('world, stored'), false).fixedHeader(true);
      for (const c of Buffer.from('!')) s.literal(c);
      s.endOfBlock();
      const { input, prefix } = resumeInput(s.bytes(), bits);
      assert.equal(input.length, s.bytes().length + prefix);
      assert.equal(inflate(input).toString(), 'hello world, stored!', `bit offset ${bits}`);
    }
  });

  it('resumes zlib output moved to every bit offset, with a dictionary', () => {
    const dict = Buffer.from('the window before the checkpoint '.repeat(1000));
    const data = Buffer.from('the window before the checkpoint, then new text '.repeat(2000));
    const d = zlib.deflateRawSync(data, { dictionary: dict });
    assert.ok(inflate(d, dict).equals(data));
    for (let bits = 1; bits < 8; bits++) {
      const moved = shiftBits(d, bits);
      assert.ok(inflate(resumeInput(moved, bits).input, dict).equals(data), `bit offset ${bits}`);
    }
  });

  it('refuses bit offsets outside 0-7', () => {
    assert.throws(() => resumeInput(Buffer.alloc(4), 8), RangeError);
  });
});
