// `clip archive`: a source (directory, .clip file or image) packed into a
// self-contained .clip archive, or with its data uploaded to S3 and only a
// small index kept locally. Nothing half-written is left at the output: a
// local archive is written to a temp file and renamed; an S3 archive is
// staged in OUTPUT.s3-upload/ (data, index, upload state) until the upload is
// complete, and a failed upload is resumed by running the same command again.

import { randomBytes } from 'node:crypto';
import { mkdir, open, readFile, rename, rm, stat } from 'node:fs/promises';
import path from 'node:path';
import { ClipError } from '../errors.js';
import { ARCHIVE_HEADER_SIZE, encodeIndexParts } from '../index/format.js';
import type { ClipIndex, IndexKind } from '../index/types.js';
import { MAX_SPAN_OUTPUT } from '../gzip/types.js';
import type { RegistryOptions } from '../oci/types.js';
import { writeFileAtomic } from '../util/atomic-write.js';
import { checkOutputFile } from '../util/output-file.js';
import { VERSION } from '../version.js';
import { openArchiveSource, type ArchiveSource } from './source.js';
import type { SkippedEntry, SkipListener } from './types.js';
import { writeArchiveData, type ArchiveData } from './write-data.js';

const MIN_SPAN_SIZE = 64 * 1024;
/**
 * Default spans: 1 MiB in a local archive, where a read costs one inflate of
 * its span (bench:archive, 200 random files of /usr/share, cold: 0.70 s at
 * 1 MiB, 1.41 s at 4 MiB, for 0.1% more bytes); 4 MiB on S3, where each
 * span missed is a round trip to S3.
 */
export const ARCHIVE_SPAN_SIZE = 1024 * 1024;
export const S3_SPAN_SIZE = 4 * 1024 * 1024;

export interface ArchiveOptions extends RegistryOptions {
  /** The .clip file to write (the whole archive, or with `s3` the small index). */
  output: string;
  /** "s3://BUCKET/KEY": upload the data there instead of embedding it. */
  s3?: string;
  /** S3-compatible endpoint URL and region (default: the AWS environment and config). */
  endpoint?: string;
  region?: string;
  /** Uncompressed bytes per span: the unit of reading and verifying (default 1 MiB, on S3 4 MiB). */
  spanSize?: number;
  /** gzip level 0-9 (default 6). */
  level?: number;
  /** Read extended attributes of a directory (default true). */
  xattrs?: boolean;
  onSkip?: SkipListener;
  /**
   * Stops archiving (the CLI aborts it on SIGINT/SIGTERM): the temp file, or
   * an S3 staging directory not yet uploading, is removed and the promise
   * rejects with the signal's reason. A staged upload is kept for resuming.
   */
  signal?: AbortSignal;
  /** 'indexing': an image source's layers read (compressed bytes); 'archiving': file bytes packed; 'uploading': bytes sent to S3. */
  onProgress?: (phase: 'indexing' | 'archiving' | 'uploading', done: number, total: number) => void;
  /** Told when an interrupted S3 upload is picked up again instead of archiving anew. */
  onResume?: (staging: string) => void;
}

export interface ArchiveSummary {
  output: string;
  kind: IndexKind;
  source: string;
  location: string;
  entries: number;
  files: number;
  skipped: SkippedEntry[];
  fileBytes: number;
  uncompressedBytes: number;
  dataBytes: number;
  spans: number;
  indexBytes: number;
  /** S3: parts sent now, and kept from an interrupted run. */
  uploadedParts?: number;
  resumedParts?: number;
  seconds: number;
}

function checkOptions(opts: ArchiveOptions): number {
  const spanSize = opts.spanSize ?? (opts.s3 !== undefined ? S3_SPAN_SIZE : ARCHIVE_SPAN_SIZE);
  if (!Number.isSafeInteger(spanSize) || spanSize < MIN_SPAN_SIZE)
    throw new ClipError('BAD_ARGUMENT', `span size ${spanSize} is too small (minimum ${MIN_SPAN_SIZE} bytes)`);
  // Readers refuse spans of more output than this (one read inflates one span).
  if (spanSize > MAX_SPAN_OUTPUT)
    throw new ClipError('BAD_ARGUMENT', `span size ${spanSize} is too large (maximum ${MAX_SPAN_OUTPUT} bytes)`);
  if (opts.level !== undefined && !(Number.isInteger(opts.level) && opts.level >= 0 && opts.level <= 9))
    throw new ClipError('BAD_ARGUMENT', `compression level ${opts.level} is not 0-9`);
  return spanSize;
}

/** Paths the archive must not contain: its own output, temp and staging files. */
function excluder(output: string): (abs: string) => boolean {
  const dir = path.dirname(path.resolve(output));
  const base = path.basename(output);
  return (abs) =>
    path.dirname(abs) === dir &&
    (path.basename(abs) === base || path.basename(abs).startsWith(`.${base}.tmp-`) || path.basename(abs) === `${base}.s3-upload`);
}

