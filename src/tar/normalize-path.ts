// Turns a path as stored in a layer tar into the canonical form the index
// uses: relative to the image root, no "", "." or ".." components. ".." is
// refused rather than resolved, since it can only be an attempt to escape.

import { ClipError } from '../errors.js';

/**
 * "/a//./b/" -> "a/b"; "./", "/" and "." -> "" (the root). Throws BAD_TAR for
 * a ".." component or a NUL byte. `at` is the header offset, for messages.
 */
export function normalizePath(raw: string, at: number): string {
  if (raw.includes('\0')) throw new ClipError('BAD_TAR', `NUL byte in path ${JSON.stringify(raw)} at offset ${at}`);
  if (isCanonical(raw)) return raw;
  const out: string[] = [];
  for (const part of raw.split('/')) {
    if (part === '' || part === '.') continue;
    if (part === '..') {
      throw new ClipError('BAD_TAR', `path ${JSON.stringify(raw)} at offset ${at} has a ".." component`);
    }
    out.push(part);
  }
  return out.join('/');
}

/** Fast path: most names ("usr/bin/env") need no rewriting at all. */
function isCanonical(p: string): boolean {
  if (p === '' || p.charCodeAt(0) === 0x2f || p.charCodeAt(p.length - 1) === 0x2f) return false;
  if (p.charCodeAt(0) === 0x2e) return false; // ".", "./x", "..", or just ".hidden": take the slow path
  return !p.includes('//') && !p.includes('/.');
}
