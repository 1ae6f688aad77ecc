// Finds which bytes of a checkpoint's window the deflate data after it
// references, so the index keeps only those (the others are zeroed, and the
// window deflates to a fraction of its size).
//
// Hand-written because no inflater reports what it does: zlib (native or
// pako) copies back-references internally and exposes neither lengths nor
// distances. This decoder writes no output at all: it decodes the Huffman
// codes and counts output positions, and for each match marks the source
// bytes that fall before the checkpoint. It stops once 32 KiB of output are
// decoded (from there no distance reaches the window) or at the stream's
// final block. The input is untrusted: every field is checked (RFC 1951),
// every bit read is bounds-checked, and each loop step consumes input, so a
// hostile stream ends in a ClipError, never a hang or an unbounded allocation.

import { ClipError } from '../errors.js';
import { WINDOW_SIZE } from './window-ring.js';

const MAX_BITS = 15;
/** Length symbols 257-285: base lengths and extra bits (RFC 1951 3.2.5). */
const LENGTH_BASE = [3, 4, 5, 6, 7, 8, 9, 10, 11, 13, 15, 17, 19, 23, 27, 31, 35, 43, 51, 59, 67, 83, 99, 115, 131, 163, 195, 227, 258];
const LENGTH_EXTRA = [0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3, 4, 4, 4, 4, 5, 5, 5, 5, 0];
/** Distance symbols 0-29. */
const DIST_BASE = [
  1, 2, 3, 4, 5, 7, 9, 13, 17, 25, 33, 49, 65, 97, 129, 193, 257, 385, 513, 769, 1025, 1537, 2049, 3073, 4097, 6145, 8193, 12289, 16385,
  24577,
];
const DIST_EXTRA = [0, 0, 0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6, 7, 7, 8, 8, 9, 9, 10, 10, 11, 11, 12, 12, 13, 13];
/** The order code-length code lengths are sent in. */
const CLEN_ORDER = [16, 17, 18, 0, 8, 7, 9, 6, 10, 5, 11, 4, 12, 3, 13, 2, 14, 1, 15];

function bad(what: string): never {
  throw new ClipError('BAD_GZIP', `deflate data after a checkpoint is invalid: ${what}`);
}

/** Bits of `input`, least significant bit of each byte first; reading past the end throws. */
class BitReader {
  private pos: number;
  private readonly end: number;

  constructor(
    private readonly input: Uint8Array,
    startBit: number,
  ) {
    this.pos = startBit;
    this.end = input.length * 8;
  }

  bits(n: number): number {
    if (this.pos + n > this.end) bad('it ends in the middle of a block');
    let v = 0;
    for (let i = 0; i < n; i++) {
      const p = this.pos + i;
      v |= ((this.input[p >> 3]! >> (p & 7)) & 1) << i;
    }
    this.pos += n;
    return v;
  }

  bit(): number {
    if (this.pos >= this.end) bad('it ends in the middle of a block');
    const p = this.pos++;
    return (this.input[p >> 3]! >> (p & 7)) & 1;
  }

  /** Skips to the next byte boundary (stored blocks). */
  align(): void {
    this.pos = (this.pos + 7) & ~7;
  }

  /** Skips `n` whole bytes (a stored block's data); the reader is byte-aligned. */
  skipBytes(n: number): void {
    if (this.pos + n * 8 > this.end) bad('a stored block ends after the data');
    this.pos += n * 8;
  }
}

/**
 * A canonical Huffman code: `count[len]` codes of each length and the
 * symbols in code order. Decoded one bit at a time: codes of one length are
 * consecutive numbers, so the running code is compared against each length's range.
 */
class Huffman {
  private readonly count = new Uint16Array(MAX_BITS + 1);
  private readonly symbols: Uint16Array;
  /** Whether the code has no symbols at all (allowed for distances of a literal-only block). */
  readonly empty: boolean;

  constructor(lengths: ArrayLike<number>, what: string) {
    for (let i = 0; i < lengths.length; i++) this.count[lengths[i]!]!++;
    const used = lengths.length - this.count[0]!;
    this.count[0] = 0;
    this.empty = used === 0;
    // Codes left unassigned at each length: negative means over-subscribed.
    let left = 1;
    for (let len = 1; len <= MAX_BITS; len++) {
      left = left * 2 - this.count[len]!;
      if (left < 0) bad(`the ${what} code is over-subscribed`);
    }
    // zlib accepts an incomplete code only when it is a single one-bit code.
    if (left > 0 && !this.empty && !(used === 1 && this.count[1] === 1)) bad(`the ${what} code is incomplete`);
    const offsets = new Uint16Array(MAX_BITS + 2);
    for (let len = 1; len <= MAX_BITS; len++) offsets[len + 1] = offsets[len]! + this.count[len]!;
    this.symbols = new Uint16Array(used);
    for (let s = 0; s < lengths.length; s++) {
      const len = lengths[s]!;
      if (len !== 0) this.symbols[offsets[len]!++] = s;
    }
  }

  decode(r: BitReader): number {
    let code = 0;
    let first = 0;
    let index = 0;
    for (let len = 1; len <= MAX_BITS; len++) {
      code |= r.bit();
      const n = this.count[len]!;
      if (code - first < n) return this.symbols[index + code - first]!;
      index += n;
      first = (first + n) << 1;
      code <<= 1;
    }
    return bad('a code that is not in its Huffman table');
  }
}

