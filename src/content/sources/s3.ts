// The data part of an S3 archive as a BlobSource: signed Range GETs of the
// one object, read and retried exactly as registry blob ranges are
// (http/range-read.ts). The span cache, digest checks and inflating above it
// are the registry path's, unchanged.

import { Readable } from 'node:stream';
import { readRangeRetrying } from '../../http/range-read.js';
import type { BlobSource, RangeOptions } from '../../oci/types.js';
import { asS3Error, S3Client } from '../../s3/client.js';
import { parseS3Location } from '../../s3/location.js';

export class S3BlobSource implements BlobSource {
  private constructor(private readonly client: S3Client) {}

  /** Opens "s3://bucket/key?region=...&endpoint=..." as recorded in an index. */
  static async open(location: string): Promise<S3BlobSource> {
    return new S3BlobSource(await S3Client.open(parseS3Location(location)));
  }

  async readRange(digest: string, start: number, end: number, opts: RangeOptions = {}): Promise<Buffer> {
    // Some S3-compatible servers (s3rver) read "bytes=0-0" as "from 0 to the
    // end"; the data part is a gzip stream (never under 18 bytes), so the
    // first byte alone is asked for as the first two.
    if (start === 0 && end === 1) return (await this.readRange(digest, 0, 2, opts)).subarray(0, 1);
    // Body failures (cut, stalled, malformed) come up from the HTTP layer as REGISTRY errors.
    return readRangeRetrying(start, end, {
      send: () =>
        this.client.request('GET', {
          headers: { range: `bytes=${start}-${end - 1}`, 'accept-encoding': 'identity' },
          ...(opts.onRetry ? { onRetry: opts.onRetry } : {}),
        }),
      failure: (res) => this.client.error(res, 'reading'),
      what: `${this.client.name} (${digest})`,
      onRetry: opts.onRetry,
    }).catch((e: unknown) => {
      throw asS3Error(e);
    });
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
