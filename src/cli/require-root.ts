// Mounting needs root; say so first, before any other check can fail for a
// reason that hides the real one.

import { ClipError } from '../errors.js';

export function requireRoot(command: string): void {
  if (typeof process.geteuid === 'function' && process.geteuid() !== 0) {
    throw new ClipError(
      'BAD_ARGUMENT',
      `clip ${command} must run as root: mount(2) needs CAP_SYS_ADMIN, and the unprivileged route (fusermount3) passes ` +
        'the /dev/fuse descriptor over a unix socket, which Node cannot receive',
    );
  }
}
