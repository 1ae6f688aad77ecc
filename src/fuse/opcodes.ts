// The protocol as data: one table from opcode to its name, the decoder of its
// request body, the encoder of its reply, and whether it gets a reply or
// changes the filesystem. Decoding, dispatch and debug printing all read it.

import type { AttrReply, Entry, OpenResult, StatFs } from './types.js';
import {
  type BodyReader,
  type InitOut,
  decodeInitIn,
  encodeAttrOut,
  encodeEntryOut,
  encodeGetxattrOut,
  encodeInitOut,
  encodeOpenOut,
  encodeStatfsOut,
} from './wire.js';

export interface OpSpec<I, O> {
  code: number;
  /** Request body -> plain arguments (names copied out of the read buffer). */
  decode(r: BodyReader): I;
  /** Plain reply -> payload; without it a success reply is the header alone. */
  encode?(out: O): Buffer | Buffer[];
  /** The kernel expects no reply (FORGET, BATCH_FORGET, INTERRUPT, NOTIFY_REPLY). */
  noReply?: boolean;
  /** Changes the filesystem: a read-only server answers EROFS. */
  mutates?: boolean;
}

/** GETXATTR/LISTXATTR reply: the size alone (request size 0) or the bytes. */
export type XattrReply = { size: number } | { data: Buffer };

/** READDIR/READDIRPLUS reply: packed records and how many. */
export interface DirReply {
  data: Buffer;
  count: number;
}

function spec<I, O = void>(s: OpSpec<I, O>): OpSpec<I, O> {
  return s;
}

const empty = (): Record<string, never> => ({});

// Shared shapes of request bodies.
const named = (r: BodyReader) => ({ name: r.cstring() });
const readIn = (r: BodyReader) => {
  const fh = r.u64();
  const offset = r.u64();
  const size = r.u32();
  const readFlags = r.u32();
  const lockOwner = r.u64n();
  const flags = r.u32();
  return { fh, offset, size, readFlags, lockOwner, flags };
};
const openIn = (r: BodyReader) => ({ flags: r.u32(), openFlags: r.u32() });
const releaseIn = (r: BodyReader) => ({ fh: r.u64(), flags: r.u32(), releaseFlags: r.u32(), lockOwner: r.u64n() });
const fsyncIn = (r: BodyReader) => ({ fh: r.u64(), fsyncFlags: r.u32() });
const lkIn = (r: BodyReader) => {
  const fh = r.u64();
  const owner = r.u64n();
  const lk = { start: r.u64n(), end: r.u64n(), type: r.u32(), pid: r.u32() };
  return { fh, owner, lk, lkFlags: r.u32() };
};
const createIn = (r: BodyReader) => {
  const flags = r.u32();
  const mode = r.u32();
  const umask = r.u32();
  const openFlags = r.u32();
  return { flags, mode, umask, openFlags, name: r.cstring() };
};
const xattrReply = (o: XattrReply) => ('size' in o ? encodeGetxattrOut(o.size) : o.data);
const dirReply = (o: DirReply) => o.data;

