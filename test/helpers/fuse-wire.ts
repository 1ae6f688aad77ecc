// The kernel's side of the FUSE wire, for tests that play the kernel: request
// headers to send, and the decoders of the replies the session writes
// (attributes, READDIR/READDIRPLUS records). The session needs none of these.

import type { Attr } from '../../src/fuse/types.js';
import { type InHeader, ENTRY_OUT_SIZE, IN_HEADER_SIZE, direntSize, readU64, writeU64 } from '../../src/fuse/wire.js';

/** Encodes a request header, as the kernel does. */
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

/** Decodes struct fuse_attr. */
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

/** One parsed record of a READDIR/READDIRPLUS reply. */
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
