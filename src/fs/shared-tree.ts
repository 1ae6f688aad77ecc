// An image tree as one read-only SharedArrayBuffer, built once per served
// image, so that FUSE reader threads answer metadata requests from it without
// the main thread (tree-responder.ts). Attributes are stored as the wire's
// fuse_attr records (inode numbers already offset by the image's base), so a
// GETATTR or LOOKUP reply is a copy; names are found with one hash probe.
// Same index and base, same bytes: a serving process after a takeover builds
// the same tree, inode numbers and directory offsets included.
//
// Layout (little-endian): a header of u32 words (HEADER_WORDS), then
//   attrs    nodes x 88 bytes   fuse_attr of node i (index inode i + 1)
//   info     nodes x 8 u32      type, a, b, parent, xattr start, xattr count, list offset, list length
//            (dir: a = first entry, b = entries; symlink: a = target offset, b = length;
//            file: a = layer + 1 (0: no data), b and the parent word = data offset in the layer's output, low and high)
//   entries  n x 4 u32          name offset, name length, child inode, parent inode (in listing order)
//   hash     2^k u32            entry index + 1 (0: empty), keyed by (parent, name)
//   xattrs   n x 4 u32          name offset, name length, value offset, value length
//   statfs   80 bytes           fuse_kstatfs
//   pool     bytes              names, targets, xattr names and values, listxattr lists

import type { Node } from '../image/types.js';
import type { Attr, StatFs } from '../fuse/index.js';
import { ATTR_SIZE, STATFS_OUT_SIZE, encodeStatfsOut } from '../fuse/wire.js';
import { attrOf } from './attributes.js';

/** The image is immutable: the kernel may cache names, negative lookups and attributes for a day. */
export const IMAGE_TIMEOUT = 86400;

const MAGIC = 0x45455254; // "TREE"
export const NODE_WORDS = 8;
export const ENTRY_WORDS = 4;
export const XATTR_WORDS = 4;

export const enum H {
  Magic,
  Nodes,
  Entries,
  HashMask,
  Xattrs,
  Attrs,
  Info,
  EntryTable,
  Hash,
  XattrTable,
  Statfs,
  Pool,
  PoolLength,
  Words,
}
const HEADER_BYTES = H.Words * 4;

export const enum NodeKind {
  Other,
  File,
  Dir,
  Symlink,
}

const KIND = {
  file: NodeKind.File,
  dir: NodeKind.Dir,
  symlink: NodeKind.Symlink,
  char: NodeKind.Other,
  block: NodeKind.Other,
  fifo: NodeKind.Other,
};

/** FNV-1a over the name, seeded with the parent inode. */
export function nameHash(parent: number, name: Uint8Array, start: number, end: number): number {
  let h = (0x811c9dc5 ^ parent) >>> 0;
  for (let i = start; i < end; i++) h = Math.imul(h ^ name[i]!, 0x01000193);
  return h >>> 0;
}

/** A u64 as two u32 words (negative numbers, times before 1970, as two's complement). */
function u64(words: Uint32Array, w: number, v: number): void {
  if (v >= 0 && v < 0x1_0000_0000) {
    words[w] = v;
    words[w + 1] = 0;
  } else if (v >= 0) {
    words[w] = v % 0x1_0000_0000;
    words[w + 1] = Math.floor(v / 0x1_0000_0000);
  } else {
    const b = BigInt.asUintN(64, BigInt(Math.trunc(v)));
    words[w] = Number(b & 0xffff_ffffn);
    words[w + 1] = Number(b >> 32n);
  }
}

/** struct fuse_attr at word `w` (the layout of fuse/wire.ts writeAttr, with word stores: this runs per node). */
function writeAttrWords(words: Uint32Array, w: number, a: Attr): void {
  u64(words, w, a.ino);
  u64(words, w + 2, a.size);
  u64(words, w + 4, a.blocks);
  u64(words, w + 6, a.atime.sec);
  u64(words, w + 8, a.mtime.sec);
  u64(words, w + 10, a.ctime.sec);
  words[w + 12] = a.atime.nsec;
  words[w + 13] = a.mtime.nsec;
  words[w + 14] = a.ctime.nsec;
  words[w + 15] = a.mode;
  words[w + 16] = a.nlink;
  words[w + 17] = a.uid;
  words[w + 18] = a.gid;
  words[w + 19] = a.rdev;
  words[w + 20] = a.blksize;
  words[w + 21] = 0; // flags
}

