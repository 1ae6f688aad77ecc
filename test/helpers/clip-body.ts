// Takes a .clip file apart for corruption tests: the inflated body, a map of
// where each field of it sits, and sealing a changed body back into a file
// with a correct header (lengths and sha256), so only the decoder's own
// checks stand between a hostile body and clip.

import { createHash } from 'node:crypto';
import zlib from 'node:zlib';

export interface OpenedClip {
  /** The header (64 bytes, 80 for an archive). */
  header: Buffer;
  /** An archive's embedded data (empty otherwise). */
  data: Buffer;
  /** The inflated body. */
  raw: Buffer;
  /** The format version in the header. */
  version: number;
}

export function openClip(file: Buffer): OpenedClip {
  const archive = file.readUInt16LE(10) === 2;
  const headerSize = archive ? 80 : 64;
  const header = Buffer.from(file.subarray(0, headerSize));
  const dataLength = archive ? Number(header.readBigUInt64LE(64)) : 0;
  const data = file.subarray(headerSize, headerSize + dataLength);
  const raw = zlib.inflateRawSync(file.subarray(headerSize + dataLength));
  return { header, data, raw, version: header.readUInt16LE(8) };
}

/** A file holding `raw` as its body (deflated), with the header's lengths and checksum fixed. */
export function sealClip(c: OpenedClip, raw: Buffer, deflated = zlib.deflateRawSync(raw)): Buffer {
  const header = Buffer.from(c.header);
  header.writeBigUInt64LE(BigInt(deflated.length), 16);
  header.writeBigUInt64LE(BigInt(raw.length), 24);
  createHash('sha256').update(deflated).digest().copy(header, 32);
  return Buffer.concat([header, c.data, deflated]);
}

export type FieldKind =
  | 'json'
  | 'cp-count'
  | 'cp-in'
  | 'cp-out'
  | 'window'
  | 'cp-bits'
  | 'cp-sparse'
  | 'digest'
  | 'fine-flag'
  | 'mark-count'
  | 'mark-in'
  | 'mark-out'
  | 'chunk-digest'
  | 'node-count'
  | 'type'
  | 'flags'
  | 'mode'
  | 'uid'
  | 'gid'
  | 'size'
  | 'nlink'
  | 'sec'
  | 'nsec'
  | 'dev'
  | 'target'
  | 'xattr-count'
  | 'xattr-name'
  | 'xattr-value'
  | 'data-layer'
  | 'data-offset'
  | 'dir-count'
  | 'name'
  | 'child';

export interface Field {
  kind: FieldKind;
  start: number;
  end: number;
  /** The inode the field belongs to (nodes), or the directory listing it (entries). */
  ino?: number;
  /** Decoded value of varints and strings. */
  value?: number | string;
}

export interface BodyMap {
  fields: Field[];
  meta: { image: Record<string, unknown>; layers: Record<string, unknown>[] };
  /** Directory inode -> its parent directory's inode (the root: 0). */
  parents: Map<number, number>;
  nodeCount: number;
}

const TYPES = ['file', 'dir', 'symlink', 'char', 'block', 'fifo'];

/**
 * Where every field of a well-formed body sits (an independent reading of the
 * format); `version` from the file's header (4 adds a bit offset per
 * checkpoint, 5 a sparse-window flag, 6 marks and 64 KiB chunk digests).
 */
