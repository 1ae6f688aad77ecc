// Decodes one 512-byte tar header block (v7, ustar, old GNU, star) into raw
// field values, verifying its checksum. No interpretation of PAX/GNU extension
// records or paths happens here; the scanner layers those on top.

import { ClipError } from '../errors.js';
import { readNumber, readOctal } from './large-numbers.js';
import { decodeName, type NameField } from './names.js';
import { MAX_TIME_SEC, MIN_TIME_SEC } from './types.js';

export const BLOCK_SIZE = 512;

/** Type flags as character codes. */
export const TYPE = {
  AREG: 0x00, // '\0' old regular file
  REG: 0x30, // '0'
  LINK: 0x31, // '1'
  SYMLINK: 0x32, // '2'
  CHAR: 0x33, // '3'
  BLOCK: 0x34, // '4'
  DIR: 0x35, // '5'
  FIFO: 0x36, // '6'
  CONTIG: 0x37, // '7'
  PAX: 0x78, // 'x'
  PAX_GLOBAL: 0x67, // 'g'
  GNU_LONGNAME: 0x4c, // 'L'
  GNU_LONGLINK: 0x4b, // 'K'
  GNU_DUMPDIR: 0x44, // 'D' (incremental directory listing: a directory)
  GNU_MULTIVOL: 0x4d, // 'M' (continuation of a file from a previous volume)
  GNU_SPARSE: 0x53, // 'S'
} as const;

export type HeaderFormat = 'v7' | 'ustar' | 'gnu' | 'star';

export interface RawHeader {
  format: HeaderFormat;
  /** name, joined with the ustar prefix when there is one; as stored. */
  name: NameField;
  linkname: NameField;
  typeflag: number;
  mode: number;
  uid: number;
  gid: number;
  size: number;
  mtime: number;
  /** Only old GNU and star headers carry these, and usually leave them empty. */
  atime?: number;
  ctime?: number;
  uname: string;
  gname: string;
  devmajor: number;
  devminor: number;
}

const MAX_ID = 0xffffffff;

/**
 * Parse the header block at buf[off, off+512); `at` is its offset in the
 * stream, for error messages. Returns null for an all-zero block.
 */
export function parseHeader(buf: Buffer, off: number, at: number): RawHeader | null {
  if (!verifyChecksum(buf, off, at)) return null;

  const typeflag = buf[off + 156]!;
  const format = detectFormat(buf, off);

  let nameBytes = fieldBytes(buf, off, 100);
  if (format === 'ustar' || format === 'star') {
    const prefix = fieldBytes(buf, off + 345, format === 'star' ? 130 : 155);
    if (prefix.length > 0) nameBytes = Buffer.concat([prefix, SLASH, nameBytes]);
  }

  const size = readNumber(buf, off + 124, 12);
  if (Number.isNaN(size)) fail(at, 'invalid size field');
  if (size < 0) fail(at, Number.isFinite(size) ? `negative size ${size}` : 'negative size');
  if (size === Infinity) fail(at, 'size too large');

  const header: RawHeader = {
    format,
    name: decodeName(nameBytes),
    linkname: decodeName(fieldBytes(buf, off + 157, 100)),
    typeflag,
    mode: field(buf, off + 100, 8, at, 'mode', 0, 0o7777777),
    uid: field(buf, off + 108, 8, at, 'uid', 0, MAX_ID),
    gid: field(buf, off + 116, 8, at, 'gid', 0, MAX_ID),
    size,
    mtime: timeField(buf, off + 136, at, 'mtime'),
    uname: '',
    gname: '',
    devmajor: 0,
    devminor: 0,
  };

  if (format !== 'v7') {
    header.uname = readString(buf, off + 265, 32);
    header.gname = readString(buf, off + 297, 32);
    header.devmajor = field(buf, off + 329, 8, at, 'devmajor', 0, MAX_ID);
    header.devminor = field(buf, off + 337, 8, at, 'devminor', 0, MAX_ID);
  }
  if (format === 'gnu' || format === 'star') {
    // Both keep atime then ctime, 12 bytes each, at different places; a zero first byte means none.
    const timesAt = off + (format === 'gnu' ? 345 : 476);
    const atime = optionalTime(buf, timesAt, at, 'atime');
    const ctime = optionalTime(buf, timesAt + 12, at, 'ctime');
    if (atime !== undefined) header.atime = atime;
    if (ctime !== undefined) header.ctime = ctime;
  }
  return header;
}

