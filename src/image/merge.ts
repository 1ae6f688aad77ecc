// Applies layers bottom to top as the OCI image spec says: whiteouts and
// opaque markers hide entries of lower layers only, an upper entry replaces a
// lower one, directories merge, hardlinks share one node. Then numbers the
// inodes in a stable order and counts links.

import { ClipError } from '../errors.js';
import type { TarEntry } from '../tar/types.js';
import type { ImageTree, Node } from './types.js';

const WHITEOUT_PREFIX = '.wh.';
const OPAQUE_MARKER = '.wh..wh..opq';

type Draft = Omit<Node, 'ino' | 'nlink'> & { ino: number; nlink: number };

function newDir(): Draft {
  const t = { sec: 0, nsec: 0 };
  return {
    ino: 0, type: 'dir', mode: 0o755, uid: 0, gid: 0, size: 0, mtime: t, atime: t, ctime: t,
    nlink: 0, devmajor: 0, devminor: 0, layer: -1, offset: 0, children: new Map(),
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

  /** Applies one layer's entries (in tar order) on top of what was applied before. */
  apply(entries: TarEntry[], layer: number): void {
    // Whiteouts first: they only hide what lower layers put there, never
    // entries of this same layer, whatever their order in the tar.
    for (const e of entries) {
      const { parent, name } = split(e.path);
      if (!name.startsWith(WHITEOUT_PREFIX)) continue;
      const dir = this.lookupDir(parent);
      if (!dir) continue;
      if (name === OPAQUE_MARKER) dir.children!.clear();
      else dir.children!.delete(name.slice(WHITEOUT_PREFIX.length));
    }
    for (const e of entries) {
      if (e.path === '') {
        if (e.type !== 'dir') throw new ClipError('BAD_TAR', `layer ${layer}: the root entry is a ${e.type}, not a directory`);
        Object.assign(this.root, { ...fromEntry(e, layer), children: this.root.children });
        continue;
      }
      const { parent, name } = split(e.path);
      if (name.startsWith(WHITEOUT_PREFIX)) continue;
      const dir = this.makeParents(parent);
      const existing = dir.children!.get(name);
      if (e.type === 'hardlink') {
        const target = this.lookup(e.linkname ?? '');
        if (!target) throw new ClipError('BAD_TAR', `layer ${layer}: hardlink ${e.path} points to ${e.linkname}, which does not exist`);
        if (target.type === 'dir') throw new ClipError('BAD_TAR', `layer ${layer}: hardlink ${e.path} points to directory ${e.linkname}`);
        dir.children!.set(name, target);
      } else if (e.type === 'dir' && existing?.type === 'dir') {
        // A directory over a directory updates its metadata; the contents merge.
        Object.assign(existing, { ...fromEntry(e, layer), children: existing.children });
      } else {
        dir.children!.set(name, fromEntry(e, layer));
      }
    }
  }

  /** Numbers inodes depth-first in name order (stable for an image) and counts links. */
  finish(): ImageTree {
    const nodes: Node[] = [];
    const visit = (node: Draft): void => {
      if (node.ino !== 0) {
        node.nlink++;
        return;
      }
      node.ino = nodes.length + 1;
      node.nlink = node.type === 'dir' ? 2 : 1;
      nodes.push(node);
      if (!node.children) return;
      const names = [...node.children.keys()].sort();
      const sorted = new Map<string, Draft>();
      for (const name of names) {
        const child = node.children.get(name)! as Draft;
        sorted.set(name, child);
        if (child.type === 'dir') node.nlink++;
        visit(child);
      }
      node.children = sorted;
    };
    visit(this.root);
    return { root: this.root, nodes };
  }

  private lookup(path: string): Draft | undefined {
    if (path === '') return this.root;
    let node: Draft | undefined = this.root;
    for (const part of path.split('/')) {
      node = node.children?.get(part) as Draft | undefined;
      if (!node) return undefined;
    }
    return node;
  }

  private lookupDir(parts: string[]): Draft | undefined {
    let node: Draft | undefined = this.root;
    for (const part of parts) {
      node = node.children?.get(part) as Draft | undefined;
      if (!node || node.type !== 'dir') return undefined;
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
export function mergeLayers(layers: TarEntry[][]): ImageTree {
  const merge = new OverlayMerge();
  layers.forEach((entries, i) => merge.apply(entries, i));
  return merge.finish();
}