function align8(n: number): number {
  return (n + 7) & ~7;
}

/**
 * Encodes `nodes` (nodes[i] has inode i + 1, the root first) with every inode
 * number reported as `inoBase + ino`. Throws if the tree does not fit 32-bit
 * offsets (the caller then serves it from the main thread). Two passes: sizes,
 * then everything written in place (a 100k-node tree is a takeover's stall).
 */
export function encodeSharedTree(nodes: readonly Node[], inoBase: number, statfs: StatFs): SharedArrayBuffer {
  const steps = encodeSteps(nodes, inoBase, statfs);
  for (;;) {
    const r = steps.next();
    if (r.done) return r.value;
  }
}

/** Nodes encoded between two yields of encodeSharedTreeAsync. */
const NODES_PER_STEP = 8192;

/** encodeSharedTree in steps, letting the event loop run between them (the daemon keeps serving meanwhile). */
export async function encodeSharedTreeAsync(nodes: readonly Node[], inoBase: number, statfs: StatFs): Promise<SharedArrayBuffer> {
  const steps = encodeSteps(nodes, inoBase, statfs);
  for (;;) {
    const r = steps.next();
    if (r.done) return r.value;
    await new Promise((resolve) => setImmediate(resolve));
  }
}

function* encodeSteps(nodes: readonly Node[], inoBase: number, statfs: StatFs): Generator<void, SharedArrayBuffer> {
  const count = nodes.length;
  let entryCount = 0;
  let xattrCount = 0;
  let poolLength = 0;
  for (const n of nodes) {
    if (n.type === 'dir') {
      entryCount += n.children!.size;
      for (const name of n.children!.keys()) poolLength += Buffer.byteLength(name, 'utf8');
    } else if (n.type === 'symlink') poolLength += Buffer.byteLength(n.target ?? '', 'utf8');
    if (n.xattrs) {
      xattrCount += n.xattrs.size;
      // Each name twice (its record and the listxattr list, NUL-terminated there) and the value.
      for (const [name, value] of n.xattrs) poolLength += 2 * Buffer.byteLength(name, 'utf8') + 1 + value.length;
    }
  }
  let hashSize = 1;
  while (hashSize < entryCount * 2) hashSize *= 2;

  const header = new Uint32Array(H.Words);
  let at = align8(HEADER_BYTES);
  const place = (bytes: number): number => {
    const o = at;
    at = align8(at + bytes);
    return o;
  };
  header[H.Magic] = MAGIC;
  header[H.Nodes] = count;
  header[H.Entries] = entryCount;
  header[H.HashMask] = hashSize - 1;
  header[H.Xattrs] = xattrCount;
  header[H.Attrs] = place(count * ATTR_SIZE);
  header[H.Info] = place(count * NODE_WORDS * 4);
  header[H.EntryTable] = place(entryCount * ENTRY_WORDS * 4);
  header[H.Hash] = place(hashSize * 4);
  header[H.XattrTable] = place(xattrCount * XATTR_WORDS * 4);
  header[H.Statfs] = place(STATFS_OUT_SIZE);
  header[H.Pool] = place(poolLength);
  header[H.PoolLength] = poolLength;
  if (at > 0xffff_ffff) throw new Error(`image tree of ${at} bytes is too large to share`);

  const sab = new SharedArrayBuffer(at);
  const out = Buffer.from(sab);
  new Uint32Array(sab, 0, H.Words).set(header);
  const attrs = header[H.Attrs];
  const words = new Uint32Array(sab);
  const info = new Uint32Array(sab, header[H.Info], count * NODE_WORDS);
  const entries = new Uint32Array(sab, header[H.EntryTable], entryCount * ENTRY_WORDS);
  const hash = new Uint32Array(sab, header[H.Hash], hashSize);
  const xattrs = new Uint32Array(sab, header[H.XattrTable], xattrCount * XATTR_WORDS);
  const pool = header[H.Pool];
  let p = 0; // pool bytes written
  const putString = (text: string): number => {
    const o = p;
    p += out.write(text, pool + p, 'utf8');
    return o;
  };
  encodeStatfsOut(statfs).copy(out, header[H.Statfs]);

  let e = 0;
  let x = 0;
  for (let i = 0; i < count; i++) {
    if (i % NODES_PER_STEP === NODES_PER_STEP - 1) yield;
    const n = nodes[i]!;
    if (n.ino !== i + 1) throw new Error(`tree node ${i} has inode ${n.ino}`);
    const a = attrOf(n);
    a.ino += inoBase;
    writeAttrWords(words, (attrs + i * ATTR_SIZE) >>> 2, a);
    const w = i * NODE_WORDS;
    info[w] = KIND[n.type];
    if (n.type === 'dir') {
      info[w + 1] = e;
      info[w + 2] = n.children!.size;
      for (const [name, child] of n.children!) {
        const o = e * ENTRY_WORDS;
        const nameAt = putString(name);
        entries[o] = nameAt;
        entries[o + 1] = p - nameAt;
        entries[o + 2] = child.ino;
        entries[o + 3] = n.ino;
        if (child.type === 'dir') info[(child.ino - 1) * NODE_WORDS + 3] = n.ino;
        let slot = nameHash(n.ino, out, pool + nameAt, pool + p) & (hashSize - 1);
        while (hash[slot] !== 0) slot = (slot + 1) & (hashSize - 1);
        hash[slot] = e + 1;
        e++;
      }
    } else if (n.type === 'file') {
      // Where its bytes are, for READs answered from shared blocks (content/shared-blocks.ts).
      if (n.layer >= 0) {
        info[w + 1] = n.layer + 1;
        info[w + 2] = n.offset % 0x1_0000_0000;
        info[w + 3] = Math.floor(n.offset / 0x1_0000_0000);
      }
    } else if (n.type === 'symlink') {
      const targetAt = putString(n.target ?? '');
      info[w + 1] = targetAt;
      info[w + 2] = p - targetAt;
    }
    if (n.xattrs && n.xattrs.size > 0) {
      info[w + 4] = x;
      info[w + 5] = n.xattrs.size;
      for (const [name, value] of n.xattrs) {
        const o = x * XATTR_WORDS;
        const nameAt = putString(name);
        xattrs[o] = nameAt;
        xattrs[o + 1] = p - nameAt;
        xattrs[o + 2] = p;
        xattrs[o + 3] = value.length;
        value.copy(out, pool + p);
        p += value.length;
        x++;
      }
      const listAt = p;
      for (const name of n.xattrs.keys()) {
        putString(name);
        out[pool + p++] = 0;
      }
      info[w + 6] = listAt;
      info[w + 7] = p - listAt;
    }
  }
  // The root's ".." is the root itself (the kernel only uses its type).
  if (count > 0) info[3] = 1;
  if (p !== poolLength) throw new Error(`image tree pool: wrote ${p} of ${poolLength} bytes`);
  return sab;
}

