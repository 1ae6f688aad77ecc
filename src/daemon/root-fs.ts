// Every image the daemon serves, in one FUSE filesystem: the root lists one
// directory per image (named by its key), and each image's tree keeps its
// index's inode numbers in a range of its own. One connection, one session
// and one reader thread serve any number of images (a mount per image would
// cost a reader thread and a V8 isolate each), and a takeover hands over one
// descriptor. A user's mountpoint is a bind mount of the image's directory;
// a rootfs is an overlay with that directory as its lower layer.
//
// Inode numbers are slot * 2^32 + the index's own: the same image at the same
// slot has the same numbers in every generation of the serving process, as
// the kernel requires after a takeover.

import {
  FuseError,
  type AttrReply,
  type DirEntry,
  type Entry,
  type FileSystem,
  type LookupContext,
  type OpenResult,
  type StatFs,
} from '../fuse/index.js';
import type { ImageFileSystem } from '../fs/image-fs.js';

const ROOT = 1;
const SLOT_SPAN = 2 ** 32;
/** Slots stay below 2^20: inode numbers must stay exact in a double (2^52). */
export const MAX_SLOT = 2 ** 20 - 1;
const S_IFDIR = 0o040000;

interface Served {
  key: string;
  fs: ImageFileSystem;
  /** Told of every READ answered (first-read metrics). */
  onRead: (() => void) | undefined;
}

export function slotInode(slot: number, ino: number): number {
  return slot * SLOT_SPAN + ino;
}

export class RootFileSystem implements FileSystem {
  private readonly bySlot = new Map<number, Served>();
  private readonly byKey = new Map<string, number>();
  private readonly startedAt = { sec: Math.floor(Date.now() / 1000), nsec: 0 };

  add(slot: number, key: string, fs: ImageFileSystem, onRead?: () => void): void {
    if (!Number.isSafeInteger(slot) || slot < 1 || slot > MAX_SLOT) throw new Error(`bad image slot ${slot}`);
    if (this.bySlot.has(slot) || this.byKey.has(key)) throw new Error(`image slot ${slot} or key ${key} is taken`);
    this.bySlot.set(slot, { key, fs, onRead });
    this.byKey.set(key, slot);
  }

  remove(slot: number): void {
    const s = this.bySlot.get(slot);
    if (!s) return;
    this.bySlot.delete(slot);
    this.byKey.delete(s.key);
  }

  /** Which image an inode belongs to, and its number in that image's index. */
  private split(ino: number): { fs: ImageFileSystem; slot: number; local: number } {
    const slot = Math.floor(ino / SLOT_SPAN);
    const s = this.bySlot.get(slot);
    if (!s) throw new FuseError('ENOENT');
    return { fs: s.fs, slot, local: ino - slot * SLOT_SPAN };
  }

  private rootAttr(): AttrReply {
    const t = this.startedAt;
    return {
      attr: {
        ino: ROOT,
        mode: S_IFDIR | 0o755,
        nlink: 2 + this.bySlot.size,
        uid: 0,
        gid: 0,
        rdev: 0,
        size: 0,
        blocks: 0,
        blksize: 4096,
        atime: t,
        mtime: t,
        ctime: t,
      },
      timeout: 0,
    };
  }

  private static globalEntry(slot: number, e: Entry): Entry {
    return { ...e, attr: { ...e.attr, ino: slotInode(slot, e.attr.ino) } };
  }

  lookup(parent: number, name: string, ctx: LookupContext): Entry {
    if (parent === ROOT) {
      const slot = this.byKey.get(name);
      if (slot === undefined) throw new FuseError('ENOENT');
      const e = this.bySlot.get(slot)!.fs.lookupRoot();
      // The list of images changes: the name of one may not be cached for long.
      return { ...RootFileSystem.globalEntry(slot, e), entryTimeout: 1 };
    }
    const { fs, slot, local } = this.split(parent);
    return RootFileSystem.globalEntry(slot, fs.lookup(local, name, ctx));
  }

  getattr(ino: number): AttrReply {
    if (ino === ROOT) return this.rootAttr();
    const { fs, slot, local } = this.split(ino);
    const r = fs.getattr(local);
    return { ...r, attr: { ...r.attr, ino: slotInode(slot, local) } };
  }

  readlink(ino: number): string {
    const { fs, local } = this.split(ino);
    return fs.readlink(local);
  }

  open(ino: number): OpenResult {
    if (ino === ROOT) throw new FuseError('EISDIR');
    const { fs, local } = this.split(ino);
    return fs.open(local);
  }

  async read(ino: number, fh: number, offset: number, size: number): Promise<Buffer> {
    const { fs, slot, local } = this.split(ino);
    const data = await fs.read(local, fh, offset, size);
    this.bySlot.get(slot)?.onRead?.();
    return data;
  }

  opendir(ino: number): OpenResult {
    if (ino === ROOT) return {};
    const { fs, local } = this.split(ino);
    return fs.opendir(local);
  }

  *readdir(ino: number, fh: number, offset: number, plus: boolean): Iterable<DirEntry> {
    if (ino === ROOT) {
      yield* this.rootEntries(offset);
      return;
    }
    const { fs, slot, local } = this.split(ino);
    for (const e of fs.readdir(local, fh, offset, plus)) {
      const out: DirEntry = { ...e, ino: slotInode(slot, e.ino) };
      if (e.entry) out.entry = RootFileSystem.globalEntry(slot, e.entry);
      yield out;
    }
  }

  /** The root's listing: offsets 1 and 2 after "." and "..", then 2 + slot after each image (stable while images come and go). */
  private *rootEntries(offset: number): Iterable<DirEntry> {
    if (offset < 1) yield { name: '.', ino: ROOT, mode: S_IFDIR, nextOffset: 1 };
    if (offset < 2) yield { name: '..', ino: ROOT, mode: S_IFDIR, nextOffset: 2 };
    for (const slot of [...this.bySlot.keys()].sort((a, b) => a - b)) {
      if (2 + slot <= offset) continue;
      yield { name: this.bySlot.get(slot)!.key, ino: slotInode(slot, 1), mode: S_IFDIR, nextOffset: 2 + slot };
    }
  }

  statfs(ino: number): StatFs {
    if (ino === ROOT) return { blocks: 0, bfree: 0, bavail: 0, files: 0, ffree: 0, bsize: 4096, namelen: 255, frsize: 4096 };
    const { fs } = this.split(ino);
    return fs.statfs();
  }

  getxattr(ino: number, name: string): Buffer | undefined {
    if (ino === ROOT) return undefined;
    const { fs, local } = this.split(ino);
    return fs.getxattr(local, name);
  }

  listxattr(ino: number): string[] {
    if (ino === ROOT) return [];
    const { fs, local } = this.split(ino);
    return fs.listxattr(local);
  }
}
