// Uploads a local file as one S3 object with a multipart upload: parts go up
// a few at a time, each with its MD5 (S3 checks it) and payload hash, and
// every finished part is recorded in a state object the caller saves next to
// the output. After a failure the same upload is resumed: the parts S3 still
// holds (ListParts where the server has it, else the recorded ones) are kept,
// only the rest are sent, then the upload is completed and the object's size
// checked.

import { createHash } from 'node:crypto';
import { open } from 'node:fs/promises';
import { ClipError } from '../errors.js';
import { discard, readBody, type HttpResponse } from '../http/client.js';
import type { S3Client } from './client.js';
import { escapeXml, xmlBlocks, xmlText } from './xml.js';

const MIB = 1024 * 1024;
/** S3 parts are at least 5 MiB (except the last) and at most 10,000. */
const MIN_PART = 8 * MIB;
const MAX_PARTS = 10_000;
const COMPLETE_TRIES = 4;

export interface UploadState {
  clipUpload: 1;
  /** The object, as recorded in the index (location with region and endpoint). */
  target: string;
  size: number;
  digest: string;
  partSize: number;
  uploadId?: string;
  /** Part number -> ETag of the parts uploaded. */
  parts: Record<string, string>;
}

export interface UploadOptions {
  concurrency?: number;
  onProgress?: (done: number, total: number) => void;
}

export interface UploadResult {
  /** Parts kept from an earlier, interrupted run. */
  resumedParts: number;
  uploadedParts: number;
  parts: number;
}

export function partSizeFor(size: number): number {
  return Math.max(MIN_PART, Math.ceil(size / MAX_PARTS / MIB) * MIB);
}

/** A new upload's state for `file` of `size` bytes. */
export function newUploadState(target: string, size: number, digest: string): UploadState {
  return { clipUpload: 1, target, size, digest, partSize: partSizeFor(size), parts: {} };
}

async function text(res: HttpResponse): Promise<string> {
  return (await readBody(res, 16 * MIB, 'S3 answer')).toString('utf8');
}

/** The parts S3 holds for the upload; undefined when the server cannot list them; null when the upload is gone. */
async function listParts(client: S3Client, uploadId: string): Promise<Map<number, { etag: string; size: number }> | undefined | null> {
  const parts = new Map<number, { etag: string; size: number }>();
  let marker = 0;
  for (;;) {
    const res = await client.request('GET', { query: `part-number-marker=${marker}&uploadId=${encodeURIComponent(uploadId)}` });
    if (res.status === 404) {
      await discard(res.body);
      return null;
    }
    if (res.status === 400 || res.status === 405 || res.status === 501) {
      await discard(res.body);
      return undefined;
    }
    if (res.status !== 200) throw await client.error(res, 'listing the uploaded parts of');
    const xml = await text(res);
    for (const block of xmlBlocks(xml, 'Part')) {
      const n = Number(xmlText(block, 'PartNumber'));
      const etag = xmlText(block, 'ETag');
      if (Number.isSafeInteger(n) && etag !== undefined) parts.set(n, { etag, size: Number(xmlText(block, 'Size')) });
    }
    const next = Number(xmlText(xml, 'NextPartNumberMarker'));
    if (xmlText(xml, 'IsTruncated') !== 'true' || !Number.isSafeInteger(next) || next <= marker) return parts;
    marker = next;
  }
}

async function initiate(client: S3Client): Promise<string> {
  for (let attempt = 1; ; attempt++) {
    try {
      const res = await client.request('POST', { query: 'uploads', headers: { 'content-type': 'application/octet-stream' } });
      if (res.status !== 200) throw await client.error(res, 'starting an upload to');
      const id = xmlText(await text(res), 'UploadId');
      if (!id) throw new ClipError('S3', `S3 started an upload to ${client.name} without an UploadId`);
      return id;
    } catch (e) {
      // POSTs are not retried below us: a lost answer only leaves an unused upload behind.
      if (!(e instanceof ClipError && e.code === 'S3') || attempt >= COMPLETE_TRIES) throw e;
    }
  }
}

/**
 * Uploads `file` (state.size bytes) to the client's object, resuming
 * `state` if it holds an upload. `save` is called with the state whenever
 * it changes (one call at a time); on failure the state saved last says
 * what is done.
 */
