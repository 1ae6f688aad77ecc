// Numbers of the FUSE kernel protocol as <linux/fuse.h> defines them: protocol
// versions, INIT capability flags, FOPEN_* reply flags, and the errno values the
// session answers with on its own. No logic beyond naming flag sets for logs.

import { constants as osConstants } from 'node:os';

/** The protocol major version we speak (the kernel's has been 7 since 2006). */
export const KERNEL_VERSION = 7;
/** Oldest kernel minor we serve: from 7.12 on, fuse_attr has blksize and mknod_in has umask. */
export const MIN_KERNEL_MINOR = 12;
/** Newest minor we implement fully: 7.38, the version the Debian 12 uapi header documents. */
export const MAX_MINOR = 38;
/** Node id of the filesystem's root; a filesystem must use inode 1 for its root. */
export const ROOT_ID = 1;

/** INIT flags (fuse_init_in/out.flags, with flags2 as bits 32..63). */
export const InitFlag = {
  ASYNC_READ: 1n << 0n,
  POSIX_LOCKS: 1n << 1n,
  FILE_OPS: 1n << 2n,
  ATOMIC_O_TRUNC: 1n << 3n,
  EXPORT_SUPPORT: 1n << 4n,
  BIG_WRITES: 1n << 5n,
  DONT_MASK: 1n << 6n,
  SPLICE_WRITE: 1n << 7n,
  SPLICE_MOVE: 1n << 8n,
  SPLICE_READ: 1n << 9n,
  FLOCK_LOCKS: 1n << 10n,
  HAS_IOCTL_DIR: 1n << 11n,
  AUTO_INVAL_DATA: 1n << 12n,
  DO_READDIRPLUS: 1n << 13n,
  READDIRPLUS_AUTO: 1n << 14n,
  ASYNC_DIO: 1n << 15n,
  WRITEBACK_CACHE: 1n << 16n,
  NO_OPEN_SUPPORT: 1n << 17n,
  PARALLEL_DIROPS: 1n << 18n,
  HANDLE_KILLPRIV: 1n << 19n,
  POSIX_ACL: 1n << 20n,
  ABORT_ERROR: 1n << 21n,
  MAX_PAGES: 1n << 22n,
  CACHE_SYMLINKS: 1n << 23n,
  NO_OPENDIR_SUPPORT: 1n << 24n,
  EXPLICIT_INVAL_DATA: 1n << 25n,
  MAP_ALIGNMENT: 1n << 26n,
  SUBMOUNTS: 1n << 27n,
  HANDLE_KILLPRIV_V2: 1n << 28n,
  SETXATTR_EXT: 1n << 29n,
  INIT_EXT: 1n << 30n,
  INIT_RESERVED: 1n << 31n,
  SECURITY_CTX: 1n << 32n,
  HAS_INODE_DAX: 1n << 33n,
  CREATE_SUPP_GROUP: 1n << 34n,
  HAS_EXPIRE_ONLY: 1n << 35n,
  DIRECT_IO_ALLOW_MMAP: 1n << 36n,
  PASSTHROUGH: 1n << 37n,
  NO_EXPORT_SUPPORT: 1n << 38n,
  HAS_RESEND: 1n << 39n,
  ALLOW_IDMAP: 1n << 40n,
  OVER_IO_URING: 1n << 41n,
  REQUEST_TIMEOUT: 1n << 42n,
} as const;

/**
 * The capabilities a read-only, lazily fetched filesystem asks for, each taken
 * only when the kernel offers it: parallel reads and lookups, 1 MiB requests,
 * READDIRPLUS always (not adaptive), cached symlinks. INIT_EXT lets flags2 count.
 */
export const WANTED_INIT_FLAGS =
  InitFlag.ASYNC_READ |
  InitFlag.PARALLEL_DIROPS |
  InitFlag.MAX_PAGES |
  InitFlag.DO_READDIRPLUS |
  InitFlag.CACHE_SYMLINKS |
  InitFlag.BIG_WRITES |
  InitFlag.INIT_EXT;

/** fuse_open_out.open_flags */
export const OpenFlag = {
  DIRECT_IO: 1 << 0,
  KEEP_CACHE: 1 << 1,
  NONSEEKABLE: 1 << 2,
  CACHE_DIR: 1 << 3,
  STREAM: 1 << 4,
  NOFLUSH: 1 << 5,
} as const;

/** fuse_getattr_in.getattr_flags: the fh field is valid. */
export const GETATTR_FH = 1;

export const errno = osConstants.errno;

/** Names the set bits of a flag word, e.g. "ASYNC_READ|MAX_PAGES|0x8000000000". */
export function initFlagNames(flags: bigint): string {
  const names: string[] = [];
  let rest = flags;
  for (const [name, bit] of Object.entries(InitFlag)) {
    if (flags & bit) {
      names.push(name);
      rest &= ~bit;
    }
  }
  if (rest) names.push(`0x${rest.toString(16)}`);
  return names.length ? names.join('|') : '0';
}
