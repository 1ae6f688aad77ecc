// Mounting and unmounting without libfuse: open /dev/fuse, let mount(8) make
// the mount with `fd=3` naming that descriptor (inherited as the child's fd 3),
// and undo it with umount(8), falling back to a lazy unmount so a dead server
// never leaves "Transport endpoint is not connected" behind.

import { spawn, spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import { canonicalMountPath, findMount, isMounted, readMounts, type MountEntry } from './mountinfo.js';

export { isMounted } from './mountinfo.js';

/** Options every clip mount gets unless the caller passes its own list. */
export const DEFAULT_MOUNT_OPTIONS: readonly string[] = ['allow_other', 'default_permissions', 'ro'];

export interface MountOptions {
  /** The mount's source as mount tables show it. Default "clip". */
  fsname?: string;
  /** The type becomes fuse.<subtype>. Default "clip". */
  subtype?: string;
  /** Mount options after fd, rootmode, user_id and group_id. Default DEFAULT_MOUNT_OPTIONS. */
  options?: readonly string[];
  /** The FUSE device. Default /dev/fuse. */
  device?: string;
}

export interface FuseMount {
  /** The open /dev/fuse descriptor: hand it to a FuseSession, which closes it when the loop ends. */
  readonly fd: number;
  /** Absolute mount point, as the mount table shows it. */
  readonly mountpoint: string;
  /** "fuse.<subtype>" */
  readonly fsType: string;
  /** umount, falling back to umount -l; resolves once nothing is mounted there by us. */
  unmount(): Promise<void>;
}

export type MountErrorCode =
  | 'NO_MOUNTPOINT'
  | 'NOT_A_DIRECTORY'
  | 'STALE_MOUNT'
  | 'NOT_ROOT'
  | 'NO_DEVICE'
  | 'BAD_OPTION'
  | 'MOUNT_FAILED'
  | 'UNMOUNT_FAILED'
  | 'BUSY';

export class MountError extends Error {
  constructor(
    readonly code: MountErrorCode,
    message: string,
  ) {
    super(message);
    this.name = 'MountError';
  }
}

/** Why `who` must run as root: the one wording for the library and the CLI. */
export function mustRunAsRoot(who: string): string {
  return (
    `${who} must run as root: mount(2) needs CAP_SYS_ADMIN, and the unprivileged route ` +
    '(fusermount3) hands the /dev/fuse descriptor over a unix socket, which Node cannot receive'
  );
}

const ROOT_HINT = mustRunAsRoot('clip');

/** Mounts an empty FUSE connection at `mountpoint`; start a FuseSession on `fd` right after. */
export async function mountFuse(mountpoint: string, opts: MountOptions = {}): Promise<FuseMount> {
  const fsname = opts.fsname ?? 'clip';
  const subtype = opts.subtype ?? 'clip';
  const device = opts.device ?? '/dev/fuse';
  const extra = opts.options ?? DEFAULT_MOUNT_OPTIONS;
  if (!/^[A-Za-z0-9_.+-]+$/.test(subtype)) throw new MountError('BAD_OPTION', `bad FUSE subtype "${subtype}"`);
  if (!fsname || /[\s,]/.test(fsname)) throw new MountError('BAD_OPTION', `bad FUSE fsname "${fsname}" (no spaces or commas)`);
  for (const o of extra) if (!o || o.includes(',')) throw new MountError('BAD_OPTION', `bad mount option "${o}"`);

  if (typeof process.geteuid === 'function' && process.geteuid() !== 0) throw new MountError('NOT_ROOT', ROOT_HINT);
  const mp = canonicalMountPath(mountpoint);
  checkMountpoint(mp);

  let fd: number;
  try {
    fd = fs.openSync(device, 'r+');
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code === 'ENOENT' || code === 'ENXIO' || code === 'ENODEV') {
      throw new MountError(
        'NO_DEVICE',
        `${device} is missing: load the fuse kernel module (modprobe fuse), or give the container the device (--device /dev/fuse)`,
      );
    }
    if (code === 'EACCES' || code === 'EPERM') throw new MountError('NOT_ROOT', `cannot open ${device} (${code}); ${ROOT_HINT}`);
    throw new MountError('NO_DEVICE', `cannot open ${device}: ${(e as Error).message}`);
  }

  const fsType = `fuse.${subtype}`;
  const options = ['fd=3', 'rootmode=40000', 'user_id=0', 'group_id=0', ...extra].join(',');
  try {
    const r = await run('mount', ['-i', '-t', fsType, '-o', options, fsname, mp], { fd, timeoutMs: 30_000 });
    if (r.code !== 0) {
      const detail = (r.stderr || r.stdout).trim() || `exit status ${r.code ?? r.signal}`;
      if (/permission denied|must be superuser|only root|operation not permitted/i.test(detail)) {
        throw new MountError('NOT_ROOT', `mount ${mp} failed: ${detail}; ${ROOT_HINT}`);
      }
      if (/does not exist|no such file/i.test(detail)) {
        throw new MountError('NO_MOUNTPOINT', `mount point ${mp} does not exist: ${detail}`);
      }
      throw new MountError('MOUNT_FAILED', `mount ${mp} (${fsType}) failed: ${detail}`);
    }
    if (!isMounted(mp)) throw new MountError('MOUNT_FAILED', `mount(8) succeeded but nothing is mounted at ${mp}`);
  } catch (e) {
    fs.closeSync(fd);
    throw e;
  }
  return { fd, mountpoint: mp, fsType, unmount: () => unmount(mp) };
}