export async function uploadFile(
  client: S3Client,
  file: string,
  state: UploadState,
  save: (s: UploadState) => Promise<void>,
  opts: UploadOptions = {},
): Promise<UploadResult> {
  const count = Math.max(1, Math.ceil(state.size / state.partSize));
  const partBytes = (n: number): number => Math.min(state.partSize, state.size - (n - 1) * state.partSize);
  let saving = Promise.resolve();
  const persist = (): Promise<void> => (saving = saving.then(() => save(structuredClone(state))));

  if (state.uploadId !== undefined) {
    const held = await listParts(client, state.uploadId);
    if (held === null) {
      delete state.uploadId; // expired or aborted: start again
      state.parts = {};
    } else if (held !== undefined) {
      const kept: Record<string, string> = {};
      for (const [n, p] of held) if (n <= count && p.size === partBytes(n)) kept[n] = p.etag;
      state.parts = kept;
    }
  }
  if (state.uploadId === undefined) {
    state.uploadId = await initiate(client);
    state.parts = {};
  }
  await persist();
  const uploadId = state.uploadId;
  const resumedParts = Object.keys(state.parts).length;
  const todo: number[] = [];
  for (let n = 1; n <= count; n++) if (state.parts[n] === undefined) todo.push(n);
  let done = Object.keys(state.parts).reduce((a, n) => a + partBytes(Number(n)), 0);
  opts.onProgress?.(done, state.size);

  const fh = await open(file, 'r');
  let failure: unknown;
  try {
    const worker = async (): Promise<void> => {
      while (todo.length > 0 && failure === undefined) {
        const n = todo.shift()!;
        try {
          const body = Buffer.alloc(partBytes(n));
          const { bytesRead } = await fh.read(body, 0, body.length, (n - 1) * state.partSize);
          if (bytesRead !== body.length) throw new ClipError('IO', `${file} is shorter than when it was written`);
          const res = await client.request('PUT', {
            query: `partNumber=${n}&uploadId=${encodeURIComponent(uploadId)}`,
            headers: { 'content-type': 'application/octet-stream', 'content-md5': createHash('md5').update(body).digest('base64') },
            body,
          });
          if (res.status !== 200) throw await client.error(res, `uploading part ${n} of ${count} to`);
          const etag = res.headers['etag'];
          await discard(res.body);
          if (typeof etag !== 'string' || etag === '') throw new ClipError('S3', `S3 took part ${n} of ${client.name} without an ETag`);
          state.parts[n] = etag;
          done += body.length;
          opts.onProgress?.(done, state.size);
          await persist();
        } catch (e) {
          failure ??= e;
        }
      }
    };
    await Promise.all(Array.from({ length: Math.min(opts.concurrency ?? 4, Math.max(1, todo.length)) }, worker));
  } finally {
    await fh.close();
    await saving;
  }
  if (failure !== undefined) throw failure;

  await complete(client, uploadId, state, count);
  const head = await client.request('HEAD');
  await discard(head.body);
  const length = Number(head.headers['content-length']);
  if (head.status !== 200 || length !== state.size) {
    throw new ClipError(
      'S3',
      `after the upload ${client.name} has ${head.status === 200 ? `${length} bytes, expected ${state.size}` : `HTTP ${head.status}`}`,
    );
  }
  return { resumedParts, uploadedParts: count - resumedParts, parts: count };
}

async function complete(client: S3Client, uploadId: string, state: UploadState, count: number): Promise<void> {
  const parts = Array.from(
    { length: count },
    (_, i) => `<Part><PartNumber>${i + 1}</PartNumber><ETag>${escapeXml(state.parts[i + 1]!)}</ETag></Part>`,
  );
  const body = `<CompleteMultipartUpload>${parts.join('')}</CompleteMultipartUpload>`;
  for (let attempt = 1; ; attempt++) {
    let res: HttpResponse;
    try {
      res = await client.request('POST', {
        query: `uploadId=${encodeURIComponent(uploadId)}`,
        headers: { 'content-type': 'application/xml' },
        body,
      });
    } catch (e) {
      if (!(e instanceof ClipError && e.code === 'S3') || attempt >= COMPLETE_TRIES) throw e;
      continue;
    }
    // An earlier try may have completed it with its answer lost: the HEAD that follows tells.
    if (res.status === 404 && attempt > 1) return void (await discard(res.body));
    if (res.status !== 200) throw await client.error(res, 'completing the upload to');
    // S3 can answer 200 and still fail the completion (the error is in the body).
    const answer = await text(res);
    if (/<Error>/.test(answer)) {
      if (attempt >= COMPLETE_TRIES)
        throw new ClipError(
          'S3',
          `S3 could not complete the upload to ${client.name}: ${xmlText(answer, 'Code')}: ${xmlText(answer, 'Message')}`,
        );
      continue;
    }
    return;
  }
}
