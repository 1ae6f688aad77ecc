// PAX extended headers: splits a payload into "LEN key=value\n" records
// (lengths validated) and turns the keys we understand into typed overrides
// for the next entry. Times are parsed as decimal text, never via floats.

import { isUtf8 } from 'node:buffer';
import { ClipError } from '../errors.js';
import { decodeName, escapeBytes, type NameField } from './names.js';
import { MAX_TIME_SEC, MIN_TIME_SEC, type Timespec } from './types.js';

/** Raw records by key, later records winning. Values are raw bytes. */
export type PaxRecords = Map<string, Buffer>;

export interface PaxOverrides {
  path?: NameField;
  linkpath?: NameField;
  size?: number;
  uid?: number;
  gid?: number;
  uname?: string;
  gname?: string;
  mtime?: Timespec;
  atime?: Timespec;
  ctime?: Timespec;
  xattrs?: Map<string, Buffer>;
  /** Some GNU.sparse.* key was present: the entry is a sparse file. */
  sparse: boolean;
}

const SCHILY_XATTR = 'SCHILY.xattr.';
const LIBARCHIVE_XATTR = 'LIBARCHIVE.xattr.';
const GNU_SPARSE = 'GNU.sparse.';
const MAX_ID = 0xffffffff;
const XATTR_PREFIXES = [Buffer.from(SCHILY_XATTR), Buffer.from(LIBARCHIVE_XATTR)];

/**
 * Parse the records of one extended header payload into `into`. `at` is the
 * payload's stream offset, for error messages. For a global header ('g') an
 * empty value deletes the key; for a per-entry header ('x') it is kept, and
 * means "use the ustar header's value" (which also masks a global value).
 */
export function parsePaxRecords(payload: Buffer, at: number, into: PaxRecords, global: boolean): void {
  const len = payload.length;
  let i = 0;
  while (i < len) {
    if (payload[i] === 0) {
      // Some writers pad the payload with NULs; tolerate only that.
      for (let k = i; k < len; k++) if (payload[k] !== 0) bad(at + k, 'junk after last PAX record');
      return;
    }
    let n = 0;
    let j = i;
    while (j < len) {
      const c = payload[j]!;
      if (c < 0x30 || c > 0x39) break;
      n = n * 10 + (c - 0x30);
      if (n > len) bad(at + i, 'PAX record length beyond the header');
      j++;
    }
    // Shortest record: "<digits> k=\n".
    if (j === i || j >= len || payload[j] !== 0x20 || n < j - i + 4) bad(at + i, 'bad PAX record length');
    const end = i + n;
    if (end > len) bad(at + i, 'PAX record length beyond the header');
    if (payload[end - 1] !== 0x0a) bad(at + i, 'PAX record not terminated by newline');
    const keyStart = j + 1;
    const eq = payload.indexOf(0x3d, keyStart);
    if (eq < 0 || eq >= end - 1 || eq === keyStart) bad(at + i, 'PAX record without key');
    const keyEnd = eq;
    for (let k = keyStart; k < keyEnd; k++) if (payload[k] === 0) bad(at + i, 'NUL byte in PAX key');
    const keyBytes = payload.subarray(keyStart, keyEnd);
    if (!isUtf8(keyBytes)) {
      // No key we read is anything but ASCII, except the names inside xattr
      // keys: two such names must not collapse into one.
      if (XATTR_PREFIXES.some((p) => keyBytes.subarray(0, p.length).equals(p))) {
        bad(at + i, `xattr name in PAX key "${escapeBytes(keyBytes)}" is not UTF-8`);
      }
      i = end;
      continue;
    }
    const key = keyBytes.toString('utf8');
    if (global && eq + 1 === end - 1) {
      into.delete(key);
    } else {
      // Copy: values may outlive this payload (globals, xattrs).
      into.set(key, Buffer.from(payload.subarray(eq + 1, end - 1)));
    }
    i = end;
  }
}

