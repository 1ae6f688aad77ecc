// Writes a .clip index file, the counterpart of load.ts: encoded whole, then
// written to a temp file and renamed, so no reader sees half a file.

import { writeFileAtomic } from '../util/atomic-write.js';
import { encodeIndex } from './format.js';
import type { ClipIndex } from './types.js';

/** Writes `index` to `file`; returns the file's size in bytes. */
export async function writeIndex(file: string, index: ClipIndex): Promise<number> {
  const encoded = encodeIndex(index);
  await writeFileAtomic(file, encoded);
  return encoded.length;
}
