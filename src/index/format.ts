// The .clip file: a fixed header (magic, version, kind, body lengths, sha256
// of the body) and a deflated body with the image record, the layers' seek
// tables and the tree. A local archive also carries its data: one gzip
// stream between the header and the body (written in one pass: the body,
// which describes the data, comes last). Pure encode/decode/validate: no I/O.
//
//   header (64 bytes)
//     0  magic  "\x89CLP\r\n\x1a\n"
//     8  u16 format version, u16 kind (1 oci, 2 archive, 3 s3), u32 reserved
//    16  u64 body length (deflated), u64 body length (inflated)
//    32  sha256 of the deflated body
//   archive only (16 bytes)
//    64  u64 data length, u64 reserved
//    80  data: the archive's one layer blob (its sha256 and spans are in the body)
//   body (deflate raw), right after the header (after the data in an archive)
//     JSON meta (image + layer descriptors, optional start-up profile and registry settings), per layer: checkpoints + span
//     digests (v6: then a flag, and when set per span its marks and chunk
//     digests), nodes in inode order, then each directory's entries.

import { createHash } from 'node:crypto';
import zlib from 'node:zlib';
import { ClipError } from '../errors.js';
import { spanRange } from '../gzip/span-reader.js';
import { CHUNK_SIZE, type Checkpoint, type FineSpan, type Mark, type SpanTable } from '../gzip/types.js';
import type { Node, NodeType } from '../image/types.js';
import type { Timespec } from '../tar/types.js';
import { ByteReader, ByteWriter } from './bytes.js';
import {
  FORMAT_VERSION,
  OLDEST_FORMAT_VERSION,
  summarizeLayer,
  type ClipIndex,
  type ImageRecord,
  type IndexKind,
  type LayerRecord,
  type LayerSummary,
  type RegistryReach,
} from './types.js';
import { checkEmbeddedProfile, type ProfileEntry } from './startup-profile.js';
import {
  checkFineSpans,
  checkImage,
  checkLayerSummary,
  checkName,
  checkNode,
  checkRegistryReach,
  checkSpanTable,
  checkTime,
  checkTree,
  corrupt,
} from './validate.js';

export const MAGIC = Buffer.from([0x89, 0x43, 0x4c, 0x50, 0x0d, 0x0a, 0x1a, 0x0a]);
export const HEADER_SIZE = 64;
/** Header plus the archive's data length: where an archive's data starts. */
export const ARCHIVE_HEADER_SIZE = 80;
const KINDS: IndexKind[] = ['oci', 'archive', 's3'];
const TYPES: NodeType[] = ['file', 'dir', 'symlink', 'char', 'block', 'fifo'];
const DIGEST_SIZE = 32;
/** Refuse bodies that would inflate beyond this (a corrupt length must not exhaust memory). */
const MAX_BODY = 4 * 1024 ** 3;
/**
 * Most a body may grow when inflated, and the floor of that bound for tiny
 * bodies. Bodies clip writes grow 2.7-3.6x (archives of /etc, /usr/include,
 * /usr/share/doc, python3), 9.7x for 100k empty files with sequential names:
 * 64x leaves a wide margin and keeps a small file from claiming gigabytes.
 */
const MAX_BODY_RATIO = 64;
const MIN_BODY_BOUND = 16 * 1024 * 1024;
/** Fewest body bytes one record takes: a bound on counts before any loop. */
const MIN_CHECKPOINT_BYTES = 3 + DIGEST_SIZE;
const MIN_NODE_BYTES = 9;
const MIN_ENTRY_BYTES = 3;
const MIN_XATTR_BYTES = 2;

// Node flag bits: which optional fields follow.
const F_ATIME = 1;
const F_CTIME = 2;
const F_XATTRS = 4;
const F_DATA = 8;
const F_DEVICE = 16;
const F_KNOWN = F_ATIME | F_CTIME | F_XATTRS | F_DATA | F_DEVICE;

interface Meta {
  image: ImageRecord;
  layers: LayerSummary[];
  profile?: ProfileEntry[];
  registry?: RegistryReach;
}

