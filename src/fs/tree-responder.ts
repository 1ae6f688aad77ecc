// The reader-thread responder of served image trees (fuse/reader-responder.ts):
// answers LOOKUP, GETATTR, READLINK, OPEN, OPENDIR, READDIR, READDIRPLUS,
// GETXATTR, LISTXATTR, STATFS, RELEASE(DIR) and FLUSH for inodes of the trees
// it was given (shared-tree.ts), exactly as ImageFileSystem would, READs
// whose bytes are all in shared blocks (content/shared-blocks.ts), and passes
// on everything else (other READs, INIT, INTERRUPT, inodes it does not know). Trees
// are keyed by the high 32 bits of their inode numbers (the daemon's slot;
// 0 for a filesystem of one image).
//
// Answers differ from ImageFileSystem's in one way only: a missing name is a
// cached negative entry, not ENOENT (the image never changes).

import { errno, OpenFlag } from '../fuse/constants.js';
import { OPS } from '../fuse/opcodes.js';
import {
  ATTR_OUT_SIZE,
  DIRENT_HEADER_SIZE,
  ENTRY_OUT_SIZE,
  GETXATTR_OUT_SIZE,
  OPEN_OUT_SIZE,
  OUT_HEADER_SIZE,
  STATFS_OUT_SIZE,
  direntType,
} from '../fuse/wire.js';
import type { ReaderResponder, ReplyWriter } from '../fuse/reader-responder.js';
import { IMAGE_TIMEOUT, NodeKind, TreeView } from './shared-tree.js';
import { type LayerBlocksView, type SharedBlocksInit, SharedBlocksView } from '../content/shared-blocks.js';

/** The responder's init and update messages: trees, and where READs of cached bytes are answered from. */
export interface TreesInit {
  trees: Array<[high: number, tree: SharedArrayBuffer, layers?: SharedArrayBuffer[]]>;
  blocks?: SharedBlocksInit;
}
/**
 * `layers`: the image's layer tables of shared blocks (SharedBlocks.acquire),
 * in its order. `openless`: answer OPEN and OPENDIR with ENOSYS, so the
 * kernel stops sending them (and RELEASE) for the whole connection and opens
 * with the flags clip would give anyway (FOPEN_KEEP_CACHE, FOPEN_CACHE_DIR);
 * only for a read-only mount of a kernel that offers FUSE_NO_OPEN(DIR)_SUPPORT.
 */
export type TreesUpdate = { add: number; tree: SharedArrayBuffer; layers?: SharedArrayBuffer[] } | { remove: number } | { openless: true };

interface Served {
  tree: TreeView;
  layers: LayerBlocksView[];
}

export const TREE_RESPONDER_MODULE = new URL('./tree-responder.js', import.meta.url).href;

/** The opcodes answered here, from the protocol's table. */
const OP = {
  LOOKUP: OPS.LOOKUP.code,
  FORGET: OPS.FORGET.code,
  GETATTR: OPS.GETATTR.code,
  READLINK: OPS.READLINK.code,
  OPEN: OPS.OPEN.code,
  STATFS: OPS.STATFS.code,
  RELEASE: OPS.RELEASE.code,
  GETXATTR: OPS.GETXATTR.code,
  LISTXATTR: OPS.LISTXATTR.code,
  FLUSH: OPS.FLUSH.code,
  OPENDIR: OPS.OPENDIR.code,
  READDIR: OPS.READDIR.code,
  RELEASEDIR: OPS.RELEASEDIR.code,
  BATCH_FORGET: OPS.BATCH_FORGET.code,
  READDIRPLUS: OPS.READDIRPLUS.code,
  READ: OPS.READ.code,
};
const E = errno;
const O_ACCMODE = 3;
const P = OUT_HEADER_SIZE;

export function createResponder(init: unknown): ReaderResponder {
  return new TreeResponder(init as TreesInit);
}

class TreeResponder implements ReaderResponder {
  private readonly trees = new Map<number, Served>();
  private readonly blocks: SharedBlocksView | undefined;
  /** Reused per READ: the reply's parts and the slots they pin. */
  private readonly parts: Buffer[] = [];
  private readonly pinned: number[] = [];
  private openless = false;

  constructor(init: TreesInit) {
    for (const [high, sab, layers] of init.trees) this.trees.set(high, served(sab, layers));
    this.blocks = init.blocks ? new SharedBlocksView(init.blocks) : undefined;
  }

  update(message: unknown): void {
    const m = message as TreesUpdate;
    if ('add' in m) this.trees.set(m.add, served(m.tree, m.layers));
    else if ('remove' in m) this.trees.delete(m.remove);
    else this.openless = m.openless;
  }

