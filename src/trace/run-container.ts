// Runs the traced process with runc in a bundle of its own over a rootfs
// directory, with no network (a new network namespace: only lo), until it
// exits or the timeout: a server never exits, so it is killed then (killing
// the namespace's init ends every process in it). Its output goes to `output`.

import { execFile, spawn } from 'node:child_process';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import type { Writable } from 'node:stream';
import { promisify } from 'node:util';
import { ClipError } from '../errors.js';
import type { TraceProcess } from './command.js';
import type { NumericUser } from './user.js';

const exec = promisify(execFile);

/** How long runc may take to end after the container was killed. */
const KILL_GRACE_MS = 10_000;

export interface RunOptions {
  rootfs: string;
  /** A directory of its own: the bundle (config.json) and runc's state go here. */
  dir: string;
  process: TraceProcess;
  user: NumericUser;
  timeoutMs: number;
  output: Writable;
  signal?: AbortSignal;
}

export interface RunResult {
  /** The exit code; undefined when it was killed (timeout, interrupt). */
  code?: number;
  timedOut: boolean;
}

async function runc(args: string[]): Promise<void> {
  await exec('runc', args, { timeout: 30_000 });
}

/** runc's default spec, changed to run `p` on `rootfs`, writable, without network. */
async function writeSpec(bundle: string, opts: RunOptions): Promise<void> {
  try {
    await runc(['spec', '--bundle', bundle]);
  } catch (e) {
    const err = e as NodeJS.ErrnoException & { stderr?: string };
    throw new ClipError(
      'IO',
      err.code === 'ENOENT' ? 'clip index --trace needs runc on PATH' : `runc spec failed: ${err.stderr ?? err.message}`,
    );
  }
  const file = path.join(bundle, 'config.json');
  const spec = JSON.parse(await readFile(file, 'utf8'));
  spec.root = { path: opts.rootfs, readonly: false };
  spec.hostname = 'clip-trace';
  spec.process.terminal = false;
  spec.process.args = opts.process.args;
  spec.process.env = opts.process.env;
  spec.process.cwd = opts.process.cwd;
  spec.process.user = { uid: opts.user.uid, gid: opts.user.gid };
  // A network namespace of its own and nothing joined: the trace sees no network but lo.
  const namespaces = (spec.linux.namespaces as { type: string; path?: string }[]).filter((n) => n.type !== 'network');
  spec.linux.namespaces = [...namespaces, { type: 'network' }];
  await writeFile(file, JSON.stringify(spec));
}

export async function runContainer(opts: RunOptions): Promise<RunResult> {
  const bundle = path.join(opts.dir, 'bundle');
  const state = path.join(opts.dir, 'runc');
  await mkdir(bundle, { recursive: true });
  await writeSpec(bundle, opts);
  const id = `clip-trace-${process.pid}-${Date.now()}`;
  const child = spawn('runc', ['--root', state, 'run', '--bundle', bundle, id], { stdio: ['ignore', 'pipe', 'pipe'] });
  child.stdout.pipe(opts.output, { end: false });
  child.stderr.pipe(opts.output, { end: false });
  let timedOut = false;
  let killed = false;
  const kill = (): void => {
    if (killed) return;
    killed = true;
    // The container's init first (its processes end with it); runc itself if there is no container yet.
    runc(['--root', state, 'kill', id, 'KILL']).catch(() => child.kill('SIGKILL'));
    setTimeout(() => child.kill('SIGKILL'), KILL_GRACE_MS).unref();
  };
  const timer = setTimeout(() => {
    timedOut = true;
    kill();
  }, opts.timeoutMs);
  opts.signal?.addEventListener('abort', kill, { once: true });
  try {
    const code = await new Promise<number | null>((resolve, reject) => {
      child.once('error', (e: NodeJS.ErrnoException) =>
        reject(new ClipError('IO', e.code === 'ENOENT' ? 'clip index --trace needs runc on PATH' : `cannot run runc: ${e.message}`)),
      );
      child.once('close', (c) => resolve(c));
    });
    return killed || code === null ? { timedOut } : { code, timedOut };
  } finally {
    clearTimeout(timer);
    opts.signal?.removeEventListener('abort', kill);
    await runc(['--root', state, 'delete', '--force', id]).catch(() => undefined);
  }
}
