// Little binary writer/reader for the index body: LEB128 varints (safe up to
// 2^53, no 32-bit bit tricks), zigzag for signed values, length-prefixed bytes.
// The reader checks every bound so a corrupt index fails with a clear error.

import { ClipError } from '../errors.js';

export class ByteWriter {
  private buf = Buffer.allocUnsafe(1 << 16);
  private pos = 0;

  private ensure(n: number): void {
    if (this.pos + n <= this.buf.length) return;
    let size = this.buf.length * 2;
    while (size < this.pos + n) size *= 2;
    const next = Buffer.allocUnsafe(size);
    this.buf.copy(next, 0, 0, this.pos);
    this.buf = next;
  }

  u8(v: number): void {
    this.ensure(1);
    this.buf[this.pos++] = v;
  }

  uint(v: number): void {
    if (!Number.isSafeInteger(v) || v < 0) throw new RangeError(`cannot encode ${v} as an unsigned varint`);
    this.ensure(8);
    while (v >= 0x80) {
      this.buf[this.pos++] = (v % 0x80) | 0x80;
      v = Math.floor(v / 0x80);
    }
    this.buf[this.pos++] = v;
  }

  int(v: number): void {
    this.uint(v >= 0 ? v * 2 : -v * 2 - 1);
  }

  bytes(b: Buffer): void {
    this.uint(b.length);
    this.raw(b);
  }

  raw(b: Buffer): void {
    this.ensure(b.length);
    b.copy(this.buf, this.pos);
    this.pos += b.length;
  }

  string(s: string): void {
    this.bytes(Buffer.from(s, 'utf8'));
  }

  finish(): Buffer {
    return this.buf.subarray(0, this.pos);
  }
}

// Fatal: invalid bytes must be refused, not turned into U+FFFD (two distinct
// names would collapse into one). ignoreBOM keeps a leading U+FEFF as a character.
const UTF8 = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });

export class ByteReader {
  pos = 0;
  constructor(private readonly buf: Buffer) {}

  fail(what: string): never {
    throw new ClipError('BAD_INDEX', `index body is corrupt: ${what} at byte ${this.pos}`);
  }

  get done(): boolean {
    return this.pos >= this.buf.length;
  }

  /** Bytes not yet read. */
  get left(): number {
    return this.buf.length - this.pos;
  }

  /**
   * A count of records that take at least `minBytes` each: refused if the
   * bytes left cannot hold that many, so no loop or allocation outgrows the body.
   */
  count(minBytes: number, what: string): number {
    const n = this.uint();
    if (n * minBytes > this.left) this.fail(`${n} ${what} cannot fit in the ${this.left} bytes left`);
    return n;
  }

  u8(): number {
    if (this.pos >= this.buf.length) this.fail('unexpected end');
    return this.buf[this.pos++]!;
  }

  uint(): number {
    let v = 0;
    let scale = 1;
    for (;;) {
      if (this.pos >= this.buf.length) this.fail('unexpected end');
      const b = this.buf[this.pos++]!;
      v += (b & 0x7f) * scale;
      if (b < 0x80) break;
      scale *= 0x80;
      if (scale > 2 ** 56) this.fail('varint too long');
    }
    if (!Number.isSafeInteger(v)) this.fail('number out of range');
    return v;
  }

  int(): number {
    const z = this.uint();
    return z % 2 === 0 ? z / 2 : -(z + 1) / 2;
  }

  raw(n: number): Buffer {
    if (this.pos + n > this.buf.length) this.fail(`length ${n} past the end`);
    const b = this.buf.subarray(this.pos, this.pos + n);
    this.pos += n;
    return b;
  }

  bytes(): Buffer {
    return this.raw(this.uint());
  }

  /** UTF-8 text; invalid UTF-8 is refused. */
  string(): string {
    const start = this.pos;
    const n = this.uint();
    if (this.pos + n > this.buf.length) this.fail(`length ${n} past the end`);
    const from = this.pos;
    const to = from + n;
    this.pos = to;
    // Most names are ASCII: decoded in place, without a subarray per string (a 100k-entry index has 200k strings).
    let ascii = true;
    for (let i = from; i < to; i++) {
      if (this.buf[i]! >= 0x80) {
        ascii = false;
        break;
      }
    }
    if (ascii) return this.buf.toString('latin1', from, to);
    try {
      return UTF8.decode(this.buf.subarray(from, to));
    } catch {
      this.pos = start;
      this.fail('invalid UTF-8 in a string');
    }
  }
}
