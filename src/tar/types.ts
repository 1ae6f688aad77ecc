// What the tar scanner reports for each entry of a layer: metadata plus the
// exact position of the entry's data in the uncompressed layer stream.

import type { Timespec } from '../util/timespec.js';

export type { Timespec };

export type EntryType = 'file' | 'hardlink' | 'symlink' | 'dir' | 'char' | 'block' | 'fifo';

export interface TarEntry {
  /** Normalised path relative to the layer root: no leading "/" or "./", no
   *  trailing "/", no "." or ".." components. The root directory itself is "". */
  path: string;
  type: EntryType;
  /** Permission bits including setuid (0o4000), setgid (0o2000), sticky (0o1000). */
  mode: number;
  uid: number;
  gid: number;
  uname?: string;
  gname?: string;
  /** Length of the entry's data in the stream (0 for everything but regular files). */
  size: number;
  /** Offset of the first data byte in the uncompressed layer stream. */
  dataOffset: number;
  mtime: Timespec;
  atime?: Timespec;
  ctime?: Timespec;
  /** Symlink: the target exactly as stored. Hardlink: the normalised path of the target. */
  linkname?: string;
  devmajor: number;
  devminor: number;
  /** SCHILY.xattr.* records, values as raw bytes. */
  xattrs?: Map<string, Buffer>;
}

/** Times clip keeps: years 1 to 9999 (what RFC 3339 prints); tar times outside are clamped, index times outside refused. */
export const MIN_TIME_SEC = -62135596800;
export const MAX_TIME_SEC = 253402300799;
