// A whole blob as one stream that survives lost connections: when the body
// fails mid-way (connection cut, stall, deadline), the blob is asked for
// again from the byte reached (`Range: bytes=N-`) and the stream goes on
// exactly there, so a reader hashing the bytes as they come sees each byte
// once, in order. A few resumes, then a clear REGISTRY error.

import { Readable } from 'node:stream';
import { ClipError } from '../errors.js';
import { backoff, bodyError, discard, header, isDeadlineError, networkError, type HttpResponse, type RetryReason } from './client.js';

/** Resumes of one blob before giving up (CLIP_BLOB_RESUMES). */
const MAX_RESUMES = positive(process.env['CLIP_BLOB_RESUMES'], 4);
const CONTENT_RANGE_START = /^bytes (\d+)-\d+\/(?:\d+|\*)$/;

function positive(v: string | undefined, fallback: number): number {
  const n = Number(v);
  return v !== undefined && Number.isSafeInteger(n) && n >= 0 ? n : fallback;
}

/** Opens the blob from byte `from` (0: the whole blob); answers 200 or 206, anything else throws. */
export type OpenFrom = (from: number, onRetry: (reason: RetryReason) => void) => Promise<HttpResponse>;

/** The blob's bytes, resumed after failures; `onRetry` hears of each resume. */
export async function resumableBlob(
  open: OpenFrom,
  what: string,
  onRetry: (reason: RetryReason) => void = () => undefined,
): Promise<Readable> {
  const current = { res: await open(0, onRetry) };
  const stream = Readable.from(chunks(current, open, what, onRetry), { objectMode: false });
  // A stream destroyed before it was read never runs the generator (nor its
  // finally): close the answer in hand here, or its connection stays busy.
  stream.once('close', () => current.res.body.destroy());
  return stream;
}

async function* chunks(
  current: { res: HttpResponse },
  open: OpenFrom,
  what: string,
  onRetry: (reason: RetryReason) => void,
): AsyncGenerator<Buffer> {
  let res = current.res;
  let offset = 0;
  // Bytes of a 200 answer to a resume (a server that ignores Range) already delivered: dropped.
  let skip = 0;
  for (let resumes = 0; ; resumes++) {
    try {
      for await (const chunk of res.body as AsyncIterable<Buffer>) {
        let b = chunk;
        if (skip > 0) {
          const n = Math.min(skip, b.length);
          skip -= n;
          b = b.subarray(n);
          if (b.length === 0) continue;
        }
        offset += b.length;
        yield b;
      }
      return;
    } catch (e) {
      if (e instanceof ClipError) throw e;
      const cause = bodyError(res, e);
      if (resumes >= MAX_RESUMES) {
        const err = networkError(res.url, cause, `reading ${what}`);
        throw new ClipError('REGISTRY', `${err.message} (at byte ${offset}; gave up after ${resumes + 1} attempts)`, { cause });
      }
      onRetry(isDeadlineError(cause) ? 'deadline' : 'body-cut');
    } finally {
      res.body.destroy();
    }
    await new Promise((r) => setTimeout(r, backoff(resumes)));
    res = current.res = await open(offset, onRetry);
    skip = await resumedAt(res, offset, what);
  }
}

/** Checks where a resumed answer starts; returns the bytes to drop from its body (a 200 starts at 0). */
async function resumedAt(res: HttpResponse, offset: number, what: string): Promise<number> {
  if (res.status === 200) return offset;
  const contentRange = (header(res.headers, 'content-range') ?? '').trim();
  const start = CONTENT_RANGE_START.exec(contentRange)?.[1];
  if (start === undefined || Number(start) !== offset) {
    await discard(res.body);
    throw new ClipError(
      'REGISTRY',
      `${res.url.host} answered a resume of ${what} at byte ${offset} with Content-Range ${JSON.stringify(contentRange)}`,
    );
  }
  return 0;
}