function checkMountpoint(mp: string): void {
  let st: fs.Stats;
  try {
    st = fs.statSync(mp);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') throw new MountError('NO_MOUNTPOINT', `mount point ${mp} does not exist (create the directory first)`);
    if (code === 'ENOTCONN') {
      throw new MountError('STALE_MOUNT', `${mp} is a FUSE mount whose server is gone; unmount it first (umount -l ${mp})`);
    }
    throw new MountError('NO_MOUNTPOINT', `mount point ${mp}: ${(e as Error).message}`);
  }
  if (!st.isDirectory()) throw new MountError('NOT_A_DIRECTORY', `mount point ${mp} is not a directory`);
}

export interface UnmountOptions {
  /** How long umount may take before it is killed and a lazy unmount done instead. Default 10 s. */
  timeoutMs?: number;
  /**
   * When the mount is in use: 'detach' it lazily (the default; open files keep
   * working, the server keeps serving them) or 'refuse' with a BUSY MountError,
   * leaving it mounted. With 'refuse' no failure falls back to a lazy unmount.
   */
  ifBusy?: 'detach' | 'refuse';
}

/**
 * Unmounts `mountpoint` with umount(8); if that fails (busy, server dead or
 * hung) or times out, detaches it lazily (umount -l), unless ifBusy is
 * 'refuse'. Nothing mounted: no-op.
 */
export async function unmount(mountpoint: string, opts: UnmountOptions = {}): Promise<void> {
  const mp = canonicalMountPath(mountpoint);
  const timeoutMs = opts.timeoutMs ?? 10_000;
  if (!isMounted(mp)) return;
  // -c: the path is canonical already; umount(8) need not stat it (a hung server would hang that).
  const r = await run('umount', ['-c', mp], { timeoutMs });
  if (r.code === 0) return;
  if (opts.ifBusy === 'refuse') {
    if (/busy/i.test(r.stderr)) throw new MountError('BUSY', `${mp} is busy (in use by a process)`);
    throw new MountError('UNMOUNT_FAILED', `cannot unmount ${mp}: ${r.stderr.trim() || `exit status ${r.code ?? r.signal}`}`);
  }
  const lazy = await run('umount', ['-l', mp], { timeoutMs });
  if (lazy.code === 0 || !isMounted(mp)) return;
  throw new MountError('UNMOUNT_FAILED', `cannot unmount ${mp}: ${(lazy.stderr || r.stderr).trim()}`);
}

/**
 * Detaches `mountpoint` at once (umount -l, MNT_DETACH): processes using it
 * keep their open files and working directories, and the server keeps
 * serving them until the last is closed (then its reads fail with ENODEV).
 * Nothing mounted: no-op.
 */
