// Numeric header fields: octal text (the classic encoding) or GNU base-256
// (leading 0x80 = positive, 0xff = negative two's complement) for values too
// big for octal. Results outside JavaScript's exact integer range are refused.

/** Returned for a field that is not a number at all. */
const INVALID = Number.NaN;

/**
 * Read the numeric field buf[start, start+len).
 * Returns the value, NaN if the field is malformed, or ±Infinity if the value
 * does not fit in a safe integer. An empty (all NUL/space) field reads as 0.
 */
export function readNumber(buf: Buffer, start: number, len: number): number {
  const first = buf[start]!;
  if (first === 0x80) return readBase256Positive(buf, start + 1, start + len);
  if (first === 0xff) return readBase256Negative(buf, start + 1, start + len);
  if (first & 0x80) return INVALID;
  return readOctal(buf, start, start + len);
}

/** Octal digits, optionally preceded by spaces and ended by NUL or space. */
export function readOctal(buf: Buffer, start: number, end: number): number {
  let i = start;
  while (i < end && buf[i] === 0x20) i++;
  let value = 0;
  let digits = 0;
  for (; i < end; i++) {
    const c = buf[i]!;
    if (c < 0x30 || c > 0x37) break;
    value = value * 8 + (c - 0x30);
    digits++;
  }
  // A field is at most 12 bytes, so at most 12 octal digits = 36 bits: the
  // value is always exact here.
  // Like GNU tar, only the byte right after the digits is checked: writers
  // leave all sorts of junk after the terminator.
  if (i < end && buf[i] !== 0 && buf[i] !== 0x20) return INVALID;
  return digits === 0 ? 0 : value;
}

function readBase256Positive(buf: Buffer, start: number, end: number): number {
  let value = 0;
  for (let i = start; i < end; i++) {
    value = value * 256 + buf[i]!;
    if (value > Number.MAX_SAFE_INTEGER) return Number.POSITIVE_INFINITY;
  }
  return value;
}

function readBase256Negative(buf: Buffer, start: number, end: number): number {
  // Two's complement: -(~x + 1). The leading 0xff byte is all sign bits.
  let inverted = 0;
  for (let i = start; i < end; i++) {
    inverted = inverted * 256 + (0xff - buf[i]!);
    if (inverted >= Number.MAX_SAFE_INTEGER) return Number.NEGATIVE_INFINITY;
  }
  return -(inverted + 1);
}
