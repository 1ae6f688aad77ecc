// Where clip keeps its state (/run/clip by default: it is gone after a reboot,
// as the mounts are) and its data, and how it tells its own mounts from
// anything else mounted at the same path.

import { createHash } from 'node:crypto';
import type { MountEntry } from '../fuse/index.js';

export { stateDir } from './state-dir.js';

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

export function keyOf(s: string): string {
  return createHash('sha256').update(s).digest('hex').slice(0, 16);
}
