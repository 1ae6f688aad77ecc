// The interface a read-only filesystem implements to be served over FUSE, in
// plain types (no wire structs), and the default answers for everything it
// leaves out, in one place. Handlers may be sync or async; throw FuseError.

import type {
  Attr,
  AttrReply,
  Awaitable,
  ConnectionInfo,
  DirEntries,
  Entry,
  LookupContext,
  OpenResult,
  RequestContext,
  StatFs,
} from './types.js';
import { FuseError } from './errors.js';

/**
 * A read-only filesystem. Inode 1 is the root. Required: lookup, getattr,
 * read, readdir. Errors: throw `new FuseError('ENOENT')` (or any Error with a
 * `code` such as 'ENOENT'); anything else is answered EIO and logged.
 * Every operation that would change the filesystem is answered EROFS by the
 * session without reaching it.
 */
export interface FileSystem {
  /** Called once INIT is negotiated, before any other request. */
  init?(conn: ConnectionInfo): void;
  /** The kernel is done with the filesystem (sent by some kernels at unmount). */
  destroy?(): Awaitable<void>;

  /** Resolves `name` in directory `parent`. Throw ENOENT for a missing name. Each success counts one lookup of the inode. */
  lookup(parent: number, name: string, ctx: LookupContext): Awaitable<Entry>;
  /** The kernel dropped `nlookup` lookups of `ino` (no reply is sent). */
  forget?(ino: number, nlookup: number): void;
  getattr(ino: number, ctx: RequestContext, fh?: number): Awaitable<AttrReply>;
  readlink?(ino: number, ctx: RequestContext): Awaitable<string | Buffer>;

  /** `flags` are open(2) flags; opens for writing never get here (EROFS). */
  open?(ino: number, flags: number, ctx: RequestContext): Awaitable<OpenResult>;
  /**
   * Up to `size` bytes at `offset`; fewer only at end of file. A list of
   * buffers is sent as it is, in one write (no copy into one buffer).
   */
  read(ino: number, fh: number, offset: number, size: number, ctx: RequestContext): Awaitable<Buffer | Uint8Array | Buffer[]>;
  flush?(ino: number, fh: number, ctx: RequestContext): Awaitable<void>;
  release?(ino: number, fh: number, ctx: RequestContext): Awaitable<void>;

  opendir?(ino: number, flags: number, ctx: RequestContext): Awaitable<OpenResult>;
  /**
   * Entries from `offset` (0: the start; otherwise a `nextOffset` returned
   * earlier). Return as many as is convenient: the session packs what fits in
   * the kernel's buffer and stops pulling from an iterable there. With `plus`,
   * give each entry its `entry` (attributes) to save the kernel a LOOKUP each.
   */
  readdir(ino: number, fh: number, offset: number, plus: boolean, ctx: RequestContext): Awaitable<DirEntries>;
  releasedir?(ino: number, fh: number, ctx: RequestContext): Awaitable<void>;

  statfs?(ino: number, ctx: RequestContext): Awaitable<StatFs>;
  /** The value of xattr `name`, or undefined when the inode has none (ENODATA). */
  getxattr?(ino: number, name: string, ctx: RequestContext): Awaitable<Buffer | undefined>;
  listxattr?(ino: number, ctx: RequestContext): Awaitable<Array<string | Buffer>>;
  /** Only reached without the default_permissions mount option; W_OK is answered EROFS first. */
  access?(ino: number, mask: number, ctx: RequestContext): Awaitable<void>;
}

/** The answers for what a filesystem leaves out. */
export const DEFAULT_ANSWERS = {
  readlink(): never {
    throw new FuseError('EINVAL');
  },
  open(): OpenResult {
    return {};
  },
  opendir(): OpenResult {
    return {};
  },
  flush(): void {},
  release(): void {},
  releasedir(): void {},
  forget(): void {},
  statfs(): StatFs {
    return { blocks: 0, bfree: 0, bavail: 0, files: 0, ffree: 0, bsize: 4096, namelen: 255, frsize: 4096 };
  },
  getxattr(): Buffer | undefined {
    return undefined;
  },
  listxattr(): string[] {
    return [];
  },
  access(): void {},
} satisfies Partial<FileSystem>;

/** An attribute record with defaults for what a caller leaves out (handy for tests and synthetic inodes). */
export function attr(partial: Partial<Attr> & Pick<Attr, 'ino' | 'mode'>): Attr {
  const zero = { sec: 0, nsec: 0 };
  const { ino, mode, ...rest } = partial;
  const size = rest.size ?? 0;
  return {
    ino,
    mode,
    nlink: 1,
    uid: 0,
    gid: 0,
    rdev: 0,
    size,
    blocks: Math.ceil(size / 512),
    blksize: 4096,
    atime: zero,
    mtime: zero,
    ctime: zero,
    ...rest,
  };
}
