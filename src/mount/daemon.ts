// The mount daemon (`clip mount --foreground`): loads the index, checks the
// registry answers, mounts, serves FUSE until unmounted or told to stop
// (SIGTERM/SIGINT unmount cleanly), and keeps its state record meanwhile.

import { writeSync, closeSync } from 'node:fs';
import { FileReader } from '../content/file-reader.js';
import { prefetchLayers } from '../content/prefetch.js';
import { loadProfile, ProfileRecorder, warmFromProfile, type ProfiledSpan } from '../content/startup-profile.js';
import { MountMetrics } from '../metrics/mount-metrics.js';
import { serveMetrics } from '../metrics/stats-server.js';
import { ClipError } from '../errors.js';
import { ImageFileSystem } from '../fs/image-fs.js';
import { findMount, isMounted, serveFuse, type FuseServer, type LogLevel } from '../fuse/index.js';
import { loadIndex } from '../index/load.js';
import { KIND_NAMES } from '../index/types.js';
import type { RegistryOptions } from '../oci/types.js';
import { createLogger, type Logger } from './logger.js';
import type { MountSettings } from './settings.js';
import { processIdentity } from './process-identity.js';
import { withLock } from './lock.js';
import { lockPath, logPath, mountIdentity, removeOwnRecord, saveRecord, statsSocketPath, type ImageMountRecord } from './state.js';

export interface DaemonOptions {
  index: string;
  mountpoint: string;
  registry: RegistryOptions;
  settings: MountSettings;
  /** Descriptor to write "ready" (or the error) to once mounted: how a background start learns the outcome. */
  readyFd?: number;
  /** Key of the shared read-only mount for rootfs users. */
  shared?: string;
}

function tellParent(fd: number | undefined, message: string): void {
  if (fd === undefined) return;
  try {
    writeSync(fd, message + '\n');
    closeSync(fd);
  } catch {
    // The parent went away; nothing to tell.
  }
}

/** What a mounted daemon holds until it is unmounted. */
interface RunningMount {
  server: FuseServer;
  reader: FileReader;
  /** Stop the stats socket and the metrics endpoint. */
  closers: (() => void)[];
  record: ImageMountRecord;
  profile: ProfiledSpan[] | undefined;
  recorder: ProfileRecorder | undefined;
}

export async function runDaemon(opts: DaemonOptions): Promise<void> {
  const log = createLogger(opts.settings.logLevel);
  let running: RunningMount;
  try {
    running = await startMount(opts, log);
  } catch (e) {
    tellParent(opts.readyFd, `error: ${(e as Error).message}`);
    throw e;
  }
  tellParent(opts.readyFd, 'ready');
  const prefetching = startBackgroundFetches(opts, running, log);
  unmountOnSignals(running.server, log);
  try {
    await running.server.session.closed;
  } finally {
    prefetching.abort();
    await shutDown(opts, running, log);
  }
}

/** Loads the index, mounts, serves metrics and saves the state record; on any failure undoes what it did. */
async function startMount(opts: DaemonOptions, log: Logger): Promise<RunningMount> {
  const mp = opts.mountpoint;
  let server: FuseServer | undefined;
  let reader: FileReader | undefined;
  const metrics = new MountMetrics();
  const closers: (() => void)[] = [];
  let profile: ProfiledSpan[] | undefined;
  let recorder: ProfileRecorder | undefined;
  try {
    if (isMounted(mp)) throw new ClipError('BAD_ARGUMENT', `${mp} is already a mount point (busy); unmount it first`);
    // Start-up phases, in ms since the process started (the 'mounted' line reports them).
    const phases: Record<string, number> = { modulesLoaded: Math.round(performance.now()) };
    const index = await loadIndex(opts.index);
    phases['indexLoaded'] = Math.round(performance.now());
    if (opts.settings.profile !== undefined) profile = await loadProfile(opts.settings.profile, index);
    if (opts.settings.recordProfile !== undefined) recorder = new ProfileRecorder();
    reader = await FileReader.open(index, {
      ...opts.registry,
      cacheDir: opts.settings.cacheDir,
      cacheBytes: opts.settings.cacheBytes,
      events: metrics,
      ...(recorder ? { onRead: recorder.record } : {}),
    });
    // The registry check (a round trip or more) and the mount go on together; if the check fails, the mount is undone.
    const probe = reader.probe().then(() => void (phases['registryAnswered'] = Math.round(performance.now())));
    probe.catch(() => undefined);
    server = await mountUnderLock(opts, new ImageFileSystem(index, reader, log), metrics, log);
    phases['mounted'] = Math.round(performance.now());
    await probe;
    closers.push(await serveMetrics(metrics, statsSocketPath(server.mount.mountpoint)));
    if (opts.settings.metricsAddr) closers.push(await serveMetrics(metrics, opts.settings.metricsAddr));
    const record = await saveMountRecord(opts, server);
    phases['ready'] = Math.round(performance.now());
    log.info(
      {
        mountpoint: server.mount.mountpoint,
        index: opts.index,
        kind: KIND_NAMES[index.kind],
        cacheDir: opts.settings.cacheDir,
        image: index.image.reference,
        kernelMinor: server.connection.kernelMinor,
        startupMs: phases,
      },
      'mounted',
    );
    return { server, reader, closers, record, profile, recorder };
  } catch (e) {
    for (const close of closers) close();
    await server?.close().catch(() => undefined);
    await reader?.close();
    throw e;
  }
}