  respond(req: Buffer, n: number, out: ReplyWriter): boolean {
    const opcode = req.readUInt32LE(4);
    // The image filesystems keep no per-lookup state: a FORGET needs neither work nor an answer.
    if (opcode === OP.FORGET || opcode === OP.BATCH_FORGET) return true;
    // Resent requests (bit 63 of unique) go to the session, which counts them.
    if (req.readUInt32LE(12) & 0x8000_0000) return false;
    const high = req.readUInt32LE(20);
    const served = this.trees.get(high);
    if (!served) return false;
    const tree = served.tree;
    const ino = req.readUInt32LE(16);
    if (!tree.has(ino)) return false;
    const end = n - req.readUInt16LE(36) * 8;
    const b = out.buf;
    switch (opcode) {
      case OP.LOOKUP: {
        if (tree.kind(ino) !== NodeKind.Dir) return reply(out, req, E.ENOTDIR);
        const nul = req.indexOf(0, 40);
        const stop = nul < 0 || nul > end ? end : nul;
        const child = tree.find(ino, req, 40, stop);
        if (child === 0) {
          // A cached "no such name": nodeid 0, entry timeout set.
          b.fill(0, P, P + ENTRY_OUT_SIZE);
          writeTimeouts(b, P + 16, IMAGE_TIMEOUT, 0);
          out.ok(req, ENTRY_OUT_SIZE);
          return true;
        }
        writeEntry(b, P, tree, high, child);
        out.ok(req, ENTRY_OUT_SIZE);
        return true;
      }
      case OP.GETATTR:
        b.writeUInt32LE(IMAGE_TIMEOUT, P);
        b.writeUInt32LE(0, P + 4);
        b.writeUInt32LE(0, P + 8);
        b.writeUInt32LE(0, P + 12);
        tree.copyAttr(ino, b, P + 16);
        out.ok(req, ATTR_OUT_SIZE);
        return true;
      case OP.READLINK: {
        if (tree.kind(ino) !== NodeKind.Symlink) return reply(out, req, E.EINVAL);
        const [at, len] = tree.target(ino);
        tree.bytes.copy(b, P, at, at + len);
        out.ok(req, len);
        return true;
      }
      case OP.OPEN:
        if ((req.readUInt32LE(40) & O_ACCMODE) !== 0) return reply(out, req, E.EROFS);
        if (tree.kind(ino) === NodeKind.Dir) return reply(out, req, E.EISDIR);
        if (this.openless) return reply(out, req, E.ENOSYS);
        return openReply(out, req, OpenFlag.KEEP_CACHE);
      case OP.OPENDIR:
        if (tree.kind(ino) !== NodeKind.Dir) return reply(out, req, E.ENOTDIR);
        if (this.openless) return reply(out, req, E.ENOSYS);
        return openReply(out, req, OpenFlag.CACHE_DIR | OpenFlag.KEEP_CACHE);
      case OP.READDIR:
      case OP.READDIRPLUS:
        if (tree.kind(ino) !== NodeKind.Dir) return reply(out, req, E.ENOTDIR);
        out.ok(req, readdir(tree, high, ino, req, out, opcode === OP.READDIRPLUS));
        return true;
      case OP.RELEASE:
      case OP.RELEASEDIR:
        return reply(out, req, 0);
      case OP.FLUSH:
        // Nothing to flush on a read-only image; ENOSYS tells the kernel to stop asking.
        return reply(out, req, E.ENOSYS);
      case OP.STATFS:
        tree.bytes.copy(b, P, tree.statfs, tree.statfs + STATFS_OUT_SIZE);
        out.ok(req, STATFS_OUT_SIZE);
        return true;
      case OP.GETXATTR: {
        const size = req.readUInt32LE(40);
        const nul = req.indexOf(0, 48);
        const v = tree.xattr(ino, req, 48, nul < 0 || nul > end ? end : nul);
        if (!v) return reply(out, req, E.ENODATA);
        return sized(out, req, tree, v, size);
      }
      case OP.LISTXATTR:
        return sized(out, req, tree, tree.xattrList(ino), req.readUInt32LE(40));
      case OP.READ:
        return this.read(served, ino, req, out);
      default:
        return false;
    }
  }

  /**
   * A READ whose bytes are all in shared blocks, answered from them; any
   * other (not a file, bytes not held) goes to the main thread, which reads
   * (and fetches) them and publishes them for the next time.
   */
  private read({ tree, layers }: Served, ino: number, req: Buffer, out: ReplyWriter): boolean {
    const blocks = this.blocks;
    if (!blocks || tree.kind(ino) !== NodeKind.File) return false;
    const [layer, dataOffset, fileSize] = tree.fileData(ino);
    const table = layers[layer];
    if (!table) return false;
    const offset = readInOffset(req);
    const end = Math.min(fileSize, offset + readInSize(req));
    if (offset >= end) return false;
    const { parts, pinned } = this;
    try {
      if (!blocks.collect(table, dataOffset + offset, dataOffset + end, parts, pinned)) return false;
      out.okParts(req, parts);
      return true;
    } finally {
      blocks.unpin(pinned);
      parts.length = 0;
    }
  }
}

