// One served image in the serving process: its index, the reader that fetches
// its bytes, its filesystem, its metrics, and the background fetches asked for
// (start-up profile, prefetch). Opened at mount, and again by every later
// serving process from a copy of the index kept in the state dir (the user's
// file may change or go; the kernel's inode numbers must keep meaning the same).

import { FileReader } from '../content/file-reader.js';
import type { ReadPool } from '../content/read-pool.js';
import { prefetchLayers } from '../content/prefetch.js';
import { loadProfile, mapProfile, ProfileRecorder, warmFromProfile } from '../content/startup-profile.js';
import { ImageFileSystem } from '../fs/image-fs.js';
import { loadIndex } from '../index/load.js';
import type { ClipIndex } from '../index/types.js';
import type { DaemonMetrics, ImageMetrics } from '../metrics/daemon-metrics.js';
import type { Logger } from 'pino';
import { slotInode } from './root-fs.js';
import type { ServedImage } from './served-images.js';
import type { Lease } from '../util/ref-counted.js';

export interface ReadSettings {
  cacheDir: string;
  cacheBytes: number;
  /** Shared by every image of the daemon: span memory, disk cache, registry connections. */
  pool: ReadPool;
  readAhead: boolean;
}

export class LiveImage {
  private readonly prefetching = new AbortController();

  private constructor(
    readonly spec: ServedImage,
    readonly index: ClipIndex,
    readonly reader: FileReader,
    readonly fs: ImageFileSystem,
    readonly metrics: ImageMetrics,
    private readonly recorder: ProfileRecorder | undefined,
    /** Its layers' tables of shared blocks, for the FUSE reader threads (none without shared memory). */
    private readonly blocks: Lease<SharedArrayBuffer[]> | undefined,
  ) {}

  /** The tables the reader threads find its cached bytes through (content/shared-blocks.ts). */
  get blockTables(): SharedArrayBuffer[] | undefined {
    return this.blocks?.value;
  }

  /** Loads the index at `file` and opens its reader; `probe`: check the registry answers first (a new mount fails early). */
  static async open(
    spec: ServedImage,
    file: string,
    read: ReadSettings,
    all: DaemonMetrics,
    log: Logger,
    probe: boolean,
  ): Promise<LiveImage> {
    const index = await loadIndex(file);
    const metrics = all.image(imageName(index));
    const recorder = spec.settings.recordProfile !== undefined ? new ProfileRecorder() : undefined;
    const reader = await FileReader.open(index, {
      ...spec.registry,
      cacheDir: read.cacheDir,
      cacheBytes: read.cacheBytes,
      pool: read.pool,
      events: metrics,
      readAhead: read.readAhead ? {} : false,
      ...(recorder ? { onRead: recorder.record } : {}),
    });
    try {
      if (probe) await reader.probe();
    } catch (e) {
      await reader.close();
      all.dropImage(metrics.image);
      throw e;
    }
    // Its inodes in the range of its slot of the daemon's one filesystem (root-fs.ts).
    const fs = new ImageFileSystem(index, reader, log.child({ image: spec.image }), slotInode(spec.slot, 0));
    // While a start-up profile is recorded every read must reach the reader (a read answered from shared blocks is not seen).
    const blocks = recorder ? undefined : read.pool.blocks?.acquire(index.layers);
    return new LiveImage(spec, index, reader, fs, metrics, recorder, blocks);
  }

  /** Starts the fetches the image's settings ask for; `fresh`: this is its first mount (the profile is fetched once). */
  async startBackground(log: Logger, fresh: boolean): Promise<void> {
    const { settings } = this.spec;
    const fields = { image: this.spec.image };
    // A profile file given at mount wins over the one the index carries.
    const embedded = settings.profile === undefined ? this.index.profile : undefined;
    if (fresh && (settings.profile !== undefined || embedded !== undefined)) {
      const source = settings.profile ?? 'the index';
      const { spans, skipped } =
        settings.profile !== undefined ? await loadProfile(settings.profile, this.index) : mapProfile(this.index, embedded!);
      // Offsets that start no span here: the profile was recorded on an index placed otherwise.
      if (skipped > 0) log.warn({ ...fields, skipped, file: source }, 'start-up profile entries outside the layers of this index skipped');
      const started = performance.now();
      // At most 8 requests at a time of the agent's 16 connections: on-demand reads never queue behind the profile's.
      warmFromProfile(this.reader.layerReader, spans).then(
        (n) => log.info({ ...fields, spans: n, file: source, seconds: (performance.now() - started) / 1000 }, 'start-up profile fetched'),
        (e: unknown) => log.warn({ ...fields, err: (e as Error).message }, 'start-up profile fetch failed (reads fetch on demand)'),
      );
    }
    if (settings.prefetchRate !== undefined) {
      const started = performance.now();
      prefetchLayers(this.reader.layerReader, this.index.layers, {
        bytesPerSecond: settings.prefetchRate,
        signal: this.prefetching.signal,
      }).then(
        (bytes) => log.info({ ...fields, bytes, seconds: (performance.now() - started) / 1000 }, 'prefetch done'),
        (e: unknown) => log.warn({ ...fields, err: (e as Error).message }, 'prefetch stopped'),
      );
    }
  }

  /** Stops background work, writes the recorded profile, closes the reader, drops the metrics. */
  async close(log: Logger, all: DaemonMetrics): Promise<void> {
    all.dropImage(this.metrics.image);
    this.prefetching.abort();
    const file = this.spec.settings.recordProfile;
    if (this.recorder && file !== undefined) {
      await this.recorder.save(file, this.index).then(
        () => log.info({ image: this.spec.image, file, spans: this.recorder!.spans.length }, 'start-up profile written'),
        (e: unknown) => log.error({ image: this.spec.image, err: (e as Error).message, file }, 'cannot write the start-up profile'),
      );
    }
    await this.blocks?.release();
    await this.reader.close();
  }
}

/** What `clip ps` and the metrics call an image: registry/repo@digest, the layout@digest, the archive file, the S3 location. */
export function imageName(index: ClipIndex): string {
  const { location, manifestDigest } = index.image;
  if (location.startsWith('docker://')) return `${location.slice('docker://'.length)}@${manifestDigest}`;
  if (location.startsWith('archive:')) return location.slice('archive:'.length);
  if (location.startsWith('oci:')) return `${location}@${manifestDigest}`;
  return location;
}