function sameTime(a: Timespec, b: Timespec): boolean {
  return a.sec === b.sec && a.nsec === b.nsec;
}

function writeTime(w: ByteWriter, t: Timespec): void {
  w.int(t.sec);
  w.uint(t.nsec);
}

function readTime(r: ByteReader, ino: number): Timespec {
  const t = { sec: r.int(), nsec: r.uint() };
  checkTime(t, ino);
  return t;
}

/** An index file's bytes; for an archive use encodeIndexParts (its data goes between them). */
export function encodeIndex(index: ClipIndex): Buffer {
  if (index.kind === 'archive')
    throw new ClipError('BAD_ARGUMENT', 'an archive holds its data between header and body: use encodeIndexParts');
  const { header, body } = encodeIndexParts(index);
  return Buffer.concat([header, body]);
}

/**
 * The header and the body of a .clip file. An archive's file is header,
 * data (index.layers[0], compressedSize bytes), body.
 */
export function encodeIndexParts(index: ClipIndex): { header: Buffer; body: Buffer } {
  const w = new ByteWriter();
  const meta: Meta = {
    image: index.image,
    layers: index.layers.map(summarizeLayer),
    ...(index.profile ? { profile: index.profile } : {}),
    ...(index.registry ? { registry: { plainHttp: index.registry.plainHttp } } : {}),
  };
  w.string(JSON.stringify(meta));
  const version = formatVersion(index);
  for (const layer of index.layers) {
    const { checkpoints, digests } = layer.spans;
    w.uint(checkpoints.length);
    let prevIn = 0;
    let prevOut = 0;
    for (const cp of checkpoints) {
      w.uint(cp.in - prevIn);
      w.uint(cp.out - prevOut);
      w.bytes(cp.window);
      if (version >= 4) w.u8(cp.bits ?? 0);
      if (version >= 5) w.u8(cp.sparse ? 1 : 0);
      prevIn = cp.in;
      prevOut = cp.out;
    }
    for (const d of digests) w.raw(d);
    if (version >= 6) writeFine(w, layer.spans);
  }
  w.uint(index.nodes.length);
  for (const n of index.nodes) {
    let flags = 0;
    if (!sameTime(n.atime, n.mtime)) flags |= F_ATIME;
    if (!sameTime(n.ctime, n.mtime)) flags |= F_CTIME;
    if (n.xattrs && n.xattrs.size > 0) flags |= F_XATTRS;
    if (n.layer >= 0) flags |= F_DATA;
    if (n.type === 'char' || n.type === 'block') flags |= F_DEVICE;
    w.u8(TYPES.indexOf(n.type));
    w.u8(flags);
    w.uint(n.mode);
    w.uint(n.uid);
    w.uint(n.gid);
    w.uint(n.size);
    w.uint(n.nlink);
    writeTime(w, n.mtime);
    if (flags & F_ATIME) writeTime(w, n.atime);
    if (flags & F_CTIME) writeTime(w, n.ctime);
    if (flags & F_DEVICE) {
      w.uint(n.devmajor);
      w.uint(n.devminor);
    }
    if (n.type === 'symlink') w.string(n.target ?? '');
    if (flags & F_XATTRS) {
      w.uint(n.xattrs!.size);
      for (const [k, v] of n.xattrs!) {
        w.string(k);
        w.bytes(v);
      }
    }
    if (flags & F_DATA) {
      w.uint(n.layer);
      w.uint(n.offset);
    }
  }
  for (const n of index.nodes) {
    if (n.type !== 'dir') continue;
    w.uint(n.children!.size);
    for (const [name, child] of n.children!) {
      w.string(name);
      w.uint(child.ino);
    }
  }
  const raw = w.finish();
  const body = zlib.deflateRawSync(raw, { level: 6 });
  const archive = index.kind === 'archive';
  const header = Buffer.alloc(archive ? ARCHIVE_HEADER_SIZE : HEADER_SIZE);
  MAGIC.copy(header, 0);
  header.writeUInt16LE(version, 8);
  header.writeUInt16LE(KINDS.indexOf(index.kind) + 1, 10);
  header.writeBigUInt64LE(BigInt(body.length), 16);
  header.writeBigUInt64LE(BigInt(raw.length), 24);
  createHash('sha256').update(body).digest().copy(header, 32);
  if (archive) header.writeBigUInt64LE(BigInt(archiveLayer(index).spans.compressedSize), 64);
  return { header, body };
}

