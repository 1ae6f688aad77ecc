// clip's containerd snapshotter: containerd's snapshot semantics (Prepare,
// View, Mounts, Commit, Remove, Stat, Update, Usage, Walk, Cleanup) laid out
// as its overlayfs snapshotter lays them out (snapshots/<id>/fs and work,
// committed snapshots as lower dirs, active ones as overlay mounts), plus
// lazy layers: a layer Prepare that names an image clip has an index for is
// committed at once without unpacking (answered AlreadyExists, as remote
// snapshotters do), the image's top layer backed by the image's one merged
// clip mount and the layers under it empty placeholders. No gRPC here.

import { existsSync } from 'node:fs';
import { mkdir, readdir, rm } from 'node:fs/promises';
import path from 'node:path';
import { findMount } from '../fuse/index.js';
import { diskUsage } from './disk-usage.js';
import { FilterError, parseFilters } from './filters.js';
import { IndexLayers, type FindImageIndex } from './index-lookup.js';
import { CLIP_REMOTE, labelProblem, readRemoteLabels, type RemoteLayer } from './labels.js';
import { SnapshotStore, type SnapshotKind, type SnapshotRecord } from './store.js';

export type SnapshotErrorCode = 'NotFound' | 'AlreadyExists' | 'FailedPrecondition' | 'InvalidArgument';

/** An answer with containerd's meaning (errdefs): the gRPC layer turns the code into a status. */
export class SnapshotError extends Error {
  constructor(
    readonly code: SnapshotErrorCode,
    message: string,
  ) {
    super(message);
  }
}

export interface Mount {
  type: string;
  source: string;
  options: string[];
}

export interface SnapshotInfo {
  name: string;
  parent: string;
  kind: SnapshotKind;
  labels: Record<string, string>;
  created: Date;
  updated: Date;
}

/** How the snapshotter gets an image's merged clip mount (the daemon's served images). */
export interface ImageMounts {
  /** Serves the image of `index` and binds its directory read-only at `target`. */
  attach(index: string, target: string): Promise<void>;
  /** Takes the bind at `target` down (lazily if it is in use); the image goes when nothing else uses it. */
  detach(target: string): Promise<void>;
  /** Whether the daemon serves an image at `target` now. */
  attached(target: string): boolean;
}

export interface SnapshotterLog {
  info(o: object, msg: string): void;
  warn(o: object, msg: string): void;
  error(o: object, msg: string): void;
}

export interface SnapshotterOptions {
  /** Holds metadata.json and snapshots/<id>/{fs,work}. */
  root: string;
  findIndex: FindImageIndex;
  images: ImageMounts;
  log: SnapshotterLog;
}

export class Snapshotter {
  private queue: Promise<unknown> = Promise.resolve();
  private readonly indexLayers = new IndexLayers();
  private readonly overlayOptions: string[];

  private constructor(
    private readonly opts: SnapshotterOptions,
    private readonly store: SnapshotStore,
  ) {
    // As containerd's overlayfs does: the same lower dirs under many uppers need the index feature off.
    this.overlayOptions = existsSync('/sys/module/overlay/parameters/index') ? ['index=off'] : [];
  }

  static async open(opts: SnapshotterOptions): Promise<Snapshotter> {
    await mkdir(path.join(opts.root, 'snapshots'), { recursive: true, mode: 0o700 });
    return new Snapshotter(opts, await SnapshotStore.open(path.join(opts.root, 'metadata.json')));
  }

  private dir(r: SnapshotRecord): string {
    return path.join(this.opts.root, 'snapshots', String(r.id));
  }

  private fsDir(r: SnapshotRecord): string {
    return path.join(this.dir(r), 'fs');
  }

  /** Changes run one at a time (each ends with the store saved). */
  private serially<T>(fn: () => Promise<T>): Promise<T> {
    const run = this.queue.then(fn, fn);
    this.queue = run.catch(() => undefined);
    return run;
  }

  /** Brings back the clip mounts of lazily committed images that are not served (after the whole daemon restarted, or a reboot). */
  async restoreImageMounts(): Promise<void> {
    for (const r of this.store.all()) {
      if (!r.remote?.top || r.remote.index === undefined) continue;
      const target = this.fsDir(r);
      if (this.opts.images.attached(target)) continue;
      try {
        await mkdir(target, { recursive: true });
        await this.opts.images.attach(r.remote.index, target);
        this.opts.log.info({ snapshot: r.name, index: r.remote.index }, 'snapshotter: image mount restored');
      } catch (e) {
        this.opts.log.error(
          { snapshot: r.name, index: r.remote.index, err: (e as Error).message },
          'snapshotter: cannot restore an image mount',
        );
      }
    }
  }

