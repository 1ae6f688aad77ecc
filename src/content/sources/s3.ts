// The data part of an S3 archive as a BlobSource: signed Range GETs of the
// one object, with the same retries, deadlines and answer checks as registry
// blob reads (a body cut short is asked for again). The span cache, digest
// checks and inflating above it are the registry path's, unchanged.

import { Readable } from 'node:stream';
import { ClipError } from '../errors.js';
import { backoff, REQUEST_DEADLINE_MS } from '../oci/http.js';
import { readSlice } from '../oci/range.js';
import type { BlobSource, RangeOptions } from '../oci/types.js';
import { S3Client } from './client.js';
import { parseS3Location } from './location.js';

export class S3BlobSource implements BlobSource {
  private constructor(private readonly client: S3Client) {}

  /** Opens "s3://bucket/key?region=...&endpoint=..." as recorded in an index. */
  static async open(location: string): Promise<S3BlobSource> {
    return new S3BlobSource(await S3Client.open(parseS3Location(location)));
  }

  async readRange(digest: string, start: number, end: number, opts: RangeOptions = {}): Promise<Buffer> {
    if (!Number.isSafeInteger(start) || !Number.isSafeInteger(end) || start < 0 || end < start) {
      throw new ClipError('BAD_ARGUMENT', `invalid byte range [${start}, ${end}) of ${this.client.name}`);
    }
    if (start === end) return Buffer.alloc(0);
    // Some S3-compatible servers (s3rver) read "bytes=0-0" as "from 0 to the
    // end"; the data part is a gzip stream (never under 18 bytes), so the
    // first byte alone is asked for as the first two.
    if (start === 0 && end === 1) return (await this.readRange(digest, 0, 2, opts)).subarray(0, 1);
    const what = `${this.client.name} (${digest})`;
    const started = Date.now();
    for (let attempt = 0; ; attempt++) {
      const res = await this.client.request('GET', {
        headers: { range: `bytes=${start}-${end - 1}`, 'accept-encoding': 'identity' },
        ...(opts.onRetry ? { onRetry: opts.onRetry } : {}),
      });
      if (res.status !== 200 && res.status !== 206 && res.status !== 416) throw await this.client.error(res, 'reading');
      try {
        return await readSlice(res, start, end, what);
      } catch (e) {
        // A body cut short (connection lost mid-transfer) is asked for again, within the request deadline.
        const delay = backoff(attempt);
        if (!(e instanceof ClipError && e.code === 'REGISTRY') || Date.now() + delay - started > REQUEST_DEADLINE_MS) throw e;
        opts.onRetry?.('body-cut');
        await new Promise((r) => setTimeout(r, delay));
      }
    }
  }

  async openBlob(): Promise<Readable> {
    const res = await this.client.request('GET', { headers: { 'accept-encoding': 'identity' } });
    if (res.status !== 200) throw await this.client.error(res, 'reading');
    return Readable.from(res.body);
  }

  close(): Promise<void> {
    return this.client.close();
  }
}
