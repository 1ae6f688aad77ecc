// Plain types shared by the filesystem interface and the wire encoders: what a
// filesystem returns (attributes, entries, directory listings, statfs) in
// JavaScript numbers and strings. No wire layout here; wire.ts owns that.

import type { Timespec } from '../util/timespec.js';

export type { Timespec };

/** What stat(2) reports for an inode. */
export interface Attr {
  /** Inode number, also the FUSE node id the kernel names it by (the root must be 1). */
  ino: number;
  /** Full st_mode including the type bits (S_IFREG, S_IFDIR, ...). */
  mode: number;
  nlink: number;
  uid: number;
  gid: number;
  /** Device number of a device node, encoded as st_rdev is (see makedev). */
  rdev: number;
  size: number;
  /** 512-byte blocks. */
  blocks: number;
  blksize: number;
  atime: Timespec;
  mtime: Timespec;
  ctime: Timespec;
}

/** The answer to LOOKUP: an inode and how long the kernel may cache it. */
export interface Entry {
  attr: Attr;
  /** Seconds the kernel may cache the name -> inode mapping (fractions allowed). */
  entryTimeout: number;
  /** Seconds the kernel may cache the attributes. */
  attrTimeout: number;
  /** Inode generation; (ino, generation) must be unique for the filesystem's life. */
  generation?: number;
}

/** The answer to GETATTR. */
export interface AttrReply {
  attr: Attr;
  /** Seconds the kernel may cache the attributes. */
  timeout: number;
}

/** The answer to OPEN and OPENDIR. */
export interface OpenResult {
  /** A handle of the filesystem's choosing, passed back with READ/RELEASE. */
  fh?: number;
  /** Keep the page cache from earlier opens (right for immutable files). */
  keepCache?: boolean;
  /** Bypass the page cache: every read(2) reaches the filesystem with its own size. */
  directIo?: boolean;
  nonSeekable?: boolean;
  /** OPENDIR only: let the kernel cache the listing. */
  cacheDir?: boolean;
}

/** One directory entry, as READDIR and READDIRPLUS return it. */
export interface DirEntry {
  /** Raw bytes as a Buffer, or a string encoded as UTF-8. */
  name: string | Buffer;
  ino: number;
  /** st_mode of the entry; only the type bits are used. */
  mode: number;
  /** Offset to continue from after this entry (the kernel hands it back as `offset`). */
  nextOffset: number;
  /**
   * READDIRPLUS: the entry as LOOKUP would return it. Sending it counts as a
   * lookup (the kernel will FORGET it later), except for "." and "..", which
   * are always sent without one. Leave it out and the kernel looks the name up.
   */
  entry?: Entry;
}

/** What readdir may return: a list, or a (possibly async) iterable read only as far as the reply buffer fills. */
export type DirEntries = Iterable<DirEntry> | AsyncIterable<DirEntry>;

/** The answer to STATFS (statvfs(2) fields). */
export interface StatFs {
  blocks: number;
  bfree: number;
  bavail: number;
  files: number;
  ffree: number;
  bsize: number;
  namelen: number;
  frsize: number;
}

/** Who is asking, and a signal that fires when the kernel interrupts the request. */
export interface RequestContext {
  unique: bigint;
  uid: number;
  gid: number;
  pid: number;
  signal: AbortSignal;
}

/** LOOKUP's context also carries the name's raw bytes (names need not be UTF-8). */
export interface LookupContext extends RequestContext {
  nameBytes: Buffer;
}

/** What INIT settled between the kernel and us. */
export interface ConnectionInfo {
  kernelMajor: number;
  kernelMinor: number;
  /** The minor both sides now speak: min(kernel's, ours). */
  minor: number;
  /** Flags the kernel offered. */
  kernelFlags: bigint;
  /** Flags we answered with (the ones in force). */
  flags: bigint;
  maxReadahead: number;
  maxWrite: number;
  maxPages: number;
  maxBackground: number;
  congestionThreshold: number;
  timeGran: number;
}

export type Awaitable<T> = T | Promise<T>;

/** st_rdev for a device major:minor, as glibc's makedev() (and the kernel's 32-bit encoding) computes it. */
export function makedev(major: number, minor: number): number {
  return ((major & 0xfff) << 8) + (minor & 0xff) + (minor & 0xfff00) * 4096;
}

/** Inverse of makedev for rdev values below 2^32. */
export function devMajor(rdev: number): number {
  return (rdev >>> 8) & 0xfff;
}

export function devMinor(rdev: number): number {
  return (rdev & 0xff) | ((rdev >>> 12) & 0xfff00);
}
