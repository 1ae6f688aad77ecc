// Reads a .clip file from disk, naming the file in any error.

import { readFile } from 'node:fs/promises';
import { ClipError } from '../errors.js';
import { decodeIndex } from './format.js';
import type { ClipIndex } from './types.js';

/** Reads and validates a .clip file. */
export async function loadIndex(file: string): Promise<ClipIndex> {
  let data: Buffer;
  try {
    data = await readFile(file);
  } catch (e) {
    throw new ClipError('IO', `cannot read index ${file}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`);
  }
  try {
    return decodeIndex(data);
  } catch (e) {
    if (e instanceof ClipError) throw new ClipError(e.code, `${file}: ${e.message}`);
    throw e;
  }
}