const FIXED_LITERALS = new Huffman(
  Array.from({ length: 288 }, (_, s) => (s < 144 ? 8 : s < 256 ? 9 : s < 280 ? 7 : 8)),
  'fixed literal/length',
);
// 32 codes make the fixed distance code complete; symbols 30 and 31 are refused when decoded.
const FIXED_DISTANCES = new Huffman(new Array<number>(32).fill(5), 'fixed distance');

/** The literal/length and distance codes of a dynamic block (RFC 1951 3.2.7). */
function readDynamicCodes(r: BitReader): { literals: Huffman; distances: Huffman } {
  const hlit = r.bits(5) + 257;
  const hdist = r.bits(5) + 1;
  const hclen = r.bits(4) + 4;
  if (hlit > 286 || hdist > 30) bad(`a dynamic block declares ${hlit} literal/length and ${hdist} distance codes`);
  const clens = new Uint8Array(19);
  for (let i = 0; i < hclen; i++) clens[CLEN_ORDER[i]!] = r.bits(3);
  const clcode = new Huffman(clens, 'code-length');
  if (clcode.empty) bad('a dynamic block has no code-length code');
  const lengths = new Uint8Array(hlit + hdist);
  for (let i = 0; i < lengths.length;) {
    const sym = clcode.decode(r);
    if (sym < 16) {
      lengths[i++] = sym;
      continue;
    }
    let repeat: number;
    let value = 0;
    if (sym === 16) {
      if (i === 0) bad('a code length repeats before any was given');
      value = lengths[i - 1]!;
      repeat = 3 + r.bits(2);
    } else if (sym === 17) repeat = 3 + r.bits(3);
    else repeat = 11 + r.bits(7);
    if (i + repeat > lengths.length) bad('code lengths repeat past the codes declared');
    lengths.fill(value, i, i + repeat);
    i += repeat;
  }
  if (lengths[256] === 0) bad('a dynamic block has no end-of-block code');
  return { literals: new Huffman(lengths.subarray(0, hlit), 'literal/length'), distances: new Huffman(lengths.subarray(hlit), 'distance') };
}

/**
 * Which bytes of a `windowLength`-byte window (the output just before the
 * checkpoint; at most 32 KiB) the deflate stream in `input`, starting at bit
 * `startBit` (0-7) of its first byte, references within its first 32 KiB of
 * output. Returns one flag per window byte (1: referenced). The input must
 * reach 32 KiB of output or the end of the final block, else it is refused
 * as truncated: the caller passes enough bytes (or keeps the whole window).
 */
export function windowReferences(input: Uint8Array, startBit: number, windowLength: number): Uint8Array {
  if (!Number.isInteger(startBit) || startBit < 0 || startBit > 7) throw new RangeError(`bit offset ${startBit} is not 0-7`);
  if (!Number.isInteger(windowLength) || windowLength < 0 || windowLength > WINDOW_SIZE)
    throw new RangeError(`window length ${windowLength} is not 0-${WINDOW_SIZE}`);
  const referenced = new Uint8Array(windowLength);
  const r = new BitReader(input, startBit);
  // Output position relative to the checkpoint; the window is [-windowLength, 0).
  let out = 0;
  for (;;) {
    const final = r.bits(1);
    const type = r.bits(2);
    if (type === 0) {
      r.align();
      const len = r.bits(16);
      const nlen = r.bits(16);
      if ((len ^ 0xffff) !== nlen) bad(`a stored block's length ${len} does not match its complement ${nlen}`);
      // Its data references nothing: if it reaches 32 KiB, its bytes need not even be there.
      if (out + len >= WINDOW_SIZE) return referenced;
      r.skipBytes(len);
      out += len;
    } else if (type === 3) {
      bad('a block of reserved type 3');
    } else {
      const { literals, distances } = type === 1 ? { literals: FIXED_LITERALS, distances: FIXED_DISTANCES } : readDynamicCodes(r);
      for (;;) {
        // From here on no distance (at most 32 KiB) reaches before the checkpoint.
        if (out >= WINDOW_SIZE) return referenced;
        const sym = literals.decode(r);
        if (sym < 256) {
          out++;
          continue;
        }
        if (sym === 256) break;
        if (sym > 285) bad(`literal/length symbol ${sym}`);
        const length = LENGTH_BASE[sym - 257]! + r.bits(LENGTH_EXTRA[sym - 257]!);
        if (distances.empty) bad('a match in a block without distance codes');
        const dsym = distances.decode(r);
        if (dsym > 29) bad(`distance symbol ${dsym}`);
        const distance = DIST_BASE[dsym]! + r.bits(DIST_EXTRA[dsym]!);
        const from = out - distance;
        if (from < -windowLength) bad(`a distance of ${distance} bytes reaches before the ${windowLength}-byte window`);
        // Source bytes before the checkpoint (from < 0) are window bytes.
        const stop = Math.min(from + length, 0);
        for (let p = from; p < stop; p++) referenced[windowLength + p] = 1;
        out += length;
      }
    }
    if (out >= WINDOW_SIZE || final === 1) return referenced;
  }
}

/** `window` with every byte not flagged in `referenced` set to zero (a copy). */
export function sparseWindow(window: Uint8Array, referenced: Uint8Array): Buffer {
  const out = Buffer.alloc(window.length);
  for (let i = 0; i < window.length; i++) if (referenced[i] === 1) out[i] = window[i]!;
  return out;
}
