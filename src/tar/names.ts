// Path-like fields (names, link targets, GNU long names, PAX path records) as
// they come out of a header: text when the bytes are UTF-8, else the raw
// bytes. The index and FUSE carry names as JS strings, so a non-UTF-8 name
// would collapse into U+FFFD (and two names into one); such a name is refused
// when an entry uses it, showing the bytes escaped.

import { isUtf8 } from 'node:buffer';
import { ClipError } from '../errors.js';

/** Decoded text, or a copy of the bytes when they are not valid UTF-8. */
export type NameField = string | Buffer;

export function decodeName(bytes: Buffer): NameField {
  if (bytes.length === 0) return '';
  return isUtf8(bytes) ? bytes.toString('utf8') : Buffer.from(bytes);
}

/** The text of a field an entry uses; BAD_TAR for bytes that are not UTF-8. */
export function nameText(f: NameField, at: number, what: string): string {
  if (typeof f === 'string') return f;
  throw new ClipError('BAD_TAR', `${what} "${escapeBytes(f)}" of the entry at offset ${at} is not UTF-8 (clip keeps names as text)`);
}

/** For messages: any field, bytes that are not printable ASCII as \xNN. */
export function showName(f: NameField): string {
  return typeof f === 'string' ? JSON.stringify(f) : `"${escapeBytes(f)}"`;
}

export function escapeBytes(b: Buffer): string {
  let s = '';
  for (const c of b) {
    s += c >= 0x20 && c < 0x7f && c !== 0x5c && c !== 0x22 ? String.fromCharCode(c) : `\\x${c.toString(16).padStart(2, '0')}`;
  }
  return s;
}
