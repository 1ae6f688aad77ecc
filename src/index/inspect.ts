// Summaries of an index for `clip inspect` and `clip ls`: plain data, so the
// CLI can print it as text or JSON and library users can use it directly.

import { walk } from '../image/lookup.js';
import type { Node } from '../image/types.js';
import { KIND_NAMES, summarizeLayer, type ClipIndex, type IndexKind } from './types.js';

export interface LayerReport {
  digest: string;
  mediaType: string;
  diffId: string;
  compression: string;
  compressedSize: number;
  uncompressedSize: number;
  spans: number;
  windowBytes: number;
}

export interface InspectReport {
  kind: IndexKind;
  /** "OCI image index", "local archive" or "S3 archive". */
  kindName: string;
  image: ClipIndex['image'];
  /** How the registry was reached when indexing (ClipIndex.registry). */
  registry?: ClipIndex['registry'];
  layers: LayerReport[];
  counts: Record<Node['type'], number> & { total: number; hardlinks: number };
  bytes: { compressed: number; uncompressed: number; files: number };
}

export function inspectIndex(index: ClipIndex): InspectReport {
  const counts = { file: 0, dir: 0, symlink: 0, char: 0, block: 0, fifo: 0, total: 0, hardlinks: 0 };
  let fileBytes = 0;
  for (const n of index.nodes) {
    counts[n.type]++;
    counts.total++;
    if (n.type === 'file') {
      fileBytes += n.size;
      if (n.nlink > 1) counts.hardlinks += n.nlink - 1;
    }
  }
  const layers = index.layers.map((l) => ({
    ...summarizeLayer(l),
    spans: l.spans.checkpoints.length,
    windowBytes: l.spans.checkpoints.reduce((a, c) => a + c.window.length, 0),
  }));
  return {
    kind: index.kind,
    kindName: KIND_NAMES[index.kind],
    image: index.image,
    ...(index.registry ? { registry: index.registry } : {}),
    layers,
    counts,
    bytes: {
      compressed: layers.reduce((a, l) => a + l.compressedSize, 0),
      uncompressed: layers.reduce((a, l) => a + l.uncompressedSize, 0),
      files: fileBytes,
    },
  };
}

export interface ListEntry {
  path: string;
  ino: number;
  type: Node['type'];
  mode: number;
  uid: number;
  gid: number;
  size: number;
  nlink: number;
  mtime: string;
  /** mtime in nanoseconds since the epoch, as a decimal string (exact). */
  mtimeNs: string;
  target?: string;
  rdev?: { major: number; minor: number };
  xattrs?: Record<string, string>;
  layer?: number;
  offset?: number;
}

export function listEntry(path: string, n: Node): ListEntry {
  const e: ListEntry = {
    path,
    ino: n.ino,
    type: n.type,
    mode: n.mode,
    uid: n.uid,
    gid: n.gid,
    size: n.size,
    nlink: n.nlink,
    mtime: new Date(n.mtime.sec * 1000 + Math.floor(n.mtime.nsec / 1e6)).toISOString(),
    mtimeNs: (BigInt(n.mtime.sec) * 1_000_000_000n + BigInt(n.mtime.nsec)).toString(),
  };
  if (n.target !== undefined) e.target = n.target;
  if (n.type === 'char' || n.type === 'block') e.rdev = { major: n.devmajor, minor: n.devminor };
  if (n.xattrs) e.xattrs = Object.fromEntries([...n.xattrs].map(([k, v]) => [k, v.toString('hex')]));
  if (n.layer >= 0) {
    e.layer = n.layer;
    e.offset = n.offset;
  }
  return e;
}

/** The entries of a directory (or the node itself if it is not one); `recursive` walks the subtree. */
export function listNode(path: string, node: Node, recursive = false): ListEntry[] {
  if (node.type !== 'dir') return [listEntry(path, node)];
  if (recursive) {
    const out: ListEntry[] = [];
    for (const [p, n] of walk({ root: node, nodes: [] })) {
      if (p !== '') out.push(listEntry(path === '' ? p : `${path}/${p}`, n));
    }
    return out;
  }
  return [...node.children!].map(([name, child]) => listEntry(path === '' ? name : `${path}/${name}`, child));
}
