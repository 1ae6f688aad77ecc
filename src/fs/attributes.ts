// Image nodes as stat(2) sees them: type bits, link counts, blocks, rdev.

import { makedev, type Attr } from '../fuse/index.js';
import type { Node, NodeType } from '../image/types.js';

const S_IF: Record<NodeType, number> = {
  file: 0o100000,
  dir: 0o040000,
  symlink: 0o120000,
  char: 0o020000,
  block: 0o060000,
  fifo: 0o010000,
};

export function modeOf(node: Node): number {
  return S_IF[node.type] | (node.mode & 0o7777);
}

export function attrOf(node: Node): Attr {
  return {
    ino: node.ino,
    mode: modeOf(node),
    nlink: node.nlink,
    uid: node.uid,
    gid: node.gid,
    rdev: node.type === 'char' || node.type === 'block' ? makedev(node.devmajor, node.devminor) : 0,
    size: node.size,
    blocks: node.type === 'file' ? Math.ceil(node.size / 512) : 0,
    blksize: 4096,
    atime: node.atime,
    mtime: node.mtime,
    ctime: node.ctime,
  };
}
