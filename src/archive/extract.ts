// `clip extract`: writes the tree of any .clip file (image index, local or S3
// archive) back to disk exactly. The tree is streamed as a tar (the same
// writer clip archive uses) into GNU tar, which restores what Node cannot:
// nanosecond times (Node's utimes goes through a double), xattrs, device
// nodes, ownership before setuid bits, directory times after their contents.
// Extraction goes to a temp directory next to DIR, renamed into place when
// complete: DIR never holds half a tree.

import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdir, readdir, rename, rm, stat } from 'node:fs/promises';
import path from 'node:path';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { FileReader } from '../content/file-reader.js';
import { ClipError } from '../errors.js';
import { loadIndex } from '../index/load.js';
import type { RegistryOptions } from '../oci/types.js';
import { tarStream } from './tar-stream.js';
import { treeEntries, treeFileBytes } from './tree-source.js';

export interface ExtractOptions extends RegistryOptions {
  onProgress?: (done: number, total: number) => void;
  /** Stops extracting (the CLI aborts it on SIGINT/SIGTERM): tar is stopped, the temp directory removed, the promise rejects with the signal's reason. */
  signal?: AbortSignal;
}

export interface ExtractSummary {
  dir: string;
  entries: number;
  fileBytes: number;
  seconds: number;
}

const TAR_ARGS = ['-x', '-f', '-', '--numeric-owner', '--same-owner', '--same-permissions', '--xattrs', '--xattrs-include=*'];

async function checkTarget(dir: string): Promise<void> {
  const st = await stat(dir).catch(() => undefined);
  if (st === undefined) {
    const parent = await stat(path.dirname(path.resolve(dir))).catch(() => undefined);
    if (!parent?.isDirectory())
      throw new ClipError('NOT_FOUND', `cannot extract to ${dir}: ${path.dirname(path.resolve(dir))} is not a directory`);
    return;
  }
  if (!st.isDirectory()) throw new ClipError('BAD_ARGUMENT', `cannot extract to ${dir}: it exists and is not a directory`);
  if ((await readdir(dir)).length > 0) throw new ClipError('BAD_ARGUMENT', `cannot extract to ${dir}: it is not empty`);
}

export async function extractArchive(file: string, dir: string, opts: ExtractOptions = {}): Promise<ExtractSummary> {
  const started = performance.now();
  await checkTarget(dir);
  const index = await loadIndex(file);
  const reader = await FileReader.open(index, opts);
  const target = path.resolve(dir);
  const tmp = path.join(path.dirname(target), `.${path.basename(target)}.tmp-extract-${process.pid}-${randomBytes(4).toString('hex')}`);
  try {
    await mkdir(tmp, { mode: 0o700 });
    const total = treeFileBytes(index);
    let done = 0;
    const entries = treeEntries(index, reader);
    await untar(tmp, Readable.from(tarStream(entries, { onFileBytes: (n) => opts.onProgress?.((done += n), total) })), opts.signal);
    await rename(tmp, target);
    return { dir: target, entries: index.nodes.length, fileBytes: total, seconds: (performance.now() - started) / 1000 };
  } catch (e) {
    await rm(tmp, { recursive: true, force: true });
    throw e;
  } finally {
    await reader.close();
  }
}

/** Pipes a tar stream into GNU tar extracting into `dir`; fails with tar's own words. */
async function untar(dir: string, tar: Readable, signal?: AbortSignal): Promise<void> {
  signal?.throwIfAborted();
  const child = spawn('tar', [...TAR_ARGS, '-C', dir], { stdio: ['pipe', 'ignore', 'pipe'] });
  // Aborted: tar must be gone before its directory is removed, or it keeps writing into it.
  const stop = (): void => {
    child.kill('SIGKILL');
    tar.destroy();
  };
  signal?.addEventListener('abort', stop, { once: true });
  let stderr = '';
  child.stderr.on('data', (b: Buffer) => (stderr += b.toString()));
  const exited = new Promise<number>((resolve, reject) => {
    child.on('error', (e: NodeJS.ErrnoException) =>
      reject(e.code === 'ENOENT' ? new ClipError('UNSUPPORTED', 'clip extract needs GNU tar (Debian package tar)') : e),
    );
    child.on('close', (code) => resolve(code ?? 1));
  });
  // If tar dies early, writing to its stdin fails: its exit status and message are the real story.
  const fed = pipeline(tar, child.stdin).catch((e: unknown) => e);
  const [code, feedError] = await Promise.all([exited, fed]).finally(() => signal?.removeEventListener('abort', stop));
  signal?.throwIfAborted();
  if (code !== 0) throw new ClipError('IO', `tar could not extract the tree (exit ${code}): ${stderr.trim() || 'no message'}`);
  if (feedError instanceof ClipError) throw feedError;
  if (feedError) throw new ClipError('IO', `writing the tree to tar failed: ${(feedError as Error).message}`);
}