/**
 * A layer's marks and chunk digests: a flag (0: none), then per span the
 * number of marks, each as deltas from the one before (the first from the
 * checkpoint), and its chunk digests (their number follows from the span's
 * compressed length).
 */
function writeFine(w: ByteWriter, t: SpanTable): void {
  if (!t.fine) {
    w.u8(0);
    return;
  }
  w.u8(1);
  t.fine.forEach((f, i) => {
    const cp = t.checkpoints[i]!;
    w.uint(f.marks.length);
    let prevIn = cp.in;
    let prevOut = cp.out;
    for (const m of f.marks) {
      w.uint(m.in - prevIn);
      w.uint(m.out - prevOut);
      prevIn = m.in;
      prevOut = m.out;
    }
    for (const d of f.chunks) w.raw(d);
  });
}

/** Reads what writeFine wrote; counts are bounded before any loop, ranges checked in checkSpanTable. */
function readFine(r: ByteReader, t: SpanTable, li: number): FineSpan[] | undefined {
  const flag = r.u8();
  if (flag === 0) return undefined;
  if (flag !== 1 || t.compression !== 'gzip') corrupt(`layer ${li} has chunk digests flag ${flag} (${t.compression} layer)`);
  const fine: FineSpan[] = [];
  for (let i = 0; i < t.checkpoints.length; i++) {
    const cp = t.checkpoints[i]!;
    const count = r.count(2, `marks of span ${i} of layer ${li}`);
    const marks: Mark[] = [];
    let prevIn = cp.in;
    let prevOut = cp.out;
    for (let k = 0; k < count; k++) {
      prevIn += r.uint();
      prevOut += r.uint();
      marks.push({ in: prevIn, out: prevOut });
    }
    const range = spanRange(t, i);
    const chunks: Buffer[] = [];
    // checkSpanTable bounded the span's length already: at most MAX_SPAN_INPUT / CHUNK_SIZE chunks.
    for (let k = 0; k < Math.ceil((range.end - range.start) / CHUNK_SIZE); k++) chunks.push(Buffer.from(r.raw(DIGEST_SIZE)));
    fine.push({ marks, chunks });
  }
  return fine;
}

/** The oldest format version that can hold the index, so older readers read what they can. */
function formatVersion(index: ClipIndex): number {
  // Version 6: marks and chunk digests (older readers would stop at them).
  if (index.layers.some((l) => l.spans.fine)) return 6;
  // Version 5: sparse windows (older readers would take their zeros for output).
  if (index.layers.some((l) => l.spans.checkpoints.some((cp) => cp.sparse))) return 5;
  // Version 4: checkpoints that start mid-byte (their bit stored per checkpoint).
  if (index.layers.some((l) => l.spans.checkpoints.some((cp) => (cp.bits ?? 0) > 0))) return 4;
  if (index.kind !== 'oci') return 3;
  // Files every checkpoint of which keeps its window stay readable by version 1 readers.
  const windowless = index.layers.some(
    (l) => l.spans.compression === 'gzip' && l.spans.checkpoints.some((cp, i) => i > 0 && cp.window.length === 0),
  );
  return windowless ? 2 : OLDEST_FORMAT_VERSION;
}

function archiveLayer(index: { layers: LayerRecord[] }): LayerRecord {
  if (index.layers.length !== 1)
    throw new ClipError('BAD_INDEX', `an archive has exactly one data part, this one describes ${index.layers.length}`);
  return index.layers[0]!;
}

/** What the first bytes of a .clip file say about the rest. */
export interface IndexHeader {
  version: number;
  kind: IndexKind;
  bodyOffset: number;
  bodyLength: number;
  rawLength: number;
  checksum: Buffer;
  /** Archives: where the data is in the file. */
  dataOffset?: number;
  dataLength?: number;
}

