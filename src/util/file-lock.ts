// A lock shared by processes on one machine: a file created exclusively
// (O_EXCL) that holds the owner's pid and a random token. A lock whose owner
// died (pid gone) or that is older than `staleMs` is broken, so a crashed
// holder never blocks the others for long.

import { randomBytes } from 'node:crypto';
import { link, readFile, rename, rm, stat, writeFile } from 'node:fs/promises';
import { isAlive } from './process.js';

export interface FileLockOptions {
  /** A lock held longer than this (ms) is taken to be abandoned. Default 30 s. */
  staleMs?: number;
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** Runs `fn` while holding the lock file `file` (waits for it). */
export async function withFileLock<T>(file: string, fn: () => Promise<T>, opts: FileLockOptions = {}): Promise<T> {
  const token = `${process.pid} ${randomBytes(8).toString('hex')}`;
  for (let wait = 1; ; wait = Math.min(2 * wait, 10)) {
    try {
      await writeFile(file, token, { flag: 'wx', mode: 0o600 });
      break;
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw e;
    }
    await breakIfStale(file, opts.staleMs ?? 30_000);
    await sleep(wait);
  }
  try {
    return await fn();
  } finally {
    // Only our own lock: if ours was broken as stale, the file is someone else's now.
    if ((await readFile(file, 'utf8').catch(() => '')) === token) await rm(file, { force: true });
  }
}

async function breakIfStale(file: string, staleMs: number): Promise<void> {
  const [content, st] = await Promise.all([readFile(file, 'utf8').catch(() => undefined), stat(file).catch(() => undefined)]);
  if (content === undefined || st === undefined) return;
  const pid = Number(content.split(' ')[0]);
  // An empty file is a lock being created right now: only its age can make it stale.
  const dead = content !== '' && Number.isSafeInteger(pid) && pid > 0 && !isAlive(pid);
  if (!dead && Date.now() - st.mtimeMs < staleMs) return;
  // Move it aside first, so that of several processes breaking it at once only one succeeds.
  const aside = `${file}.stale-${randomBytes(4).toString('hex')}`;
  try {
    await rename(file, aside);
  } catch {
    return;
  }
  // If what was moved is not the lock judged stale (a new owner took it meanwhile), put it back.
  if ((await readFile(aside, 'utf8').catch(() => content)) !== content) await link(aside, file).catch(() => undefined);
  await rm(aside, { force: true });
}