/** Read access to an encoded tree (in any thread). Local inode numbers: 1 = the image's root. */
export class TreeView {
  readonly bytes: Buffer;
  readonly nodes: number;
  private readonly info: Uint32Array;
  private readonly entries: Uint32Array;
  private readonly hash: Uint32Array;
  private readonly xattrs: Uint32Array;
  private readonly hashMask: number;
  private readonly attrs: number;
  private readonly pool: number;
  readonly statfs: number;

  constructor(sab: SharedArrayBuffer) {
    this.bytes = Buffer.from(sab);
    const header = new Uint32Array(sab, 0, H.Words);
    if (header[H.Magic] !== MAGIC) throw new Error('not an encoded image tree');
    this.nodes = header[H.Nodes]!;
    this.hashMask = header[H.HashMask]!;
    this.attrs = header[H.Attrs]!;
    this.info = new Uint32Array(sab, header[H.Info], this.nodes * NODE_WORDS);
    this.entries = new Uint32Array(sab, header[H.EntryTable], header[H.Entries]! * ENTRY_WORDS);
    this.hash = new Uint32Array(sab, header[H.Hash], this.hashMask + 1);
    this.xattrs = new Uint32Array(sab, header[H.XattrTable], header[H.Xattrs]! * XATTR_WORDS);
    this.statfs = header[H.Statfs]!;
    this.pool = header[H.Pool]!;
  }

