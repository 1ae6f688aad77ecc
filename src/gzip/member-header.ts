// Parses the header of one gzip member (RFC 1952), to know where its deflate
// data starts: for checkpoint 0, and when a read crosses into the next member.

import { ClipError } from '../errors.js';

const FHCRC = 2;
const FEXTRA = 4;
const FNAME = 8;
const FCOMMENT = 16;

/**
 * Returns the length of the gzip member header starting at `at`, or undefined
 * if `buf` ends before the header does. Throws if the bytes are not a gzip header.
 */
export function parseMemberHeader(buf: Buffer, at: number): number | undefined {
  if (buf.length - at < 10) return undefined;
  if (buf[at] !== 0x1f || buf[at + 1] !== 0x8b) {
    throw new ClipError('BAD_GZIP', `not a gzip member at compressed offset ${at} (bad magic)`);
  }
  if (buf[at + 2] !== 8) throw new ClipError('BAD_GZIP', `gzip member at ${at} uses unknown compression method ${buf[at + 2]}`);
  const flags = buf[at + 3]!;
  let p = at + 10;
  if (flags & FEXTRA) {
    if (buf.length < p + 2) return undefined;
    p += 2 + buf.readUInt16LE(p);
  }
  for (const flag of [FNAME, FCOMMENT]) {
    if (!(flags & flag)) continue;
    const nul = buf.indexOf(0, p);
    if (nul < 0) return undefined;
    p = nul + 1;
  }
  if (flags & FHCRC) p += 2;
  return p <= buf.length ? p - at : undefined;
}
