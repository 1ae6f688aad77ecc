// Reads a .clip file from disk, naming the file in any error. Only the header
// and the index body are read: an archive's data stays on disk, and its
// location is made to name this file ("archive:/abs/path").

import { open } from 'node:fs/promises';
import path from 'node:path';
import { ClipError } from '../errors.js';
import { ARCHIVE_HEADER_SIZE, decodeBody, readHeader } from './format.js';
import type { ClipIndex } from './types.js';

/** Reads and validates a .clip file. */
export async function loadIndex(file: string): Promise<ClipIndex> {
  let fh;
  try {
    fh = await open(file, 'r');
  } catch (e) {
    throw new ClipError('IO', `cannot read index ${file}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`);
  }
  try {
    const size = (await fh.stat()).size;
    const head = Buffer.alloc(Math.min(size, ARCHIVE_HEADER_SIZE));
    await readFully(fh, head, 0);
    const header = readHeader(head, size);
    const body = Buffer.alloc(header.bodyLength);
    await readFully(fh, body, header.bodyOffset);
    const index = decodeBody(header, body);
    if (index.kind === 'archive') index.image = { ...index.image, location: `archive:${path.resolve(file)}` };
    return index;
  } catch (e) {
    if (e instanceof ClipError) throw new ClipError(e.code, `${file}: ${e.message}`);
    throw new ClipError('IO', `cannot read index ${file}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`);
  } finally {
    await fh.close();
  }
}

async function readFully(fh: import('node:fs/promises').FileHandle, buf: Buffer, position: number): Promise<void> {
  let filled = 0;
  while (filled < buf.length) {
    const { bytesRead } = await fh.read(buf, filled, buf.length - filled, position + filled);
    if (bytesRead === 0) throw new ClipError('BAD_INDEX', 'file ended early (truncated)');
    filled += bytesRead;
  }
}
