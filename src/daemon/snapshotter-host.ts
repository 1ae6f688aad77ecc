// The containerd snapshotter as the daemon runs it: its root under the data
// dir (snapshots outlive reboots, as containerd's do), its images' clip
// mounts made by the daemon's own mount machinery (so they are in the table,
// and survive a restart of the serving process like any other mount).

import path from 'node:path';
import type { Logger } from 'pino';
import { ClipError } from '../errors.js';
import { registryIndexLookup } from '../snapshotter/index-lookup.js';
import { serveSnapshotter, type SnapshotServer } from '../snapshotter/grpc-server.js';
import { Snapshotter, type ImageMounts } from '../snapshotter/snapshotter.js';
import type { DaemonConfig } from './config.js';

export function snapshotterRoot(dataDir: string): string {
  return path.join(dataDir, 'snapshotter');
}

/** Opens the snapshotter's store, restores its image mounts, and serves it on the configured socket. */
export async function startSnapshotter(config: DaemonConfig, images: ImageMounts, log: Logger): Promise<SnapshotServer> {
  const slog = log.child({ snapshotter: true });
  const sn = await Snapshotter.open({
    root: snapshotterRoot(config.dataDir),
    findIndex: registryIndexLookup(config.dataDir, { hostsDir: config.hostsDir }, (image, why) =>
      slog.info({ image, why }, 'snapshotter: no clip index, unpacking'),
    ),
    images,
    log: slog,
  });
  await sn.restoreImageMounts();
  try {
    return await serveSnapshotter(sn, config.snapshotterSocket, slog);
  } catch (e) {
    throw new ClipError('IO', `cannot serve the snapshotter on ${config.snapshotterSocket}: ${(e as Error).message}`);
  }
}
