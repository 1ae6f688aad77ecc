// Byte layouts of the FUSE structs (<linux/fuse.h>, little-endian x86/arm64):
// the request header and a reader for request bodies, the reply header, and
// encoders for every reply struct we send, sized by the negotiated minor.

import type { Attr, Entry, OpenResult, StatFs, Timespec } from './types.js';
import { OpenFlag } from './constants.js';

export const IN_HEADER_SIZE = 40;
export const OUT_HEADER_SIZE = 16;
export const ATTR_SIZE = 88; // minor >= 9
export const ENTRY_OUT_SIZE = 40 + ATTR_SIZE;
export const ATTR_OUT_SIZE = 16 + ATTR_SIZE;
export const OPEN_OUT_SIZE = 16;
export const STATFS_OUT_SIZE = 80;
export const GETXATTR_OUT_SIZE = 8;
export const INIT_OUT_SIZE = 64; // minor >= 23
export const INIT_OUT_SIZE_COMPAT_22 = 24; // minor 5..22
export const DIRENT_HEADER_SIZE = 24;
export const DIRENTPLUS_HEADER_SIZE = ENTRY_OUT_SIZE + DIRENT_HEADER_SIZE;

const TWO_32 = 0x1_0000_0000;

/** struct fuse_in_header */
export interface InHeader {
  len: number;
  opcode: number;
  unique: bigint;
  nodeid: number;
  uid: number;
  gid: number;
  pid: number;
  /** Length of extensions after the arguments, in 8-byte units (minor >= 38). */
  totalExtlen: number;
}

export class WireError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'WireError';
  }
}

export function decodeInHeader(buf: Buffer, n: number): InHeader {
  if (n < IN_HEADER_SIZE) throw new WireError(`request of ${n} bytes is shorter than its header`);
  const len = buf.readUInt32LE(0);
  if (len !== n) throw new WireError(`request header says ${len} bytes, read returned ${n}`);
  return {
    len,
    opcode: buf.readUInt32LE(4),
    unique: buf.readBigUInt64LE(8),
    nodeid: readU64(buf, 16),
    uid: buf.readUInt32LE(24),
    gid: buf.readUInt32LE(28),
    pid: buf.readUInt32LE(32),
    totalExtlen: buf.readUInt16LE(36),
  };
}

/** Encodes a request header (the kernel's side; used by tests and tools that replay requests). */
export function encodeInHeader(h: Omit<InHeader, 'len'>, bodyLength: number): Buffer {
  const b = Buffer.alloc(IN_HEADER_SIZE);
  b.writeUInt32LE(IN_HEADER_SIZE + bodyLength, 0);
  b.writeUInt32LE(h.opcode, 4);
  b.writeBigUInt64LE(h.unique, 8);
  writeU64(b, 16, h.nodeid);
  b.writeUInt32LE(h.uid, 24);
  b.writeUInt32LE(h.gid, 28);
  b.writeUInt32LE(h.pid, 32);
  b.writeUInt16LE(h.totalExtlen, 36);
  return b;
}

/** struct fuse_out_header: error is a positive errno here, sent negated. */
export function encodeOutHeader(payloadLength: number, error: number, unique: bigint): Buffer {
  const b = Buffer.allocUnsafe(OUT_HEADER_SIZE);
  b.writeUInt32LE(OUT_HEADER_SIZE + payloadLength, 0);
  b.writeInt32LE(-error, 4);
  b.writeBigUInt64LE(unique, 8);
  return b;
}

/** Reads a request body field by field; a truncated body throws WireError. */
export class BodyReader {
  private pos: number;

  constructor(
    private readonly buf: Buffer,
    start: number,
    private readonly end: number,
  ) {
    this.pos = start;
  }

  get remaining(): number {
    return this.end - this.pos;
  }

  private take(n: number): number {
    const at = this.pos;
    if (at + n > this.end) throw new WireError(`request body too short: need ${n} bytes at ${at}, have ${this.end - at}`);
    this.pos += n;
    return at;
  }

  u16(): number {
    return this.buf.readUInt16LE(this.take(2));
  }

  u32(): number {
    return this.buf.readUInt32LE(this.take(4));
  }

  i32(): number {
    return this.buf.readInt32LE(this.take(4));
  }

  /** A u64 as a JS number (exact below 2^53: inode numbers, offsets, handles). */
  u64(): number {
    return readU64(this.buf, this.take(8));
  }

