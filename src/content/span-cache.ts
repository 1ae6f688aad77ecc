// Inflated spans on local disk, keyed by layer digest and span index, so
// mounts of images that share layers share the cache, also across daemon
// restarts. A span file appears only once completely written (temp file +
// rename) and carries the sha256 of its bytes, checked on every read: a torn
// or rotted file is dropped and fetched again, never served.

import { createHash } from 'node:crypto';
import { mkdir, readFile, rm } from 'node:fs/promises';
import path from 'node:path';
import { writeFileAtomic } from '../util/atomic-write.js';

const MAGIC = Buffer.from('CLIPSPN1');
const HEADER = MAGIC.length + 32;

export class SpanCache {
  constructor(readonly dir: string) {}

  private file(layerDigest: string, span: number): string {
    const [alg, hex] = layerDigest.split(':') as [string, string];
    return path.join(this.dir, alg, hex.slice(0, 2), hex, `${span}.span`);
  }

  /** The cached span, or undefined when absent or damaged (then it is removed). */
  async get(layerDigest: string, span: number, expectedSize: number): Promise<Buffer | undefined> {
    const file = this.file(layerDigest, span);
    let raw: Buffer;
    try {
      raw = await readFile(file);
    } catch {
      return undefined;
    }
    const data = raw.subarray(HEADER);
    if (
      raw.length === HEADER + expectedSize &&
      raw.subarray(0, MAGIC.length).equals(MAGIC) &&
      createHash('sha256').update(data).digest().equals(raw.subarray(MAGIC.length, HEADER))
    ) {
      return data;
    }
    await rm(file, { force: true });
    return undefined;
  }

  async put(layerDigest: string, span: number, data: Buffer): Promise<void> {
    const file = this.file(layerDigest, span);
    await mkdir(path.dirname(file), { recursive: true });
    // No fsync: a file torn by a crash fails its checksum and is fetched again.
    await writeFileAtomic(file, [MAGIC, createHash('sha256').update(data).digest(), data], { sync: false, mode: 0o600 });
  }
}