export function mapBody(raw: Buffer, version: number): BodyMap {
  let pos = 0;
  const fields: Field[] = [];
  const uint = (kind: FieldKind, ino?: number): number => {
    const start = pos;
    let v = 0;
    let scale = 1;
    for (;;) {
      const b = raw[pos++]!;
      v += (b & 0x7f) * scale;
      scale *= 128;
      if (b < 0x80) break;
    }
    fields.push({ kind, start, end: pos, value: v, ...(ino !== undefined ? { ino } : {}) });
    return v;
  };
  const bytes = (kind: FieldKind, ino?: number): Buffer => {
    const start = pos;
    const n = uint(kind, ino);
    fields.pop();
    const b = raw.subarray(pos, pos + n);
    pos += n;
    fields.push({ kind, start, end: pos, value: b.toString('utf8'), ...(ino !== undefined ? { ino } : {}) });
    return b;
  };
  const meta = JSON.parse(bytes('json').toString('utf8')) as BodyMap['meta'];
  for (let l = 0; l < meta.layers.length; l++) {
    const n = uint('cp-count');
    const ins: number[] = [];
    const bits: number[] = [];
    for (let i = 0; i < n; i++) {
      ins.push((ins[i - 1] ?? 0) + uint('cp-in'));
      uint('cp-out');
      bytes('window');
      bits.push(version >= 4 ? raw[pos]! : 0);
      if (version >= 4) {
        fields.push({ kind: 'cp-bits', start: pos, end: pos + 1, value: raw[pos]! });
        pos++;
      }
      if (version >= 5) {
        fields.push({ kind: 'cp-sparse', start: pos, end: pos + 1, value: raw[pos]! });
        pos++;
      }
    }
    for (let i = 0; i < n; i++) {
      fields.push({ kind: 'digest', start: pos, end: pos + 32 });
      pos += 32;
    }
    if (version < 6) continue;
    fields.push({ kind: 'fine-flag', start: pos, end: pos + 1, value: raw[pos]! });
    if (raw[pos++] === 0) continue;
    for (let i = 0; i < n; i++) {
      const marks = uint('mark-count');
      for (let k = 0; k < marks; k++) {
        uint('mark-in');
        uint('mark-out');
      }
      // Span i's compressed bytes: from its checkpoint (span 0: from 0) to the next one (and its first byte when it starts mid-byte).
      const start = i === 0 ? 0 : ins[i]!;
      const end = i + 1 < n ? ins[i + 1]! + (bits[i + 1]! > 0 ? 1 : 0) : (meta.layers[l]!['compressedSize'] as number);
      for (let k = 0; k < Math.ceil((end - start) / (64 * 1024)); k++) {
        fields.push({ kind: 'chunk-digest', start: pos, end: pos + 32 });
        pos += 32;
      }
    }
  }
  const nodeCount = uint('node-count');
  const types: string[] = [];
  for (let ino = 1; ino <= nodeCount; ino++) {
    fields.push({ kind: 'type', start: pos, end: pos + 1, ino, value: raw[pos]! });
    types.push(TYPES[raw[pos++]!]!);
    fields.push({ kind: 'flags', start: pos, end: pos + 1, ino, value: raw[pos]! });
    const flags = raw[pos++]!;
    for (const k of ['mode', 'uid', 'gid', 'size', 'nlink', 'sec', 'nsec'] as const) uint(k, ino);
    for (const bit of [1, 2]) {
      if (flags & bit) {
        uint('sec', ino);
        uint('nsec', ino);
      }
    }
    if (flags & 16) {
      uint('dev', ino);
      uint('dev', ino);
    }
    if (types[ino - 1] === 'symlink') bytes('target', ino);
    if (flags & 4) {
      const n = uint('xattr-count', ino);
      for (let k = 0; k < n; k++) {
        bytes('xattr-name', ino);
        bytes('xattr-value', ino);
      }
    }
    if (flags & 8) {
      uint('data-layer', ino);
      uint('data-offset', ino);
    }
  }
  const parents = new Map<number, number>([[1, 0]]);
  for (let ino = 1; ino <= nodeCount; ino++) {
    if (types[ino - 1] !== 'dir') continue;
    const n = uint('dir-count', ino);
    for (let k = 0; k < n; k++) {
      bytes('name', ino);
      const child = uint('child', ino);
      if (types[child - 1] === 'dir') parents.set(child, ino);
    }
  }
  if (pos !== raw.length) throw new Error(`mapBody: ${raw.length - pos} bytes left over`);
  return { fields, meta, parents, nodeCount };
}

export function uintBytes(v: number): Buffer {
  const out: number[] = [];
  while (v >= 0x80) {
    out.push((v % 0x80) | 0x80);
    v = Math.floor(v / 0x80);
  }
  out.push(v);
  return Buffer.from(out);
}

export function intBytes(v: number): Buffer {
  return uintBytes(v >= 0 ? v * 2 : -v * 2 - 1);
}

export function bytesField(b: Buffer): Buffer {
  return Buffer.concat([uintBytes(b.length), b]);
}

/** `raw` with [f.start, f.end) replaced by `by`. */
export function splice(raw: Buffer, f: { start: number; end: number }, by: Buffer): Buffer {
  return Buffer.concat([raw.subarray(0, f.start), by, raw.subarray(f.end)]);
}
