// The seek table of an uncompressed tar layer: fixed-size spans (offsets map
// one to one), each with the sha256 its bytes must have when read back.

import { createHash, type Hash } from 'node:crypto';
import type { Checkpoint, SpanTable } from './types.js';

export class RawSpanBuilder {
  private readonly checkpoints: Checkpoint[] = [{ in: 0, out: 0, window: Buffer.alloc(0) }];
  private readonly digests: Buffer[] = [];
  private hash: Hash = createHash('sha256');
  private pos = 0;
  private spanEnd: number;

  constructor(
    private readonly spanSize: number,
    private readonly onData: (chunk: Buffer) => void,
  ) {
    this.spanEnd = spanSize;
  }

  push(chunk: Buffer): void {
    let off = 0;
    while (off < chunk.length) {
      const take = Math.min(chunk.length - off, this.spanEnd - this.pos);
      this.hash.update(chunk.subarray(off, off + take));
      off += take;
      this.pos += take;
      if (this.pos === this.spanEnd) {
        this.digests.push(this.hash.digest());
        this.hash = createHash('sha256');
        this.checkpoints.push({ in: this.pos, out: this.pos, window: Buffer.alloc(0) });
        this.spanEnd += this.spanSize;
      }
    }
    this.onData(chunk);
  }

  finish(): SpanTable {
    // A span boundary exactly at the end leaves an empty last span: drop it.
    if (this.checkpoints.length > 1 && this.checkpoints[this.checkpoints.length - 1]!.in === this.pos) {
      this.checkpoints.pop();
    } else {
      this.digests.push(this.hash.digest());
    }
    return {
      compression: 'none',
      compressedSize: this.pos,
      uncompressedSize: this.pos,
      checkpoints: this.checkpoints,
      digests: this.digests,
    };
  }
}