  has(ino: number): boolean {
    return ino >= 1 && ino <= this.nodes;
  }

  kind(ino: number): NodeKind {
    return this.info[(ino - 1) * NODE_WORDS]!;
  }

  /** Copies the fuse_attr record of `ino` to `out` at `off`. */
  copyAttr(ino: number, out: Buffer, off: number): void {
    const from = this.attrs + (ino - 1) * ATTR_SIZE;
    this.bytes.copy(out, off, from, from + ATTR_SIZE);
  }

  /** The mode word of the fuse_attr record (type bits included). */
  mode(ino: number): number {
    return this.bytes.readUInt32LE(this.attrs + (ino - 1) * ATTR_SIZE + 60);
  }

  /** A directory's entries: [first, count) in listing order. */
  dirRange(ino: number): [number, number] {
    const w = (ino - 1) * NODE_WORDS;
    return [this.info[w + 1]!, this.info[w + 2]!];
  }

  parent(ino: number): number {
    return this.info[(ino - 1) * NODE_WORDS + 3]!;
  }

  entryChild(e: number): number {
    return this.entries[e * ENTRY_WORDS + 2]!;
  }

  /** Pool offset and length of entry `e`'s name. */
  entryName(e: number): [number, number] {
    const o = e * ENTRY_WORDS;
    return [this.pool + this.entries[o]!, this.entries[o + 1]!];
  }

  /** The child named by req[start, end) in directory `parent`, or 0. */
  find(parent: number, req: Buffer, start: number, end: number): number {
    const mask = this.hashMask;
    const len = end - start;
    for (let slot = nameHash(parent, req, start, end) & mask; ; slot = (slot + 1) & mask) {
      const h = this.hash[slot]!;
      if (h === 0) return 0;
      const o = (h - 1) * ENTRY_WORDS;
      if (this.entries[o + 3] !== parent || this.entries[o + 1] !== len) continue;
      const at = this.pool + this.entries[o]!;
      if (this.bytes.compare(req, start, end, at, at + len) === 0) return this.entries[o + 2]!;
    }
  }

  /** A file's layer (-1: no data), the offset of its data in the layer's output, and its size. */
  fileData(ino: number): [layer: number, offset: number, size: number] {
    const w = (ino - 1) * NODE_WORDS;
    const a = this.attrs + (ino - 1) * ATTR_SIZE + 8;
    const size = this.bytes.readUInt32LE(a) + this.bytes.readUInt32LE(a + 4) * 0x1_0000_0000;
    return [this.info[w + 1]! - 1, this.info[w + 2]! + this.info[w + 3]! * 0x1_0000_0000, size];
  }

  /** Pool offset and length of a symlink's target. */
  target(ino: number): [number, number] {
    const w = (ino - 1) * NODE_WORDS;
    return [this.pool + this.info[w + 1]!, this.info[w + 2]!];
  }

  /** Pool offset and length of xattr `req[start, end)`'s value, or undefined. */
  xattr(ino: number, req: Buffer, start: number, end: number): [number, number] | undefined {
    const w = (ino - 1) * NODE_WORDS;
    const first = this.info[w + 4]!;
    const count = this.info[w + 5]!;
    const len = end - start;
    for (let x = first; x < first + count; x++) {
      const o = x * XATTR_WORDS;
      if (this.xattrs[o + 1] !== len) continue;
      const at = this.pool + this.xattrs[o]!;
      if (this.bytes.compare(req, start, end, at, at + len) === 0) return [this.pool + this.xattrs[o + 2]!, this.xattrs[o + 3]!];
    }
    return undefined;
  }

  /** Pool offset and length of the NUL-separated xattr names (length 0: none). */
  xattrList(ino: number): [number, number] {
    const w = (ino - 1) * NODE_WORDS;
    return [this.pool + this.info[w + 6]!, this.info[w + 7]!];
  }
}