/** Mounts FUSE at the mountpoint, checked again under a lock: two daemons started at once for one mountpoint must not stack mounts there. */
async function mountUnderLock(opts: DaemonOptions, filesystem: ImageFileSystem, metrics: MountMetrics, log: Logger): Promise<FuseServer> {
  const mp = opts.mountpoint;
  const fuseLog = (level: LogLevel, message: string): void => log[level]({ fuse: true }, message);
  return withLock(lockPath(mp, 'mount'), async () => {
    if (isMounted(mp)) throw new ClipError('BAD_ARGUMENT', `${mp} is already a mount point (busy); unmount it first`);
    return serveFuse(mp, filesystem, {
      log: fuseLog,
      debug: opts.settings.logLevel === 'debug' || opts.settings.logLevel === 'trace',
      onOp: metrics.onOp,
    });
  });
}

/** Saves the state record: which mount and which process are clip's (umount checks both before touching either). */
async function saveMountRecord(opts: DaemonOptions, server: FuseServer): Promise<ImageMountRecord> {
  const entry = findMount(server.mount.mountpoint);
  const daemon = processIdentity(process.pid);
  if (!entry || !daemon) throw new ClipError('IO', `cannot find the new mount at ${server.mount.mountpoint} or this process in /proc`);
  const record: ImageMountRecord = {
    kind: 'image',
    mountpoint: server.mount.mountpoint,
    mount: mountIdentity(entry),
    index: opts.index,
    pid: process.pid,
    daemon,
    log: logPath(server.mount.mountpoint),
    startedAt: new Date().toISOString(),
    ...(opts.shared ? { shared: opts.shared } : {}),
    settings: opts.settings,
  };
  await saveRecord(record);
  return record;
}

/** Starts the start-up profile's fetch and the background prefetch, if asked for; the controller stops the prefetch. */
function startBackgroundFetches(opts: DaemonOptions, running: RunningMount, log: Logger): AbortController {
  const { reader, profile } = running;
  if (profile) {
    const started = performance.now();
    warmFromProfile(reader.layerReader, profile).then(
      (spans) => log.info({ spans, seconds: (performance.now() - started) / 1000 }, 'start-up profile fetched'),
      (e: unknown) => log.warn({ err: (e as Error).message }, 'start-up profile fetch failed (reads fetch on demand)'),
    );
  }
  const prefetching = new AbortController();
  if (opts.settings.prefetchRate !== undefined) {
    const started = performance.now();
    prefetchLayers(reader.layerReader, reader.index.layers, {
      bytesPerSecond: opts.settings.prefetchRate,
      signal: prefetching.signal,
    }).then(
      (bytes) => log.info({ bytes, seconds: (performance.now() - started) / 1000 }, 'prefetch done'),
      (e: unknown) => log.warn({ err: (e as Error).message }, 'prefetch stopped'),
    );
  }
  return prefetching;
}

/** SIGTERM and SIGINT unmount cleanly (once); the daemon then ends when the session closes. */
function unmountOnSignals(server: FuseServer, log: Logger): void {
  let stopping = false;
  const stop = (signal: string): void => {
    if (stopping) return;
    stopping = true;
    log.info({ signal }, 'unmounting');
    server.close().catch((e: unknown) => log.error({ err: (e as Error).message }, 'unmount failed'));
  };
  process.on('SIGTERM', () => stop('SIGTERM'));
  process.on('SIGINT', () => stop('SIGINT'));
}

/** After the session closed: stops metrics, removes the record, writes the recorded profile, closes the reader. */
async function shutDown(opts: DaemonOptions, running: RunningMount, log: Logger): Promise<void> {
  const { reader, recorder, record } = running;
  for (const close of running.closers) close();
  // Only its own: after a lazy unmount a newer mount may have the path (and a record) by now.
  await removeOwnRecord(record);
  if (recorder && opts.settings.recordProfile !== undefined) {
    await recorder.save(opts.settings.recordProfile, reader.index).then(
      () => log.info({ file: opts.settings.recordProfile, spans: recorder.spans.length }, 'start-up profile written'),
      (e: unknown) => log.error({ err: (e as Error).message, file: opts.settings.recordProfile }, 'cannot write the start-up profile'),
    );
  }
  await reader.close();
  log.info('unmounted; exiting');
}
