// Writes a file so that readers see either the old file or the whole new one:
// write a temp file next to it, (fsync,) rename. Nothing half-written
// survives a failure. Only a regular file is ever replaced (output-file.ts):
// checked again right before the rename, in case the path changed meanwhile.

import { randomBytes } from 'node:crypto';
import { open, rename, rm } from 'node:fs/promises';
import path from 'node:path';
import { checkOutputFile } from './output-file.js';

export interface AtomicWriteOptions {
  /** fsync before the rename (durable across power loss). Default true. */
  sync?: boolean;
  mode?: number;
}

export async function writeFileAtomic(file: string, data: Buffer | Buffer[], opts: AtomicWriteOptions = {}): Promise<void> {
  const tmp = path.join(path.dirname(file), `.${path.basename(file)}.tmp-${process.pid}-${randomBytes(4).toString('hex')}`);
  try {
    const fh = await open(tmp, 'wx', opts.mode ?? 0o644);
    try {
      await fh.writev(Array.isArray(data) ? data : [data]);
      if (opts.sync !== false) await fh.sync();
    } finally {
      await fh.close();
    }
    await checkOutputFile(file);
    await rename(tmp, file);
  } catch (e) {
    await rm(tmp, { force: true });
    throw e;
  }
}