/** fuse_read_in (READ, READDIR, READDIRPLUS) after the header: fh u64, offset u64, size u32. */
function readInOffset(req: Buffer): number {
  return req.readUInt32LE(48) + req.readUInt32LE(52) * 0x1_0000_0000;
}

function readInSize(req: Buffer): number {
  return req.readUInt32LE(56);
}

function served(tree: SharedArrayBuffer, layers: SharedArrayBuffer[] = []): Served {
  return { tree: new TreeView(tree), layers: layers.map((l) => SharedBlocksView.layer(l)) };
}

function reply(out: ReplyWriter, req: Buffer, errno: number): true {
  if (errno === 0) out.ok(req, 0);
  else out.error(req, errno);
  return true;
}

function openReply(out: ReplyWriter, req: Buffer, flags: number): true {
  const b = out.buf;
  b.fill(0, P, P + OPEN_OUT_SIZE);
  b.writeUInt32LE(flags, P + 8);
  out.ok(req, OPEN_OUT_SIZE);
  return true;
}

/** GETXATTR/LISTXATTR size rules: size 0 asks for the length; a smaller buffer is ERANGE. */
function sized(out: ReplyWriter, req: Buffer, tree: TreeView, [at, len]: [number, number], size: number): true {
  const b = out.buf;
  if (size === 0) {
    b.writeUInt32LE(len, P);
    b.writeUInt32LE(0, P + 4);
    out.ok(req, GETXATTR_OUT_SIZE);
  } else if (len > size) {
    out.error(req, E.ERANGE);
  } else {
    tree.bytes.copy(b, P, at, at + len);
    out.ok(req, len);
  }
  return true;
}

function writeTimeouts(b: Buffer, off: number, entry: number, attr: number): void {
  b.writeUInt32LE(entry, off);
  b.writeUInt32LE(0, off + 4);
  b.writeUInt32LE(attr, off + 8);
  b.writeUInt32LE(0, off + 12);
  b.writeUInt32LE(0, off + 16);
  b.writeUInt32LE(0, off + 20);
}

/** fuse_entry_out of local inode `ino` at `off`. */
function writeEntry(b: Buffer, off: number, tree: TreeView, high: number, ino: number): void {
  b.writeUInt32LE(ino, off);
  b.writeUInt32LE(high, off + 4);
  b.writeUInt32LE(0, off + 8); // generation
  b.writeUInt32LE(0, off + 12);
  writeTimeouts(b, off + 16, IMAGE_TIMEOUT, IMAGE_TIMEOUT);
  tree.copyAttr(ino, b, off + 40);
}

/** Packs dirents from the request's offset (1 after ".", 2 after "..", 3 + i after child i) into the reply; returns its length. */
function readdir(tree: TreeView, high: number, dir: number, req: Buffer, out: ReplyWriter, plus: boolean): number {
  const offset = readInOffset(req);
  const capacity = Math.min(readInSize(req), out.capacity);
  const b = out.buf;
  const mode = tree.mode(dir);
  let used = 0;
  const add = (ino: number, entryOf: number, nextOffset: number, nameAt: number, nameLen: number, childMode: number): boolean => {
    const head = plus ? ENTRY_OUT_SIZE + DIRENT_HEADER_SIZE : DIRENT_HEADER_SIZE;
    const size = (head + nameLen + 7) & ~7;
    if (used + size > capacity) return false;
    let o = P + used;
    if (plus) {
      if (entryOf === 0) b.fill(0, o, o + ENTRY_OUT_SIZE);
      else writeEntry(b, o, tree, high, entryOf);
      o += ENTRY_OUT_SIZE;
    }
    b.writeUInt32LE(ino, o);
    b.writeUInt32LE(high, o + 4);
    b.writeUInt32LE(nextOffset, o + 8);
    b.writeUInt32LE(0, o + 12);
    b.writeUInt32LE(nameLen, o + 16);
    b.writeUInt32LE(direntType(childMode), o + 20);
    if (nameAt < 0) b.fill(0x2e, o + 24, o + 24 + nameLen);
    else tree.bytes.copy(b, o + 24, nameAt, nameAt + nameLen);
    b.fill(0, o + 24 + nameLen, P + used + size);
    used += size;
    return true;
  };
  // "." and ".." carry no entry: the kernel does not count them as lookups.
  if (offset < 1 && !add(dir, 0, 1, -1, 1, mode)) return used;
  if (offset < 2 && !add(tree.parent(dir), 0, 2, -1, 2, mode)) return used;
  const [first, count] = tree.dirRange(dir);
  for (let i = Math.max(0, offset - 2); i < count; i++) {
    const e = first + i;
    const child = tree.entryChild(e);
    const [at, len] = tree.entryName(e);
    if (!add(child, plus ? child : 0, i + 3, at, len, tree.mode(child))) break;
  }
  return used;
}