/**
 * Parses the header (`head`: the file's first ARCHIVE_HEADER_SIZE bytes, or
 * all of a shorter file) and checks it against the file's size.
 */
export function readHeader(head: Buffer, fileSize: number): IndexHeader {
  if (head.length < HEADER_SIZE || !head.subarray(0, 8).equals(MAGIC)) {
    throw new ClipError(
      'BAD_INDEX',
      head.length < 8 || (head.length < HEADER_SIZE && MAGIC.subarray(0, head.length).equals(head.subarray(0, 8)))
        ? 'not a clip index: file too short'
        : 'not a clip index: bad magic',
    );
  }
  const version = head.readUInt16LE(8);
  if (version < OLDEST_FORMAT_VERSION || version > FORMAT_VERSION) {
    throw new ClipError(
      'BAD_INDEX',
      `clip index format version ${version} is not supported (this clip reads versions ${OLDEST_FORMAT_VERSION} to ${FORMAT_VERSION})`,
    );
  }
  const kind = KINDS[head.readUInt16LE(10) - 1];
  if (!kind) throw new ClipError('BAD_INDEX', `unknown clip index kind ${head.readUInt16LE(10)}`);
  const bodyLength = Number(head.readBigUInt64LE(16));
  const rawLength = Number(head.readBigUInt64LE(24));
  const checksum = head.subarray(32, 64);
  if (kind !== 'archive') {
    if (fileSize < HEADER_SIZE + bodyLength) {
      throw new ClipError('BAD_INDEX', `clip index is truncated: ${fileSize} bytes, header promises ${HEADER_SIZE + bodyLength}`);
    }
    if (fileSize > HEADER_SIZE + bodyLength) {
      throw new ClipError('BAD_INDEX', `clip index has ${fileSize - HEADER_SIZE - bodyLength} unexpected bytes after its body`);
    }
    return { version, kind, bodyOffset: HEADER_SIZE, bodyLength, rawLength, checksum };
  }
  if (head.length < ARCHIVE_HEADER_SIZE) {
    throw new ClipError('BAD_INDEX', `clip archive is truncated: ${fileSize} bytes, shorter than its header`);
  }
  const dataLength = Number(head.readBigUInt64LE(64));
  const expected = ARCHIVE_HEADER_SIZE + dataLength + bodyLength;
  if (fileSize < expected) {
    throw new ClipError(
      'BAD_INDEX',
      `clip archive is truncated: ${fileSize} bytes, its header promises ${expected} (${dataLength} bytes of data and a ${bodyLength}-byte index)`,
    );
  }
  if (fileSize > expected) throw new ClipError('BAD_INDEX', `clip archive has ${fileSize - expected} unexpected bytes after its index`);
  return {
    version,
    kind,
    bodyOffset: ARCHIVE_HEADER_SIZE + dataLength,
    bodyLength,
    rawLength,
    checksum,
    dataOffset: ARCHIVE_HEADER_SIZE,
    dataLength,
  };
}

/** Checks the body's checksum and inflates it. */
function openBody(header: IndexHeader, compressed: Buffer): Buffer {
  if (!createHash('sha256').update(compressed).digest().equals(header.checksum)) {
    throw new ClipError('BAD_INDEX', `clip ${header.kind === 'archive' ? 'archive' : 'index'} checksum mismatch: the file is corrupt`);
  }
  if (header.rawLength > MAX_BODY) throw new ClipError('BAD_INDEX', `clip index body too large (${header.rawLength} bytes)`);
  // Checked before inflating: a small file must not make clip allocate what its header claims.
  const bound = Math.max(MIN_BODY_BOUND, MAX_BODY_RATIO * compressed.length);
  if (header.rawLength > bound) {
    throw new ClipError(
      'BAD_INDEX',
      `clip index body claims ${header.rawLength} bytes inflated from ${compressed.length}: more than ${MAX_BODY_RATIO} times its size (at least ${MIN_BODY_BOUND} allowed), so the file is corrupt or hostile`,
    );
  }
  let body: Buffer;
  try {
    body = zlib.inflateRawSync(compressed, { maxOutputLength: Math.max(header.rawLength, 1) });
  } catch (e) {
    throw new ClipError('BAD_INDEX', `clip index body does not inflate: ${(e as Error).message}`);
  }
  if (body.length !== header.rawLength) throw new ClipError('BAD_INDEX', 'clip index body has the wrong length');
  return body;
}

