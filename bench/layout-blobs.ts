// Blobs of the OCI layouts the benchmarks build: hash a file, store a blob by its digest.

import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { writeFile } from 'node:fs/promises';
import path from 'node:path';
import { pipeline } from 'node:stream/promises';

export async function sha256File(file: string): Promise<string> {
  const h = createHash('sha256');
  await pipeline(createReadStream(file), h);
  return h.digest('hex');
}

export async function writeBlob(dir: string, data: Buffer): Promise<{ digest: string; size: number }> {
  const hex = createHash('sha256').update(data).digest('hex');
  await writeFile(path.join(dir, 'blobs/sha256', hex), data);
  return { digest: `sha256:${hex}`, size: data.length };
}
