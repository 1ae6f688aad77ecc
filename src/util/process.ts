// Whether a process runs, for everything that keeps a pid on disk (mount
// records, lock files): signal 0, and a zombie counts as gone.

import { readFileSync } from 'node:fs';

/** Whether a process is alive (signal 0 only checks); says nothing of which process it is (mount/state.ts isDaemonAlive checks that). */
export function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
  // A daemon that exited stays a zombie until its parent (often init, after the
  // mount command exited) reaps it; signal 0 still reaches a zombie.
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const state = stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3);
    return state !== 'Z' && state !== 'X';
  } catch (e) {
    return (e as NodeJS.ErrnoException).code !== 'ENOENT'; // gone meanwhile
  }
}
