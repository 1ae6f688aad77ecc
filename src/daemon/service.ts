// `clip daemon`: the node's one clip service. This process is the supervisor
// (mount/supervisor.ts): it takes the state dir (one daemon per state dir),
// detaches what a dead daemon left mounted, mounts the one FUSE filesystem
// every image is served through, and keeps its descriptor while serving
// processes (server-main.ts) come and go: a crash or `clip daemon --upgrade`
// replaces the serving process, and no container notices. SIGTERM unmounts
// everything it serves, then it exits.

import { spawn } from 'node:child_process';
import { mkdir, readFile, rm } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { DaemonConfig } from './config.js';
import { ClipError } from '../errors.js';
import { detach, forceUnmount, isMounted } from '../fuse/index.js';
import { holdLock } from '../mount/lock.js';
import type { Logger } from 'pino';
import { createDaemonLog } from './log.js';
import { isSameProcess, processIdentity } from '../mount/process-identity.js';
import { Supervisor } from '../mount/supervisor.js';
import { writeFileAtomic } from '../util/atomic-write.js';
import { VERSION } from '../version.js';
import { daemonAnswers } from './client.js';
import type { DaemonRuntime } from './server.js';
import { daemonPaths, loadTable, type DaemonPidFile, type DaemonTable, type RootfsMount } from './served-images.js';
import { isOurMount, takeDown } from './stacked-mounts.js';

const SERVER_MODULE = path.join(path.dirname(fileURLToPath(import.meta.url)), 'server-main.js');

export interface ServiceOptions {
  config: DaemonConfig;
  /** Stop once the last mount is gone (how `clip mount` starts a daemon for itself). */
  idleExit?: boolean;
  /** Log to this size-bounded file instead of stderr. */
  logFile?: string;
}

async function readPidFile(file: string): Promise<DaemonPidFile | undefined> {
  try {
    return JSON.parse(await readFile(file, 'utf8')) as DaemonPidFile;
  } catch {
    return undefined;
  }
}

/** Refuses to start beside a daemon of the same state dir (its supervisor, or a serving process that outlived it). */
async function takeStateDir(config: DaemonConfig): Promise<number> {
  const paths = daemonPaths(config.stateDir);
  const other = async (): Promise<string> => {
    const p = await readPidFile(paths.pidFile);
    return p && isSameProcess(p.pid, p.identity) ? ` (pid ${p.pid})` : '';
  };
  let lockFd: number;
  try {
    lockFd = await holdLock(paths.lock, 0);
  } catch {
    throw new ClipError('BAD_ARGUMENT', `a clip daemon already runs for state dir ${config.stateDir}${await other()}`);
  }
  if (await daemonAnswers(config.stateDir)) {
    throw new ClipError(
      'BAD_ARGUMENT',
      `a clip daemon already answers on ${paths.socket} (its serving process outlived its supervisor); stop it with clip daemon --stop first`,
    );
  }
  return lockFd;
}

/** Detaches what a dead daemon of this state dir left mounted (the table says what was its), and its files. */
async function cleanUpAfterDeadDaemon(config: DaemonConfig, log: Logger): Promise<void> {
  const paths = daemonPaths(config.stateDir);
  const table = await loadTable(paths.table);
  for (const image of table?.images ?? []) {
    for (const m of [...image.rootfs, ...image.mounts]) {
      if (isOurMount(m)) {
        log.warn({ mountpoint: m.mountpoint }, 'detaching a mount a dead clip daemon left');
        await detach(m.mountpoint).catch(() => undefined);
      }
      if ('upper' in m && (m as RootfsMount).ownsDirs) await rm(path.dirname((m as RootfsMount).upper), { recursive: true, force: true });
    }
  }
  if (isMounted(paths.root)) {
    log.warn({ mountpoint: paths.root }, 'detaching the FUSE mount of a dead clip daemon');
    await forceUnmount(paths.root);
  }
  await rm(paths.socket, { force: true });
  await rm(paths.table, { force: true });
  await rm(path.join(config.stateDir, 'daemon', 'indexes'), { recursive: true, force: true });
}

/** Tells systemd the service is up (Type=notify); Node has no sd_notify, systemd-notify does it (NotifyAccess=all). */
function notifySystemd(log: Logger): void {
  if (!process.env['NOTIFY_SOCKET']) return;
  const child = spawn('systemd-notify', ['--ready', `--pid=${process.pid}`], { stdio: 'ignore' });
  child.on('error', (e) => log.warn({ err: e.message }, 'cannot tell systemd the daemon is ready'));
}

export async function runService(opts: ServiceOptions): Promise<void> {
  const { config } = opts;
  const log = createDaemonLog({
    level: config.logLevel,
    format: config.logFormat,
    ...(opts.logFile !== undefined ? { file: opts.logFile } : {}),
  });
  const paths = daemonPaths(config.stateDir);
  await mkdir(config.stateDir, { recursive: true, mode: 0o700 });
  await takeStateDir(config);
  await cleanUpAfterDeadDaemon(config, log);
  await mkdir(paths.root, { recursive: true, mode: 0o755 });
  const startedAt = new Date().toISOString();
  const runtime: DaemonRuntime = {
    config,
    idleExit: opts.idleExit === true,
    startedAt,
    ...(opts.logFile !== undefined ? { logFile: opts.logFile } : {}),
  };
  let firstServing: () => void = () => {};
  const serving = new Promise<void>((res) => (firstServing = res));
  const supervisor = new Supervisor({
    mounts: [{ mountpoint: paths.root, mount: { fsname: 'clip', subtype: 'clip' }, readAheadKb: Math.ceil(config.kernelReadahead / 1024) }],
    server: {
      module: SERVER_MODULE,
      env: { CLIP_DAEMON: JSON.stringify(runtime), UV_THREADPOOL_SIZE: process.env['UV_THREADPOOL_SIZE'] ?? '16' },
    },
    handshake: true,
    // A crash is taken over by a process already started: the stall is the table's load, not a Node start.
    spare: true,
    onEvent: (e) => {
      if (e.type === 'server-exited' && e.signal !== null) log.warn(e, 'serving process died; starting another');
      else if (e.type === 'warning') log.warn(e.message);
      else if (e.type !== 'mounted') log.info(e, e.type);
    },
    onMessage: (m) => {
      if (m.type === 'serving') firstServing();
    },
    // What is stacked on the FUSE mount goes first, lazily where in use.
    beforeRelease: async () => {
      const table = supervisor.currentState as DaemonTable | undefined;
      for (const image of table?.images ?? [])
        for (const m of [...image.rootfs, ...image.mounts]) await takeDown(m, { lazy: true }).catch(() => {});
    },
  });
  await supervisor.start();
  try {
    const identity = processIdentity(process.pid);
    if (identity) {
      const pidFile: DaemonPidFile = { pid: process.pid, identity, version: VERSION, startedAt };
      await mkdir(path.dirname(paths.pidFile), { recursive: true, mode: 0o700 });
      await writeFileAtomic(paths.pidFile, Buffer.from(JSON.stringify(pidFile) + '\n'), { mode: 0o600 });
    }
    for (const signal of ['SIGTERM', 'SIGINT'] as const) process.once(signal, () => void supervisor.stop());
    await Promise.race([serving, supervisor.done]);
  } catch (e) {
    await supervisor.stop();
    throw e;
  }
  log.info({ stateDir: config.stateDir, pid: supervisor.serverPid, version: VERSION }, 'clip daemon ready');
  notifySystemd(log);
  await supervisor.done;
  await rm(paths.pidFile, { force: true });
  await rm(paths.socket, { force: true });
  log.info('clip daemon stopped');
}