  u64n(): bigint {
    return this.buf.readBigUInt64LE(this.take(8));
  }

  skip(n: number): void {
    this.take(n);
  }

  /** A NUL-terminated string (a file or xattr name), copied out of the read buffer. */
  cstring(): Buffer {
    const nul = this.buf.indexOf(0, this.pos);
    const stop = nul < 0 || nul >= this.end ? this.end : nul;
    const out = Buffer.from(this.buf.subarray(this.pos, stop));
    this.pos = Math.min(this.end, stop + 1);
    return out;
  }

  /** The rest of the body, copied. */
  rest(): Buffer {
    const out = Buffer.from(this.buf.subarray(this.pos, this.end));
    this.pos = this.end;
    return out;
  }
}

export function readU64(buf: Buffer, off: number): number {
  return buf.readUInt32LE(off) + buf.readUInt32LE(off + 4) * TWO_32;
}

/** Writes a JS number as u64 (negative values as two's complement, e.g. times before 1970). */
export function writeU64(buf: Buffer, off: number, n: number): void {
  if (n >= 0 && n < TWO_32) {
    buf.writeUInt32LE(n, off);
    buf.writeUInt32LE(0, off + 4);
  } else if (n >= 0) {
    buf.writeBigUInt64LE(BigInt(Math.trunc(n)), off);
  } else {
    buf.writeBigInt64LE(BigInt(Math.trunc(n)), off);
  }
}

/** A timeout in (fractional) seconds as the (u64 sec, u32 nsec) pairs of entry_out/attr_out. */
export function splitTimeout(seconds: number): Timespec {
  if (!(seconds > 0)) return { sec: 0, nsec: 0 };
  if (seconds > Number.MAX_SAFE_INTEGER) return { sec: Number.MAX_SAFE_INTEGER, nsec: 0 };
  const sec = Math.floor(seconds);
  return { sec, nsec: Math.min(999_999_999, Math.round((seconds - sec) * 1e9)) };
}

/** struct fuse_attr (88 bytes). */
export function writeAttr(b: Buffer, off: number, a: Attr): void {
  writeU64(b, off, a.ino);
  writeU64(b, off + 8, a.size);
  writeU64(b, off + 16, a.blocks);
  writeU64(b, off + 24, a.atime.sec);
  writeU64(b, off + 32, a.mtime.sec);
  writeU64(b, off + 40, a.ctime.sec);
  b.writeUInt32LE(a.atime.nsec >>> 0, off + 48);
  b.writeUInt32LE(a.mtime.nsec >>> 0, off + 52);
  b.writeUInt32LE(a.ctime.nsec >>> 0, off + 56);
  b.writeUInt32LE(a.mode >>> 0, off + 60);
  b.writeUInt32LE(a.nlink >>> 0, off + 64);
  b.writeUInt32LE(a.uid >>> 0, off + 68);
  b.writeUInt32LE(a.gid >>> 0, off + 72);
  b.writeUInt32LE(a.rdev >>> 0, off + 76);
  b.writeUInt32LE(a.blksize >>> 0, off + 80);
  b.writeUInt32LE(0, off + 84); // flags (FUSE_ATTR_SUBMOUNT, FUSE_ATTR_DAX): none
}

/** Decodes struct fuse_attr (for tests and debugging). */
export function readAttr(b: Buffer, off: number): Attr {
  return {
    ino: readU64(b, off),
    size: readU64(b, off + 8),
    blocks: readU64(b, off + 16),
    atime: { sec: readU64(b, off + 24), nsec: b.readUInt32LE(off + 48) },
    mtime: { sec: readU64(b, off + 32), nsec: b.readUInt32LE(off + 52) },
    ctime: { sec: readU64(b, off + 40), nsec: b.readUInt32LE(off + 56) },
    mode: b.readUInt32LE(off + 60),
    nlink: b.readUInt32LE(off + 64),
    uid: b.readUInt32LE(off + 68),
    gid: b.readUInt32LE(off + 72),
    rdev: b.readUInt32LE(off + 76),
    blksize: b.readUInt32LE(off + 80),
  };
}

