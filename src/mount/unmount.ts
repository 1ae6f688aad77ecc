// `clip umount`: takes down only what clip made. The path needs a clip record
// and the mount there must be the one the record names (mount ID and device);
// anything else is refused and left alone. A rootfs goes first, then the
// shared read-only mount when no rootfs uses it any more (under the shared
// mount's lock, so a concurrent `clip mount --rootfs` cannot slip in). A mount
// in use is refused; `lazy` detaches it instead and its daemon serves the open
// files until the kernel lets go. No process is signalled: a daemon exits by
// itself once its mount is gone (ENODEV), and a dead daemon's mount is detached.

import { rm } from 'node:fs/promises';
import path from 'node:path';
import { ClipError } from '../errors.js';
import { canonicalMountPath, detach, findMount, forceUnmount, MountError, readMounts, unmount, type MountEntry } from '../fuse/index.js';
import { withLock } from './lock.js';
import {
  allRecords,
  isDaemonAlive,
  isSameMount,
  loadRecord,
  lockPath,
  removeRecord,
  type ImageMountRecord,
  type MountRecord,
  type RootfsRecord,
} from './state.js';

export interface UnmountOptions {
  /** Detach a mount in use (umount -l) instead of refusing; its daemon keeps serving open files. */
  lazy?: boolean;
}

export interface UnmountResult {
  /** Overlay dirs of a lazily detached rootfs, left in place because processes still use them. */
  kept?: string;
}

/** Whether `m` is the very mount the record was made for (a record of an older clip names no mount: go by type). */
function isTheRecordedMount(r: MountRecord, m: MountEntry): boolean {
  if (!r.mount) return r.kind === 'image' ? m.fsType === 'fuse.clip' : m.fsType === 'overlay' || m.fsType === 'fuse.fuse-overlayfs';
  return isSameMount(r.mount, m);
}

function notAClipMount(mp: string, m: MountEntry | undefined): ClipError {
  if (!m) return new ClipError('BAD_ARGUMENT', `${mp} is not a clip mount`);
  return new ClipError('BAD_ARGUMENT', `${mp} is not a clip mount (a ${m.fsType} mount clip did not make; left alone)`);
}

/**
 * The mount at the record's path, checked to be the recorded one. Something
 * else there is refused; if the recorded mount is gone altogether, its stale
 * record is dropped first.
 */
async function recordedMount(r: MountRecord): Promise<MountEntry | undefined> {
  const m = findMount(r.mountpoint);
  if (!m || isTheRecordedMount(r, m)) return m;
  if (!readMounts().some((x) => x.mountPoint === r.mountpoint && isTheRecordedMount(r, x))) await removeRecord(r.mountpoint);
  throw notAClipMount(r.mountpoint, m);
}

/** umount, or a clear "busy" error that leaves the mount as it is. */
async function unmountUnlessBusy(mp: string): Promise<void> {
  try {
    await unmount(mp, { ifBusy: 'refuse' });
  } catch (e) {
    if (e instanceof MountError && e.code === 'BUSY')
      throw new ClipError('BAD_ARGUMENT', `${mp} is busy (in use by a process); close it or use --lazy`);
    throw e;
  }
}

async function waitForExit(r: ImageMountRecord, ms: number): Promise<void> {
  const until = Date.now() + ms;
  while (Date.now() < until && isDaemonAlive(r)) await new Promise((res) => setTimeout(res, 50));
}

/** Unmounts an image mount. Callers of a shared image mount hold its lock. */
export async function unmountImage(r: ImageMountRecord, opts: UnmountOptions = {}): Promise<void> {
  const mp = r.mountpoint;
  const m = await recordedMount(r);
  const alive = isDaemonAlive(r);
  if (m) {
    if (!alive)
      await forceUnmount(mp); // nothing serves it: detach the dead connection
    else if (opts.lazy) await detach(mp);
    else await unmountUnlessBusy(mp);
  }
  await removeRecord(mp);
  // Its reads now fail with ENODEV and it exits; unless something still holds
  // the mount (a lazily detached rootfs over it), which it then keeps serving.
  if (alive && !opts.lazy) await waitForExit(r, 5000);
}

/** Takes the shared read-only mount down if no rootfs uses it any more. Callers hold its lock. */
async function releaseShared(lower: string, opts: UnmountOptions): Promise<void> {
  if ((await allRecords()).some((x) => x.kind === 'rootfs' && x.lower === lower)) return;
  const r = await loadRecord(lower);
  if (r?.kind === 'image') await unmountImage(r, opts);
}

export async function unmountRootfs(r: RootfsRecord, opts: UnmountOptions = {}): Promise<UnmountResult> {
  return withLock(lockPath(r.lower, 'rootfs'), async () => {
    const m = await recordedMount(r);
    if (m) {
      if (opts.lazy) await detach(r.mountpoint);
      else await unmountUnlessBusy(r.mountpoint);
    }
    await removeRecord(r.mountpoint);
    let kept: string | undefined;
    if (r.ownsDirs) {
      // A lazily detached overlay may still be writing there: leave its dirs rather than pull them from under it.
      if (opts.lazy && m) kept = path.dirname(r.upper);
      else await rm(path.dirname(r.upper), { recursive: true, force: true });
    }
    await releaseShared(r.lower, opts);
    return kept === undefined ? {} : { kept };
  });
}

/** Releases a shared read-only mount whose last rootfs users are gone; refuses while rootfs use it. */
async function unmountShared(r: ImageMountRecord, opts: UnmountOptions): Promise<void> {
  await withLock(lockPath(r.mountpoint, 'rootfs'), async () => {
    const users = (await allRecords()).filter((x) => x.kind === 'rootfs' && x.lower === r.mountpoint).map((x) => x.mountpoint);
    if (users.length > 0)
      throw new ClipError('BAD_ARGUMENT', `${r.mountpoint} is the image under rootfs ${users.join(', ')}; unmount those instead`);
    await unmountImage(r, opts);
  });
}

export async function unmountPath(mountpoint: string, opts: UnmountOptions = {}): Promise<UnmountResult> {
  const mp = canonicalMountPath(mountpoint);
  const record = await loadRecord(mp);
  if (!record || record.mountpoint !== mp) throw notAClipMount(mp, findMount(mp));
  if (record.kind === 'rootfs') return unmountRootfs(record, opts);
  if (record.shared !== undefined) await unmountShared(record, opts);
  else await unmountImage(record, opts);
  return {};
}
