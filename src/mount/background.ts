// Starts the mount daemon in the background: the same clip binary with
// --foreground, detached, logging to a file under the state directory, and
// returns once the mount answers (or with the daemon's error).

import { spawn } from 'node:child_process';
import { closeSync, fstatSync, mkdirSync, openSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { ClipError } from '../errors.js';
import type { DaemonOptions } from './daemon.js';
import { settingsToFlags } from './settings.js';
import { logPath } from './state.js';

const CLIP_BIN = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../../bin/clip.js');

/** What the daemon is started with; how it reports back is this module's business. */
export type BackgroundMountOptions = Omit<DaemonOptions, 'readyFd'>;

export interface BackgroundMount {
  mountpoint: string;
  pid: number;
  log: string;
}

export async function startBackgroundMount(opts: BackgroundMountOptions): Promise<BackgroundMount> {
  const log = logPath(opts.mountpoint);
  mkdirSync(path.dirname(log), { recursive: true, mode: 0o700 });
  const logFd = openSync(log, 'a', 0o600);
  // Where this daemon's own output starts in the shared log: its last words are relayed if it dies before ready.
  const logStart = fstatSync(logFd).size;
  const args = [CLIP_BIN, 'mount', opts.index, opts.mountpoint, '--foreground', '--ready-fd', '3', ...settingsToFlags(opts.settings)];
  if (opts.registry.plainHttp) args.push('--plain-http');
  if (opts.shared) args.push('--shared', opts.shared);
  // Credentials go through the environment, never the command line (ps shows it).
  const env = { ...process.env };
  // Span fetches inflate and hash on the libuv pool; the size must be set
  // before the daemon's pool starts, so in its environment.
  env['UV_THREADPOOL_SIZE'] ??= '16';
  if (opts.registry.username !== undefined) env['CLIP_USERNAME'] = opts.registry.username;
  if (opts.registry.password !== undefined) env['CLIP_PASSWORD'] = opts.registry.password;
  const child = spawn(process.execPath, args, { detached: true, stdio: ['ignore', logFd, logFd, 'pipe'], env });
  closeSync(logFd);
  const status = child.stdio[3] as NodeJS.ReadableStream;
  const message = await new Promise<string>((resolve) => {
    let text = '';
    status.on('data', (b: Buffer) => (text += b.toString()));
    status.on('end', () => resolve(text.trim()));
    status.on('error', () => resolve(text.trim()));
  });
  if (message !== 'ready') {
    await new Promise((r) => (child.exitCode !== null ? r(null) : child.once('exit', r)));
    const own = message.replace(/^error: /, '') || lastClipLine(log, logStart);
    throw new ClipError('IO', own ?? `the mount daemon exited (${child.exitCode ?? child.signalCode}); see ${log}`);
  }
  child.unref();
  return { mountpoint: opts.mountpoint, pid: child.pid!, log };
}

/** The daemon's last `clip: ...` line in its log from `start` (how the CLI reports an error before the ready fd is written). */
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
