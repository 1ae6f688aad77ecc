// A writable container rootfs over an image: kernel overlayfs with an upper
// and a work directory over the read-only clip mount (fuse-overlayfs when the
// kernel's overlayfs refuses). Several rootfs of one index share one
// read-only mount and daemon; a lock per shared mount makes "is it mounted?
// mount it" and the overlay on top one step against concurrent mounts and
// the last rootfs's umount.

import { spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdir, open, realpath } from 'node:fs/promises';
import path from 'node:path';
import { ClipError } from '../errors.js';
import { findMount, forceUnmount, isMounted } from '../fuse/index.js';
import { HEADER_SIZE } from '../index/format.js';
import type { RegistryOptions } from '../oci/types.js';
import { startBackgroundMount } from './background.js';
import { settingsConflicts, withDefaults, type MountSettings } from './settings.js';
import { withLock } from './lock.js';
import { pathProblem } from '../util/path-errors.js';
import {
  allRecords,
  dataDir,
  isDaemonAlive,
  isSameMount,
  keyOf,
  loadRecord,
  lockPath,
  mountIdentity,
  removeRecord,
  saveRecord,
  stateDir,
  type RootfsRecord,
} from './state.js';
import { unmountImage } from './unmount.js';

export interface RootfsOptions {
  index: string;
  rootfs: string;
  upperDir?: string;
  workDir?: string;
  registry: RegistryOptions;
  /**
   * What was asked for (the rest takes its default): the shared mount's
   * daemon is started with it, or, already running, must serve all of it.
   */
  settings: Partial<MountSettings>;
}

/** The shared mount of an index is keyed by the index's own checksum (same index, same mount). */
async function indexKey(index: string): Promise<string> {
  const fh = await open(index, 'r');
  try {
    const header = Buffer.alloc(HEADER_SIZE);
    await fh.read(header, 0, HEADER_SIZE, 0);
    return keyOf(header.toString('hex'));
  } finally {
    await fh.close();
  }
}

function mountOverlay(
  driver: 'overlay' | 'fuse-overlayfs',
  lower: string,
  upper: string,
  work: string,
  target: string,
): string | undefined {
  const options = `lowerdir=${lower},upperdir=${upper},workdir=${work}`;
  const r =
    driver === 'overlay'
      ? spawnSync('mount', ['-t', 'overlay', 'overlay', '-o', options, target], { encoding: 'utf8' })
      : spawnSync('fuse-overlayfs', ['-o', options, target], { encoding: 'utf8' });
  if (r.error) return r.error.message;
  return r.status === 0 ? undefined : (r.stderr || r.stdout).trim() || `exit status ${r.status}`;
}

export async function mountRootfs(opts: RootfsOptions): Promise<RootfsRecord> {
  let target: string;
  try {
    target = await realpath(opts.rootfs);
  } catch (e) {
    throw new ClipError(
      'BAD_ARGUMENT',
      `rootfs directory ${opts.rootfs}: ${pathProblem(opts.rootfs, e)}${(e as NodeJS.ErrnoException).code === 'ENOENT' ? ' (create it first)' : ''}`,
    );
  }
  const index = await realpath(opts.index).catch((e: unknown) => {
    throw new ClipError('IO', `cannot read index ${opts.index}: ${pathProblem(opts.index, e)}`);
  });
  const lower = path.join(stateDir(), 'images', await indexKey(index));
  return withLock(lockPath(lower, 'rootfs'), async () => {
    // Under the lock: two rootfs of one image on one directory must not stack overlays.
    if (isMounted(target)) throw new ClipError('BAD_ARGUMENT', `${target} is already a mount point (busy)`);
    await ensureShared(lower, index, opts);
    return mountOverlayOn(target, lower, index, opts);
  });
}

/** Makes sure the shared read-only mount of `index` is up and served at `lower`. Callers hold its lock. */
async function ensureShared(lower: string, index: string, opts: RootfsOptions): Promise<void> {
  const existing = await loadRecord(lower);
  const m = findMount(lower);
  if (existing?.kind === 'image' && isSameMount(existing.mount, m)) {
    if (isDaemonAlive(existing)) {
      // One daemon serves every rootfs of the image: what it was not started with cannot be honoured.
      const differs = existing.settings ? settingsConflicts(opts.settings, existing.settings) : [];
      if (differs.length > 0) {
        throw new ClipError(
          'BAD_ARGUMENT',
          `${index} is already mounted for other rootfs (at ${lower}, daemon ${existing.pid}) with other settings: ${differs.join(', ')}; give the same flags (or none), or unmount its rootfs first`,
        );
      }
      return;
    }
    // Its daemon died (or its pid is another process now): detach the dead mount and start afresh.
    await forceUnmount(lower);
    await removeRecord(lower);
  } else if (m) {
    throw new ClipError(
      'BAD_ARGUMENT',
      `${lower} (clip's shared mount of ${index}) is a ${m.fsType} mount clip did not make; unmount it first`,
    );
  }
  await mkdir(lower, { recursive: true, mode: 0o755 });
  await startBackgroundMount({
    index,
    mountpoint: lower,
    registry: opts.registry,
    settings: withDefaults(opts.settings),
    shared: path.basename(lower),
  });
}

/** The overlay over the shared mount, and its record. Callers hold the shared mount's lock. */
async function mountOverlayOn(target: string, lower: string, index: string, opts: RootfsOptions): Promise<RootfsRecord> {
  const ownsDirs = opts.upperDir === undefined;
  // A fresh dir per mount: one a lazily detached rootfs still uses is never handed to the next.
  const base = path.join(dataDir(), 'rootfs', `${keyOf(target)}-${randomBytes(4).toString('hex')}`);
  const upper = path.resolve(opts.upperDir ?? path.join(base, 'upper'));
  const work = path.resolve(
    opts.workDir ?? (ownsDirs ? path.join(base, 'work') : path.join(path.dirname(upper), `.${path.basename(upper)}.work`)),
  );
  await mkdir(upper, { recursive: true, mode: 0o755 });
  await mkdir(work, { recursive: true, mode: 0o700 });
  let driver: RootfsRecord['driver'] = 'overlay';
  const failure = mountOverlay('overlay', lower, upper, work, target);
  if (failure !== undefined) {
    const fallback = mountOverlay('fuse-overlayfs', lower, upper, work, target);
    if (fallback !== undefined) {
      // Leave nothing half-made: drop the shared mount if no rootfs uses it.
      if (!(await allRecords()).some((r) => r.kind === 'rootfs' && r.lower === lower)) {
        const rec = await loadRecord(lower);
        if (rec?.kind === 'image') await unmountImage(rec).catch(() => undefined);
      }
      throw new ClipError('IO', `cannot mount an overlay at ${target}: overlayfs: ${failure}; fuse-overlayfs: ${fallback}`);
    }
    driver = 'fuse-overlayfs';
  }
  const m = findMount(target);
  if (!m) throw new ClipError('IO', `the overlay at ${target} was mounted but is not in the mount table`);
  const record: RootfsRecord = { kind: 'rootfs', mountpoint: target, mount: mountIdentity(m), index, lower, upper, work, driver, ownsDirs };
  await saveRecord(record);
  return record;
}