/** Interpret merged records; `at` is the entry header's offset for errors. */
export function interpretPax(records: PaxRecords, at: number): PaxOverrides {
  const o: PaxOverrides = { sparse: false };
  for (const [key, raw] of records) {
    if (key.startsWith(SCHILY_XATTR)) {
      const name = key.slice(SCHILY_XATTR.length);
      if (name !== '') (o.xattrs ??= new Map()).set(name, raw);
      continue;
    }
    if (key.startsWith(LIBARCHIVE_XATTR)) {
      const name = percentDecode(key.slice(LIBARCHIVE_XATTR.length), at);
      if (name !== '') (o.xattrs ??= new Map()).set(name, Buffer.from(raw.toString('latin1'), 'base64'));
      continue;
    }
    if (key.startsWith(GNU_SPARSE)) {
      o.sparse = true;
      continue;
    }
    if (raw.length === 0) continue; // "use the header's value"
    switch (key) {
      case 'path':
        o.path = pathValue(raw, at, 'path');
        break;
      case 'linkpath':
        o.linkpath = pathValue(raw, at, 'linkpath');
        break;
      case 'size':
        o.size = integerValue(raw, at, key, Number.MAX_SAFE_INTEGER);
        break;
      case 'uid':
        o.uid = integerValue(raw, at, key, MAX_ID);
        break;
      case 'gid':
        o.gid = integerValue(raw, at, key, MAX_ID);
        break;
      case 'uname':
        o.uname = raw.toString('utf8');
        break;
      case 'gname':
        o.gname = raw.toString('utf8');
        break;
      case 'mtime':
      case 'atime':
      case 'ctime': {
        const t = parsePaxTime(raw.toString('latin1'));
        if (t === null) bad(at, `invalid PAX ${key} "${raw.toString('latin1')}"`);
        o[key] = t;
        break;
      }
      default:
        // comment, charset, hdrcharset, SCHILY.acl.*, ...: not ours.
        break;
    }
  }
  return o;
}

const TIME_RE = /^(-?)(\d+)(?:\.(\d*))?$/;

/**
 * "1234.5678" -> {sec: 1234, nsec: 567800000}; "-1.25" -> {sec: -2,
 * nsec: 750000000} (nsec is always in [0, 1e9)). Digits past nanoseconds are
 * truncated. Times outside years 1..9999 are clamped to them (the index holds
 * no more). Returns null when malformed.
 */
export function parsePaxTime(s: string): Timespec | null {
  const m = TIME_RE.exec(s);
  if (m === null) return null;
  // Beyond the clamp the exact value does not matter; Number() of many digits is just large.
  const whole = Number(m[2]);
  const frac = (m[3] ?? '').slice(0, 9);
  const nsec = frac === '' ? 0 : Number(frac.padEnd(9, '0'));
  if (m[1] !== '-') return whole > MAX_TIME_SEC ? { sec: MAX_TIME_SEC, nsec: 0 } : { sec: whole, nsec };
  if (-whole - 1 < MIN_TIME_SEC) return { sec: MIN_TIME_SEC, nsec: 0 };
  if (nsec === 0) return { sec: whole === 0 ? 0 : -whole, nsec: 0 };
  return { sec: -whole - 1, nsec: 1_000_000_000 - nsec };
}

function pathValue(raw: Buffer, at: number, key: string): NameField {
  if (raw.includes(0)) bad(at, `NUL byte in PAX ${key}`);
  return decodeName(raw);
}

function integerValue(raw: Buffer, at: number, key: string, max: number): number {
  const s = raw.toString('latin1');
  if (!/^\d+$/.test(s)) bad(at, `invalid PAX ${key} "${s}"`);
  const v = Number(s);
  if (!(v <= max)) bad(at, `PAX ${key} ${s} out of range`);
  return v;
}

/** libarchive's xattr names: %XX escapes over UTF-8 bytes. */
function percentDecode(s: string, at: number): string {
  if (!s.includes('%')) return s;
  const bytes: number[] = [];
  const src = Buffer.from(s, 'utf8');
  for (let i = 0; i < src.length; i++) {
    const c = src[i]!;
    if (c === 0x25 && i + 2 < src.length && isHex(src[i + 1]!) && isHex(src[i + 2]!)) {
      bytes.push(parseInt(String.fromCharCode(src[i + 1]!, src[i + 2]!), 16));
      i += 2;
    } else {
      bytes.push(c);
    }
  }
  const decoded = Buffer.from(bytes);
  if (!isUtf8(decoded)) bad(at, `LIBARCHIVE.xattr name "${escapeBytes(decoded)}" is not UTF-8`);
  return decoded.toString('utf8');
}

function isHex(c: number): boolean {
  return (c >= 0x30 && c <= 0x39) || (c >= 0x41 && c <= 0x46) || (c >= 0x61 && c <= 0x66);
}

function bad(at: number, what: string): never {
  throw new ClipError('BAD_TAR', `${what} at offset ${at}`);
}
