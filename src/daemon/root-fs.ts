// Every image the daemon serves, in one FUSE filesystem: the root lists one
// directory per image (named by its key), and each image's tree keeps its
// index's inode numbers in a range of its own. One connection, one session
// and one reader thread serve any number of images (a mount per image would
// cost a reader thread and a V8 isolate each), and a takeover hands over one
// descriptor. A user's mountpoint is a bind mount of the image's directory;
// a rootfs is an overlay with that directory as its lower layer.
//
// Inode numbers are slot * 2^32 + the index's own (each image's filesystem is
// made with that base: nothing is renumbered per request): the same image at
// the same slot has the same numbers in every generation of the serving
// process, as the kernel requires after a takeover.

import {
  FuseError,
  ROOT_ID as ROOT,
  type AttrReply,
  type DirEntry,
  type Entry,
  type FileSystem,
  type LookupContext,
  type OpenResult,
  type StatFs,
} from '../fuse/index.js';
import type { ImageFileSystem } from '../fs/image-fs.js';

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
  /** Told when the root's listing changes (the kernel may cache it: see TreesUpdate's openless). */
  onListingChange: (() => void) | undefined;

  add(slot: number, key: string, fs: ImageFileSystem, onRead?: () => void): void {
    if (!Number.isSafeInteger(slot) || slot < 1 || slot > MAX_SLOT) throw new Error(`bad image slot ${slot}`);
    if (this.bySlot.has(slot) || this.byKey.has(key)) throw new Error(`image slot ${slot} or key ${key} is taken`);
    this.bySlot.set(slot, { key, fs, onRead });
    this.byKey.set(key, slot);
    this.onListingChange?.();
  }

  remove(slot: number): void {
    const s = this.bySlot.get(slot);
    if (!s) return;
    this.bySlot.delete(slot);
    this.byKey.delete(s.key);
    this.onListingChange?.();
  }

  /** The image an inode belongs to (each image's filesystem numbers its inodes in its own range: slotInode). */
  private served(ino: number): Served {
    const s = this.bySlot.get(Math.floor(ino / SLOT_SPAN));
    if (!s) throw new FuseError('ENOENT');
    return s;
  }

  private imageOf(ino: number): ImageFileSystem {
    return this.served(ino).fs;
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

  lookup(parent: number, name: string, ctx: LookupContext): Entry {
    if (parent === ROOT) {
      const slot = this.byKey.get(name);
      if (slot === undefined) throw new FuseError('ENOENT');
      // The list of images changes: the name of one may not be cached for long.
      return { ...this.bySlot.get(slot)!.fs.lookupRoot(), entryTimeout: 1 };
    }
    return this.imageOf(parent).lookup(parent, name, ctx);
  }

  getattr(ino: number): AttrReply {
    return ino === ROOT ? this.rootAttr() : this.imageOf(ino).getattr(ino);
  }

  readlink(ino: number): string {
    return this.imageOf(ino).readlink(ino);
  }

  open(ino: number): OpenResult {
    if (ino === ROOT) throw new FuseError('EISDIR');
    return this.imageOf(ino).open(ino);
  }

  async read(ino: number, fh: number, offset: number, size: number): Promise<Buffer[]> {
    const s = this.served(ino);
    const data = await s.fs.read(ino, fh, offset, size);
    s.onRead?.();
    return data;
  }

  opendir(ino: number): OpenResult {
    return ino === ROOT ? {} : this.imageOf(ino).opendir(ino);
  }

  readdir(ino: number, fh: number, offset: number, plus: boolean): Iterable<DirEntry> {
    return ino === ROOT ? this.rootEntries(offset) : this.imageOf(ino).readdir(ino, fh, offset, plus);
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
    return this.imageOf(ino).statfs();
  }

  getxattr(ino: number, name: string): Buffer | undefined {
    return ino === ROOT ? undefined : this.imageOf(ino).getxattr(ino, name);
  }

  listxattr(ino: number): string[] {
    return ino === ROOT ? [] : this.imageOf(ino).listxattr(ino);
  }
}
