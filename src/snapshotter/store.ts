// The snapshotter's metadata: every snapshot (key or committed name, kind,
// parent, labels, times, its directory's id) in one JSON file under the
// snapshotter's root, rewritten whole and atomically after each change, so a
// restarted daemon (or a rebooted node) finds exactly what containerd was told.

import { readFile } from 'node:fs/promises';
import { ClipError } from '../errors.js';
import { writeFileAtomic } from '../util/atomic-write.js';

export type SnapshotKind = 'view' | 'active' | 'committed';

/** A layer clip did not unpack: one layer of an image served by its merged clip mount. */
export interface RemoteLayerRecord {
  imageRef: string;
  manifestDigest: string;
  layerDigest: string;
  /** The image's top layer: its fs dir is the image's clip mount (from `index`). Lower layers are empty placeholders. */
  top: boolean;
  index?: string;
}

export interface SnapshotRecord {
  /** The directory snapshots/<id>. */
  id: number;
  /** The key (active, view) or the name (committed). */
  name: string;
  parent?: string;
  kind: SnapshotKind;
  labels: Record<string, string>;
  created: string;
  updated: string;
  /** Disk usage measured at commit. */
  size?: number;
  inodes?: number;
  remote?: RemoteLayerRecord;
}

interface StoreFile {
  version: 1;
  nextId: number;
  snapshots: SnapshotRecord[];
}

const KINDS: readonly string[] = ['view', 'active', 'committed'];

function isRecord(x: unknown): x is SnapshotRecord {
  if (typeof x !== 'object' || x === null) return false;
  const r = x as Record<string, unknown>;
  return (
    Number.isSafeInteger(r['id']) &&
    (r['id'] as number) > 0 &&
    typeof r['name'] === 'string' &&
    (r['parent'] === undefined || typeof r['parent'] === 'string') &&
    KINDS.includes(r['kind'] as string) &&
    typeof r['labels'] === 'object' &&
    r['labels'] !== null &&
    Object.values(r['labels']).every((v) => typeof v === 'string') &&
    typeof r['created'] === 'string' &&
    typeof r['updated'] === 'string'
  );
}

export class SnapshotStore {
  private readonly byName = new Map<string, SnapshotRecord>();
  private nextId = 1;

  private constructor(private readonly file: string) {}

  /** The store saved in `file`; none yet is an empty store, a damaged one an error (never silently forgotten). */
  static async open(file: string): Promise<SnapshotStore> {
    const store = new SnapshotStore(file);
    let text: string;
    try {
      text = await readFile(file, 'utf8');
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') return store;
      throw new ClipError('IO', `cannot read snapshot metadata ${file}: ${(e as Error).message}`);
    }
    let doc: StoreFile;
    try {
      doc = JSON.parse(text) as StoreFile;
    } catch {
      throw new ClipError('BAD_INDEX', `snapshot metadata ${file} is not JSON (damaged?)`);
    }
    if (doc?.version !== 1 || !Number.isSafeInteger(doc.nextId) || !Array.isArray(doc.snapshots) || !doc.snapshots.every(isRecord))
      throw new ClipError('BAD_INDEX', `snapshot metadata ${file} is not a clip snapshot store (damaged?)`);
    for (const r of doc.snapshots) store.byName.set(r.name, r);
    store.nextId = Math.max(doc.nextId, ...doc.snapshots.map((r) => r.id + 1));
    return store;
  }

  get(name: string): SnapshotRecord | undefined {
    return this.byName.get(name);
  }

  all(): SnapshotRecord[] {
    return [...this.byName.values()];
  }

  children(name: string): SnapshotRecord[] {
    return this.all().filter((r) => r.parent === name);
  }

  allocateId(): number {
    return this.nextId++;
  }

  put(r: SnapshotRecord): void {
    this.byName.set(r.name, r);
  }

  delete(name: string): void {
    this.byName.delete(name);
  }

  rename(from: string, to: SnapshotRecord): void {
    this.byName.delete(from);
    this.byName.set(to.name, to);
  }

  /** Writes the whole store (fsync + rename: it outlives reboots, as the snapshots do). */
  async save(): Promise<void> {
    const doc: StoreFile = { version: 1, nextId: this.nextId, snapshots: this.all() };
    await writeFileAtomic(this.file, Buffer.from(JSON.stringify(doc) + '\n'), { mode: 0o600 });
  }
}
