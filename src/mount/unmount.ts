// `clip umount`: the overlay first (for a rootfs), then the read-only mount
// when no rootfs uses it any more, then the daemon. Works when the daemon
// was killed (a dead FUSE mount is detached, never left "not connected").

import { rm } from 'node:fs/promises';
import path from 'node:path';
import { ClipError } from '../errors.js';
import { forceUnmount, isMounted, unmount } from '../fuse/index.js';
import { allRecords, isAlive, loadRecord, removeRecord, type ImageMountRecord, type RootfsRecord } from './state.js';

async function waitForExit(pid: number, ms: number): Promise<boolean> {
  const until = Date.now() + ms;
  while (Date.now() < until) {
    if (!isAlive(pid)) return true;
    await new Promise((r) => setTimeout(r, 50));
  }
  return !isAlive(pid);
}

export async function unmountImage(mountpoint: string, record?: ImageMountRecord): Promise<void> {
  const alive = record !== undefined && isAlive(record.pid);
  if (isMounted(mountpoint)) {
    if (alive) await unmount(mountpoint);
    else await forceUnmount(mountpoint);
  }
  if (record && alive && !(await waitForExit(record.pid, 5000))) {
    process.kill(record.pid, 'SIGKILL');
    await waitForExit(record.pid, 2000);
  }
  await removeRecord(mountpoint);
}

export async function unmountRootfs(record: RootfsRecord): Promise<void> {
  if (isMounted(record.mountpoint)) {
    await unmount(record.mountpoint);
  }
  await removeRecord(record.mountpoint);
  if (record.ownsDirs) await rm(path.dirname(record.upper), { recursive: true, force: true });
  const users = (await allRecords()).filter((r) => r.kind === 'rootfs' && r.lower === record.lower);
  if (users.length === 0) {
    const lower = await loadRecord(record.lower);
    await unmountImage(record.lower, lower?.kind === 'image' ? lower : undefined);
  }
}

export async function unmountPath(mountpoint: string): Promise<void> {
  const mp = path.resolve(mountpoint);
  const record = await loadRecord(mp);
  if (record?.kind === 'rootfs') return unmountRootfs(record);
  if (!record && !isMounted(mp)) throw new ClipError('BAD_ARGUMENT', `${mp} is not a clip mount`);
  await unmountImage(mp, record);
}
