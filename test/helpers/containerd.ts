// A throwaway containerd (Debian's 1.6) for tests: its own root, state, socket
// and config under a short temp dir, clip's snapshotter configured as a proxy
// plugin, CRI off unless asked (`extraConfig` can turn it on and configure it),
// stopped by its pid. `ctr` runs against it.

import { readMounts } from '../../src/fuse/index.js';
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, openSync, closeSync, readFileSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { run, type RunResult } from './exec.js';

export interface ContainerdOptions {
  /** The clip snapshotter's socket: configured as `[proxy_plugins.clip]`. */
  snapshotterSocket?: string;
  /** Keep the CRI plugin (disabled otherwise: it needs nothing in these tests and slows the start). */
  cri?: boolean;
  /** TOML appended to the config as is (e.g. CRI settings). */
  extraConfig?: string;
  /**
   * Namespace `ctr` uses (default "clip-test-" and random hex: runc keeps its
   * state in /run/containerd/runc/NAMESPACE whatever containerd's state dir,
   * so two containerds using one namespace would share container IDs).
   */
  namespace?: string;
}

export interface ContainerdHandle {
  /** Short temp dir holding root/, state/, containerd.sock, config.toml, containerd.log. */
  dir: string;
  socket: string;
  root: string;
  state: string;
  namespace: string;
  pid: number;
  logFile: string;
  /** `ctr --address SOCKET -n NAMESPACE ARGS`; rejects on a non-zero exit. */
  ctr(args: string[], opts?: { timeoutMs?: number }): Promise<RunResult>;
  /** Stops containerd (SIGTERM, then SIGKILL) by its pid; the dir stays. */
  stop(): Promise<void>;
  /** Starts it again on the same dir, config and socket. */
  restart(): Promise<void>;
  /** Stops it and removes its dir (after unmounting anything it left under it). */
  destroy(): Promise<void>;
}

const CONTAINERD_BIN = '/usr/bin/containerd';

function configToml(h: { root: string; state: string; socket: string }, opts: ContainerdOptions): string {
  const lines = [
    'version = 2',
    `root = ${JSON.stringify(h.root)}`,
    `state = ${JSON.stringify(h.state)}`,
    ...(opts.cri ? [] : ['disabled_plugins = ["io.containerd.grpc.v1.cri"]']),
    '[grpc]',
    `  address = ${JSON.stringify(h.socket)}`,
    '[ttrpc]',
    `  address = ${JSON.stringify(`${h.socket}.ttrpc`)}`,
    '[debug]',
    '  level = "info"',
  ];
  if (opts.snapshotterSocket !== undefined)
    lines.push(
      '[proxy_plugins]',
      '  [proxy_plugins.clip]',
      '    type = "snapshot"',
      `    address = ${JSON.stringify(opts.snapshotterSocket)}`,
    );
  return lines.join('\n') + '\n' + (opts.extraConfig ?? '');
}

async function waitReady(h: ContainerdHandle, child: ChildProcess, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (child.exitCode !== null) throw new Error(`containerd exited (${child.exitCode}):\n${tail(h.logFile)}`);
    if (existsSync(h.socket)) {
      const ok = await run('ctr', ['--address', h.socket, 'version'], { timeoutMs: 5000 }).then(
        () => true,
        () => false,
      );
      if (ok) return;
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`containerd did not start in ${timeoutMs} ms:\n${tail(h.logFile)}`);
}

function tail(file: string): string {
  try {
    return readFileSync(file, 'utf8').split('\n').slice(-30).join('\n');
  } catch {
    return '(no log)';
  }
}

/** Starts a containerd of its own; the caller must `destroy()` it in `after`. */
export async function startContainerd(opts: ContainerdOptions = {}): Promise<ContainerdHandle> {
  // Short: the socket path (and the shims' ones derived from it) must fit sun_path.
  const dir = await mkdtemp('/tmp/ctrd-');
  const socket = path.join(dir, 'containerd.sock');
  const config = path.join(dir, 'config.toml');
  const logFile = path.join(dir, 'containerd.log');
  let child: ChildProcess | undefined;
  const namespace = opts.namespace ?? `clip-test-${randomBytes(4).toString('hex')}`;
  const h: ContainerdHandle = {
    dir,
    socket,
    root: path.join(dir, 'root'),
    state: path.join(dir, 'state'),
    namespace,
    pid: 0,
    logFile,
    ctr: (args, o = {}) => run('ctr', ['--address', socket, '-n', namespace, ...args], { timeoutMs: o.timeoutMs ?? 120_000 }),
    async stop() {
      const c = child;
      child = undefined;
      if (!c || c.exitCode !== null || c.signalCode !== null) return;
      const exited = new Promise((r) => c.once('exit', r));
      c.kill('SIGTERM');
      const timer = setTimeout(() => c.kill('SIGKILL'), 10_000);
      await exited;
      clearTimeout(timer);
    },
    async restart() {
      await h.stop();
      await start();
    },
    async destroy() {
      // Containers first (their shims outlive containerd), then containerd, then its mounts.
      await run('ctr', ['--address', socket, '-n', namespace, 'task', 'ls', '-q'], { timeoutMs: 10_000 })
        .then(async (r) => {
          // Killed and deleted: a shim whose task is never deleted outlives containerd.
          for (const id of r.stdout.toString().split('\n').filter(Boolean))
            await run('ctr', ['--address', socket, '-n', namespace, 'task', 'rm', '-f', id], { timeoutMs: 20_000 }).catch(() => undefined);
        })
        .catch(() => undefined);
      await h.stop();
      const mounts = readMounts()
        .map((m) => m.mountPoint)
        .filter((mp) => mp.startsWith(`${dir}/`))
        .sort((a, b) => b.length - a.length);
      for (const mp of mounts) await run('umount', ['-l', mp]).catch(() => undefined);
      await rm(dir, { recursive: true, force: true });
      // Only a namespace of its own: a given one (k8s.io, the CRI's) may be other containerds' too.
      if (opts.namespace === undefined) await rm(path.join('/run/containerd/runc', namespace), { recursive: true, force: true });
    },
  };
  async function start(): Promise<void> {
    const fd = openSync(logFile, 'a');
    try {
      child = spawn(CONTAINERD_BIN, ['--config', config], { stdio: ['ignore', fd, fd], detached: false });
    } finally {
      closeSync(fd);
    }
    h.pid = child.pid!;
    live.add(child);
    child.once('exit', () => live.delete(child!));
    await waitReady(h, child, 30_000);
  }
  await writeFile(config, configToml(h, opts));
  installExitHook();
  await start();
  return h;
}

const live = new Set<ChildProcess>();
let hooked = false;
function installExitHook(): void {
  if (hooked) return;
  hooked = true;
  // Safety net only: tests destroy their containerd themselves.
  process.on('exit', () => {
    for (const c of live) c.kill('SIGKILL');
  });
}
