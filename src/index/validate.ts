// What a decoded .clip body must satisfy beyond its syntax. A .clip file is
// untrusted (anyone can recompute its checksum), and what passes here is used
// as cache paths, HTTP ranges, inflate sizes, times and a tree to walk: so
// digests, seek tables, times and the tree's shape are all checked.

import { ClipError } from '../errors.js';
import { spanOutputRange, spanRange } from '../gzip/span-reader.js';
import { CHUNK_SIZE, MARK_SPACING, MAX_SPAN_OUTPUT, type LayerCompression, type SpanTable } from '../gzip/types.js';
import type { Node, Platform } from '../image/types.js';
import { isDigest } from '../util/digest.js';
import { MAX_TIME_SEC, MIN_TIME_SEC, type Timespec } from '../tar/types.js';
import type { ImageRecord, IndexKind, LayerSummary, RegistryReach } from './types.js';

const COMPRESSIONS: LayerCompression[] = ['gzip', 'gzip-flushed', 'none'];
/** A 32 KiB window deflates to at most about 32.8 KiB; anything bigger is not one. */
export const MAX_WINDOW_DEFLATED = 40 * 1024;
/**
 * Most compressed bytes one span may cover (one Range GET held in memory):
 * deflate grows incompressible data by well under 1%, so twice the output
 * bound only refuses spans no clip indexer writes.
 */
export const MAX_SPAN_INPUT = 2 * MAX_SPAN_OUTPUT;
/** uid_t, gid_t and device numbers are 32 bits; the tar reader refuses more. */
const MAX_ID = 0xffffffff;

export function corrupt(what: string): never {
  throw new ClipError('BAD_INDEX', `index body is corrupt: ${what}`);
}

function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function str(o: Record<string, unknown>, key: string, where: string): string {
  const v = o[key];
  if (typeof v !== 'string') corrupt(`${where}.${key} is not a string`);
  return v;
}

function digest(o: Record<string, unknown>, key: string, where: string, emptyAllowed = false): string {
  const v = str(o, key, where);
  if (!(isDigest(v) || (emptyAllowed && v === '')))
    corrupt(`${where}.${key} ${JSON.stringify(v.slice(0, 100))} is not a digest (algorithm:hex)`);
  return v;
}

function size(o: Record<string, unknown>, key: string, where: string): number {
  const v = o[key];
  if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < 0) corrupt(`${where}.${key} ${JSON.stringify(v)} is not a byte count`);
  return v;
}

/** The image record from the body's JSON, rebuilt from checked fields only. */
/** The index's registry settings, rebuilt from checked fields only; only an index that reads a registry has them. */
export function checkRegistryReach(v: unknown, image: ImageRecord, kind: IndexKind): RegistryReach {
  if (!isRecord(v)) corrupt('registry settings are not an object');
  if (kind !== 'oci' || !image.location.startsWith('docker://'))
    corrupt(`registry settings on an index whose data is not in a registry (${image.location})`);
  if (typeof v['plainHttp'] !== 'boolean') corrupt('registry.plainHttp is not true or false');
  return { plainHttp: v['plainHttp'] };
}

export function checkImage(v: unknown, kind: IndexKind): ImageRecord {
  if (!isRecord(v)) corrupt('the image record is not an object');
  const p = v['platform'];
  if (!isRecord(p)) corrupt('image.platform is not an object');
  const platform: Platform = { os: str(p, 'os', 'image.platform'), architecture: str(p, 'architecture', 'image.platform') };
  if (p['variant'] !== undefined) platform.variant = str(p, 'variant', 'image.platform');
  const config = v['config'];
  if (!isRecord(config)) corrupt('image.config is not an object');
  const spanSize = size(v, 'spanSize', 'image');
  if (spanSize === 0) corrupt('image.spanSize is 0');
  return {
    location: str(v, 'location', 'image'),
    reference: str(v, 'reference', 'image'),
    manifestDigest: digest(v, 'manifestDigest', 'image'),
    manifestMediaType: str(v, 'manifestMediaType', 'image'),
    // Archives of a directory have no image config: clip writes ''.
    configDigest: digest(v, 'configDigest', 'image', kind !== 'oci'),
    platform,
    config,
    indexedAt: str(v, 'indexedAt', 'image'),
    indexedBy: str(v, 'indexedBy', 'image'),
    spanSize,
  };
}

