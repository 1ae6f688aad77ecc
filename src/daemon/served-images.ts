// What the node daemon serves, as one table: each image (by the checksum of
// its index), the slot its inode numbers live in, and what is mounted from it
// (bind mounts of its directory, rootfs overlays over it). The serving process
// reports the table to its supervisor after every change, which hands it to
// the next serving process; a copy without credentials is kept under the
// state dir, so a daemon started after the whole service died can find and
// detach what the dead one left mounted.

import { readFile } from 'node:fs/promises';
import type { RegistryOptions } from '../oci/types.js';
import type { MountIdentity } from '../mount/state.js';
import type { ProcessIdentity } from '../mount/process-identity.js';
import { writeFileAtomic } from '../util/atomic-write.js';
export { daemonPaths } from './paths.js';

/** Settings of one image (the rest are the daemon's). */
export interface ImageSettings {
  /** Fetch the rest of the image in the background at this many compressed bytes per second. */
  prefetchRate?: number;
  /** Start-up profile to fetch right after mounting (absolute path). */
  profile?: string;
  /** Where to write the start-up profile recorded while served (absolute path), at unmount. */
  recordProfile?: string;
}

export interface BindMount {
  mountpoint: string;
  mount: MountIdentity;
}

export interface RootfsMount {
  mountpoint: string;
  mount: MountIdentity;
  upper: string;
  work: string;
  driver: 'overlay' | 'fuse-overlayfs';
  /** The upper and work dirs were made by clip and go at umount. */
  ownsDirs: boolean;
}

export interface ServedImage {
  slot: number;
  /** sha256-based key of the index file's header: the same index is the same image. */
  key: string;
  /** Absolute path of the .clip file, as mounted. */
  index: string;
  /** What later serving processes load: a copy of the index in the state dir (an archive: the file itself). */
  loadFrom: string;
  /** What `clip ps` shows: registry/repo@digest, or the archive or layout path. */
  image: string;
  registry: RegistryOptions;
  settings: ImageSettings;
  mounts: BindMount[];
  rootfs: RootfsMount[];
  startedAt: string;
}

export interface DaemonTable {
  images: ServedImage[];
  /** The slot given last (slots are not reused right away: see DaemonServer.freeSlot). */
  lastSlot?: number;
}

export const EMPTY_TABLE: DaemonTable = { images: [] };

/** Who runs the daemon of a state dir: the supervisor's identity (pids are reused). */
export interface DaemonPidFile {
  pid: number;
  identity: ProcessIdentity;
  version: string;
  startedAt: string;
}

/** Saves the table without credentials (mode 0600 in a 0700 dir all the same). */
export async function saveTable(file: string, t: DaemonTable): Promise<void> {
  const images = t.images.map((i) => ({ ...i, registry: { ...(i.registry.plainHttp ? { plainHttp: true } : {}) } }));
  // No fsync: the mounts it names do not outlive a reboot either (the state dir is /run).
  const doc = t.lastSlot !== undefined ? { images, lastSlot: t.lastSlot } : { images };
  await writeFileAtomic(file, Buffer.from(JSON.stringify(doc, null, 2) + '\n'), { mode: 0o600, sync: false });
}

/** The table a dead daemon left, if any (a damaged file counts as none: the mount table is checked anyway). */
export async function loadTable(file: string): Promise<DaemonTable | undefined> {
  try {
    const t = JSON.parse(await readFile(file, 'utf8')) as DaemonTable;
    return Array.isArray(t.images) ? t : undefined;
  } catch {
    return undefined;
  }
}