function detectFormat(buf: Buffer, off: number): HeaderFormat {
  const m = off + 257;
  // "ustar" at 257..262
  if (buf[m] !== 0x75 || buf[m + 1] !== 0x73 || buf[m + 2] !== 0x74 || buf[m + 3] !== 0x61 || buf[m + 4] !== 0x72) {
    return 'v7';
  }
  // old GNU: "ustar  \0"
  if (buf[m + 5] === 0x20 && buf[m + 6] === 0x20 && buf[m + 7] === 0) return 'gnu';
  if (buf[m + 5] !== 0) return 'v7';
  // star marks its extended ustar layout with "tar\0" in the last 4 bytes.
  const t = off + 508;
  if (buf[t] === 0x74 && buf[t + 1] === 0x61 && buf[t + 2] === 0x72 && buf[t + 3] === 0) return 'star';
  return 'ustar';
}

/**
 * The checksum is the sum of the block's bytes with the checksum field itself
 * counted as spaces. Historic tars summed signed chars; like GNU tar, accept
 * either. Returns false for an all-zero block (an end-of-archive marker).
 */
function verifyChecksum(buf: Buffer, off: number, at: number): boolean {
  let sum = 0;
  for (let i = off, end = off + BLOCK_SIZE; i < end; i++) sum += buf[i]!;
  if (sum === 0) return false;
  for (let i = off + 148; i < off + 156; i++) sum += 0x20 - buf[i]!;
  const stored = readOctal(buf, off + 148, off + 156);
  if (stored === sum) return true;
  // Rare: a signed sum counts each byte >= 0x80 as b - 256.
  let signed = sum;
  for (let i = off, end = off + BLOCK_SIZE; i < end; i++) {
    if (buf[i]! >= 0x80 && (i < off + 148 || i >= off + 156)) signed -= 256;
  }
  if (stored !== signed) throw new ClipError('BAD_TAR', `bad tar header checksum at offset ${at}`);
  return true;
}

function field(buf: Buffer, start: number, len: number, at: number, what: string, min: number, max: number): number {
  const v = readNumber(buf, start, len);
  if (Number.isNaN(v)) fail(at, `invalid ${what} field`);
  if (v < min || v > max) fail(at, Number.isFinite(v) ? `${what} ${v} out of range` : `${what} out of range`);
  return v;
}

function optionalTime(buf: Buffer, start: number, at: number, what: string): number | undefined {
  if (buf[start] === 0) return undefined;
  return timeField(buf, start, at, what);
}

/** Seconds, clamped to years 1..9999: base-256 fields reach far beyond what the index holds. */
function timeField(buf: Buffer, start: number, at: number, what: string): number {
  const v = readNumber(buf, start, 12);
  if (Number.isNaN(v)) fail(at, `invalid ${what} field`);
  return Math.min(MAX_TIME_SEC, Math.max(MIN_TIME_SEC, v));
}

const SLASH = Buffer.from('/');

/** A NUL-terminated (or field-filling) byte field, not decoded (a view: copy before keeping). */
function fieldBytes(buf: Buffer, start: number, len: number): Buffer {
  let end = start;
  const limit = start + len;
  while (end < limit && buf[end] !== 0) end++;
  return buf.subarray(start, end);
}

/** A NUL-terminated (or field-filling) string, decoded as UTF-8. */
export function readString(buf: Buffer, start: number, len: number): string {
  let end = start;
  const limit = start + len;
  while (end < limit && buf[end] !== 0) end++;
  return end === start ? '' : buf.toString('utf8', start, end);
}

function fail(at: number, what: string): never {
  throw new ClipError('BAD_TAR', `${what} in tar header at offset ${at}`);
}
