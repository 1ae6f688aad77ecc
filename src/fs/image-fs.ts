// The image tree of a .clip index served as a read-only FUSE filesystem:
// inode numbers are the index's (stable, hardlinks shared), attributes and
// xattrs exactly as in the image, file bytes read lazily through the
// FileReader. Nothing here knows about HTTP; the image never changes, so the
// kernel may cache names, attributes and pages for as long as it likes.

import type { FileReader } from '../content/file-reader.js';
import { FuseError, type Attr, type DirEntry, type Entry, type FileSystem, type LookupContext, type StatFs } from '../fuse/index.js';
import type { Node } from '../image/types.js';
import type { ClipIndex } from '../index/types.js';
import { attrOf, modeOf } from './attributes.js';
import { IMAGE_TIMEOUT, encodeSharedTree, encodeSharedTreeAsync } from './shared-tree.js';

const TIMEOUT = IMAGE_TIMEOUT;

export interface ImageFsLogger {
  error(fields: Record<string, unknown>, message: string): void;
}

export class ImageFileSystem implements FileSystem {
  /** Directory listings as arrays, made on first readdir (offset = position). */
  private readonly listings = new Map<number, [string, Node][]>();

  /**
   * `inoBase`: added to the index's inode numbers in and out, where this tree
   * is one of several in one filesystem (the node daemon gives each image a
   * range of its own); 0 when it is the filesystem.
   */
  constructor(
    private readonly index: ClipIndex,
    private readonly reader: FileReader,
    private readonly log?: ImageFsLogger,
    private readonly inoBase = 0,
  ) {}

  private node(ino: number): Node {
    const n = this.index.nodes[ino - this.inoBase - 1];
    if (!n) throw new FuseError('ENOENT');
    return n;
  }

  private attr(node: Node): Attr {
    const a = attrOf(node);
    a.ino += this.inoBase;
    return a;
  }

  private entry(node: Node): Entry {
    return { attr: this.attr(node), entryTimeout: TIMEOUT, attrTimeout: TIMEOUT };
  }

  lookup(parent: number, name: string, ctx?: LookupContext): Entry {
    const dir = this.node(parent);
    if (dir.type !== 'dir') throw new FuseError('ENOTDIR');
    // Index names are valid UTF-8; a name that is not decodes with U+FFFD
    // and must not match an image file whose name has a real U+FFFD.
    if (ctx && !Buffer.from(name, 'utf8').equals(ctx.nameBytes)) throw new FuseError('ENOENT');
    const child = dir.children!.get(name);
    if (!child) throw new FuseError('ENOENT');
    return this.entry(child);
  }

  /** The entry of the image's root directory (how a filesystem that contains this one names it). */
  lookupRoot(): Entry {
    return this.entry(this.node(this.inoBase + 1));
  }

  getattr(ino: number): { attr: Attr; timeout: number } {
    return { attr: this.attr(this.node(ino)), timeout: TIMEOUT };
  }

  readlink(ino: number): string {
    const n = this.node(ino);
    if (n.type !== 'symlink') throw new FuseError('EINVAL');
    return n.target ?? '';
  }

  open(ino: number): { keepCache: boolean } {
    const n = this.node(ino);
    if (n.type === 'dir') throw new FuseError('EISDIR');
    return { keepCache: true };
  }

  /** The bytes as views of the cached spans they sit in: a reply is written from them without a copy. */
  async read(ino: number, _fh: number, offset: number, size: number): Promise<Buffer[]> {
    const n = this.node(ino);
    if (n.type !== 'file') throw new FuseError('EINVAL');
    try {
      return await this.reader.readParts(n, offset, size);
    } catch (e) {
      // Never serve bytes that could not be fetched and verified.
      this.log?.error({ ino, offset, size, err: (e as Error).message }, 'read failed');
      throw new FuseError('EIO');
    }
  }

  opendir(ino: number): { cacheDir: boolean; keepCache: boolean } {
    if (this.node(ino).type !== 'dir') throw new FuseError('ENOTDIR');
    return { cacheDir: true, keepCache: true };
  }

  *readdir(ino: number, _fh: number, offset: number, plus: boolean): Iterable<DirEntry> {
    const dir = this.node(ino);
    if (dir.type !== 'dir') throw new FuseError('ENOTDIR');
    let list = this.listings.get(ino);
    if (!list) {
      list = [...dir.children!];
      this.listings.set(ino, list);
    }
    // Offsets: 1 after ".", 2 after "..", 3 + i after child i.
    const base = this.inoBase;
    if (offset < 1) yield { name: '.', ino: base + dir.ino, mode: modeOf(dir), nextOffset: 1 };
    if (offset < 2) yield { name: '..', ino: base + this.parentOf(dir), mode: modeOf(dir), nextOffset: 2 };
    for (let i = Math.max(0, offset - 2); i < list.length; i++) {
      const [name, child] = list[i]!;
      const e: DirEntry = { name, ino: base + child.ino, mode: modeOf(child), nextOffset: i + 3 };
      if (plus) e.entry = this.entry(child);
      yield e;
    }
  }

  /** The tree as reader threads answer from it (tree-responder.ts); same inode numbers, same listings. */
  sharedTree(): SharedArrayBuffer {
    return encodeSharedTree(this.index.nodes, this.inoBase, this.statfs());
  }

  /** sharedTree() in steps that let the event loop serve meanwhile. */
  sharedTreeAsync(): Promise<SharedArrayBuffer> {
    return encodeSharedTreeAsync(this.index.nodes, this.inoBase, this.statfs());
  }

  private totals: StatFs | undefined;
  statfs(): StatFs {
    if (!this.totals) {
      let bytes = 0;
      for (const n of this.index.nodes) if (n.type === 'file') bytes += n.size;
      this.totals = {
        blocks: Math.ceil(bytes / 4096),
        bfree: 0,
        bavail: 0,
        files: this.index.nodes.length,
        ffree: 0,
        bsize: 4096,
        frsize: 4096,
        namelen: 255,
      };
    }
    return this.totals;
  }

  getxattr(ino: number, name: string): Buffer | undefined {
    return this.node(ino).xattrs?.get(name);
  }

  listxattr(ino: number): string[] {
    return [...(this.node(ino).xattrs?.keys() ?? [])];
  }

  /** ".." of a directory; the kernel only uses its type, so the root's own inode does for the root. */
  private parentOf(dir: Node): number {
    return dir.ino === 1 ? 1 : (this.parents().get(dir.ino) ?? 1);
  }

  private parentMap: Map<number, number> | undefined;
  private parents(): Map<number, number> {
    if (!this.parentMap) {
      this.parentMap = new Map();
      for (const n of this.index.nodes) {
        if (n.type !== 'dir') continue;
        for (const c of n.children!.values()) if (c.type === 'dir') this.parentMap.set(c.ino, n.ino);
      }
    }
    return this.parentMap;
  }
}