/** struct fuse_entry_out (128 bytes); an entry whose attr.ino is 0 is a cacheable "no such name". */
export function writeEntryOut(b: Buffer, off: number, e: Entry): void {
  const entryValid = splitTimeout(e.entryTimeout);
  const attrValid = splitTimeout(e.attrTimeout);
  writeU64(b, off, e.attr.ino);
  writeU64(b, off + 8, e.generation ?? 0);
  writeU64(b, off + 16, entryValid.sec);
  writeU64(b, off + 24, attrValid.sec);
  b.writeUInt32LE(entryValid.nsec, off + 32);
  b.writeUInt32LE(attrValid.nsec, off + 36);
  writeAttr(b, off + 40, e.attr);
}

export function encodeEntryOut(e: Entry): Buffer {
  const b = Buffer.alloc(ENTRY_OUT_SIZE);
  writeEntryOut(b, 0, e);
  return b;
}

/** struct fuse_attr_out (104 bytes). */
export function encodeAttrOut(attr: Attr, timeout: number): Buffer {
  const b = Buffer.alloc(ATTR_OUT_SIZE);
  const valid = splitTimeout(timeout);
  writeU64(b, 0, valid.sec);
  b.writeUInt32LE(valid.nsec, 8);
  writeAttr(b, 16, attr);
  return b;
}

export function openFlagsOf(o: OpenResult): number {
  return (
    (o.directIo ? OpenFlag.DIRECT_IO : 0) |
    (o.keepCache ? OpenFlag.KEEP_CACHE : 0) |
    (o.nonSeekable ? OpenFlag.NONSEEKABLE : 0) |
    (o.cacheDir ? OpenFlag.CACHE_DIR : 0)
  );
}

/** struct fuse_open_out (16 bytes). */
export function encodeOpenOut(o: OpenResult): Buffer {
  const b = Buffer.alloc(OPEN_OUT_SIZE);
  writeU64(b, 0, o.fh ?? 0);
  b.writeUInt32LE(openFlagsOf(o), 8);
  return b;
}

/** struct fuse_statfs_out / fuse_kstatfs (80 bytes). */
export function encodeStatfsOut(s: StatFs): Buffer {
  const b = Buffer.alloc(STATFS_OUT_SIZE);
  writeU64(b, 0, s.blocks);
  writeU64(b, 8, s.bfree);
  writeU64(b, 16, s.bavail);
  writeU64(b, 24, s.files);
  writeU64(b, 32, s.ffree);
  b.writeUInt32LE(s.bsize >>> 0, 40);
  b.writeUInt32LE(s.namelen >>> 0, 44);
  b.writeUInt32LE(s.frsize >>> 0, 48);
  return b;
}

/** struct fuse_getxattr_out: the size of a value or list, for a request with size 0. */
export function encodeGetxattrOut(size: number): Buffer {
  const b = Buffer.alloc(GETXATTR_OUT_SIZE);
  b.writeUInt32LE(size, 0);
  return b;
}

/** struct fuse_init_in: the part every kernel sends, and flags2 when INIT_EXT is set (minor >= 36). */
export interface InitIn {
  major: number;
  minor: number;
  maxReadahead: number;
  /** flags | flags2 << 32 */
  flags: bigint;
}

export function decodeInitIn(r: BodyReader): InitIn {
  const major = r.u32();
  const minor = r.u32();
  // A kernel with a newer major may send a shorter struct; only major/minor count then.
  const maxReadahead = r.remaining >= 4 ? r.u32() : 0;
  let flags = r.remaining >= 4 ? BigInt(r.u32()) : 0n;
  if (flags & (1n << 30n) && r.remaining >= 4) flags |= BigInt(r.u32()) << 32n;
  return { major, minor, maxReadahead, flags };
}

/** struct fuse_init_out, fields we set. */
export interface InitOut {
  major: number;
  minor: number;
  maxReadahead: number;
  flags: bigint;
  maxBackground: number;
  congestionThreshold: number;
  maxWrite: number;
  timeGran: number;
  maxPages: number;
}

