// The output buffer of the checkpoint builder. It keeps at least the last
// 32 KiB of output contiguous in front of the write position, so the window
// for a checkpoint is always one slice, never a copy of every chunk.

export const WINDOW_SIZE = 32 * 1024;

export class OutputRing {
  readonly buf: Buffer;
  /** Write position: the next output byte goes here. */
  pos = 0;

  constructor(size: number) {
    this.buf = Buffer.allocUnsafe(size);
  }

  /** Makes room for at least `min` bytes after pos, sliding the window to the front. */
  reserve(min: number): void {
    if (this.buf.length - this.pos >= min) return;
    const keep = Math.min(this.pos, WINDOW_SIZE);
    this.buf.copy(this.buf, 0, this.pos - keep, this.pos);
    this.pos = keep;
  }

  /** The last (up to) 32 KiB written. A view; copy it to keep it. */
  window(): Buffer {
    return this.buf.subarray(Math.max(0, this.pos - WINDOW_SIZE), this.pos);
  }
}
