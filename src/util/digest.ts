// Content digests ("sha256:<hex>"): syntax checks (they become URL and file
// path components, so nothing else may pass) and verification of fetched bytes.

import { createHash, type Hash } from 'node:crypto';
import { ClipError } from '../errors.js';

const HEX_LENGTH: Record<string, number> = { sha256: 64, sha512: 128 };

/** True for "sha256:<64 lowercase hex>" and "sha512:<128 lowercase hex>". */
export function isDigest(s: string): boolean {
  const colon = s.indexOf(':');
  if (colon < 0) return false;
  const length = HEX_LENGTH[s.slice(0, colon)];
  const hex = s.slice(colon + 1);
  return length !== undefined && hex.length === length && /^[0-9a-f]+$/.test(hex);
}

/** Throws BAD_ARGUMENT unless `s` is a digest clip can verify. */
export function checkDigest(s: string, what = 'digest'): { algorithm: string; hex: string } {
  if (typeof s !== 'string' || !isDigest(s)) {
    throw new ClipError('BAD_ARGUMENT', `invalid ${what} ${JSON.stringify(s)}: expected sha256:<64 hex digits>`);
  }
  const colon = s.indexOf(':');
  return { algorithm: s.slice(0, colon), hex: s.slice(colon + 1) };
}

/** "sha256:<hex>" of `data`: whole bytes, or a hash (of that algorithm) fed with streamed chunks. */
export function digestOf(data: Uint8Array | Hash, algorithm = 'sha256'): string {
  const hash = data instanceof Uint8Array ? createHash(algorithm).update(data) : data;
  return `${algorithm}:${hash.digest('hex')}`;
}

/** Throws DIGEST_MISMATCH unless `bytes` hash to `expected`. */
export function verifyDigest(bytes: Uint8Array, expected: string, what: string): void {
  const { algorithm } = checkDigest(expected, `digest of ${what}`);
  const actual = digestOf(bytes, algorithm);
  if (actual !== expected) {
    throw new ClipError('DIGEST_MISMATCH', `${what}: expected digest ${expected}, got ${actual}`);
  }
}