export async function detach(mountpoint: string): Promise<void> {
  const mp = canonicalMountPath(mountpoint);
  if (!isMounted(mp)) return;
  const r = await run('umount', ['-l', '-c', mp], { timeoutMs: 10_000 });
  if (r.code !== 0 && isMounted(mp)) throw new MountError('UNMOUNT_FAILED', `cannot unmount ${mp}: ${r.stderr.trim()}`);
}

/**
 * For a hung or dead server: aborts the FUSE connection when the fusectl
 * filesystem is mounted (pending requests fail instead of hanging), then
 * detaches the mount lazily. Nothing mounted: no-op.
 */
export async function forceUnmount(mountpoint: string): Promise<void> {
  const mp = canonicalMountPath(mountpoint);
  const m = findMount(mp);
  if (!m) return;
  abortConnection(m);
  const r = await run('umount', ['-l', mp], { timeoutMs: 10_000 });
  if (r.code !== 0 && isMounted(mp)) throw new MountError('UNMOUNT_FAILED', `cannot unmount ${mp}: ${r.stderr.trim()}`);
}

/**
 * forceUnmount without yielding to the event loop, for process 'exit'
 * handlers: a process whose reader thread still blocks on /dev/fuse cannot
 * finish exiting, and a lazy unmount (which needs no answer from the server)
 * ends that read with ENODEV once no file in the mount is open; aborting the
 * connection via fusectl, where mounted, ends it at once. Returns whether
 * nothing is mounted there any more.
 */
export function forceUnmountSync(mountpoint: string): boolean {
  const mp = canonicalMountPath(mountpoint);
  const m = findMount(mp);
  if (!m) return true;
  abortConnection(m);
  spawnSync('umount', ['-l', mp], { stdio: 'ignore', timeout: 5000 });
  return !isMounted(mp);
}

/** Writes to /sys/fs/fuse/connections/<dev>/abort when fusectl is mounted; otherwise does nothing. */
function abortConnection(m: MountEntry): void {
  if (m.fsType !== 'fuse' && !m.fsType.startsWith('fuse.')) return;
  const minor = m.device.split(':')[1];
  try {
    fs.writeFileSync(`/sys/fs/fuse/connections/${minor}/abort`, '1');
  } catch {
    // fusectl not mounted (or the connection already gone): the lazy unmount still detaches it.
  }
}

/** FUSE mounts in this namespace, optionally of one type (e.g. "fuse.clip") and under one directory. */
export function fuseMounts(filter: { fsType?: string; under?: string } = {}): MountEntry[] {
  const under = filter.under === undefined ? undefined : canonicalMountPath(filter.under);
  return readMounts().filter(
    (m) =>
      (m.fsType === 'fuse' || m.fsType.startsWith('fuse.')) &&
      (filter.fsType === undefined || m.fsType === filter.fsType) &&
      (under === undefined || m.mountPoint === under || m.mountPoint.startsWith(under.endsWith('/') ? under : `${under}/`)),
  );
}

interface RunResult {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

/** Runs a command (optionally passing `fd` as its fd 3), killing it after timeoutMs. */
function run(cmd: string, args: string[], o: { fd?: number; timeoutMs: number }): Promise<RunResult> {
  return new Promise((resolve, reject) => {
    const stdio: Array<'ignore' | 'pipe' | number> = ['ignore', 'pipe', 'pipe'];
    if (o.fd !== undefined) stdio.push(o.fd);
    const child = spawn(cmd, args, { stdio, env: { ...process.env, LC_ALL: 'C' } });
    let stdout = '';
    let stderr = '';
    child.stdout!.setEncoding('utf8').on('data', (d: string) => (stdout += d));
    child.stderr!.setEncoding('utf8').on('data', (d: string) => (stderr += d));
    const timer = setTimeout(() => {
      stderr += `${cmd} timed out after ${o.timeoutMs} ms\n`;
      child.kill('SIGKILL');
    }, o.timeoutMs);
    child.on('error', (e) => {
      clearTimeout(timer);
      reject(new MountError(cmd === 'mount' ? 'MOUNT_FAILED' : 'UNMOUNT_FAILED', `cannot run ${cmd}: ${e.message}`));
    });
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      resolve({ code, signal, stdout, stderr });
    });
  });
}
