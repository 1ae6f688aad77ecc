// One byte range of a blob over HTTP, the way every source reads it: the
// range checked, the answer verified (readSlice: status, Content-Range,
// length, encoding), and a body cut short asked for again within the request
// deadline. Registry blobs and S3 objects share it.

import { ClipError } from '../errors.js';
import { backoff, isDeadlineError, REQUEST_DEADLINE_MS, type HttpResponse, type RetryReason } from './client.js';
import { readSlice } from './range.js';

export interface RangeRequest {
  /** Sends one GET with `Range: bytes=start-(end-1)`; resolves whatever answered. */
  send: () => Promise<HttpResponse>;
  /** The error for an answer other than 200, 206 or 416 (it may read the body for detail). */
  failure: (res: HttpResponse) => Promise<ClipError>;
  /** The blob, in error messages ("blob sha256:... of docker.io/library/alpine"). */
  what: string;
  onRetry?: ((reason: RetryReason) => void) | undefined;
}

/** Throws BAD_ARGUMENT unless [start, end) is a range of byte offsets. */
export function checkRange(start: number, end: number, what: string): void {
  if (!Number.isSafeInteger(start) || !Number.isSafeInteger(end) || start < 0 || end < start) {
    throw new ClipError('BAD_ARGUMENT', `invalid byte range [${start}, ${end}) of ${what}`);
  }
}

/** Bytes [start, end) exactly, or a ClipError. */
export async function readRangeRetrying(start: number, end: number, req: RangeRequest): Promise<Buffer> {
  checkRange(start, end, req.what);
  if (start === end) return Buffer.alloc(0);
  const started = Date.now();
  for (let attempt = 0; ; attempt++) {
    const res = await req.send();
    if (res.status !== 200 && res.status !== 206 && res.status !== 416) throw await req.failure(res);
    try {
      return await readSlice(res, start, end, req.what);
    } catch (e) {
      // Asked again: a REGISTRY error here is the answer going wrong (cut, stalled, malformed), not the request.
      const delay = backoff(attempt);
      if (!(e instanceof ClipError && e.code === 'REGISTRY') || Date.now() + delay - started > REQUEST_DEADLINE_MS) throw e;
      req.onRetry?.(isDeadlineError(e) ? 'deadline' : 'body-cut');
      await new Promise((r) => setTimeout(r, delay));
    }
  }
}
