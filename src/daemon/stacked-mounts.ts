// What the daemon stacks on its one FUSE mount: a read-only bind mount of an
// image's directory at a user's mountpoint, and a writable rootfs (kernel
// overlayfs, fuse-overlayfs when the kernel refuses) with that directory as
// its lower layer. Both are kernel mounts: they outlive the serving process,
// and a takeover leaves them as they are. Each is taken down only if the
// mount at its path is still the one recorded (mount ID, device, type).

import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdir, rm } from 'node:fs/promises';
import path from 'node:path';
import { ClipError } from '../errors.js';
import { detach, findMount, MountError, unmount } from '../fuse/index.js';
import { isSameMount, keyOf, mountIdentity } from '../mount/state.js';
import type { BindMount, RootfsMount } from './served-images.js';

function run(cmd: string, args: string[]): Promise<string | undefined> {
  return new Promise((resolve) => {
    const child = spawn(cmd, args, { stdio: ['ignore', 'ignore', 'pipe'] });
    let err = '';
    child.stderr.on('data', (b: Buffer) => (err += b.toString()));
    child.on('error', (e) => resolve(e.message));
    child.on('close', (code) => resolve(code === 0 ? undefined : err.trim() || `exit status ${code}`));
  });
}

function recorded(target: string, what: string): BindMount['mount'] {
  const m = findMount(target);
  if (!m) throw new ClipError('IO', `the ${what} at ${target} was mounted but is not in the mount table`);
  return mountIdentity(m);
}

/** A read-only bind mount of `source` (an image's directory in the daemon's FUSE mount) at `target`. */
export async function bindImage(source: string, target: string): Promise<BindMount> {
  const failure = await run('mount', ['--bind', '-o', 'ro', source, target]);
  if (failure !== undefined) throw new ClipError('IO', `cannot mount the image at ${target}: ${failure}`);
  return { mountpoint: target, mount: recorded(target, 'image mount') };
}

export interface RootfsDirs {
  upperDir?: string;
  workDir?: string;
}

/** An overlay over `lower` at `target`; the upper and work dirs are made under `dataDir` unless given. */
export async function mountRootfs(lower: string, target: string, dataDir: string, dirs: RootfsDirs): Promise<RootfsMount> {
  const ownsDirs = dirs.upperDir === undefined;
  // A fresh dir per mount: one a lazily detached rootfs still uses is never handed to the next.
  const base = path.join(dataDir, 'rootfs', `${keyOf(target)}-${randomBytes(4).toString('hex')}`);
  const upper = path.resolve(dirs.upperDir ?? path.join(base, 'upper'));
  const work = path.resolve(
    dirs.workDir ?? (ownsDirs ? path.join(base, 'work') : path.join(path.dirname(upper), `.${path.basename(upper)}.work`)),
  );
  await mkdir(upper, { recursive: true, mode: 0o755 });
  await mkdir(work, { recursive: true, mode: 0o700 });
  // No option changes what overlayfs asks the lower (FUSE) layer on Linux 6.18: a warm runc + python
  // start made 104 GETXATTRs (trusted.overlay.metacopy and .origin, ENODATA) with the defaults and
  // with each of userxattr (user.overlay.* instead), metacopy=off, redirect_dir=off, index=off,
  // xino=off, uuid=off; the reader threads answer them from the shared tree, so none is set.
  const options = `lowerdir=${lower},upperdir=${upper},workdir=${work}`;
  let driver: RootfsMount['driver'] = 'overlay';
  const failure = await run('mount', ['-t', 'overlay', 'overlay', '-o', options, target]);
  if (failure !== undefined) {
    const fallback = await run('fuse-overlayfs', ['-o', options, target]);
    if (fallback !== undefined) {
      if (ownsDirs) await rm(base, { recursive: true, force: true });
      throw new ClipError('IO', `cannot mount an overlay at ${target}: overlayfs: ${failure}; fuse-overlayfs: ${fallback}`);
    }
    driver = 'fuse-overlayfs';
  }
  return { mountpoint: target, mount: recorded(target, 'overlay'), upper, work, driver, ownsDirs };
}

export interface TakeDownOptions {
  /** Detach it while in use (umount -l) instead of refusing. */
  lazy?: boolean;
}

/** Whether the mount at `m.mountpoint` now is the one recorded (anything else there is not clip's). */
export function isOurMount(m: BindMount | RootfsMount): boolean {
  const now = findMount(m.mountpoint);
  return now !== undefined && isSameMount(m.mount, mountIdentity(now));
}

/**
 * Unmounts a bind mount or rootfs if the mount at its path is the recorded
 * one (something else there is left alone). A mount in use is refused unless
 * `lazy`. Returns the rootfs dirs left in place because a detached overlay
 * may still write there.
 */
export async function takeDown(m: BindMount | RootfsMount, opts: TakeDownOptions = {}): Promise<{ kept?: string }> {
  const ours = isOurMount(m);
  if (ours) {
    if (opts.lazy) await detach(m.mountpoint);
    else {
      try {
        await unmount(m.mountpoint, { ifBusy: 'refuse' });
      } catch (e) {
        if (e instanceof MountError && e.code === 'BUSY')
          throw new ClipError('BUSY', `${m.mountpoint} is busy (in use by a process); close it or use --lazy`);
        throw e;
      }
    }
  }
  if ('upper' in m && m.ownsDirs) {
    const dir = path.dirname(m.upper);
    if (opts.lazy && ours) return { kept: dir };
    await rm(dir, { recursive: true, force: true });
  }
  return {};
}

/** "not a clip mount", and what is mounted there instead if anything. */
export function notAClipMount(mp: string): ClipError {
  const m = findMount(mp);
  return new ClipError(
    'BAD_ARGUMENT',
    m ? `${mp} is not a clip mount (a ${m.fsType} mount clip did not make; left alone)` : `${mp} is not a clip mount`,
  );
}