  private must(key: string): SnapshotRecord {
    const r = this.store.get(key);
    if (!r) throw new SnapshotError('NotFound', `snapshot ${key}: not found`);
    return r;
  }

  stat(key: string): SnapshotInfo {
    return info(this.must(key));
  }

  prepare(key: string, parent: string, labels: Record<string, string>): Promise<Mount[]> {
    return this.serially(() => this.create('active', key, parent, labels));
  }

  view(key: string, parent: string, labels: Record<string, string>): Promise<Mount[]> {
    return this.serially(() => this.create('view', key, parent, labels));
  }

  private async create(kind: 'active' | 'view', key: string, parent: string, labels: Record<string, string>): Promise<Mount[]> {
    if (key === '') throw new SnapshotError('InvalidArgument', 'a snapshot needs a key');
    const bad = labelProblem(labels);
    if (bad !== undefined) throw new SnapshotError('InvalidArgument', bad);
    if (this.store.get(key)) throw new SnapshotError('AlreadyExists', `snapshot ${key}: already exists`);
    if (parent !== '') {
      const p = this.store.get(parent);
      if (!p) throw new SnapshotError('NotFound', `parent snapshot ${parent} does not exist`);
      if (p.kind !== 'committed') throw new SnapshotError('InvalidArgument', `parent ${parent} is not a committed snapshot`);
    }
    if (kind === 'active') {
      const remote = readRemoteLabels(labels);
      if (typeof remote === 'string') this.opts.log.warn({ key, problem: remote }, 'snapshotter: ignoring remote-snapshot labels');
      else if (remote !== undefined && (await this.commitRemote(remote, parent, labels)))
        throw new SnapshotError('AlreadyExists', `target snapshot ${remote.target}: already exists`);
    }
    this.checkBase(parent);
    const now = new Date().toISOString();
    const r: SnapshotRecord = { id: this.store.allocateId(), name: key, kind, labels: { ...labels }, created: now, updated: now };
    if (parent !== '') r.parent = parent;
    await mkdir(this.fsDir(r), { recursive: true, mode: 0o755 });
    if (kind === 'active') await mkdir(path.join(this.dir(r), 'work'), { recursive: true, mode: 0o700 });
    this.store.put(r);
    try {
      await this.store.save();
    } catch (e) {
      this.store.delete(key);
      await rm(this.dir(r), { recursive: true, force: true });
      throw e;
    }
    return this.mountsOf(r);
  }

  /**
   * A snapshot over a placeholder (a lower layer of a lazily served image)
   * would see nothing of that layer's files: refused, rather than a rootfs
   * missing them. (Over the image's top layer is fine: it is the whole image.)
   */
  private checkBase(parent: string): void {
    for (let p = parent === '' ? undefined : this.store.get(parent); p; p = p.parent ? this.store.get(p.parent) : undefined) {
      if (p.remote?.top) return;
      if (p.remote)
        throw new SnapshotError(
          'FailedPrecondition',
          `parent ${p.name} is a layer of ${p.remote.imageRef} that clip serves only as part of that image's merged mount, not by itself; unpack this image with another snapshotter, or index it (clip index) to run it lazily`,
        );
    }
  }

