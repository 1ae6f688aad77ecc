// An exclusive lock across clip processes: one node daemon per state dir.
// Node has no flock(2), so flock(1) takes it on a descriptor we lend it as fd
// 3: the lock belongs to the open file, which stays ours after flock exits.
// The kernel drops it when we close the file or die: no stale lock to take over.

import { spawn } from 'node:child_process';
import { closeSync, mkdirSync, openSync } from 'node:fs';
import path from 'node:path';
import { ClipError } from '../errors.js';

/** What flock(1) exits with when the wait runs out (its default, 1, is also its error status). */
const TIMED_OUT = 75;

async function lock(fd: number, file: string, waitMs: number): Promise<void> {
  const seconds = String(Math.ceil(waitMs / 1000));
  const wait = waitMs === 0 ? ['--nonblock'] : ['--wait', seconds];
  const child = spawn('flock', ['--exclusive', ...wait, '--conflict-exit-code', String(TIMED_OUT), '3'], {
    stdio: ['ignore', 'ignore', 'pipe', fd],
  });
  let stderr = '';
  child.stderr!.setEncoding('utf8').on('data', (d: string) => (stderr += d));
  const code = await new Promise<number | null>((resolve, reject) => {
    child.on('error', (e) => reject(new ClipError('IO', `cannot run flock(1) to lock ${file}: ${e.message}`)));
    child.on('close', resolve);
  });
  if (code === TIMED_OUT) {
    throw new ClipError('IO', `another clip process still holds ${file} after ${seconds} s`);
  }
  if (code !== 0) throw new ClipError('IO', `cannot lock ${file}: ${stderr.trim() || `flock exit status ${code}`}`);
}

/**
 * Takes the lock file `file` for as long as this process lives (or until the
 * returned descriptor is closed): one node daemon per state dir. Fails with a
 * ClipError if another process holds it beyond `waitMs`.
 */
export async function holdLock(file: string, waitMs: number): Promise<number> {
  mkdirSync(path.dirname(file), { recursive: true, mode: 0o700 });
  const fd = openSync(file, 'a', 0o600);
  try {
    await lock(fd, file, waitMs);
    return fd;
  } catch (e) {
    closeSync(fd);
    throw e;
  }
}
