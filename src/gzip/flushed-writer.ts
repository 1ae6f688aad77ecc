// Compresses a stream into one standard gzip member that is seekable by
// construction: the input is cut into spans of `spanSize` bytes, each span is
// deflated on its own (a fresh deflate stream ended by a full flush, which is
// exactly what a full flush in one stream produces: byte-aligned, history
// reset), so every span inflates without any window. Spans are deflated
// concurrently on the libuv pool (both cores), written in order, and each
// one's sha256 is the checksum a reader verifies before inflating it.

import { createHash } from 'node:crypto';
import zlib from 'node:zlib';
import type { Checkpoint, SpanTable } from './types.js';
import { crc32 } from './crc32.js';

/** gzip member header: no name, no mtime (reproducible), OS = Unix. */
const GZIP_HEADER = Buffer.from([0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 3]);
const NO_WINDOW = Buffer.alloc(0);

export interface FlushedGzipOptions {
  spanSize: number;
  /** zlib level 0-9 (default 6, as gzip). */
  level?: number;
  /** Spans deflated at once (default 4: the libuv pool's size). */
  concurrency?: number;
}

interface Job {
  compressed: Promise<Buffer>;
  out: number;
  last: boolean;
}

function deflate(data: Buffer, level: number, last: boolean): Promise<Buffer> {
  return new Promise((resolve, reject) =>
    zlib.deflateRaw(
      data,
      { level, chunkSize: 256 * 1024, finishFlush: last ? zlib.constants.Z_FINISH : zlib.constants.Z_FULL_FLUSH },
      (err, out) => (err ? reject(err) : resolve(out)),
    ),
  );
}

export class FlushedGzipWriter {
  private span: Buffer;
  private fill = 0;
  /** Uncompressed bytes handed to deflate so far. */
  private out = 0;
  private crc = 0;
  private readonly queue: Job[] = [];
  private readonly checkpoints: Checkpoint[] = [];
  private readonly digests: Buffer[] = [];
  /** Compressed bytes written so far. */
  private written = 0;
  private readonly level: number;
  private readonly concurrency: number;

  /** `sink` receives the compressed bytes in order; the writer waits for it (backpressure). */
  constructor(
    private readonly opts: FlushedGzipOptions,
    private readonly sink: (chunk: Buffer) => Promise<void>,
  ) {
    this.span = Buffer.allocUnsafe(opts.spanSize);
    this.level = opts.level ?? 6;
    this.concurrency = opts.concurrency ?? 4;
  }

  /** Adds bytes; the chunk may be reused once the promise resolves. */
  async write(chunk: Buffer): Promise<void> {
    let off = 0;
    while (off < chunk.length) {
      // A full span is only sent once more input exists: the last span must end the stream.
      if (this.fill === this.span.length) await this.dispatch(false);
      const n = Math.min(chunk.length - off, this.span.length - this.fill);
      chunk.copy(this.span, this.fill, off, off + n);
      this.fill += n;
      off += n;
    }
  }

  /** Deflates what is left as the final span, writes the trailer, returns the seek table. */
  async finish(): Promise<SpanTable> {
    await this.dispatch(true);
    while (this.queue.length > 0) await this.drainOne();
    return {
      compression: 'gzip-flushed',
      compressedSize: this.written,
      uncompressedSize: this.out,
      checkpoints: this.checkpoints,
      digests: this.digests,
    };
  }

  private async dispatch(last: boolean): Promise<void> {
    const data = this.span.subarray(0, this.fill);
    this.crc = crc32(data, this.crc);
    this.queue.push({ compressed: deflate(data, this.level, last), out: this.out, last });
    this.out += data.length;
    this.span = Buffer.allocUnsafe(this.opts.spanSize);
    this.fill = 0;
    while (this.queue.length >= this.concurrency || (last && this.queue.length > 0)) await this.drainOne();
  }

  /** Writes the oldest deflated span, with the gzip header before the first and the trailer after the last. */
  private async drainOne(): Promise<void> {
    const job = this.queue[0]!;
    const deflated = await job.compressed;
    this.queue.shift();
    const first = this.checkpoints.length === 0;
    const parts = first ? [GZIP_HEADER, deflated] : [deflated];
    if (job.last) {
      const trailer = Buffer.alloc(8);
      trailer.writeUInt32LE(this.crc >>> 0, 0);
      trailer.writeUInt32LE(this.out % 2 ** 32, 4);
      parts.push(trailer);
    }
    const bytes = parts.length === 1 ? parts[0]! : Buffer.concat(parts);
    this.checkpoints.push({ in: this.written + (first ? GZIP_HEADER.length : 0), out: job.out, window: NO_WINDOW });
    this.digests.push(createHash('sha256').update(bytes).digest());
    this.written += bytes.length;
    await this.sink(bytes);
  }
}