function buildIndex(kind: IndexKind, location: string, source: ArchiveSource, data: ArchiveData, spanSize: number): ClipIndex {
  return {
    kind,
    image: {
      location,
      reference: source.reference,
      // The data's digest identifies an archive (start-up profiles are matched on it).
      manifestDigest: data.layer.digest,
      manifestMediaType: '',
      configDigest: source.configDigest,
      platform: source.platform,
      config: source.config,
      indexedAt: new Date().toISOString(),
      indexedBy: `clip ${VERSION}`,
      spanSize,
    },
    layers: [data.layer],
    ...data.tree,
  };
}

function summarize(
  opts: ArchiveOptions,
  index: ClipIndex,
  skipped: SkippedEntry[],
  fileBytes: number,
  indexBytes: number,
  started: number,
): ArchiveSummary {
  const spans = index.layers[0]!.spans;
  return {
    output: opts.output,
    kind: index.kind,
    source: index.image.reference,
    location: index.image.location,
    entries: index.nodes.length,
    files: index.nodes.filter((n) => n.type === 'file').length,
    skipped,
    fileBytes,
    uncompressedBytes: spans.uncompressedSize,
    dataBytes: spans.compressedSize,
    spans: spans.checkpoints.length,
    indexBytes,
    seconds: (performance.now() - started) / 1000,
  };
}

/** Archives `source` into opts.output (and S3 with opts.s3). */
export async function createArchive(source: string, opts: ArchiveOptions): Promise<ArchiveSummary> {
  const spanSize = checkOptions(opts);
  const dir = path.dirname(path.resolve(opts.output));
  if (!(await stat(dir).catch(() => undefined))?.isDirectory())
    throw new ClipError('NOT_FOUND', `cannot write ${opts.output}: ${dir} is not a directory`);
  if ((await stat(opts.output).catch(() => undefined))?.isDirectory())
    throw new ClipError('BAD_ARGUMENT', `cannot write ${opts.output}: it is a directory`);
  return opts.s3 !== undefined ? archiveToS3(source, opts, spanSize) : archiveToFile(source, opts, spanSize);
}

async function archiveSource(source: string, opts: ArchiveOptions, skipped: SkippedEntry[]): Promise<ArchiveSource> {
  return openArchiveSource(source, {
    ...opts,
    exclude: excluder(opts.output),
    // Its own callback, not the archive's (whose first argument is the phase): the spread above passed that one on.
    onProgress: (read, total) => opts.onProgress?.('indexing', read, total),
    onSkip: (s) => {
      skipped.push(s);
      opts.onSkip?.(s);
    },
  });
}

async function writeData(
  src: ArchiveSource,
  write: (b: Buffer) => Promise<void>,
  opts: ArchiveOptions,
  spanSize: number,
  skipped: SkippedEntry[],
): Promise<ArchiveData> {
  let done = 0;
  opts.onProgress?.('archiving', 0, src.fileBytes);
  // Checked at every write: archiving stops within one chunk of an abort.
  const sink = async (b: Buffer): Promise<void> => {
    opts.signal?.throwIfAborted();
    await write(b);
  };
  return writeArchiveData(src.entries, sink, {
    spanSize,
    ...(opts.level !== undefined ? { level: opts.level } : {}),
    onSkip: (s) => {
      skipped.push(s);
      opts.onSkip?.(s);
    },
    onFileBytes: (n) => {
      done += n;
      opts.onProgress?.('archiving', done, src.fileBytes);
    },
  });
}

/** A sink that appends to an open file from `start`. */
function fileSink(
  fh: import('node:fs/promises').FileHandle,
  start: number,
): { sink: (b: Buffer) => Promise<void>; position: () => number } {
  let pos = start;
  return {
    sink: async (b) => {
      let off = 0;
      while (off < b.length) {
        const { bytesWritten } = await fh.write(b, off, b.length - off, pos);
        off += bytesWritten;
        pos += bytesWritten;
      }
    },
    position: () => pos,
  };
}

async function archiveToFile(source: string, opts: ArchiveOptions, spanSize: number): Promise<ArchiveSummary> {
  const started = performance.now();
  const skipped: SkippedEntry[] = [];
  await checkOutputFile(opts.output);
  const tmp = path.join(path.dirname(opts.output), `.${path.basename(opts.output)}.tmp-${process.pid}-${randomBytes(4).toString('hex')}`);
  const src = await archiveSource(source, opts, skipped);
  let fh;
  try {
    fh = await open(tmp, 'wx', 0o644);
    // The header is written last, once the data's length and the index are known.
    const out = fileSink(fh, ARCHIVE_HEADER_SIZE);
    const data = await writeData(src, out.sink, opts, spanSize, skipped);
    const index = buildIndex('archive', 'archive:', src, data, spanSize);
    const { header, body } = encodeIndexParts(index);
    await fileSink(fh, out.position()).sink(body);
    await fh.write(header, 0, header.length, 0);
    await fh.sync();
    await fh.close();
    fh = undefined;
    // Again at the end: the path may have become a device or a link during a long run.
    await checkOutputFile(opts.output);
    await rename(tmp, opts.output);
    return summarize(opts, index, skipped, src.fileBytes, (await stat(opts.output)).size - data.layer.spans.compressedSize, started);
  } catch (e) {
    await fh?.close().catch(() => undefined);
    await rm(tmp, { force: true });
    throw e;
  } finally {
    await src.close();
  }
}

