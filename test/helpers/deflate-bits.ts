// Hand-written deflate bit streams for tests (RFC 1951): blocks placed at any
// bit offset, and blocks no real compressor makes.

export class DeflateBits {
  private readonly bits: number[] = [];

  get length(): number {
    return this.bits.length;
  }

  /** A number in `n` bits, least significant first. */
  value(v: number, n: number): this {
    for (let i = 0; i < n; i++) this.bits.push(Math.floor(v / 2 ** i) % 2);
    return this;
  }

  /** A Huffman code, most significant bit first. */
  code(c: number, n: number): this {
    for (let i = n - 1; i >= 0; i--) this.bits.push((c >> i) & 1);
    return this;
  }

  /** Fixed-Huffman literal 0-143 (8-bit codes from 0x30). */
  literal(byte: number): this {
    if (byte > 143) throw new Error('only literals 0-143');
    return this.code(0x30 + byte, 8);
  }

  /** Fixed-Huffman match of length 258 (code 285), distance 1 (distance code 0). */
  run258(): this {
    return this.code(0xc0 + (285 - 280), 8).code(0, 5);
  }

  endOfBlock(): this {
    return this.code(0, 7);
  }

  fixedHeader(final: boolean): this {
    return this.value(final ? 1 : 0, 1).value(1, 2);
  }

  /** A stored block: header, padding to the byte boundary, LEN, NLEN, data. */
  stored(data: Buffer, final: boolean): this {
    this.value(final ? 1 : 0, 1).value(0, 2);
    while (this.bits.length % 8 !== 0) this.bits.push(0);
    this.value(data.length, 16).value(~data.length & 0xffff, 16);
    for (const b of data) this.value(b, 8);
    return this;
  }

  bytes(): Buffer {
    const out = Buffer.alloc(Math.ceil(this.bits.length / 8));
    this.bits.forEach((b, i) => {
      out[i >> 3]! |= b << (i & 7);
    });
    return out;
  }
}

/** `data`'s bits moved up by `shift` (0-7) bits, the freed low bits of byte 0 set to `fill`. */
export function shiftBits(data: Buffer, shift: number, fill = 0xff): Buffer {
  const out = Buffer.alloc(data.length + 1);
  out[0] = fill & ((1 << shift) - 1);
  for (let i = 0; i < data.length; i++) {
    out[i]! |= (data[i]! << shift) & 0xff;
    out[i + 1]! |= data[i]! >> (8 - shift);
  }
  return out;
}
