// The daemon's files under its state dir. No imports beyond node:path: the
// CLI's fast path (cli/fast-mount.ts) uses it too.

import path from 'node:path';

export function daemonPaths(stateDir: string) {
  return {
    socket: path.join(stateDir, 'clip.sock'),
    /** The one FUSE mount; image N is its directory N's key. */
    root: path.join(stateDir, 'fs'),
    table: path.join(stateDir, 'daemon', 'table.json'),
    pidFile: path.join(stateDir, 'daemon', 'daemon.json'),
    log: path.join(stateDir, 'logs', 'daemon.log'),
    lock: path.join(stateDir, 'locks', 'daemon.lock'),
  };
}
