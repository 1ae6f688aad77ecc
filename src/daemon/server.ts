// The serving process of the node daemon: started by the supervisor (the
// `clip daemon` process, which holds the FUSE connection), it loads every
// image of the table it is handed, serves them all through one FUSE session
// on the inherited descriptor, and answers the API. It may be killed at any
// moment: the supervisor starts another, which reloads the same table and
// takes over; every change to the table is reported to the supervisor first.

import { copyFile, mkdir, open, realpath, rm, stat } from 'node:fs/promises';
import http from 'node:http';
import { chmod } from 'node:fs/promises';
import path from 'node:path';
import type { DaemonConfig } from './config.js';
import { ClipError, isClipError } from '../errors.js';
import { findMount, FuseSession, InitFlag, isMounted, ROOT_ID, unmount, type ConnectionInfo } from '../fuse/index.js';
import { HEADER_SIZE } from '../index/format.js';
import { KIND_NAMES } from '../index/types.js';
import { isSameMount, keyOf, mountIdentity } from '../mount/state.js';
import type { Logger } from 'pino';
import { settingsConflicts, type MountSettings } from '../mount/settings.js';
import { pathProblem } from '../util/path-errors.js';
import { VERSION } from '../version.js';
import type { ApiError, MountReply, MountRequest, PsReply, StatsReply, UmountReply, UmountRequest } from './api.js';
import { LiveImage } from './live-image.js';
import { DaemonMetrics } from '../metrics/daemon-metrics.js';
import { ReadPool } from '../content/read-pool.js';
import { onMirrorFailure } from '../oci/endpoints.js';
import { serveDaemonMetrics } from '../metrics/daemon-endpoint.js';
import { MAX_SLOT, RootFileSystem } from './root-fs.js';
import { daemonPaths, saveTable, type DaemonTable, type ImageSettings, type ServedImage } from './served-images.js';
import { bindImage, isOurMount, mountRootfs, notAClipMount, takeDown } from './stacked-mounts.js';
import { TREE_RESPONDER_MODULE, type TreesInit, type TreesUpdate } from '../fs/tree-responder.js';
import { startSnapshotter } from './snapshotter-host.js';
import type { SnapshotServer } from '../snapshotter/grpc-server.js';

/** What the supervisor tells its serving process about the daemon (environment CLIP_DAEMON, JSON). */
export interface DaemonRuntime {
  config: DaemonConfig;
  /** Stop once the last mount is gone (a daemon `clip mount` started for itself). */
  idleExit: boolean;
  startedAt: string;
  /** Log to this size-bounded file instead of stderr. */
  logFile?: string;
}

/** How the serving process talks to its supervisor (process.send in the real one). */
export interface SupervisorLink {
  send(m: { type: string; [k: string]: unknown }): void;
}

/** The key of an index: its header (which holds the checksum of the rest) hashed. Same file content, same key. */
export async function indexKey(file: string): Promise<string> {
  const fh = await open(file, 'r');
  try {
    const header = Buffer.alloc(HEADER_SIZE);
    await fh.read(header, 0, HEADER_SIZE, 0);
    return keyOf(header.toString('hex'));
  } finally {
    await fh.close();
  }
}

class HttpError extends Error {
  constructor(
    readonly status: number,
    message: string,
  ) {
    super(message);
  }
}

export class DaemonServer {
  private readonly root = new RootFileSystem();
  private readonly live = new Map<string, LiveImage>();
  private readonly metrics = new DaemonMetrics();
  private readonly read;
  private closeMetrics: (() => Promise<void>) | undefined;
  private table: DaemonTable;
  private session: FuseSession | undefined;
  private api: http.Server | undefined;
  private snapshotter: SnapshotServer | undefined;
  private readonly paths;
  /** API changes run one at a time. */
  private queue: Promise<unknown> = Promise.resolve();
  private upgrading = false;
  private stopping = false;

