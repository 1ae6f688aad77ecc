// Resuming native inflate at a deflate block that starts mid-byte. Node's
// zlib has no inflatePrime, so the compressed bytes are prefixed instead with
// empty, non-final deflate blocks whose bit length ends exactly where the real
// block starts inside its first byte: the prefix's last partial byte replaces
// the low bits of that byte (the previous block's tail), and every later byte
// keeps its place, so stored blocks still realign to the real byte boundaries.
// Empty blocks produce no output and leave the window (dictionary) untouched.

/** Bits of a deflate stream, least significant bit of each byte first. */
class BitString {
  readonly bits: number[] = [];

  /** A number in `n` bits, least significant first (header fields, extra bits). */
  value(v: number, n: number): void {
    for (let i = 0; i < n; i++) this.bits.push((v >> i) & 1);
  }

  /** A Huffman code of `n` bits: most significant bit first (RFC 1951 3.1.1). */
  code(c: number, n: number): void {
    for (let i = n - 1; i >= 0; i--) this.bits.push((c >> i) & 1);
  }
}

/** An empty fixed-Huffman block: BFINAL 0, BTYPE 01, end-of-block (7 zero bits). 10 bits. */
function emptyFixedBlock(s: BitString): void {
  s.value(0, 1);
  s.value(1, 2);
  s.code(0, 7);
}

/**
 * An empty dynamic-Huffman block of 95 bits (odd, which fixed blocks cannot
 * be): its literal/length code holds only symbol 256 (end of block) with
 * length 1, it has no distance codes, and its code-length code has three
 * symbols (18: length 1, 0 and 1: length 2), all 19 code-length lengths sent.
 */
function emptyDynamicBlock(s: BitString): void {
  s.value(0, 1); // BFINAL
  s.value(2, 2); // BTYPE dynamic
  s.value(0, 5); // HLIT: 257 literal/length codes
  s.value(0, 5); // HDIST: 1 distance code
  s.value(15, 4); // HCLEN: 19 code-length code lengths
  const order = [16, 17, 18, 0, 8, 7, 9, 6, 10, 5, 11, 4, 12, 3, 13, 2, 14, 1, 15];
  const lengths: Record<number, number> = { 18: 1, 0: 2, 1: 2 };
  for (const sym of order) s.value(lengths[sym] ?? 0, 3);
  // Canonical codes: 18 -> 0, 0 -> 10, 1 -> 11.
  s.code(0, 1); // 18: 138 zero lengths (symbols 0-137)
  s.value(138 - 11, 7);
  s.code(0, 1); // 18: 118 zero lengths (symbols 138-255)
  s.value(118 - 11, 7);
  s.code(0b11, 2); // length 1 for symbol 256
  s.code(0b10, 2); // length 0 for the one distance code
  s.code(0, 1); // end of block
}

/** Empty blocks whose total length is congruent to `bits` (1-7) modulo 8. */
export function emptyBlocks(bits: number): number[] {
  const s = new BitString();
  // Fixed blocks add 2 (mod 8) each; the 95-bit dynamic block adds 7.
  let fixed = bits / 2;
  if (bits % 2 === 1) {
    emptyDynamicBlock(s);
    fixed = ((bits - 7 + 8) % 8) / 2;
  }
  for (let i = 0; i < fixed; i++) emptyFixedBlock(s);
  return s.bits;
}

/**
 * The input that resumes raw inflate at the block starting at bit `bits`
 * (0-7, LSB first) of `compressed[0]`: the compressed bytes themselves when
 * aligned, else the empty-block prefix merged into the first byte. `prefix`
 * is how many bytes were added in front.
 */
export function resumeInput(compressed: Buffer, bits: number): { input: Buffer; prefix: number } {
  if (bits === 0) return { input: compressed, prefix: 0 };
  if (!Number.isInteger(bits) || bits < 0 || bits > 7) throw new RangeError(`bit offset ${bits} is not 0-7`);
  if (compressed.length === 0) throw new RangeError('no compressed byte to resume in');
  const p = emptyBlocks(bits);
  const prefix = (p.length - bits) / 8;
  const input = Buffer.alloc(prefix + compressed.length);
  for (let i = 0; i < p.length; i++) input[i >> 3]! |= p[i]! << (i & 7);
  // The byte the real block starts in: its high bits are the block's, its low
  // `bits` are the prefix's tail (already in place) instead of the previous block's.
  input[prefix]! |= compressed[0]! & ((0xff << bits) & 0xff);
  compressed.copy(input, prefix + 1, 1);
  return { input, prefix };
}