/** Decodes a whole .clip file held in memory (an index, or an archive with its data). */
export function decodeIndex(file: Buffer): ClipIndex {
  const header = readHeader(file.subarray(0, ARCHIVE_HEADER_SIZE), file.length);
  return decodeBody(header, file.subarray(header.bodyOffset, header.bodyOffset + header.bodyLength));
}

/** Decodes the body (`compressed`: exactly header.bodyLength bytes) that `header` describes. */
export function decodeBody(header: IndexHeader, compressed: Buffer): ClipIndex {
  const kind = header.kind;
  const r = new ByteReader(openBody(header, compressed));
  const meta = readMeta(r);
  const image = checkImage(meta.image, kind);
  const layers = meta.layers.map((v: unknown, li) => readLayer(r, header.version, v, li));
  const profile = meta.profile === undefined ? undefined : checkEmbeddedProfile(meta.profile, layers);
  const registry = meta.registry === undefined ? undefined : checkRegistryReach(meta.registry, image, kind);
  const nodes = readNodes(r, layers);
  readEntries(r, nodes);
  if (!r.done) corrupt('trailing bytes');
  checkTree(nodes);
  if (kind === 'archive' && archiveLayer({ layers }).spans.compressedSize !== header.dataLength) {
    throw new ClipError(
      'BAD_INDEX',
      `clip archive is corrupt: its header says ${header.dataLength} bytes of data, its index ${layers[0]!.spans.compressedSize}`,
    );
  }
  return { kind, image, layers, root: nodes[0]!, nodes, ...(profile ? { profile } : {}), ...(registry ? { registry } : {}) };
}

/** The body's JSON head: the image record, the layer descriptors and the optional parts, each still unchecked. */
function readMeta(r: ByteReader): { image: unknown; layers: unknown[]; profile?: unknown; registry?: unknown } {
  let json: unknown;
  try {
    json = JSON.parse(r.string());
  } catch (e) {
    if (e instanceof ClipError) throw e;
    corrupt('bad metadata JSON');
  }
  const meta = json as { image?: unknown; layers?: unknown; profile?: unknown; registry?: unknown };
  if (typeof json !== 'object' || json === null || !meta.image || !Array.isArray(meta.layers)) corrupt('metadata lacks image or layers');
  return {
    image: meta.image,
    layers: meta.layers as unknown[],
    ...(meta.profile !== undefined ? { profile: meta.profile } : {}),
    ...(meta.registry !== undefined ? { registry: meta.registry } : {}),
  };
}

/** One layer: its checked descriptor, then its checkpoints (deltas from the previous) and span digests. */
function readLayer(r: ByteReader, version: number, descriptor: unknown, li: number): LayerRecord {
  const l = checkLayerSummary(descriptor, li);
  const count = r.count(MIN_CHECKPOINT_BYTES, `checkpoints of layer ${li}`);
  const checkpoints: Checkpoint[] = [];
  let prevIn = 0;
  let prevOut = 0;
  for (let i = 0; i < count; i++) {
    prevIn += r.uint();
    prevOut += r.uint();
    const window = Buffer.from(r.bytes());
    const bits = version >= 4 ? r.u8() : 0;
    if (bits > 7 || (bits > 0 && l.compression !== 'gzip'))
      throw new ClipError('BAD_INDEX', `index body is corrupt: checkpoint ${i} starts at bit ${bits}`);
    const sparse = version >= 5 ? r.u8() : 0;
    if (sparse > 1) throw new ClipError('BAD_INDEX', `index body is corrupt: checkpoint ${i} has window flag ${sparse}`);
    const cp: Checkpoint = bits > 0 ? { in: prevIn, bits, out: prevOut, window } : { in: prevIn, out: prevOut, window };
    if (sparse === 1) cp.sparse = true;
    checkpoints.push(cp);
  }
  const digests: Buffer[] = [];
  for (let i = 0; i < count; i++) digests.push(Buffer.from(r.raw(DIGEST_SIZE)));
  const spans: SpanTable = {
    compression: l.compression,
    compressedSize: l.compressedSize,
    uncompressedSize: l.uncompressedSize,
    checkpoints,
    digests,
  };
  checkSpanTable(spans, li);
  if (version >= 6) {
    const fine = readFine(r, spans, li);
    if (fine) {
      spans.fine = fine;
      checkFineSpans(spans, li);
    }
  }
  return { digest: l.digest, mediaType: l.mediaType, diffId: l.diffId, spans };
}

