// The kernel's readahead for a FUSE mount. FUSE's INIT can only lower it
// (the kernel offers 128 KiB, its default), so a larger window is set on the
// mount's backing device info in sysfs, as root, after INIT. Sequential reads
// of cached bytes are bounded by requests per second: with a 128 KiB window a
// warm read through clip runs at ~1.5 GB/s here, with 1 MiB (one READ of
// max_pages) at ~2.0 GB/s (bench:fuse; issue 16).

import * as fs from 'node:fs';
import { findMount } from './mountinfo.js';

/**
 * The sysfs directory of the mount's backing device info, named by the
 * device of its mountinfo line: a stat of the mountpoint would ask the FUSE
 * server, which may not serve yet.
 */
function bdiDir(mountpoint: string): string {
  const m = findMount(mountpoint);
  if (!m) throw new Error(`nothing is mounted at ${mountpoint}`);
  return `/sys/class/bdi/${m.device}`;
}

/** Sets the mount's readahead window in KiB; throws (with the path) where sysfs refuses. */
export function setReadAheadKb(mountpoint: string, kb: number): void {
  if (!Number.isSafeInteger(kb) || kb < 0) throw new Error(`readahead of ${kb} KiB is not a size`);
  fs.writeFileSync(`${bdiDir(mountpoint)}/read_ahead_kb`, `${kb}\n`);
}

/** The mount's readahead window in KiB. */
export function readAheadKb(mountpoint: string): number {
  return Number(fs.readFileSync(`${bdiDir(mountpoint)}/read_ahead_kb`, 'utf8').trim());
}
