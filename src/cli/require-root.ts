// Mounting needs root; say so first, before any other check can fail for a
// reason that hides the real one.

import { ClipError } from '../errors.js';
import { mustRunAsRoot } from '../fuse/mount.js';

export function requireRoot(command: string): void {
  if (typeof process.geteuid === 'function' && process.geteuid() !== 0) {
    throw new ClipError('BAD_ARGUMENT', mustRunAsRoot(`clip ${command}`));
  }
}
