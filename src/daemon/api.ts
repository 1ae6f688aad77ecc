// The node daemon's API: HTTP with JSON bodies on a unix socket under the
// state dir (mode 0600 in a 0700 dir: root only). The CLI's mount, umount,
// stats, ps and `daemon --upgrade` are clients of it; the types here are the
// contract between them.

import type { LayerStats } from '../metrics/daemon-metrics.js';
import type { RegistryOptions } from '../oci/types.js';
import type { ImageSettings } from './served-images.js';

/** Daemon-wide settings a `clip mount` may name: they must be what the daemon runs with. */
export interface AskedDaemonSettings {
  logLevel?: string;
  cacheDir?: string;
  cacheBytes?: number;
  metricsAddr?: string;
}

export interface MountRequest {
  /** Absolute path of the .clip file. */
  index: string;
  /** Exactly one of these: a read-only mount, or a writable rootfs. */
  mountpoint?: string;
  rootfs?: string;
  upperDir?: string;
  workDir?: string;
  registry: RegistryOptions;
  /** Only what was asked for: the rest is the daemon's default. */
  image: ImageSettings;
  daemon: AskedDaemonSettings;
}

export interface MountReply {
  mountpoint: string;
}

export interface UmountRequest {
  mountpoint: string;
  lazy?: boolean;
}

export interface UmountReply {
  /** Rootfs dirs left in place because a detached overlay may still use them. */
  kept?: string;
}

export interface PsMount {
  image: string;
  index: string;
  /** The first read-only mount of the image, else its directory in the daemon's mount (what rootfs overlays stack on). */
  mountpoint: string;
  /** Every read-only mount of the image. */
  mountpoints: string[];
  rootfs: string[];
  fetchedBytes: number;
  cachedBytes: number;
}

export interface PsReply {
  daemon: {
    /** The process serving FUSE requests (it changes at a takeover). */
    pid: number;
    /** The process holding the FUSE connection (`clip daemon` itself). */
    supervisor: number;
    version: string;
    started: string;
    stateDir: string;
  };
  mounts: PsMount[];
}

/** Per layer of the image, in index order: its compressed size and what was fetched and cached of it. */
export interface StatsReply {
  index: string;
  layers: (LayerStats & { compressedSize: number })[];
}

export interface ApiError {
  error: string;
  code: string;
}
