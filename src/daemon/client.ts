// The CLI's side of the daemon API: requests over the unix socket, and the
// start of a daemon in the background when none answers (what `clip mount`
// does, so that a node without the service still works with one command).

import { spawn } from 'node:child_process';
import { closeSync, fstatSync, mkdirSync, openSync, readFileSync } from 'node:fs';
import http from 'node:http';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { ClipError, type ClipErrorCode } from '../errors.js';
import type { ApiError } from './api.js';
import { isSameProcess } from '../mount/process-identity.js';
import { daemonPaths, type DaemonPidFile } from './served-images.js';

const CLIP_BIN = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../../bin/clip.js');

/** How long a request waits for a daemon that is restarting its serving process (the socket is back within a second). */
const RETRY_MS = 15_000;
/** How long a daemon started here may take to answer. */
const START_MS = 30_000;

export class DaemonUnreachable extends Error {}

function once(stateDir: string, method: string, route: string, body?: unknown): Promise<{ status: number; json: unknown }> {
  return new Promise((resolve, reject) => {
    const data = body === undefined ? undefined : Buffer.from(JSON.stringify(body));
    const req = http.request(
      {
        socketPath: daemonPaths(stateDir).socket,
        path: route,
        method,
        headers: data ? { 'content-type': 'application/json', 'content-length': data.length } : {},
      },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => {
          try {
            resolve({ status: res.statusCode ?? 0, json: JSON.parse(Buffer.concat(chunks).toString('utf8')) });
          } catch {
            reject(new ClipError('IO', `the clip daemon answered ${route} with something that is not JSON`));
          }
        });
        res.on('error', reject);
      },
    );
    req.on('error', (e: NodeJS.ErrnoException) => {
      // No socket, nobody listening: no daemon (or one between two serving processes).
      // A reset of a GET: the serving process died under it (a takeover follows).
      if (e.code === 'ENOENT' || e.code === 'ECONNREFUSED' || (method === 'GET' && e.code === 'ECONNRESET'))
        reject(new DaemonUnreachable(e.message));
      else reject(new ClipError('IO', `the clip daemon did not answer ${route}: ${e.message}`));
    });
    req.end(data);
  });
}

/**
 * One API call; a daemon that is replacing its serving process (unreachable, or 503) is waited for.
 * `startIfNone`: when no daemon runs at all, throw DaemonUnreachable (the caller starts one) instead of a ClipError.
 */
export async function callDaemon<T>(
  stateDir: string,
  method: string,
  route: string,
  body?: unknown,
  opts: { startIfNone?: boolean } = {},
): Promise<T> {
  const until = Date.now() + RETRY_MS;
  for (;;) {
    let r: { status: number; json: unknown };
    try {
      r = await once(stateDir, method, route, body);
    } catch (e) {
      if (e instanceof DaemonUnreachable && Date.now() < until && (await pidFileAlive(stateDir))) {
        await sleep(50);
        continue;
      }
      if (e instanceof DaemonUnreachable && opts.startIfNone) throw e;
      if (e instanceof DaemonUnreachable)
        throw new ClipError('IO', `no clip daemon runs for state dir ${stateDir} (start one with clip daemon, or clip mount starts one)`);
      throw e;
    }
    if (r.status === 503 && Date.now() < until) {
      await sleep(100);
      continue;
    }
    if (r.status >= 200 && r.status < 300) return r.json as T;
    const err = r.json as ApiError;
    throw new ClipError((err.code as ClipErrorCode) ?? 'IO', err.error ?? `the clip daemon answered ${r.status}`);
  }
}

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

/** Whether the daemon's pid file names a live process (then an unreachable socket is a restart in progress). */
export async function pidFileAlive(stateDir: string): Promise<boolean> {
  try {
    const p = JSON.parse(readFileSync(daemonPaths(stateDir).pidFile, 'utf8')) as DaemonPidFile;
    // The same process, not only the same pid: pids are reused.
    return isSameProcess(p.pid, p.identity);
  } catch {
    return false;
  }
}

/** The supervisor pid the daemon's pid file names, if any. */
async function daemonPid(stateDir: string): Promise<number | undefined> {
  try {
    return (JSON.parse(readFileSync(daemonPaths(stateDir).pidFile, 'utf8')) as { pid: number }).pid;
  } catch {
    return undefined;
  }
}

/** Whether a daemon answers on the state dir's socket now. */
export async function daemonAnswers(stateDir: string): Promise<boolean> {
  try {
    const r = await once(stateDir, 'GET', '/healthz');
    return r.status === 200;
  } catch {
    return false;
  }
}

/**
 * Makes sure a daemon serves `stateDir`: if none answers, starts `clip daemon
 * --idle-exit` (it ends with its last mount) with `flags`, in the background
 * with its log under the state dir, and waits until it answers.
 */
export async function ensureDaemon(stateDir: string, flags: string[]): Promise<void> {
  // A daemon that is ending (its last mount went) still holds the state dir for a moment: start again after it.
  for (let attempt = 1; ; attempt++) {
    if (await daemonAnswers(stateDir)) return;
    const outcome = await startDaemon(stateDir, flags);
    if (outcome === 'answers') return;
    if (attempt === 5 || !/already runs/.test(outcome)) throw new ClipError('IO', outcome);
    await sleep(200 * attempt);
  }
}

/** Starts a daemon and waits until one answers ('answers'), or returns why the one started did not. */
async function startDaemon(stateDir: string, flags: string[]): Promise<string> {
  const log = daemonPaths(stateDir).log;
  mkdirSync(path.dirname(log), { recursive: true, mode: 0o700 });
  const logFd = openSync(log, 'a', 0o600);
  const logStart = fstatSync(logFd).size;
  const env = { ...process.env, CLIP_STATE_DIR: stateDir };
  const child = spawn(process.execPath, [CLIP_BIN, 'daemon', '--idle-exit', '--log-file', log, ...flags], {
    detached: true,
    stdio: ['ignore', logFd, logFd],
    env,
  });
  closeSync(logFd);
  let exited = false;
  child.once('exit', () => (exited = true));
  child.on('error', () => (exited = true));
  const until = Date.now() + START_MS;
  while (Date.now() < until) {
    if (await daemonAnswers(stateDir)) {
      // Another `clip mount` started the daemon that answers: ours would only wait to take over the state dir later.
      if (!exited && (await daemonPid(stateDir)) !== child.pid) child.kill('SIGTERM');
      child.unref();
      return 'answers';
    }
    if (exited) {
      // Another `clip mount` may have started one first (this one then exits): it may answer in a moment.
      for (let i = 0; i < 20 && (await pidFileAlive(stateDir)); i++) {
        if (await daemonAnswers(stateDir)) return 'answers';
        await sleep(100);
      }
      return lastClipLine(log, logStart) ?? `the clip daemon did not start; see ${log}`;
    }
    await sleep(25);
  }
  return `the clip daemon started for ${stateDir} does not answer after ${START_MS / 1000} s; see ${log}`;
}

/** The daemon's last `clip: ...` line in its log from `start` (its error, when it exits before answering). */
function lastClipLine(log: string, start: number): string | undefined {
  let text: string;
  try {
    text = readFileSync(log).subarray(start).toString('utf8');
  } catch {
    return undefined;
  }
  const line = text
    .split('\n')
    .reverse()
    .find((l) => l.startsWith('clip: '));
  return line?.slice('clip: '.length);
}