/** Fails before any archiving when S3 refuses the credentials or cannot be reached. */
async function preflight(client: import('../s3/client.js').S3Client): Promise<void> {
  const res = await client.request('HEAD');
  await res.body.dump().catch(() => undefined);
  if (res.status === 401 || res.status === 403) throw await client.error(res, 'access to');
  if (res.status >= 500) throw await client.error(res, 'access to');
}

async function archiveToS3(source: string, opts: ArchiveOptions, spanSize: number): Promise<ArchiveSummary> {
  const started = performance.now();
  const [{ parseS3Url, formatS3Location }, { S3Client }, upload] = await Promise.all([
    import('../s3/location.js'),
    import('../s3/client.js'),
    import('../s3/multipart-upload.js'),
  ]);
  const client = await S3Client.open({
    ...parseS3Url(opts.s3!),
    ...(opts.region ? { region: opts.region } : {}),
    ...(opts.endpoint ? { endpoint: opts.endpoint } : {}),
  });
  try {
    await preflight(client);
    const target = formatS3Location(client.location);
    const staging = `${opts.output}.s3-upload`;
    const files = { data: path.join(staging, 'data.gz'), index: path.join(staging, 'index.clip'), state: path.join(staging, 'state.json') };
    const skipped: SkippedEntry[] = [];
    let state: import('../s3/multipart-upload.js').UploadState | undefined;
    let summaryBase: { index: ClipIndex; fileBytes: number } | undefined;
    const previous = await readFile(files.state, 'utf8').then(
      (t) => JSON.parse(t) as import('../s3/multipart-upload.js').UploadState,
      () => undefined,
    );
    if (previous && previous.clipUpload === 1) {
      if (previous.target !== target) {
        throw new ClipError(
          'BAD_ARGUMENT',
          `${staging} holds an unfinished upload to ${previous.target}, not ${target}: run that command again to finish it, or delete ${staging} to start over`,
        );
      }
      const { loadIndex } = await import('../index/load.js');
      const index = await loadIndex(files.index);
      const size = (await stat(files.data)).size;
      if (size !== previous.size)
        throw new ClipError(
          'IO',
          `${files.data} has ${size} bytes, the upload state says ${previous.size}: delete ${staging} to start over`,
        );
      state = previous;
      summaryBase = { index, fileBytes: index.nodes.reduce((a, n) => a + (n.type === 'file' ? n.size : 0), 0) };
      opts.onResume?.(staging);
    } else {
      // Nothing to resume (or an archiving run that died half-way): archive anew.
      await rm(staging, { recursive: true, force: true });
      await mkdir(staging, { recursive: true });
      let src: ArchiveSource;
      try {
        src = await archiveSource(source, opts, skipped);
      } catch (e) {
        await rm(staging, { recursive: true, force: true });
        throw e;
      }
      try {
        const fh = await open(files.data, 'w', 0o600);
        let data;
        try {
          data = await writeData(src, fileSink(fh, 0).sink, opts, spanSize, skipped);
          await fh.sync();
        } finally {
          await fh.close();
        }
        const index = buildIndex('s3', target, src, data, spanSize);
        const { header, body } = encodeIndexParts(index);
        await writeFileAtomic(files.index, [header, body]);
        state = upload.newUploadState(target, data.layer.spans.compressedSize, data.layer.digest);
        await writeFileAtomic(files.state, Buffer.from(JSON.stringify(state)));
        summaryBase = { index, fileBytes: src.fileBytes };
      } catch (e) {
        // Nothing to resume yet (no upload state): the staging directory is only litter.
        await rm(staging, { recursive: true, force: true });
        throw e;
      } finally {
        await src.close();
      }
    }
    let result;
    try {
      result = await upload.uploadFile(
        client,
        files.data,
        state,
        (s) => writeFileAtomic(files.state, Buffer.from(JSON.stringify(s)), { sync: false }),
        {
          onProgress: (done, total) => opts.onProgress?.('uploading', done, total),
        },
      );
    } catch (e) {
      const saved = await readFile(files.state, 'utf8').then(
        (t) => JSON.parse(t) as typeof state,
        () => state,
      );
      const n = Object.keys(saved.parts).length;
      const message = e instanceof Error ? e.message : String(e);
      throw new ClipError(
        e instanceof ClipError ? e.code : 'IO',
        `upload to ${client.name} failed: ${message}\n  ${n} of ${Math.max(1, Math.ceil(state.size / state.partSize))} parts are uploaded; run the same command again to resume (state in ${staging})`,
        { cause: e },
      );
    }
    await checkOutputFile(opts.output);
    await rename(files.index, opts.output);
    await rm(staging, { recursive: true, force: true });
    const s = summarize(opts, summaryBase.index, skipped, summaryBase.fileBytes, (await stat(opts.output)).size, started);
    return { ...s, uploadedParts: result.uploadedParts, resumedParts: result.resumedParts };
  } finally {
    await client.close();
  }
}
