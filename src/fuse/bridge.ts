// The bridge from decoded requests to a FileSystem: one handler per opcode the
// FileSystem interface covers, turning wire arguments into its plain calls
// (names to strings, readdir into packed dirents, xattr size rules) and
// filling in the default answers for what it leaves out. Writes are refused
// here (EROFS) before they reach the filesystem.

import { GETATTR_FH, errno } from './constants.js';
import { FuseError, errnoOf } from './errors.js';
import { DEFAULT_ANSWERS, type FileSystem } from './filesystem.js';
import type { DirReply, OpIn, OpName, OpOut, XattrReply } from './opcodes.js';
import type { Awaitable, DirEntries, DirEntry, Entry, RequestContext } from './types.js';
import { DirentPacker } from './wire.js';

export type Handler<N extends OpName> = (nodeid: number, args: OpIn<N>, ctx: RequestContext) => Awaitable<OpOut<N>>;
export type Handlers = { [N in OpName]?: Handler<N> };

export interface BridgeOptions {
  /** Seconds the kernel may cache a failed LOOKUP (ENOENT) as "no such name"; 0: not cached. */
  negativeTimeout: number;
}

const O_ACCMODE = 3;
const W_OK = 2;
const NUL = Buffer.alloc(1);

/** The handlers that serve `filesystem`; opcodes without one get the session's default answer. */
export function bridgeHandlers(filesystem: FileSystem, opts: BridgeOptions): Handlers {
  const d = DEFAULT_ANSWERS;
  const { negativeTimeout } = opts;
  return {
    LOOKUP: (n, a, ctx) => {
      // Not a spread of ctx: that would make its signal (request-signal.ts), which a lookup rarely needs.
      const lookupCtx = {
        unique: ctx.unique,
        uid: ctx.uid,
        gid: ctx.gid,
        pid: ctx.pid,
        get signal() {
          return ctx.signal;
        },
        nameBytes: a.name,
      };
      const lookup = () => filesystem.lookup(n, a.name.toString('utf8'), lookupCtx);
      if (!(negativeTimeout > 0)) return lookup();
      return Promise.resolve()
        .then(lookup)
        .catch((e: unknown) => {
          if (errnoOf(e) === errno.ENOENT) return negativeEntry(negativeTimeout);
          throw e;
        });
    },
    GETATTR: (n, a, ctx) => filesystem.getattr(n, ctx, a.getattrFlags & GETATTR_FH ? a.fh : undefined),
    READLINK: (n, _a, ctx) =>
      map(filesystem.readlink ? filesystem.readlink(n, ctx) : d.readlink(), (t) => (typeof t === 'string' ? Buffer.from(t) : t)),
    OPEN: (n, a, ctx) => {
      if ((a.flags & O_ACCMODE) !== 0) throw new FuseError('EROFS');
      return filesystem.open ? filesystem.open(n, a.flags, ctx) : d.open();
    },
    READ: (n, a, ctx) => map(filesystem.read(n, a.fh, a.offset, a.size, ctx), (data) => capped(data, a.size)),
    FLUSH: (n, a, ctx) => (filesystem.flush ? filesystem.flush(n, a.fh, ctx) : d.flush()),
    RELEASE: (n, a, ctx) => (filesystem.release ? filesystem.release(n, a.fh, ctx) : d.release()),
    OPENDIR: (n, a, ctx) => (filesystem.opendir ? filesystem.opendir(n, a.flags, ctx) : d.opendir()),
    READDIR: (n, a, ctx) => readdir(filesystem, n, a, ctx, false),
    READDIRPLUS: (n, a, ctx) => readdir(filesystem, n, a, ctx, true),
    RELEASEDIR: (n, a, ctx) => (filesystem.releasedir ? filesystem.releasedir(n, a.fh, ctx) : d.releasedir()),
    STATFS: (n, _a, ctx) => (filesystem.statfs ? filesystem.statfs(n, ctx) : d.statfs()),
    GETXATTR: (n, a, ctx) =>
      map(filesystem.getxattr ? filesystem.getxattr(n, a.name.toString('utf8'), ctx) : d.getxattr(), (v) => {
        if (v === undefined) throw new FuseError('ENODATA');
        return sized(v, a.size);
      }),
    LISTXATTR: (n, a, ctx) =>
      map(filesystem.listxattr ? filesystem.listxattr(n, ctx) : d.listxattr(), (names) =>
        sized(Buffer.concat(names.flatMap((x) => [typeof x === 'string' ? Buffer.from(x) : x, NUL])), a.size),
      ),
    ACCESS: (n, a, ctx) => {
      if (a.mask & W_OK) throw new FuseError('EROFS');
      return filesystem.access ? filesystem.access(n, a.mask, ctx) : d.access();
    },
    DESTROY: () => filesystem.destroy?.(),
  };
}

/** Packs what fits of the filesystem's entries into the kernel's buffer, pulling no further. */
async function readdir(filesystem: FileSystem, n: number, a: OpIn<'READDIR'>, ctx: RequestContext, plus: boolean): Promise<DirReply> {
  const packer = new DirentPacker(a.size, plus);
  const add = (e: DirEntry) =>
    packer.add(typeof e.name === 'string' ? Buffer.from(e.name) : e.name, e.ino, e.mode, e.nextOffset, plus ? e.entry : undefined);
  const list: DirEntries = await filesystem.readdir(n, a.fh, a.offset, plus, ctx);
  if (Symbol.iterator in list) {
    for (const e of list) if (!add(e)) break;
  } else {
    for await (const e of list) if (!add(e)) break;
  }
  return { data: packer.finish(), count: packer.count };
}

/** GETXATTR/LISTXATTR size rules: size 0 asks for the length; a smaller buffer is ERANGE. */
function sized(data: Buffer, size: number): XattrReply {
  if (size === 0) return { size: data.length };
  if (data.length > size) throw new FuseError('ERANGE');
  return { data };
}

function negativeEntry(timeout: number): Entry {
  const zero = { sec: 0, nsec: 0 };
  return {
    attr: { ino: 0, mode: 0, nlink: 0, uid: 0, gid: 0, rdev: 0, size: 0, blocks: 0, blksize: 0, atime: zero, mtime: zero, ctime: zero },
    entryTimeout: timeout,
    attrTimeout: 0,
  };
}

function map<T, U>(v: Awaitable<T>, f: (t: T) => U): Awaitable<U> {
  return isPromiseLike(v) ? Promise.resolve(v).then(f) : f(v);
}

export function isPromiseLike(v: unknown): v is PromiseLike<unknown> {
  return typeof v === 'object' && v !== null && typeof (v as { then?: unknown }).then === 'function';
}

/** A READ reply of at most `size` bytes, as one buffer or the list given (views, never copies). */
function capped(data: Buffer | Uint8Array | Buffer[], size: number): Buffer | Buffer[] {
  if (!Array.isArray(data)) return toBuffer(data).subarray(0, size);
  let total = 0;
  for (const d of data) total += d.length;
  if (total <= size) return data;
  const out: Buffer[] = [];
  let left = size;
  for (const d of data) {
    if (left <= 0) break;
    out.push(d.length <= left ? d : d.subarray(0, left));
    left -= d.length;
  }
  return out;
}

function toBuffer(data: Buffer | Uint8Array): Buffer {
  return Buffer.isBuffer(data) ? data : Buffer.from(data.buffer, data.byteOffset, data.byteLength);
}