/** fuse_init_out, 24 bytes up to minor 22, 64 from minor 23 (time_gran, max_pages, flags2 ...). */
export function encodeInitOut(o: InitOut): Buffer {
  const size = o.minor < 23 ? INIT_OUT_SIZE_COMPAT_22 : INIT_OUT_SIZE;
  const b = Buffer.alloc(size);
  b.writeUInt32LE(o.major, 0);
  b.writeUInt32LE(o.minor, 4);
  b.writeUInt32LE(o.maxReadahead >>> 0, 8);
  b.writeUInt32LE(Number(o.flags & 0xffff_ffffn), 12);
  b.writeUInt16LE(o.maxBackground, 16);
  b.writeUInt16LE(o.congestionThreshold, 18);
  b.writeUInt32LE(o.maxWrite >>> 0, 20);
  if (size >= INIT_OUT_SIZE) {
    b.writeUInt32LE(o.timeGran, 24);
    b.writeUInt16LE(o.maxPages, 28);
    b.writeUInt16LE(0, 30); // map_alignment
    b.writeUInt32LE(Number((o.flags >> 32n) & 0xffff_ffffn), 32);
  }
  return b;
}

/** d_type of a directory entry from its st_mode (the kernel's fuse_dirent.type). */
export function direntType(mode: number): number {
  return (mode & 0o170000) >>> 12;
}

function align8(n: number): number {
  return (n + 7) & ~7;
}

/** Bytes one entry takes in a READDIR or READDIRPLUS reply, padding included. */
export function direntSize(nameLength: number, plus: boolean): number {
  return align8((plus ? DIRENTPLUS_HEADER_SIZE : DIRENT_HEADER_SIZE) + nameLength);
}

const EMPTY_ENTRY: Entry = {
  attr: {
    ino: 0,
    mode: 0,
    nlink: 0,
    uid: 0,
    gid: 0,
    rdev: 0,
    size: 0,
    blocks: 0,
    blksize: 0,
    atime: { sec: 0, nsec: 0 },
    mtime: { sec: 0, nsec: 0 },
    ctime: { sec: 0, nsec: 0 },
  },
  entryTimeout: 0,
  attrTimeout: 0,
};

/**
 * Packs fuse_dirent (READDIR) or fuse_direntplus (READDIRPLUS) records, each
 * 8-byte aligned, into at most `capacity` bytes: add() says false once the next
 * entry no longer fits, and the kernel asks again from that entry's offset.
 */
export class DirentPacker {
  private readonly buf: Buffer;
  private used = 0;
  count = 0;

  constructor(
    readonly capacity: number,
    readonly plus: boolean,
  ) {
    this.buf = Buffer.alloc(capacity);
  }

  add(name: Buffer, ino: number, mode: number, nextOffset: number, entry?: Entry): boolean {
    const size = direntSize(name.length, this.plus);
    if (this.used + size > this.capacity) return false;
    let off = this.used;
    if (this.plus) {
      // "." and ".." never carry an entry: the kernel does not count them as lookups.
      const dots = name.length <= 2 && name.every((c) => c === 0x2e);
      writeEntryOut(this.buf, off, entry && !dots ? entry : EMPTY_ENTRY);
      off += ENTRY_OUT_SIZE;
    }
    writeU64(this.buf, off, ino);
    writeU64(this.buf, off + 8, nextOffset);
    this.buf.writeUInt32LE(name.length, off + 16);
    this.buf.writeUInt32LE(direntType(mode), off + 20);
    name.copy(this.buf, off + 24);
    // Padding bytes stay zero (the buffer was zero-filled).
    this.used += size;
    this.count++;
    return true;
  }

  get bytes(): number {
    return this.used;
  }

  finish(): Buffer {
    return this.buf.subarray(0, this.used);
  }
}

/** One parsed record of a READDIR/READDIRPLUS reply (for tests and debugging). */
export interface ParsedDirent {
  name: Buffer;
  ino: number;
  nextOffset: number;
  type: number;
  nodeid?: number;
  attr?: Attr;
}

export function parseDirents(b: Buffer, plus: boolean): ParsedDirent[] {
  const out: ParsedDirent[] = [];
  let off = 0;
  while (off < b.length) {
    // READDIRPLUS puts an entry_out (node id, attributes) before each dirent.
    const d = plus ? off + ENTRY_OUT_SIZE : off;
    const namelen = b.readUInt32LE(d + 16);
    out.push({
      ino: readU64(b, d),
      nextOffset: readU64(b, d + 8),
      type: b.readUInt32LE(d + 20),
      name: Buffer.from(b.subarray(d + 24, d + 24 + namelen)),
      ...(plus ? { nodeid: readU64(b, off), attr: readAttr(b, off + 40) } : {}),
    });
    off += direntSize(namelen, plus);
  }
  return out;
}
