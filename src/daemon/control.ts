// `clip daemon --upgrade` and `--stop`: asks the running daemon, then waits
// until it has done it (a new serving process answers; the daemon is gone).

import { ClipError } from '../errors.js';
import type { PsReply } from './api.js';
import { callDaemon, daemonAnswers } from './client.js';

const WAIT_MS = 60_000;

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** Resolves with the pid of the new serving process. */
export async function upgradeDaemon(stateDir: string): Promise<number> {
  const { pid: old } = await callDaemon<{ pid: number }>(stateDir, 'POST', '/v1/upgrade');
  const until = Date.now() + WAIT_MS;
  while (Date.now() < until) {
    const ps = await callDaemon<PsReply>(stateDir, 'GET', '/v1/ps');
    if (ps.daemon.pid !== old) return ps.daemon.pid;
    await sleep(50);
  }
  throw new ClipError('IO', `the clip daemon of ${stateDir} still serves from pid ${old} after ${WAIT_MS / 1000} s; see its log`);
}

export async function stopDaemon(stateDir: string): Promise<void> {
  const ps = await callDaemon<PsReply>(stateDir, 'GET', '/v1/ps');
  await callDaemon(stateDir, 'POST', '/v1/stop');
  const until = Date.now() + WAIT_MS;
  while (Date.now() < until) {
    let alive = true;
    try {
      process.kill(ps.daemon.supervisor, 0);
    } catch {
      alive = false;
    }
    if (!alive && !(await daemonAnswers(stateDir))) return;
    await sleep(50);
  }
  throw new ClipError('IO', `the clip daemon of ${stateDir} (pid ${ps.daemon.supervisor}) has not stopped after ${WAIT_MS / 1000} s`);
}
