// An indexed tree (an image's merged layers, or any .clip file) as archive
// entries: depth first in name order, hardlinked names sharing the node's
// inode, file bytes read lazily through a FileReader (registry, archive or
// S3). atime and ctime are kept where they differ from mtime, so an archive
// of an index describes exactly the same tree.

import type { FileReader } from '../content/file-reader.js';
import { walk } from '../image/lookup.js';
import type { ImageTree, Node } from '../image/types.js';
import type { ArchiveEntry } from './types.js';

function same(a: Node['mtime'], b: Node['mtime']): boolean {
  return a.sec === b.sec && a.nsec === b.nsec;
}

export function treeEntries(tree: ImageTree, reader: FileReader): ArchiveEntry[] {
  const out: ArchiveEntry[] = [];
  for (const [path, node] of walk(tree)) {
    const e: ArchiveEntry = {
      path,
      type: node.type,
      mode: node.mode,
      uid: node.uid,
      gid: node.gid,
      mtime: node.mtime,
      devmajor: node.devmajor,
      devminor: node.devminor,
    };
    if (!same(node.atime, node.mtime)) e.atime = node.atime;
    if (!same(node.ctime, node.mtime)) e.ctime = node.ctime;
    if (node.target !== undefined) e.target = node.target;
    if (node.xattrs && node.xattrs.size > 0) e.xattrs = node.xattrs;
    if (node.type !== 'dir' && node.nlink > 1) e.linkKey = String(node.ino);
    if (node.type === 'file') {
      e.open = async () => ({ size: node.size, chunks: reader.stream(node), close: async () => undefined });
    }
    out.push(e);
  }
  return out;
}

/** Bytes of all regular files, each inode once (progress). */
export function treeFileBytes(tree: ImageTree): number {
  return tree.nodes.reduce((a, n) => a + (n.type === 'file' ? n.size : 0), 0);
}
