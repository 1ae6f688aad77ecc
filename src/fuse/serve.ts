// The usual way to serve: mount, start a session on the mount's descriptor,
// wait for INIT; and the way back: unmount, then wait for the loop to end.
// A failure on the way up leaves nothing mounted, and so does process exit.

import type { FileSystem } from './filesystem.js';
import { type FuseMount, type MountOptions, forceUnmountSync, mountFuse } from './mount.js';
import { FuseSession, type SessionOptions } from './session.js';
import type { ConnectionInfo } from './types.js';

export interface ServeOptions extends MountOptions, SessionOptions {}

export interface FuseServer {
  readonly mount: FuseMount;
  readonly session: FuseSession;
  readonly connection: ConnectionInfo;
  /**
   * Unmounts (lazily if busy) and resolves when the session has ended. After a
   * lazy unmount the session keeps serving files still open until they close.
   */
  close(): Promise<void>;
}

export async function serveFuse(mountpoint: string, filesystem: FileSystem, options: ServeOptions = {}): Promise<FuseServer> {
  const mount = await mountFuse(mountpoint, options);
  const session = new FuseSession(mount.fd, filesystem, options).start();
  // Exiting while mounted would hang (the reader thread blocks on the device) and leave
  // the mount unserved; detach it on the way out instead.
  const onExit = () => forceUnmountSync(mount.mountpoint);
  process.on('exit', onExit);
  session.once('close', () => process.off('exit', onExit));
  let connection: ConnectionInfo;
  try {
    connection = await session.ready;
  } catch (e) {
    await mount.unmount().catch(() => {});
    throw e;
  }
  return {
    mount,
    session,
    connection,
    async close() {
      await mount.unmount();
      await session.closed;
    },
  };
}
