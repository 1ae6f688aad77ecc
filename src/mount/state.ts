// Where clip keeps track of its mounts: one JSON record per mountpoint under
// the state directory (/run/clip by default: it is gone after a reboot, as
// the mounts are). `clip umount` finds the daemon and the overlay dirs here.

import { createHash } from 'node:crypto';
import { mkdir, readdir, readFile, rm } from 'node:fs/promises';
import path from 'node:path';
import type { MountEntry } from '../fuse/index.js';
import { writeFileAtomic } from '../util/atomic-write.js';
import { isSameProcess, type ProcessIdentity } from './process-identity.js';
import type { MountSettings } from './settings.js';

export function stateDir(): string {
  return process.env['CLIP_STATE_DIR'] ?? '/run/clip';
}

/** Default persistent directory (span cache, overlay upper dirs). */
export function dataDir(): string {
  return process.env['CLIP_DATA_DIR'] ?? '/var/lib/clip';
}

/**
 * Which mount-table entry clip made: anything else at the path is not clip's.
 * Mount IDs and anonymous device numbers are reused as soon as they are free
 * (a tmpfs mounted where a dead clip mount was detached gets both), so the
 * type, source and options count too.
 */
export interface MountIdentity {
  id: number;
  device: string;
  fsType: string;
  source: string;
  superOptions: string;
}

export function mountIdentity(m: MountEntry): MountIdentity {
  return { id: m.id, device: m.device, fsType: m.fsType, source: m.source, superOptions: m.superOptions };
}

/** Whether `m` (a mount-table entry, or another record's identity) is the mount `id` names. */
export function isSameMount(id: MountIdentity | undefined, m: MountIdentity | undefined): boolean {
  if (!id || !m) return false;
  return id.id === m.id && id.device === m.device && id.fsType === m.fsType && id.source === m.source && id.superOptions === m.superOptions;
}

export interface ImageMountRecord {
  kind: 'image';
  mountpoint: string;
  mount: MountIdentity;
  index: string;
  pid: number;
  /** Who the daemon at `pid` is: a pid that is now another process is a dead daemon. */
  daemon: ProcessIdentity;
  log: string;
  startedAt: string;
  /** Key of the shared read-only mount this is (set for mounts made for rootfs users). */
  shared?: string;
  /** How the daemon serves it: a later rootfs of the image is refused what it does not do. */
  settings?: MountSettings;
}

export interface RootfsRecord {
  kind: 'rootfs';
  mountpoint: string;
  mount: MountIdentity;
  index: string;
  /** The read-only image mount underneath. */
  lower: string;
  upper: string;
  work: string;
  driver: 'overlay' | 'fuse-overlayfs';
  /** When set, the overlay dirs were made by clip and are removed at umount. */
  ownsDirs: boolean;
}

export type MountRecord = ImageMountRecord | RootfsRecord;

export function keyOf(s: string): string {
  return createHash('sha256').update(s).digest('hex').slice(0, 16);
}

function recordPath(mountpoint: string): string {
  return path.join(stateDir(), 'mounts', `${keyOf(mountpoint)}.json`);
}

export function logPath(mountpoint: string): string {
  return path.join(stateDir(), 'logs', `${keyOf(mountpoint)}.log`);
}

/**
 * The lock file for check-then-act steps at `mountpoint` (see lock.ts):
 * 'rootfs' for the users of a shared image mount (held while its daemon
 * starts), 'mount' for a daemon's own "is it free? mount it".
 */
export function lockPath(mountpoint: string, purpose: 'rootfs' | 'mount'): string {
  return path.join(stateDir(), 'locks', `${keyOf(mountpoint)}.${purpose}.lock`);
}

/** The unix socket where a mount daemon answers `clip stats`. */
export function statsSocketPath(mountpoint: string): string {
  return path.join(stateDir(), 'sockets', `${keyOf(mountpoint)}.sock`);
}

export async function saveRecord(r: MountRecord): Promise<void> {
  await mkdir(path.join(stateDir(), 'mounts'), { recursive: true, mode: 0o700 });
  await writeFileAtomic(recordPath(r.mountpoint), Buffer.from(JSON.stringify(r, null, 2) + '\n'));
}

export async function loadRecord(mountpoint: string): Promise<MountRecord | undefined> {
  try {
    return JSON.parse(await readFile(recordPath(mountpoint), 'utf8')) as MountRecord;
  } catch {
    return undefined;
  }
}

export async function removeRecord(mountpoint: string): Promise<void> {
  await rm(recordPath(mountpoint), { force: true });
}

/**
 * Removes the record of `mountpoint` only if it is still the one `mine`
 * describes: a daemon that exits after a lazy unmount must not remove the
 * record of a newer mount at the same path.
 */
export async function removeOwnRecord(mine: MountRecord): Promise<void> {
  const now = await loadRecord(mine.mountpoint);
  if (now && isSameMount(mine.mount, now.mount)) await removeRecord(mine.mountpoint);
}

export async function allRecords(): Promise<MountRecord[]> {
  const dir = path.join(stateDir(), 'mounts');
  let names: string[];
  try {
    names = await readdir(dir);
  } catch {
    return [];
  }
  const out: MountRecord[] = [];
  for (const n of names) {
    if (!n.endsWith('.json')) continue;
    try {
      out.push(JSON.parse(await readFile(path.join(dir, n), 'utf8')) as MountRecord);
    } catch {
      // A record being replaced right now; skip it.
    }
  }
  return out;
}

/** Whether the record's daemon still runs: its pid is alive and still the same process (pids are reused). */
export function isDaemonAlive(r: ImageMountRecord): boolean {
  return isSameProcess(r.pid, r.daemon);
}
