// Applies layers bottom to top, each in tar order, the way containerd's
// applier unpacks them: whiteouts and opaque markers act where they stand,
// an entry replaces what is at its path, directories merge, hardlinks share
// one node. Then numbers the inodes in a stable order and counts links.

import { ClipError } from '../errors.js';
import type { TarEntry } from '../tar/types.js';
import type { ImageTree, Node } from './types.js';

const WHITEOUT_PREFIX = '.wh.';
const OPAQUE_MARKER = '.wh..wh..opq';

type Draft = Omit<Node, 'ino' | 'nlink'> & { ino: number; nlink: number };

function newDir(): Draft {
  const t = { sec: 0, nsec: 0 };
  return {
    ino: 0,
    type: 'dir',
    mode: 0o755,
    uid: 0,
    gid: 0,
    size: 0,
    mtime: t,
    atime: t,
    ctime: t,
    nlink: 0,
    devmajor: 0,
    devminor: 0,
    layer: -1,
    offset: 0,
    children: new Map(),
  };
}

function fromEntry(e: TarEntry, layer: number): Draft {
  const type = e.type === 'hardlink' ? 'file' : e.type;
  const node: Draft = {
    ino: 0,
    type,
    mode: e.mode & 0o7777,
    uid: e.uid,
    gid: e.gid,
    size: type === 'file' ? e.size : type === 'symlink' ? Buffer.byteLength(e.linkname ?? '') : 0,
    mtime: e.mtime,
    atime: e.atime ?? e.mtime,
    ctime: e.ctime ?? e.mtime,
    nlink: 0,
    devmajor: e.devmajor,
    devminor: e.devminor,
    layer: type === 'file' && e.size > 0 ? layer : -1,
    offset: type === 'file' && e.size > 0 ? e.dataOffset : 0,
  };
  if (type === 'symlink') node.target = e.linkname ?? '';
  if (type === 'dir') node.children = new Map();
  if (e.xattrs && e.xattrs.size > 0) node.xattrs = new Map(e.xattrs);
  return node;
}

function split(path: string): { parent: string[]; name: string } {
  const parts = path.split('/');
  const name = parts.pop()!;
  return { parent: parts, name };
}

export class OverlayMerge {
  private readonly root: Draft = newDir();

  /**
   * Applies one layer's entries on top of what was applied before, one by
   * one in tar order, as containerd's applier does: a whiteout removes what
   * exists at that point (a lower layer's entry or an earlier one of this
   * layer); an opaque marker removes everything under its directory that
   * this layer has not unpacked so far (what this layer unpacks later stays
   * too); a hardlink links what its target names at that point.
   */
  apply(entries: Iterable<TarEntry>, layer: number): void {
    // containerd's unpackedPaths: entries this layer wrote (not whiteouts, not implied parents).
    const unpacked = new Set<string>();
    for (const e of entries) {
      if (e.path === '') {
        if (e.type !== 'dir') throw new ClipError('BAD_TAR', `layer ${layer}: the root entry is a ${e.type}, not a directory`);
        Object.assign(this.root, { ...fromEntry(e, layer), children: this.root.children });
        unpacked.add('');
        continue;
      }
      const { parent, name } = split(e.path);
      // containerd creates missing parents for whiteouts too.
      const dir = this.makeParents(parent);
      if (name === OPAQUE_MARKER) {
        this.opaque(dir, parent.join('/'), unpacked);
        continue;
      }
      if (name.startsWith(WHITEOUT_PREFIX)) {
        const hidden = name.slice(WHITEOUT_PREFIX.length);
        if (hidden === '' || hidden === '.' || hidden === '..') {
          throw new ClipError('BAD_TAR', `layer ${layer}: invalid whiteout ${JSON.stringify(e.path)}`);
        }
        dir.children!.delete(hidden);
        continue;
      }
      const existing = dir.children!.get(name);
      if (e.type === 'dir' && existing?.type === 'dir') {
        // A directory over a directory updates its metadata; the contents merge.
        Object.assign(existing, { ...fromEntry(e, layer), children: existing.children });
      } else {
        // Anything else replaces what is there, before a hardlink looks up its target.
        dir.children!.delete(name);
        if (e.type === 'hardlink') {
          const target = this.lookup(e.linkname ?? '');
          if (!target) throw new ClipError('BAD_TAR', `layer ${layer}: hardlink ${e.path} points to ${e.linkname}, which does not exist`);
          if (target.type === 'dir') throw new ClipError('BAD_TAR', `layer ${layer}: hardlink ${e.path} points to directory ${e.linkname}`);
          dir.children!.set(name, target);
        } else {
          dir.children!.set(name, fromEntry(e, layer));
        }
      }
      unpacked.add(e.path);
    }
  }

  /** Numbers inodes depth-first in name order (stable for an image) and counts links. Iterative: trees can be deep. */
  finish(): ImageTree {
    const nodes: Node[] = [];
    const stack: Draft[] = [this.root];
    while (stack.length > 0) {
      const node = stack.pop()!;
      if (node.ino !== 0) {
        node.nlink++;
        continue;
      }
      node.ino = nodes.length + 1;
      node.nlink = node.type === 'dir' ? 2 : 1;
      nodes.push(node);
      if (!node.children) continue;
      const names = [...node.children.keys()].sort();
      const sorted = new Map<string, Draft>();
      for (const name of names) {
        const child = node.children.get(name)! as Draft;
        sorted.set(name, child);
        if (child.type === 'dir') node.nlink++;
      }
      node.children = sorted;
      // Reversed, so the first name is numbered (with its subtree) first.
      for (let i = names.length - 1; i >= 0; i--) stack.push(sorted.get(names[i]!)!);
    }
    return { root: this.root, nodes };
  }

  /** Removes what `dir` (at `path`) holds that this layer did not unpack; descends only into what stays. */
  private opaque(dir: Draft, path: string, unpacked: Set<string>): void {
    const stack: [string, Draft][] = [[path, dir]];
    while (stack.length > 0) {
      const [p, d] = stack.pop()!;
      for (const [name, child] of d.children!) {
        const childPath = p === '' ? name : `${p}/${name}`;
        if (!unpacked.has(childPath)) d.children!.delete(name);
        else if (child.type === 'dir') stack.push([childPath, child]);
      }
    }
  }

  private lookup(path: string): Draft | undefined {
    if (path === '') return this.root;
    let node: Draft | undefined = this.root;
    for (const part of path.split('/')) {
      node = node.children?.get(part);
      if (!node) return undefined;
    }
    return node;
  }

  /** Walks to a parent directory, creating missing ones (and replacing non-directories in the way). */
  private makeParents(parts: string[]): Draft {
    let node = this.root;
    for (const part of parts) {
      let child = node.children!.get(part) as Draft | undefined;
      if (!child || child.type !== 'dir') {
        child = newDir();
        node.children!.set(part, child);
      }
      node = child;
    }
    return node;
  }
}

/** Merges the entries of all layers, bottom layer first. */
export function mergeLayers(layers: Iterable<TarEntry>[]): ImageTree {
  const merge = new OverlayMerge();
  layers.forEach((entries, i) => merge.apply(entries, i));
  return merge.finish();
}