/** One layer's summary from the body's JSON, rebuilt from checked fields only. */
export function checkLayerSummary(v: unknown, i: number): LayerSummary {
  const where = `layers[${i}]`;
  if (!isRecord(v)) corrupt(`${where} is not an object`);
  const compression = v['compression'] as LayerCompression;
  if (!COMPRESSIONS.includes(compression)) corrupt(`${where} has unknown compression ${JSON.stringify(compression)}`);
  return {
    digest: digest(v, 'digest', where),
    mediaType: str(v, 'mediaType', where),
    diffId: digest(v, 'diffId', where),
    compression,
    compressedSize: size(v, 'compressedSize', where),
    uncompressedSize: size(v, 'uncompressedSize', where),
  };
}

/**
 * A seek table every read can trust: checkpoint 0 at the start, offsets
 * strictly increasing and inside the layer, windows of a sane size, and no
 * span larger than one read may fetch or inflate.
 */
export function checkSpanTable(t: SpanTable, layer: number): void {
  const cps = t.checkpoints;
  const bad = (what: string): never => corrupt(`layer ${layer}: ${what}`);
  if (cps.length === 0) bad('no checkpoints');
  if (cps[0]!.out !== 0 || cps[0]!.window.length !== 0) bad('checkpoint 0 is not at the start of the stream');
  for (let i = 0; i < cps.length; i++) {
    const cp = cps[i]!;
    if (i > 0 && (cp.in <= cps[i - 1]!.in || cp.out <= cps[i - 1]!.out)) bad(`checkpoint ${i} does not come after checkpoint ${i - 1}`);
    if (cp.in > t.compressedSize || cp.out > t.uncompressedSize) bad(`checkpoint ${i} lies past the end of the layer`);
    if (t.compression === 'none' && (cp.in !== cp.out || cp.window.length !== 0))
      bad(`checkpoint ${i} of an uncompressed layer maps ${cp.in} to ${cp.out}`);
    if (cp.window.length > MAX_WINDOW_DEFLATED)
      bad(`checkpoint ${i} has a ${cp.window.length}-byte window (at most ${MAX_WINDOW_DEFLATED})`);
    // Its inflated size (exactly min(32 KiB, out)) is checked where it is inflated, at each read (span-reader.ts).
    if (cp.sparse && (cp.window.length === 0 || t.compression !== 'gzip')) bad(`checkpoint ${i} is marked sparse but has no window`);
    const last = i + 1 === cps.length;
    const output = (last ? t.uncompressedSize : cps[i + 1]!.out) - cp.out;
    if (output > MAX_SPAN_OUTPUT) bad(`span ${i} covers ${output} uncompressed bytes (at most ${MAX_SPAN_OUTPUT})`);
    // Span 0's bytes start at 0: they include the first gzip header.
    const input = (last ? t.compressedSize : cps[i + 1]!.in) - (i === 0 ? 0 : cp.in);
    if (input > MAX_SPAN_INPUT) bad(`span ${i} covers ${input} compressed bytes (at most ${MAX_SPAN_INPUT})`);
  }
  if (t.compression === 'none' && t.compressedSize !== t.uncompressedSize) bad('an uncompressed layer with two different sizes');
}

/**
 * Marks and chunk digests every prefix read can trust: one entry per span,
 * marks increasing and strictly inside their span, at least MARK_SPACING
 * output bytes apart, and exactly one digest per chunk of the span.
 */
export function checkFineSpans(t: SpanTable, layer: number): void {
  const fine = t.fine;
  if (!fine) return;
  const bad = (what: string): never => corrupt(`layer ${layer}: ${what}`);
  if (t.compression !== 'gzip') bad(`a ${t.compression} layer has marks and chunk digests`);
  if (fine.length !== t.checkpoints.length) bad(`${fine.length} spans of marks for ${t.checkpoints.length} spans`);
  fine.forEach((f, i) => {
    const cp = t.checkpoints[i]!;
    const input = spanRange(t, i);
    const output = spanOutputRange(t, i);
    if (f.marks.length > Math.floor((output.end - output.start) / MARK_SPACING))
      bad(`span ${i} has ${f.marks.length} marks, more than one per ${MARK_SPACING} bytes of its output`);
    let prev = { in: cp.in, out: cp.out };
    for (const [k, m] of f.marks.entries()) {
      if (!(m.in > prev.in && m.out - prev.out >= MARK_SPACING))
        bad(`mark ${k} of span ${i} does not come ${MARK_SPACING} bytes after the one before`);
      if (!(m.in <= input.end && m.out < output.end)) bad(`mark ${k} of span ${i} lies outside its span`);
      prev = m;
    }
    const chunks = Math.ceil((input.end - input.start) / CHUNK_SIZE);
    if (f.chunks.length !== chunks || f.chunks.some((d) => d.length !== 32))
      bad(`span ${i} has ${f.chunks.length} chunk digests for its ${chunks} chunks`);
  });
}