  constructor(
    private readonly runtime: DaemonRuntime,
    private readonly log: Logger,
    private readonly supervisor: SupervisorLink,
    table: DaemonTable,
  ) {
    const lastSlot = table.lastSlot;
    const validSlot = Number.isSafeInteger(lastSlot) && lastSlot! >= 1 && lastSlot! <= MAX_SLOT;
    this.table = { images: table.images.map((i) => ({ ...i })), ...(validSlot ? { lastSlot: lastSlot! } : {}) };
    this.paths = daemonPaths(runtime.config.stateDir);
    const { cacheDir, cacheBytes, memoryCacheBytes, readAhead } = runtime.config;
    const sharedBytes = Math.min(SHARED_BYTES_MAX, Math.floor(memoryCacheBytes * SHARED_SHARE));
    this.read = { cacheDir, cacheBytes, readAhead, pool: new ReadPool({ memoryBytes: memoryCacheBytes, sharedBytes }) };
    this.stopMirrorWatch = onMirrorFailure((f) => {
      this.metrics.mirrorFailed(f.registry, f.mirror);
      this.log.warn(
        { registry: f.registry, mirror: f.mirror, skipMs: f.skipMs, reason: f.reason },
        'registry mirror failed: skipped for a while',
      );
    });
  }

  private readonly stopMirrorWatch: () => void;

  /** The new serving process of an upgrade died before it served: this one goes on, and takes changes again. */
  upgradeFailed(reason: string): void {
    this.upgrading = false;
    this.log.error({ reason }, 'upgrade failed; serving on');
  }

  /** Whether nothing is served (an orphaned serving process may then just end). */
  isIdle(): boolean {
    return this.table.images.length === 0;
  }

  private get config(): DaemonConfig {
    return this.runtime.config;
  }

  private indexCopy(key: string): string {
    return path.join(this.config.stateDir, 'daemon', 'indexes', `${key}.clip`);
  }

  /** Loads every image of the table (before serving: the kernel's requests for them may be waiting). */
  async load(): Promise<void> {
    const started = performance.now();
    await Promise.all(
      this.table.images.map(async (spec) => {
        try {
          const img = await LiveImage.open(spec, spec.loadFrom, this.read, this.metrics, this.log, false);
          this.live.set(spec.key, img);
          this.root.add(spec.slot, spec.key, img.fs, () => img.metrics.firstRead());
          await img.startBackground(this.log, false);
        } catch (e) {
          // Its files now answer ENOENT; the rest of the node keeps working.
          this.log.error({ image: spec.image, index: spec.index, err: (e as Error).message }, 'cannot reload a served image');
        }
      }),
    );
    this.log.info({ images: this.live.size, ms: Math.round(performance.now() - started) }, 'images loaded');
  }

  /** Serves FUSE on the handed-over connection and opens the API. */
  async serve(fd: number, connection: ConnectionInfo): Promise<void> {
    const fuseLog = (level: 'debug' | 'info' | 'warn' | 'error', message: string): void => this.log[level]({ fuse: true }, message);
    this.session = new FuseSession(fd, this.root, {
      resume: connection,
      // Metadata of the served images is answered in the reader threads, from trees shared with them.
      responder: {
        module: TREE_RESPONDER_MODULE,
        init: { trees: [], ...(this.read.pool.blocks ? { blocks: this.read.pool.blocks.init } : {}) } satisfies TreesInit,
      },
      readers: READER_THREADS,
      log: fuseLog,
      debug: this.config.logLevel === 'debug' || this.config.logLevel === 'trace',
      closeFd: false,
      onOp: this.metrics.onOp,
    }).start();
    // Opens of a read-only image need no answer: without OPEN(DIR) and RELEASE(DIR) a warm walk or start is
    // two requests a file or directory cheaper. The kernel then caches the root's listing too: told when it changes.
    const noOpen = InitFlag.NO_OPEN_SUPPORT | InitFlag.NO_OPENDIR_SUPPORT;
    if ((connection.kernelFlags & noOpen) === noOpen) {
      this.root.onListingChange = () => void this.session?.invalidateInode(ROOT_ID);
      this.session.tellReaders({ openless: true } satisfies TreesUpdate);
    }
    this.session.closed.then(
      () => {
        // Unmounted under us (umount -l by hand, a test's sweep): nothing can be served any more.
        if (this.stopping) return;
        this.log.warn('the FUSE mount was unmounted by someone else: stopping');
        void this.serially(() => this.stopAll()).catch(() => undefined);
      },
      (e: unknown) => this.log.error({ err: (e as Error).message }, 'FUSE session failed'),
    );
    this.log.info({ resent: this.session.resentRequests }, 'serving');
    // After the takeover's resend, not before: the trees are built while the images are already served.
    for (const spec of this.table.images) {
      const img = this.live.get(spec.key);
      if (img) this.shareTree(spec.slot, img);
    }
    await this.listen();
    // containerd's snapshotter: a daemon `clip mount` started for itself has no business serving it.
    if (!this.runtime.idleExit) this.snapshotter = await startSnapshotter(this.config, this.snapshotImages(), this.log);
    if (this.runtime.idleExit) {
      // Started for a mount that never came (its client died): do not linger.
      setTimeout(() => {
        if (this.table.images.length === 0) void this.serially(() => this.stopAll()).catch(() => undefined);
      }, IDLE_START_MS).unref();
    }
    if (this.config.metricsAddr !== undefined) {
      // Metrics are not worth failing the mounts for: a taken port is logged.
      this.closeMetrics = await serveDaemonMetrics(this.metrics, () => this.health(), this.config.metricsAddr).catch((e: unknown) => {
        this.log.error({ err: (e as Error).message }, 'cannot serve metrics');
        return undefined;
      });
    }
  }

