// The merged image tree: one node per inode (hardlinked names share a node),
// directories map names to children. Produced by the overlay merge, stored in
// the .clip index, served by the filesystem.

import type { Timespec } from '../tar/types.js';

/** Which system an image is for (an OCI platform: "linux/amd64", "linux/arm/v7"). */
export interface Platform {
  os: string;
  architecture: string;
  variant?: string;
}

export type NodeType = 'file' | 'dir' | 'symlink' | 'char' | 'block' | 'fifo';

export interface Node {
  /** Stable inode number; the root is 1. */
  ino: number;
  type: NodeType;
  /** Permission bits including setuid, setgid and sticky. */
  mode: number;
  uid: number;
  gid: number;
  /** Files: data length. Symlinks: target length in bytes. Others: 0. */
  size: number;
  mtime: Timespec;
  atime: Timespec;
  ctime: Timespec;
  /** Files: number of names. Directories: 2 + subdirectories. Others: 1 (or names for hardlinked devices). */
  nlink: number;
  devmajor: number;
  devminor: number;
  target?: string;
  xattrs?: Map<string, Buffer>;
  /** Where a file's bytes live: index of the layer and offset in its uncompressed stream; -1 when empty. */
  layer: number;
  offset: number;
  /** Directories: children by name. */
  children?: Map<string, Node>;
}

export interface ImageTree {
  root: Node;
  /** All nodes, nodes[ino - 1]. */
  nodes: Node[];
}
