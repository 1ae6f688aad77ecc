// What an archive is made of: entries in tar order, each with the metadata
// the index keeps and, for files, a way to open their bytes. Sources (a
// directory, an indexed image) produce them; the tar writer consumes them.

import type { Timespec } from '../tar/types.js';

export type ArchiveEntryType = 'file' | 'dir' | 'symlink' | 'char' | 'block' | 'fifo';

export interface ArchiveEntry {
  /** Relative to the archive root, "/"-separated, no "." or ".."; "" is the root. */
  path: string;
  type: ArchiveEntryType;
  /** Permission bits including setuid, setgid and sticky. */
  mode: number;
  uid: number;
  gid: number;
  mtime: Timespec;
  /** Written only when given (a directory source records mtime only). */
  atime?: Timespec;
  ctime?: Timespec;
  /** Symlinks: the target as stored. */
  target?: string;
  devmajor: number;
  devminor: number;
  xattrs?: Map<string, Buffer>;
  /** Names of one inode share this key: the first name written holds the data, the others become hard links to it. */
  linkKey?: string;
  /** Files: opens the bytes. Throws when the file cannot be read: the entry is then reported and skipped. */
  open?: () => Promise<FileData>;
}

export interface FileData {
  /** Bytes that `chunks` yields (the tar header says so before they are read). */
  size: number;
  chunks: AsyncIterable<Buffer> | Iterable<Buffer>;
  close(): Promise<void>;
}

/** Something left out of an archive, and why (reported, never fatal). */
export interface SkippedEntry {
  path: string;
  reason: string;
}

export type SkipListener = (skipped: SkippedEntry) => void;