  /** The snapshotter's way to the served images: its image layers are bind mounts of them, made and taken down as `clip mount` / `clip umount` do. */
  private snapshotImages() {
    const attached = (target: string): boolean => {
      const spec = this.imageAt(target);
      const m = spec?.mounts.find((x) => x.mountpoint === target);
      return m !== undefined && isOurMount(m);
    };
    return {
      attach: async (index: string, target: string): Promise<void> => {
        await this.serially(() => this.mount({ index, mountpoint: target, registry: {}, image: {}, daemon: {} }));
      },
      detach: async (target: string): Promise<void> => {
        if (!this.imageAt(target)) return;
        await this.serially(() => this.umount({ mountpoint: target })).catch(async (e: unknown) => {
          // In use (a container's overlay still over it): detached now, the image served until nothing uses it.
          if (!isClipError(e) || e.code !== 'BUSY') throw e;
          await this.serially(() => this.umount({ mountpoint: target, lazy: true }));
        });
      },
      attached,
    };
  }

  private async listen(): Promise<void> {
    const socket = this.paths.socket;
    await mkdir(path.dirname(socket), { recursive: true, mode: 0o700 });
    await rm(socket, { force: true });
    const server = http.createServer((req, res) => void this.handle(req, res));
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(socket, () => resolve());
    });
    await chmod(socket, 0o600);
    this.api = server;
  }

  private async handle(req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    const reply = (status: number, body: unknown): void => {
      const text = JSON.stringify(body);
      // A length, not chunks: the CLI's fast path reads the answer by hand (cli/fast-mount.ts).
      res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) }).end(text, () => {
        if (this.endAfterReply) this.supervisor.send({ type: 'stop' });
      });
    };
    try {
      const url = new URL(req.url ?? '/', 'http://clip');
      const route = `${req.method} ${url.pathname}`;
      switch (route) {
        case 'GET /healthz':
          return reply(200, { status: 'ok', ...this.health() });
        case 'GET /v1/ps':
          return reply(200, this.ps());
        case 'GET /v1/stats':
          return reply(200, this.stats(url.searchParams.get('mountpoint') ?? ''));
        case 'POST /v1/mount':
          return reply(
            200,
            await this.serially(async () => {
              try {
                return await this.mount((await body(req)) as MountRequest);
              } finally {
                await this.endIfIdle();
              }
            }),
          );
        case 'POST /v1/umount':
          return reply(200, await this.serially(async () => this.umount((await body(req)) as UmountRequest)));
        case 'POST /v1/upgrade':
          if (this.upgrading) throw new HttpError(409, 'an upgrade is already under way');
          this.upgrading = true;
          // Answered first: this process is about to be replaced.
          reply(202, { pid: process.pid });
          this.supervisor.send({ type: 'upgrade' });
          return;
        case 'POST /v1/stop':
          reply(202, { pid: process.pid });
          void this.serially(() => this.stopAll());
          return;
        default:
          throw new HttpError(404, `no such API call: ${route}`);
      }
    } catch (e) {
      const status = e instanceof HttpError ? e.status : isClipError(e) ? 400 : 500;
      if (status === 500) this.log.error({ err: (e as Error).stack }, 'API call failed');
      const err: ApiError = { error: (e as Error).message, code: isClipError(e) ? e.code : 'IO' };
      reply(status, err);
    }
  }

  private health(): Record<string, unknown> {
    return { pid: process.pid, supervisor: process.ppid, version: VERSION, images: this.live.size };
  }

  private serially<T>(fn: () => Promise<T>): Promise<T> {
    if (this.upgrading) return Promise.reject(new HttpError(503, 'the daemon is being upgraded; try again in a moment'));
    if (this.stopping) return Promise.reject(new HttpError(503, 'the daemon is stopping'));
    const run = this.queue.then(fn, fn);
    this.queue = run.catch(() => undefined);
    return run;
  }

  /** Reports the table to the supervisor (what the next serving process loads) and saves the state copy. */
  private async publish(): Promise<void> {
    this.supervisor.send({ type: 'state', state: this.table });
    await mkdir(path.dirname(this.paths.table), { recursive: true, mode: 0o700 });
    await saveTable(this.paths.table, this.table);
  }

  ps(): PsReply {
    return {
      daemon: {
        pid: process.pid,
        supervisor: process.ppid,
        version: VERSION,
        started: this.runtime.startedAt,
        stateDir: this.config.stateDir,
      },
      mounts: this.table.images.map((spec) => {
        const img = this.live.get(spec.key);

        return {
          image: spec.image,
          index: spec.index,
          mountpoint: spec.mounts[0]?.mountpoint ?? this.imageDir(spec.key),
          mountpoints: spec.mounts.map((m) => m.mountpoint),
          rootfs: spec.rootfs.map((r) => r.mountpoint),
          fetchedBytes: img?.metrics.fetchedBytes() ?? 0,
          cachedBytes: img?.metrics.cachedBytes() ?? 0,
        };
      }),
    };
  }

  private imageDir(key: string): string {
    return path.join(this.paths.root, key);
  }

  /** The image a mountpoint (read-only mount, rootfs, or the image's own directory) belongs to. */
  private imageAt(mountpoint: string): ServedImage | undefined {
    return this.table.images.find(
      (i) =>
        this.imageDir(i.key) === mountpoint ||
        i.mounts.some((m) => m.mountpoint === mountpoint) ||
        i.rootfs.some((r) => r.mountpoint === mountpoint),
    );
  }

  stats(mountpoint: string): StatsReply {
    const spec = this.imageAt(path.resolve(mountpoint));
    const img = spec && this.live.get(spec.key);
    if (!spec || !img) throw new HttpError(404, `${path.resolve(mountpoint)} is not a clip mount`);
    const byLayer = new Map(img.metrics.summary().map((l) => [l.layer, l]));
    const none = { fetchedBytes: 0, requests: 0, cacheHits: 0, cacheMisses: 0, cachedBytes: 0 };
    return {
      index: spec.index,
      layers: img.index.layers.map((l) => ({ ...none, ...byLayer.get(l.digest), layer: l.digest, compressedSize: l.spans.compressedSize })),
    };
  }

  /**
   * Refuses what cannot be done as asked: the daemon's own settings are the
   * node's, and an image already served keeps the settings it was mounted with.
   */
  private checkSettings(req: MountRequest, served: ServedImage | undefined): void {
    const c = this.config;
    const image = req.image ?? {};
    const running: MountSettings = {
      logLevel: c.logLevel,
      cacheDir: c.cacheDir,
      cacheBytes: c.cacheBytes,
      ...(c.metricsAddr !== undefined ? { metricsAddr: c.metricsAddr } : {}),
      // A new image takes what is asked; a served one has what it has.
      ...(served ? served.settings : image),
    };
    const asked = { ...(req.daemon ?? {}), ...image } as Partial<MountSettings>;
    const differs = settingsConflicts(asked, running);
    if (differs.length === 0) return;
    const who = `the clip daemon (pid ${process.ppid}, state dir ${c.stateDir})`;
    throw new ClipError(
      'BAD_ARGUMENT',
      served
        ? `${req.index} is already mounted (served by ${who}) with other settings: ${differs.join(', ')}; give the same flags (or none), or unmount its mounts first (--log-level, --cache-dir, --cache-size and --metrics-addr are the daemon's: restart it with them)`
        : `${who} runs with other settings: ${differs.join(', ')}; give the same flags (or none), or restart the daemon with them`,
    );
  }

  private async mount(req: MountRequest): Promise<MountReply> {
    const started = performance.now();
    if (typeof req?.index !== 'string' || (req.mountpoint === undefined) === (req.rootfs === undefined))
      throw new HttpError(400, 'a mount needs an index and either a mountpoint or a rootfs');
    const rootfs = req.rootfs !== undefined;
    const given = (rootfs ? req.rootfs : req.mountpoint)!;
    let target: string;
    try {
      target = await realpath(given);
      if (!(await stat(target)).isDirectory()) throw Object.assign(new Error('not a directory'), { code: 'ENOTDIR' });
    } catch (e) {
      const what = rootfs ? 'rootfs directory' : 'mount point';
      const hint = (e as NodeJS.ErrnoException).code === 'ENOENT' ? ' (create the directory first)' : '';
      throw new ClipError('BAD_ARGUMENT', `${what} ${given}: ${pathProblem(given, e)}${hint}`);
    }
    if (isMounted(target) || this.imageAt(target))
      throw new ClipError('BAD_ARGUMENT', `${target} is already a mount point (busy); unmount it first`);
    const key = await indexKey(req.index).catch((e: unknown) => {
      throw new ClipError('IO', `cannot read index ${req.index}: ${pathProblem(req.index, e)}`);
    });
    const asked = this.imageSettings(req.image ?? {});
    let spec = this.table.images.find((i) => i.key === key);
    this.checkSettings(req, spec);
    let fresh = false;
    if (!spec) {
      spec = await this.addImage(key, req, asked);
      fresh = true;
    }
    try {
      const source = this.imageDir(key);
      if (rootfs) {
        const r = await mountRootfs(source, target, this.config.dataDir, {
          ...(req.upperDir !== undefined ? { upperDir: req.upperDir } : {}),
          ...(req.workDir !== undefined ? { workDir: req.workDir } : {}),
        });
        spec.rootfs.push(r);
      } else {
        spec.mounts.push(await bindImage(source, target));
      }
    } catch (e) {
      if (fresh) await this.removeImage(spec);
      throw e;
    }
    await this.publish();
    const live = this.live.get(key);
    this.log.info(
      {
        image: spec.image,
        index: spec.index,
        kind: live ? KIND_NAMES[live.index.kind] : undefined,
        mountpoint: target,
        rootfs,
        cacheDir: this.config.cacheDir,
        ms: Math.round(performance.now() - started),
      },
      'mounted',
    );
    return { mountpoint: target };
  }

  /** An image's settings: what was asked, else the daemon's defaults. */
  private imageSettings(asked: ImageSettings): ImageSettings {
    const s: ImageSettings = { ...asked };
    if (s.prefetchRate === undefined && this.config.prefetch) s.prefetchRate = this.config.prefetchRate;
    return s;
  }

  /** A slot, not the one an image had last: they go round (see DaemonTable.lastSlot). */
  private freeSlot(): number {
    const used = new Set(this.table.images.map((i) => i.slot));
    // Not the lowest free slot: the kernel may still cache inodes of the image that last had it
    // (same inode numbers, other files: the next image's directory would show the old one's
    // entries). Slots go round, after the one given last.
    const last = this.table.lastSlot ?? 0;
    for (let i = 1; i <= MAX_SLOT; i++) {
      const s = ((last + i - 1) % MAX_SLOT) + 1;
      if (!used.has(s)) {
        this.table.lastSlot = s;
        return s;
      }
    }
    throw new ClipError('UNSUPPORTED', `the daemon serves ${MAX_SLOT} images already`);
  }

  /** Slots whose image tree the FUSE reader threads hold (a tree too large to share is served from here). */
  private readonly trees = new Set<number>();
  /**
   * Builds the tree in steps, serving meanwhile (until it is there, the reader
   * threads pass the image's requests on to this thread, which answers them the same).
   */
  private shareTree(slot: number, img: LiveImage): void {
    img.fs.sharedTreeAsync().then(
      (tree) => {
        // Gone (unmounted) while it was being built: nothing to share.
        if (this.live.get(img.spec.key) !== img || this.stopping) return;
        this.trees.add(slot);
        const layers = img.blockTables;
        this.session?.tellReaders({ add: slot, tree, ...(layers ? { layers } : {}) } satisfies TreesUpdate);
      },
      (e: unknown) => this.log.warn({ image: img.metrics.image, err: (e as Error).message }, 'metadata served from the main thread'),
    );
  }

  private unshareTree(slot: number): void {
    if (!this.trees.delete(slot)) return;
    this.session?.tellReaders({ remove: slot } satisfies TreesUpdate);
  }

  private async addImage(key: string, req: MountRequest, settings: ImageSettings): Promise<ServedImage> {
    const copy = this.indexCopy(key);
    await mkdir(path.dirname(copy), { recursive: true, mode: 0o700 });
    const spec: ServedImage = {
      slot: this.freeSlot(),
      key,
      index: req.index,
      loadFrom: req.index,
      image: req.index,
      // Host settings the mount did not name are the daemon's.
      registry: { hostsDir: this.config.hostsDir, ...(req.registry ?? {}) },
      settings,
      mounts: [],
      rootfs: [],
      startedAt: new Date().toISOString(),
    };
    const img = await LiveImage.open(spec, req.index, this.read, this.metrics, this.log, true);
    spec.image = img.metrics.image;
    try {
      // The serving process after this one reads the copy: the user's file may change or go meanwhile.
      // (An archive's data follows its index in the same file: that file it is.)
      if (img.index.kind !== 'archive') {
        await copyFile(req.index, copy);
        spec.loadFrom = copy;
      }
      this.live.set(key, img);
      this.root.add(spec.slot, key, img.fs, () => img.metrics.firstRead());
      this.shareTree(spec.slot, img);
      await img.startBackground(this.log, true);
    } catch (e) {
      this.live.delete(key);
      this.root.remove(spec.slot);
      this.unshareTree(spec.slot);
      await img.close(this.log, this.metrics);
      throw e;
    }
    this.table.images.push(spec);
    return spec;
  }

  private async removeImage(spec: ServedImage): Promise<void> {
    this.table.images = this.table.images.filter((i) => i !== spec);
    this.root.remove(spec.slot);
    this.unshareTree(spec.slot);
    const img = this.live.get(spec.key);
    this.live.delete(spec.key);
    await img?.close(this.log, this.metrics);
    await rm(this.indexCopy(spec.key), { force: true });
  }

  private async umount(req: UmountRequest): Promise<UmountReply> {
    const mp = path.resolve(String(req?.mountpoint ?? ''));
    const spec = this.imageAt(mp);
    if (!spec) throw notAClipMount(mp);
    let kept: string | undefined;
    const r = spec.rootfs.find((x) => x.mountpoint === mp);
    const b = spec.mounts.find((x) => x.mountpoint === mp);
    const recorded = r ?? b;
    if (recorded) {
      // Unmounted behind the daemon's back: the entry goes; whatever sits there now is not clip's.
      const now = findMount(mp);
      if (!now || !isSameMount(recorded.mount, mountIdentity(now))) {
        spec.rootfs = spec.rootfs.filter((x) => x !== recorded);
        spec.mounts = spec.mounts.filter((x) => x !== recorded);
        if (spec.rootfs.length === 0 && spec.mounts.length === 0) await this.removeImage(spec);
        await this.publish();
        await this.endIfIdle();
        if (now) throw new ClipError('BAD_ARGUMENT', `${mp} is not a clip mount (a ${now.fsType} mount clip did not make; left alone)`);
        return {};
      }
    }
    if (r) {
      kept = (await takeDown(r, { lazy: req.lazy === true })).kept;
      spec.rootfs = spec.rootfs.filter((x) => x !== r);
    } else if (b) {
      await takeDown(b, { lazy: req.lazy === true });
      spec.mounts = spec.mounts.filter((x) => x !== b);
    } else if (spec.rootfs.length > 0 || spec.mounts.length > 0) {
      const users = [...spec.rootfs, ...spec.mounts].map((x) => x.mountpoint);
      throw new ClipError('BAD_ARGUMENT', `${mp} is the image under ${users.join(', ')}; unmount those instead`);
    }
    // A lazily detached mount may still be reading the image: it stays served (by nothing named) until the daemon ends.
    if (spec.rootfs.length === 0 && spec.mounts.length === 0 && !req.lazy) await this.removeImage(spec);
    await this.publish();
    this.log.info({ mountpoint: mp }, 'unmounted');
    await this.endIfIdle();
    return kept === undefined ? {} : { kept };
  }

  /**
   * A daemon `clip mount` started ends when it serves nothing (its last mount
   * went, or the mount it was started for failed): everything is down before
   * the answer, and the supervisor is told to end once it is sent.
   */
  private async endIfIdle(): Promise<void> {
    if (!this.runtime.idleExit || this.table.images.length > 0 || this.stopping) return;
    await this.stopAll(false);
    this.endAfterReply = true;
  }

  /** Set when the answer being sent is the last: the supervisor is told to end after it. */
  private endAfterReply = false;

  /** Takes down every mount (overlays and bind mounts, then the FUSE mount) and tells the supervisor to end (now, or after the answer). */
  async stopAll(tell = true): Promise<void> {
    if (this.stopping) return;
    this.stopping = true;
    this.stopMirrorWatch();
    this.log.info('stopping: unmounting everything');
    this.api?.close();
    await this.snapshotter?.close().catch(() => undefined);
    await this.closeMetrics?.().catch(() => undefined);
    await rm(this.paths.socket, { force: true });
    for (const spec of this.table.images) {
      for (const m of [...spec.rootfs, ...spec.mounts]) await takeDown(m, { lazy: true }).catch(() => undefined);
    }
    for (const spec of [...this.table.images]) await this.removeImage(spec);
    await this.publish().catch(() => undefined);
    await unmount(this.paths.root).catch((e: unknown) => this.log.warn({ err: (e as Error).message }, 'unmounting the FUSE mount'));
    if (tell) this.supervisor.send({ type: 'stop' });
  }
}

const MAX_BODY = 1024 * 1024;
/** Reader threads of the FUSE session: they answer metadata themselves, so two use both cores. */
const READER_THREADS = 2;
/**
 * The share of the memory cache the reader threads serve READs from
 * (content/shared-blocks.ts), and its ceiling: the spans reads used, copied
 * there, so a warm read never waits for this thread.
 */
const SHARED_SHARE = 1 / 4;
const SHARED_BYTES_MAX = 1024 * 1024 * 1024;
/** How long a daemon started by `clip mount` waits for its first mount. */
const IDLE_START_MS = 30_000;

function body(req: http.IncomingMessage): Promise<unknown> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    req.on('data', (c: Buffer) => {
      size += c.length;
      if (size > MAX_BODY) {
        reject(new HttpError(413, 'request too large'));
        req.destroy();
      } else chunks.push(c);
    });
    req.on('end', () => {
      try {
        resolve(JSON.parse(Buffer.concat(chunks).toString('utf8')));
      } catch {
        reject(new HttpError(400, 'the request body is not JSON'));
      }
    });
    req.on('error', reject);
  });
}