/** Every opcode of <linux/fuse.h> up to 7.45, keyed by the name printed in logs. */
export const OPS = {
  LOOKUP: spec({ code: 1, decode: named, encode: (e: Entry) => encodeEntryOut(e) }),
  FORGET: spec({ code: 2, decode: (r) => ({ nlookup: r.u64() }), noReply: true }),
  GETATTR: spec({
    code: 3,
    decode: (r) => {
      const getattrFlags = r.u32();
      r.skip(4);
      return { getattrFlags, fh: r.u64() };
    },
    encode: (a: AttrReply) => encodeAttrOut(a.attr, a.timeout),
  }),
  SETATTR: spec({
    code: 4,
    mutates: true,
    decode: (r) => {
      const valid = r.u32();
      r.skip(4);
      const fh = r.u64();
      const size = r.u64();
      r.skip(8); // lock_owner
      const atime = r.u64();
      const mtime = r.u64();
      r.skip(8 + 12); // ctime, atimensec, mtimensec, ctimensec
      const mode = r.u32();
      r.skip(4);
      return { valid, fh, size, atime, mtime, mode, uid: r.u32(), gid: r.u32() };
    },
  }),
  READLINK: spec({ code: 5, decode: empty, encode: (target: Buffer) => target }),
  SYMLINK: spec({ code: 6, mutates: true, decode: (r) => ({ name: r.cstring(), target: r.cstring() }) }),
  MKNOD: spec({
    code: 8,
    mutates: true,
    decode: (r) => {
      const mode = r.u32();
      const rdev = r.u32();
      const umask = r.u32();
      r.skip(4);
      return { mode, rdev, umask, name: r.cstring() };
    },
  }),
  MKDIR: spec({ code: 9, mutates: true, decode: (r) => ({ mode: r.u32(), umask: r.u32(), name: r.cstring() }) }),
  UNLINK: spec({ code: 10, mutates: true, decode: named }),
  RMDIR: spec({ code: 11, mutates: true, decode: named }),
  RENAME: spec({ code: 12, mutates: true, decode: (r) => ({ newdir: r.u64(), name: r.cstring(), newName: r.cstring() }) }),
  LINK: spec({ code: 13, mutates: true, decode: (r) => ({ oldNodeid: r.u64(), name: r.cstring() }) }),
  OPEN: spec({ code: 14, decode: openIn, encode: (o: OpenResult) => encodeOpenOut(o) }),
  READ: spec({ code: 15, decode: readIn, encode: (data: Buffer | Buffer[]) => data }),
  WRITE: spec({
    code: 16,
    mutates: true,
    decode: (r) => {
      const fh = r.u64();
      const offset = r.u64();
      const size = r.u32();
      const writeFlags = r.u32();
      return { fh, offset, size, writeFlags };
    },
  }),
  STATFS: spec({ code: 17, decode: empty, encode: (s: StatFs) => encodeStatfsOut(s) }),
  RELEASE: spec({ code: 18, decode: releaseIn }),
  FSYNC: spec({ code: 20, decode: fsyncIn }),
  SETXATTR: spec({ code: 21, mutates: true, decode: (r) => ({ size: r.u32(), flags: r.u32(), name: r.cstring() }) }),
  GETXATTR: spec({
    code: 22,
    decode: (r) => {
      const size = r.u32();
      r.skip(4);
      return { size, name: r.cstring() };
    },
    encode: xattrReply,
  }),
  LISTXATTR: spec({
    code: 23,
    decode: (r) => {
      const size = r.u32();
      r.skip(4);
      return { size };
    },
    encode: xattrReply,
  }),
  REMOVEXATTR: spec({ code: 24, mutates: true, decode: named }),
  FLUSH: spec({
    code: 25,
    decode: (r) => {
      const fh = r.u64();
      r.skip(8);
      return { fh, lockOwner: r.u64n() };
    },
  }),
  INIT: spec({ code: 26, decode: decodeInitIn, encode: (o: InitOut) => encodeInitOut(o) }),
  OPENDIR: spec({ code: 27, decode: openIn, encode: (o: OpenResult) => encodeOpenOut(o) }),
  READDIR: spec({ code: 28, decode: readIn, encode: dirReply }),
  RELEASEDIR: spec({ code: 29, decode: releaseIn }),
  FSYNCDIR: spec({ code: 30, decode: fsyncIn }),
  GETLK: spec({ code: 31, decode: lkIn }),
  SETLK: spec({ code: 32, decode: lkIn }),
  SETLKW: spec({ code: 33, decode: lkIn }),
  ACCESS: spec({ code: 34, decode: (r) => ({ mask: r.u32() }) }),
  CREATE: spec({ code: 35, mutates: true, decode: createIn }),
  INTERRUPT: spec({ code: 36, decode: (r) => ({ unique: r.u64n() }), noReply: true }),
  BMAP: spec({ code: 37, decode: (r) => ({ block: r.u64(), blocksize: r.u32() }) }),
  DESTROY: spec({ code: 38, decode: empty }),
  IOCTL: spec({
    code: 39,
    decode: (r) => {
      const fh = r.u64();
      const flags = r.u32();
      const cmd = r.u32();
      return { fh, flags, cmd };
    },
  }),
  POLL: spec({ code: 40, decode: (r) => ({ fh: r.u64(), kh: r.u64n(), flags: r.u32(), events: r.u32() }) }),
  NOTIFY_REPLY: spec({ code: 41, decode: (r) => ({ bytes: r.remaining }), noReply: true }),
  BATCH_FORGET: spec({
    code: 42,
    decode: (r) => {
      const count = r.u32();
      r.skip(4);
      const items: Array<{ nodeid: number; nlookup: number }> = [];
      // The kernel caps a batch at what fits its buffer; trust the count only as far as the body goes.
      for (let i = 0; i < count && r.remaining >= 16; i++) items.push({ nodeid: r.u64(), nlookup: r.u64() });
      return { items };
    },
    noReply: true,
  }),
  FALLOCATE: spec({
    code: 43,
    mutates: true,
    decode: (r) => ({ fh: r.u64(), offset: r.u64(), length: r.u64(), mode: r.u32() }),
  }),
  READDIRPLUS: spec({ code: 44, decode: readIn, encode: dirReply }),
  RENAME2: spec({
    code: 45,
    mutates: true,
    decode: (r) => {
      const newdir = r.u64();
      const flags = r.u32();
      r.skip(4);
      return { newdir, flags, name: r.cstring(), newName: r.cstring() };
    },
  }),
  LSEEK: spec({ code: 46, decode: (r) => ({ fh: r.u64(), offset: r.u64(), whence: r.u32() }) }),
  COPY_FILE_RANGE: spec({
    code: 47,
    mutates: true,
    decode: (r) => ({ fhIn: r.u64(), offIn: r.u64(), nodeidOut: r.u64(), fhOut: r.u64(), offOut: r.u64(), len: r.u64() }),
  }),
  SETUPMAPPING: spec({ code: 48, decode: (r) => ({ fh: r.u64(), foffset: r.u64(), len: r.u64() }) }),
  REMOVEMAPPING: spec({ code: 49, decode: (r) => ({ count: r.u32() }) }),
  SYNCFS: spec({ code: 50, decode: empty }),
  TMPFILE: spec({ code: 51, mutates: true, decode: createIn }),
  STATX: spec({
    code: 52,
    decode: (r) => {
      const getattrFlags = r.u32();
      r.skip(4);
      const fh = r.u64();
      return { getattrFlags, fh, sxFlags: r.u32(), sxMask: r.u32() };
    },
  }),
  CUSE_INIT: spec({ code: 4096, decode: empty }),
};

export type Ops = typeof OPS;
export type OpName = keyof Ops;
/** Decoded request arguments of an opcode. */
export type OpIn<N extends OpName> = Ops[N] extends OpSpec<infer I, unknown> ? I : never;
/** Plain reply of an opcode (void: header only). */
export type OpOut<N extends OpName> = Ops[N] extends OpSpec<unknown, infer O> ? O : never;

export interface OpcodeInfo {
  name: OpName;
  spec: OpSpec<unknown, unknown>;
}

/** The same table keyed by opcode number, as requests name it. */
export const OPCODES: ReadonlyMap<number, OpcodeInfo> = new Map(
  (Object.keys(OPS) as OpName[]).map((name) => [OPS[name].code, { name, spec: OPS[name] }]),
);

/** "LOOKUP" for 1, "OPCODE_999" for numbers the table does not know. */
export function opcodeName(code: number): string {
  return OPCODES.get(code)?.name ?? `OPCODE_${code}`;
}