/** Years 1 to 9999: what every consumer (ls, extract, FUSE) can represent. */
export function checkTime(t: Timespec, ino: number): void {
  if (t.sec < MIN_TIME_SEC || t.sec > MAX_TIME_SEC) corrupt(`inode ${ino} has a time ${t.sec} s outside years 1 to 9999`);
  if (t.nsec >= 1e9) corrupt(`inode ${ino} has nanoseconds ${t.nsec} out of range`);
}

/** The fields clip's writer bounds (32-bit ids, permission bits only, data on files only). */
export function checkNode(n: Node): void {
  const at = `inode ${n.ino}`;
  if (n.mode > 0o7777) corrupt(`${at} has mode ${n.mode.toString(8)} beyond permission bits`);
  if (n.uid > MAX_ID || n.gid > MAX_ID) corrupt(`${at} has an owner id beyond 32 bits`);
  if (n.devmajor > MAX_ID || n.devminor > MAX_ID) corrupt(`${at} has a device number beyond 32 bits`);
  if (n.type !== 'file' && n.type !== 'symlink' && n.size !== 0) corrupt(`${at} is a ${n.type} with size ${n.size}`);
  if (n.type === 'file' && n.size > 0 && n.layer < 0) corrupt(`${at} has ${n.size} bytes but no data`);
  if (n.target !== undefined && n.target.includes('\0')) corrupt(`${at} has a NUL byte in its symlink target`);
  // No `?? []`: an empty array per node is churn on a 100k-node index.
  if (n.xattrs) {
    for (const name of n.xattrs.keys()) {
      if (name === '' || name.includes('\0')) corrupt(`${at} has an xattr named ${JSON.stringify(name)}`);
    }
  }
}

/** A directory entry's name: one path component, as a file system can hold it. */
export function checkName(name: string, dir: number): void {
  if (name === '' || name === '.' || name === '..' || name.includes('/') || name.includes('\0')) {
    corrupt(`bad entry ${JSON.stringify(name)} in inode ${dir}`);
  }
}

/**
 * The directories form one tree under the root: each directory has exactly
 * one parent, the root none, and every directory is reached from the root
 * (so no directory contains itself or an ancestor, and walks end). Other
 * nodes may have several names (hardlinks). `nodes[i].ino` is i + 1.
 */
export function checkTree(nodes: Node[]): void {
  const root = nodes[0]!;
  if (root.type !== 'dir') corrupt('the root is not a directory');
  // parent[ino - 1]: the directory that lists directory ino (0: none). Only
  // directories' entries are walked: files are most nodes and have none.
  const parent = new Float64Array(nodes.length);
  for (const node of nodes) {
    if (node.type !== 'dir') continue;
    for (const child of node.children!.values()) {
      if (child.type !== 'dir') continue;
      if (child === root) corrupt(`inode ${node.ino} lists the root directory as an entry`);
      if (parent[child.ino - 1] !== 0) corrupt(`directory inode ${child.ino} has more than one parent`);
      parent[child.ino - 1] = node.ino;
    }
  }
  // With one parent each, a directory is reached from the root exactly when
  // its chain of parents ends at the root; a chain that ends elsewhere (no
  // parent) or comes back on itself (a cycle) is not. Each chain is followed
  // once: a directory already decided ends the walk.
  const UNKNOWN = 0;
  const ON_CHAIN = 1;
  const REACHED = 2;
  const LOST = 3;
  const state = new Uint8Array(nodes.length);
  state[0] = REACHED;
  const chain: number[] = [];
  let lost = 0;
  for (const node of nodes) {
    if (node.type !== 'dir' || state[node.ino - 1] !== UNKNOWN) continue;
    let ino = node.ino;
    while (ino !== 0 && state[ino - 1] === UNKNOWN) {
      state[ino - 1] = ON_CHAIN;
      chain.push(ino);
      ino = parent[ino - 1]!;
    }
    const end = ino === 0 || state[ino - 1] !== REACHED ? LOST : REACHED;
    for (const c of chain) state[c - 1] = end;
    if (end === LOST) lost += chain.length;
    chain.length = 0;
  }
  if (lost > 0) corrupt(`${lost} directories are not reachable from the root (a cycle)`);
}
