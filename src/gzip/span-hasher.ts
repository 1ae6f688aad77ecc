// The digests of one span's compressed bytes as they stream past: the sha256
// of the whole span and of each CHUNK_SIZE chunk from the span's start (the
// last chunk short), so a read can verify a prefix of the span on its own.

import { createHash, type Hash } from 'node:crypto';
import { CHUNK_SIZE } from './types.js';

export class SpanHasher {
  private readonly whole: Hash = createHash('sha256');
  private chunk: Hash = createHash('sha256');
  /** Bytes in the current chunk. */
  private filled = 0;
  private readonly chunks: Buffer[] = [];

  update(bytes: Buffer): void {
    this.whole.update(bytes);
    let off = 0;
    while (off < bytes.length) {
      const take = Math.min(bytes.length - off, CHUNK_SIZE - this.filled);
      this.chunk.update(bytes.subarray(off, off + take));
      off += take;
      this.filled += take;
      if (this.filled === CHUNK_SIZE) {
        this.chunks.push(this.chunk.digest());
        this.chunk = createHash('sha256');
        this.filled = 0;
      }
    }
  }

  finish(): { digest: Buffer; chunks: Buffer[] } {
    if (this.filled > 0) this.chunks.push(this.chunk.digest());
    return { digest: this.whole.digest(), chunks: this.chunks };
  }
}
