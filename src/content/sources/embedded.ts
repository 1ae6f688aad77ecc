// The data part of a local archive as a BlobSource: positioned reads from the
// .clip file itself, at the offset its header records. One descriptor stays
// open for the life of the source (a mount reads through it for hours).

import { createReadStream } from 'node:fs';
import { open, type FileHandle } from 'node:fs/promises';
import type { Readable } from 'node:stream';
import { ClipError } from '../../errors.js';
import { ARCHIVE_HEADER_SIZE, readHeader } from '../../index/format.js';
import type { BlobSource } from '../../oci/types.js';

export class EmbeddedBlobSource implements BlobSource {
  private constructor(
    private readonly file: string,
    private readonly fh: FileHandle,
    private readonly offset: number,
    private readonly length: number,
  ) {}

  /** Opens the archive `file` and finds its data from the header. */
  static async open(file: string): Promise<EmbeddedBlobSource> {
    let fh: FileHandle;
    try {
      fh = await open(file, 'r');
    } catch (e) {
      throw new ClipError('NOT_FOUND', `cannot open archive ${file}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`);
    }
    try {
      const size = (await fh.stat()).size;
      const head = Buffer.alloc(Math.min(size, ARCHIVE_HEADER_SIZE));
      await fh.read(head, 0, head.length, 0);
      const h = readHeader(head, size);
      if (h.kind !== 'archive') throw new ClipError('BAD_INDEX', `${file} is not a local archive`);
      return new EmbeddedBlobSource(file, fh, h.dataOffset!, h.dataLength!);
    } catch (e) {
      await fh.close();
      if (e instanceof ClipError) throw new ClipError(e.code, `${file}: ${e.message}`);
      throw e;
    }
  }

  async readRange(_digest: string, start: number, end: number): Promise<Buffer> {
    if (!Number.isSafeInteger(start) || !Number.isSafeInteger(end) || start < 0 || end < start || end > this.length) {
      throw new ClipError('BAD_ARGUMENT', `byte range [${start}, ${end}) is outside the ${this.length} bytes of data in ${this.file}`);
    }
    const out = Buffer.alloc(end - start);
    let filled = 0;
    try {
      while (filled < out.length) {
        const { bytesRead } = await this.fh.read(out, filled, out.length - filled, this.offset + start + filled);
        if (bytesRead === 0)
          throw new ClipError('IO', `${this.file} ended at ${this.offset + start + filled} bytes: it was truncated after it was opened`);
        filled += bytesRead;
      }
    } catch (e) {
      if (e instanceof ClipError) throw e;
      throw new ClipError('IO', `cannot read ${this.file}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`);
    }
    return out;
  }

  async openBlob(): Promise<Readable> {
    return createReadStream(this.file, { start: this.offset, end: this.offset + this.length - 1 });
  }

  async close(): Promise<void> {
    await this.fh.close().catch(() => undefined);
  }
}
