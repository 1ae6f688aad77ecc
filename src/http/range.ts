// Checks the answer to a `Range: bytes=a-b` request and returns exactly the
// bytes asked for: a 206 must carry the matching Content-Range; a server that
// ignores Range and sends the whole blob (200) is sliced while streaming.

import { ClipError } from '../errors.js';
import { bodyError, discard, header, networkError, readBody, type HttpResponse } from './client.js';

const CONTENT_RANGE = /^bytes (\d+)-(\d+)\/(\d+|\*)$/;

/** Bytes [start, end) of the blob from a response to a range request (200, 206 or 416). */
export async function readSlice(res: HttpResponse, start: number, end: number, what: string): Promise<Buffer> {
  const encoding = header(res.headers, 'content-encoding');
  if (encoding !== undefined && encoding.toLowerCase() !== 'identity') {
    await discard(res.body);
    throw new ClipError('REGISTRY', `${res.url.host} sent ${what} with Content-Encoding ${encoding} despite Accept-Encoding: identity`);
  }
  const wanted = `${start}-${end - 1}`;
  if (res.status === 416) {
    await discard(res.body);
    const size = /\/(\d+)$/.exec(header(res.headers, 'content-range') ?? '')?.[1];
    throw beyondEnd(what, start, end, size === undefined ? undefined : Number(size));
  }
  if (res.status === 206) {
    const contentRange = header(res.headers, 'content-range') ?? '';
    const m = CONTENT_RANGE.exec(contentRange.trim());
    if (!m) {
      await discard(res.body);
      throw new ClipError(
        'REGISTRY',
        `${res.url.host} answered range ${wanted} of ${what} with a bad Content-Range ${JSON.stringify(contentRange)}`,
      );
    }
    const first = Number(m[1]);
    const last = Number(m[2]);
    const total = m[3] === '*' ? undefined : Number(m[3]);
    if (first !== start || last !== end - 1) {
      await discard(res.body);
      if (first === start && total !== undefined && last === total - 1 && end > total) throw beyondEnd(what, start, end, total);
      throw new ClipError('REGISTRY', `${res.url.host} answered range ${first}-${last} of ${what} when asked for ${wanted}`);
    }
    const bytes = await readBody(res, end - start, `range ${wanted} of ${what}`);
    if (bytes.length !== end - start) {
      throw new ClipError(
        'REGISTRY',
        `${res.url.host} sent ${bytes.length} bytes for range ${wanted} of ${what} (expected ${end - start})`,
      );
    }
    return bytes;
  }
  if (res.status === 200) return sliceWholeBody(res, start, end, what);
  await discard(res.body);
  throw new ClipError('REGISTRY', `${res.url.host} answered HTTP ${res.status} for range ${wanted} of ${what}`);
}

/** Keeps only [start, end) of a streamed whole body, stopping as soon as it has them. */
async function sliceWholeBody(res: HttpResponse, start: number, end: number, what: string): Promise<Buffer> {
  const out = Buffer.alloc(end - start);
  let offset = 0;
  try {
    for await (const chunk of res.body) {
      const b = chunk as Buffer;
      const from = Math.max(start, offset);
      const to = Math.min(end, offset + b.length);
      if (to > from) b.copy(out, from - start, from - offset, to - offset);
      offset += b.length;
      if (offset >= end) break; // leaving the loop destroys the body
    }
  } catch (e) {
    throw networkError(res.url, bodyError(res, e), `reading ${what}`);
  }
  if (offset < end) throw beyondEnd(what, start, end, offset);
  return out;
}

function beyondEnd(what: string, start: number, end: number, size: number | undefined): ClipError {
  return new ClipError(
    'BAD_ARGUMENT',
    `byte range [${start}, ${end}) is beyond the end of ${what}${size === undefined ? '' : ` (size ${size})`}`,
  );
}