/** Every node, in inode order (inode = position + 1), each checked on its own. */
function readNodes(r: ByteReader, layers: LayerRecord[]): Node[] {
  const count = r.count(MIN_NODE_BYTES, 'nodes');
  if (count < 1) corrupt('no nodes');
  const nodes: Node[] = new Array(count);
  for (let i = 0; i < count; i++) nodes[i] = readNode(r, i + 1, layers);
  return nodes;
}

/** One node: type, flags, the fixed fields, then the optional fields its flags announce. */
function readNode(r: ByteReader, ino: number, layers: LayerRecord[]): Node {
  const type = TYPES[r.u8()];
  if (!type) corrupt(`unknown node type for inode ${ino}`);
  const flags = r.u8();
  if ((flags & ~F_KNOWN) !== 0) corrupt(`unknown flags ${flags} on inode ${ino}`);
  if (flags & F_DATA && type !== 'file') corrupt(`inode ${ino} is a ${type} with file data`);
  if (flags & F_DEVICE && type !== 'char' && type !== 'block') corrupt(`inode ${ino} is a ${type} with a device number`);
  const node: Node = {
    ino,
    type,
    mode: r.uint(),
    uid: r.uint(),
    gid: r.uint(),
    size: r.uint(),
    nlink: r.uint(),
    mtime: readTime(r, ino),
    atime: undefined as unknown as Timespec,
    ctime: undefined as unknown as Timespec,
    devmajor: 0,
    devminor: 0,
    layer: -1,
    offset: 0,
  };
  node.atime = flags & F_ATIME ? readTime(r, ino) : node.mtime;
  node.ctime = flags & F_CTIME ? readTime(r, ino) : node.mtime;
  if (flags & F_DEVICE) {
    node.devmajor = r.uint();
    node.devminor = r.uint();
  }
  if (type === 'symlink') node.target = r.string();
  if (flags & F_XATTRS) node.xattrs = readXattrs(r, ino);
  if (flags & F_DATA) {
    node.layer = r.uint();
    node.offset = r.uint();
    const layer = layers[node.layer];
    if (!layer || node.offset + node.size > layer.spans.uncompressedSize) corrupt(`inode ${ino} points outside its layer`);
  }
  if (type === 'dir') node.children = new Map();
  checkNode(node);
  return node;
}

function readXattrs(r: ByteReader, ino: number): Map<string, Buffer> {
  const n = r.count(MIN_XATTR_BYTES, `xattrs of inode ${ino}`);
  const xattrs = new Map<string, Buffer>();
  for (let k = 0; k < n; k++) {
    const name = r.string();
    if (xattrs.has(name)) corrupt(`inode ${ino} has xattr ${JSON.stringify(name)} twice`);
    xattrs.set(name, Buffer.from(r.bytes()));
  }
  return xattrs;
}

/** Each directory's entries, in inode order: name and child inode, into the directory's children. */
function readEntries(r: ByteReader, nodes: Node[]): void {
  for (const node of nodes) {
    if (node.type !== 'dir') continue;
    const children = node.children!;
    const n = r.count(MIN_ENTRY_BYTES, `entries of inode ${node.ino}`);
    for (let k = 0; k < n; k++) {
      const name = r.string();
      checkName(name, node.ino);
      const child = nodes[r.uint() - 1];
      if (!child) corrupt(`entry ${JSON.stringify(name)} in inode ${node.ino} names no inode`);
      if (children.has(name)) corrupt(`entry ${JSON.stringify(name)} appears twice in inode ${node.ino}`);
      children.set(name, child);
    }
  }
}