  /**
   * Commits a labelled layer without unpacking it when the image has an
   * index that lists the layer; returns whether it did (or the target was
   * there already). Anything else falls back to an ordinary Prepare.
   */
  private async commitRemote(remote: RemoteLayer, parent: string, labels: Record<string, string>): Promise<boolean> {
    const { log } = this.opts;
    let index: string | undefined;
    try {
      index = await this.opts.findIndex(remote.imageRef, remote.manifestDigest);
    } catch (e) {
      log.warn({ image: remote.imageRef, err: (e as Error).message }, 'snapshotter: index lookup failed; unpacking');
      return false;
    }
    if (index === undefined) return false;
    let layers: string[];
    try {
      const read = await this.indexLayers.of(index);
      if (read.manifestDigest !== remote.manifestDigest) throw new Error(`it indexes manifest ${read.manifestDigest}`);
      layers = read.layers;
    } catch (e) {
      log.warn({ image: remote.imageRef, index, err: (e as Error).message }, 'snapshotter: index unusable; unpacking');
      return false;
    }
    const at = layers.indexOf(remote.layerDigest);
    if (at < 0 || (at === 0) !== (parent === '')) {
      log.warn(
        { image: remote.imageRef, index, layer: remote.layerDigest },
        'snapshotter: the index does not list this layer there; unpacking',
      );
      return false;
    }
    const top = at === layers.length - 1;
    const existing = this.store.get(remote.target);
    if (existing) {
      if (existing.kind !== 'committed' || (existing.parent ?? '') !== parent) return false;
      // A placeholder that is this image's top: it becomes the image (the images it was a placeholder for do not look at it).
      if (top && existing.remote && !existing.remote.top) {
        await this.attachImage(existing, index);
        existing.remote = { ...existing.remote, top: true, index };
        existing.updated = new Date().toISOString();
        await this.store.save();
      }
      return true;
    }
    const now = new Date().toISOString();
    const r: SnapshotRecord = {
      id: this.store.allocateId(),
      name: remote.target,
      kind: 'committed',
      labels: { ...labels, [CLIP_REMOTE]: top ? 'image' : 'placeholder' },
      created: now,
      updated: now,
      size: 0,
      inodes: 0,
      remote: {
        imageRef: remote.imageRef,
        manifestDigest: remote.manifestDigest,
        layerDigest: remote.layerDigest,
        top,
        ...(top ? { index } : {}),
      },
    };
    if (parent !== '') r.parent = parent;
    await mkdir(this.fsDir(r), { recursive: true, mode: 0o755 });
    try {
      if (top) await this.attachImage(r, index);
      this.store.put(r);
      await this.store.save();
    } catch (e) {
      this.store.delete(r.name);
      if (top) await this.opts.images.detach(this.fsDir(r)).catch(() => undefined);
      await this.removeDir(r);
      throw e;
    }
    log.info({ snapshot: r.name, image: remote.imageRef, layer: remote.layerDigest, top }, 'snapshotter: layer committed remotely');
    return true;
  }

  private async attachImage(r: SnapshotRecord, index: string): Promise<void> {
    await this.opts.images.attach(index, this.fsDir(r));
  }

  mounts(key: string): Mount[] {
    const r = this.must(key);
    if (r.kind === 'committed') throw new SnapshotError('FailedPrecondition', `requested snapshot ${key} not active or view`);
    return this.mountsOf(r);
  }

  /** The lower dirs of a snapshot, nearest first: its committed ancestors, down to an image's top layer (the whole image). */
  private lowers(r: SnapshotRecord): string[] {
    const out: string[] = [];
    for (let p = r.parent ? this.store.get(r.parent) : undefined; p; p = p.parent ? this.store.get(p.parent) : undefined) {
      out.push(this.fsDir(p));
      if (p.remote?.top) break;
    }
    return out;
  }

  private mountsOf(r: SnapshotRecord): Mount[] {
    const lowers = this.lowers(r);
    const ro = r.kind === 'view';
    if (lowers.length === 0) return [{ type: 'bind', source: this.fsDir(r), options: [ro ? 'ro' : 'rw', 'rbind'] }];
    if (ro && lowers.length === 1) return [{ type: 'bind', source: lowers[0]!, options: ['ro', 'rbind'] }];
    const options = [...this.overlayOptions];
    if (!ro) options.push(`workdir=${path.join(this.dir(r), 'work')}`, `upperdir=${this.fsDir(r)}`);
    options.push(`lowerdir=${lowers.join(':')}`);
    return [{ type: 'overlay', source: 'overlay', options }];
  }

  commit(name: string, key: string, labels: Record<string, string>): Promise<void> {
    return this.serially(async () => {
      const bad = labelProblem(labels);
      if (bad !== undefined) throw new SnapshotError('InvalidArgument', bad);
      const r = this.store.get(key);
      if (!r) throw new SnapshotError('NotFound', `failed to get active snapshot ${JSON.stringify(key)}: not found`);
      if (r.kind !== 'active') throw new SnapshotError('FailedPrecondition', `snapshot ${JSON.stringify(key)} is not active`);
      if (this.store.get(name)) throw new SnapshotError('AlreadyExists', `committed snapshot ${name}: already exists`);
      const usage = await diskUsage(this.fsDir(r));
      const now = new Date().toISOString();
      const c: SnapshotRecord = { ...r, name, kind: 'committed', labels: { ...labels }, updated: now, ...usage };
      this.store.rename(key, c);
      try {
        await this.store.save();
      } catch (e) {
        this.store.rename(name, r);
        throw e;
      }
      // The work dir is for an overlay's upper only.
      await rm(path.join(this.dir(r), 'work'), { recursive: true, force: true });
    });
  }

  remove(key: string): Promise<void> {
    return this.serially(async () => {
      const r = this.must(key);
      if (this.store.children(key).length > 0) throw new SnapshotError('FailedPrecondition', `cannot remove snapshot ${key} with child`);
      if (r.remote?.top) await this.opts.images.detach(this.fsDir(r));
      this.store.delete(key);
      await this.store.save();
      await this.removeDir(r);
    });
  }

  /** Removes a snapshot's directory unless something is still mounted in it (then Cleanup tries again later). */
  private async removeDir(r: SnapshotRecord): Promise<void> {
    if (findMount(this.fsDir(r))) {
      this.opts.log.warn({ snapshot: r.name, dir: this.dir(r) }, 'snapshotter: directory still mounted; left for cleanup');
      return;
    }
    await rm(this.dir(r), { recursive: true, force: true });
  }

  update(name: string, labels: Record<string, string>, fieldPaths: string[]): Promise<SnapshotInfo> {
    return this.serially(async () => {
      const r = this.must(name);
      const bad = labelProblem(labels);
      if (bad !== undefined) throw new SnapshotError('InvalidArgument', bad);
      let next: Record<string, string>;
      if (fieldPaths.length === 0) next = { ...labels };
      else {
        next = { ...r.labels };
        for (const p of fieldPaths) {
          if (p === 'labels') next = { ...labels };
          else if (p.startsWith('labels.')) {
            const k = p.slice('labels.'.length);
            if (labels[k] === undefined) delete next[k];
            else next[k] = labels[k];
          } else throw new SnapshotError('InvalidArgument', `cannot update ${JSON.stringify(p)} field on snapshot ${JSON.stringify(name)}`);
        }
      }
      // What clip marks its remote layers with stays: Cleanup and `ctr snapshot info` rely on it.
      if (r.labels[CLIP_REMOTE] !== undefined) next[CLIP_REMOTE] = r.labels[CLIP_REMOTE];
      const before = r.labels;
      r.labels = next;
      r.updated = new Date().toISOString();
      try {
        await this.store.save();
      } catch (e) {
        r.labels = before;
        throw e;
      }
      return info(r);
    });
  }

  async usage(key: string): Promise<{ size: number; inodes: number }> {
    const r = this.must(key);
    if (r.kind === 'committed') return { size: r.size ?? 0, inodes: r.inodes ?? 0 };
    return diskUsage(this.fsDir(r));
  }

  /** The snapshots matching any of the filters (all without filters). */
  walk(filters: string[]): SnapshotInfo[] {
    let match;
    try {
      match = parseFilters(filters);
    } catch (e) {
      if (e instanceof FilterError) throw new SnapshotError('InvalidArgument', e.message);
      throw e;
    }
    return this.store
      .all()
      .filter((r) => match((p) => field(r, p)))
      .map(info);
  }

  /** Removes snapshot directories no snapshot owns (left by a crash or by a Remove while mounted). */
  cleanup(): Promise<void> {
    return this.serially(async () => {
      const owned = new Set(this.store.all().map((r) => String(r.id)));
      const base = path.join(this.opts.root, 'snapshots');
      for (const name of await readdir(base)) {
        if (owned.has(name) || !/^\d+$/.test(name)) continue;
        const fs = path.join(base, name, 'fs');
        if (findMount(fs)) {
          await this.opts.images.detach(fs).catch(() => undefined);
          if (findMount(fs)) continue;
        }
        await rm(path.join(base, name), { recursive: true, force: true });
      }
    });
  }
}

const KIND_NAMES: Record<SnapshotKind, string> = { view: 'View', active: 'Active', committed: 'Committed' };

function info(r: SnapshotRecord): SnapshotInfo {
  return {
    name: r.name,
    parent: r.parent ?? '',
    kind: r.kind,
    labels: { ...r.labels },
    created: new Date(r.created),
    updated: new Date(r.updated),
  };
}

/** A field of a snapshot as containerd's filters name it. */
function field(r: SnapshotRecord, p: string[]): string | undefined {
  switch (p[0]) {
    case 'name':
      return p.length === 1 ? r.name : undefined;
    case 'parent':
      return p.length === 1 ? (r.parent ?? '') : undefined;
    case 'kind':
      // As containerd's Kind.String() spells them.
      return p.length === 1 ? KIND_NAMES[r.kind] : undefined;
    case 'labels':
      return p.length === 2 ? r.labels[p[1]!] : undefined;
    default:
      return undefined;
  }
}
