// Push-style scanner over an uncompressed tar stream: buffers only header
// blocks and extension payloads (PAX, GNU long names), counts its way past
// file data, and reports each entry with the stream offset of its data.

import { ClipError } from '../errors.js';
import { BLOCK_SIZE, parseHeader, TYPE, type RawHeader } from './header.js';
import { decodeName, nameText, showName, type NameField } from './names.js';
import { normalizePath } from './normalize-path.js';
import { interpretPax, parsePaxRecords, type PaxOverrides, type PaxRecords } from './pax.js';
import { MAX_TIME_SEC, MIN_TIME_SEC, type EntryType, type TarEntry, type Timespec } from './types.js';

/** Largest PAX or GNU long-name payload we are willing to buffer. */
export const MAX_EXTENSION_SIZE = 1 << 20;

const HEADER = 0;
const EXTENSION = 1; // collecting a PAX / long-name payload
const END = 2; // two zero blocks seen; the rest of the stream is ignored

type Extension = typeof TYPE.PAX | typeof TYPE.PAX_GLOBAL | typeof TYPE.GNU_LONGNAME | typeof TYPE.GNU_LONGLINK;

export class TarScanner {
  private readonly onEntry: (e: TarEntry) => void;
  private pos = 0;
  private state = HEADER;
  private failure: unknown = undefined;
  private finished = false;

  /** Entry data, then its padding, still to be skipped. */
  private dataLeft = 0;
  private padLeft = 0;
  private current: NameField = ''; // name of the entry whose data we are skipping

  /** A header block split across chunks. */
  private readonly block = Buffer.alloc(BLOCK_SIZE);
  private blockFill = 0;
  private sawZeroBlock = false;

  private ext: Buffer = Buffer.alloc(0);
  private extFill = 0;
  private extKind: Extension = TYPE.PAX;
  private extAt = 0;

  /** Extensions collected for the next entry. */
  private pax: PaxRecords | null = null;
  private longName: NameField | undefined = undefined;
  private longLink: NameField | undefined = undefined;
  /** Global PAX records ('g'), applied to every following entry. */
  private readonly globalPax: PaxRecords = new Map();

  constructor(onEntry: (e: TarEntry) => void) {
    this.onEntry = onEntry;
  }

  /** Bytes consumed so far. */
  get position(): number {
    return this.pos;
  }

  /** Feed the next chunk. Throws ClipError on bad input; the chunk is not retained. */
  push(chunk: Buffer): void {
    if (this.failure !== undefined) throw this.failure;
    if (this.finished) throw new Error('TarScanner.push() after finish()');
    try {
      this.consume(chunk);
    } catch (e) {
      this.failure = e;
      throw e;
    }
  }

  /** End of stream: throws if it ended inside a header, an extension or entry data. */
  finish(): void {
    if (this.failure !== undefined) throw this.failure;
    this.finished = true;
    if (this.state === END) return;
    if (this.state === EXTENSION) {
      throw new ClipError('BAD_TAR', `tar archive truncated inside an extended header at offset ${this.extAt}`);
    }
    if (this.dataLeft > 0) {
      throw new ClipError('BAD_TAR', `tar archive truncated inside the data of ${showName(this.current)} (${this.dataLeft} bytes missing)`);
    }
    // Missing padding after complete data is harmless, like missing end blocks.
    if (this.blockFill > 0) {
      for (let i = 0; i < this.blockFill; i++) {
        if (this.block[i] !== 0) {
          throw new ClipError('BAD_TAR', `tar archive truncated inside the header at offset ${this.pos - this.blockFill}`);
        }
      }
    }
    this.checkNoPendingExtension(this.pos);
  }

  private consume(chunk: Buffer): void {
    const len = chunk.length;
    let off = 0;
    while (off < len) {
      if (this.dataLeft > 0) {
        const n = Math.min(this.dataLeft, len - off);
        this.dataLeft -= n;
        off += n;
        this.pos += n;
        continue;
      }
      if (this.padLeft > 0) {
        const n = Math.min(this.padLeft, len - off);
        this.padLeft -= n;
        off += n;
        this.pos += n;
        continue;
      }
      if (this.state === HEADER) {
        if (this.blockFill === 0 && len - off >= BLOCK_SIZE) {
          // Common case: the whole block is in this chunk; parse it in place.
          const at = this.pos;
          off += BLOCK_SIZE;
          this.pos += BLOCK_SIZE;
          this.header(chunk, off - BLOCK_SIZE, at);
        } else {
          const n = Math.min(BLOCK_SIZE - this.blockFill, len - off);
          chunk.copy(this.block, this.blockFill, off, off + n);
          this.blockFill += n;
          off += n;
          this.pos += n;
          if (this.blockFill === BLOCK_SIZE) {
            this.blockFill = 0;
            this.header(this.block, 0, this.pos - BLOCK_SIZE);
          }
        }
      } else if (this.state === EXTENSION) {
        const n = Math.min(this.ext.length - this.extFill, len - off);
        chunk.copy(this.ext, this.extFill, off, off + n);
        this.extFill += n;
        off += n;
        this.pos += n;
        if (this.extFill === this.ext.length) this.endExtension();
      } else {
        // END: ignore whatever follows the end-of-archive marker.
        this.pos += len - off;
        off = len;
      }
    }
  }

  private header(buf: Buffer, off: number, at: number): void {
    const h = parseHeader(buf, off, at);
    if (h === null) {
      this.checkNoPendingExtension(at);
      if (this.sawZeroBlock) this.state = END;
      this.sawZeroBlock = true;
      return;
    }
    if (this.sawZeroBlock) {
      // GNU tar stops here, node-tar carries on, Go's archive/tar (and so
      // containerd) fails: ambiguous, so refuse.
      throw new ClipError('BAD_TAR', `lone zero block followed by a header at offset ${at}`);
    }
    switch (h.typeflag) {
      case TYPE.PAX:
      case TYPE.PAX_GLOBAL:
      case TYPE.GNU_LONGNAME:
      case TYPE.GNU_LONGLINK:
        this.startExtension(h, at);
        return;
      case TYPE.GNU_SPARSE:
        throw new ClipError('UNSUPPORTED', `sparse file ${showName(this.longName ?? h.name)} at offset ${at} is not supported`);
      case TYPE.GNU_MULTIVOL:
        throw new ClipError('UNSUPPORTED', `multi-volume continuation entry at offset ${at} is not supported`);
    }
    this.entry(h, at);
  }

  private startExtension(h: RawHeader, at: number): void {
    if (h.size > MAX_EXTENSION_SIZE) {
      throw new ClipError('BAD_TAR', `extended header of ${h.size} bytes at offset ${at} is too large`);
    }
    this.extKind = h.typeflag as Extension;
    this.extAt = at + BLOCK_SIZE;
    this.ext = Buffer.allocUnsafe(h.size);
    this.extFill = 0;
    this.state = EXTENSION;
    if (h.size === 0) this.endExtension();
  }

  private endExtension(): void {
    const payload = this.ext;
    this.ext = Buffer.alloc(0);
    this.state = HEADER;
    this.padLeft = padding(payload.length);
    switch (this.extKind) {
      case TYPE.PAX:
        parsePaxRecords(payload, this.extAt, (this.pax ??= new Map()), false);
        break;
      case TYPE.PAX_GLOBAL:
        parsePaxRecords(payload, this.extAt, this.globalPax, true);
        break;
      case TYPE.GNU_LONGNAME:
        this.longName = cString(payload);
        break;
      case TYPE.GNU_LONGLINK:
        this.longLink = cString(payload);
        break;
    }
  }

  private entry(h: RawHeader, at: number): void {
    const o = this.takeOverrides(at);
    const longName = this.longName;
    const longLink = this.longLink;
    this.longName = this.longLink = undefined;

    const nameField = o?.path ?? longName ?? h.name;
    const type = entryType(h.typeflag, nameField, at);
    // Like Go's archive/tar (so containerd and docker): links, devices, fifos
    // and directories have no data, whatever the size field or a PAX size
    // says; what follows their header is the next header. Everything else
    // (files, GNU dumpdirs, vendor types) is followed by its data.
    const size = headerOnly(h.typeflag, type) ? 0 : (o?.size ?? h.size);
    const dataOffset = at + BLOCK_SIZE;
    const pad = padding(size);
    if (dataOffset + size + pad > Number.MAX_SAFE_INTEGER) {
      throw new ClipError('BAD_TAR', `size ${size} of ${showName(nameField)} at offset ${at} is too large`);
    }
    if (o?.sparse) {
      throw new ClipError('UNSUPPORTED', `sparse file ${showName(nameField)} at offset ${at} is not supported`);
    }
    this.dataLeft = size;
    this.padLeft = pad;
    this.current = nameField;

    if (type === null) return; // vendor extension type we do not index
    const rawName = nameText(nameField, at, 'name');
    if (rawName === '') throw new ClipError('BAD_TAR', `empty name for the ${type} entry at offset ${at}`);
    const path = normalizePath(rawName, at);
    if (path === '' && type !== 'dir') {
      throw new ClipError('BAD_TAR', `${type} entry ${JSON.stringify(rawName)} at offset ${at} names the root`);
    }

    const e: TarEntry = {
      path,
      type,
      mode: h.mode & 0o7777,
      uid: o?.uid ?? h.uid,
      gid: o?.gid ?? h.gid,
      size: type === 'file' ? size : 0,
      dataOffset,
      mtime: clampTime(o?.mtime ?? { sec: h.mtime, nsec: 0 }),
      devmajor: 0,
      devminor: 0,
    };
    if (type === 'char' || type === 'block') {
      // What Linux's dev_t holds (and FUSE's rdev): larger numbers would alias another device.
      if (h.devmajor > MAX_DEV_MAJOR || h.devminor > MAX_DEV_MINOR) {
        throw new ClipError(
          'BAD_TAR',
          `device number ${h.devmajor}:${h.devminor} of ${JSON.stringify(rawName)} at offset ${at} is out of range (Linux allows majors up to ${MAX_DEV_MAJOR}, minors up to ${MAX_DEV_MINOR})`,
        );
      }
      e.devmajor = h.devmajor;
      e.devminor = h.devminor;
    }
    const uname = o?.uname ?? h.uname;
    if (uname !== '') e.uname = uname;
    const gname = o?.gname ?? h.gname;
    if (gname !== '') e.gname = gname;
    const atime = o?.atime ?? (h.atime !== undefined ? { sec: h.atime, nsec: 0 } : undefined);
    if (atime !== undefined) e.atime = clampTime(atime);
    const ctime = o?.ctime ?? (h.ctime !== undefined ? { sec: h.ctime, nsec: 0 } : undefined);
    if (ctime !== undefined) e.ctime = clampTime(ctime);
    if (type === 'hardlink' || type === 'symlink') {
      const rawLink = nameText(o?.linkpath ?? longLink ?? h.linkname, at, 'link target');
      e.linkname = type === 'hardlink' ? hardlinkTarget(rawLink, at) : symlinkTarget(rawLink, at);
    }
    if (o?.xattrs !== undefined) e.xattrs = o.xattrs;
    this.onEntry(e);
  }

  /** Merge global and per-entry PAX records (per-entry wins) and interpret them. */
  private takeOverrides(at: number): PaxOverrides | null {
    const local = this.pax;
    this.pax = null;
    if (this.globalPax.size === 0) return local === null ? null : interpretPax(local, at);
    if (local === null) return interpretPax(this.globalPax, at);
    const merged: PaxRecords = new Map(this.globalPax);
    for (const [k, v] of local) merged.set(k, v);
    return interpretPax(merged, at);
  }

  private checkNoPendingExtension(at: number): void {
    if (this.pax !== null || this.longName !== undefined || this.longLink !== undefined) {
      throw new ClipError('BAD_TAR', `extended header not followed by an entry at offset ${at}`);
    }
  }
}

const MAX_DEV_MAJOR = 0xfff;
const MAX_DEV_MINOR = 0xfffff;

function entryType(typeflag: number, name: NameField, at: number): EntryType | null {
  switch (typeflag) {
    case TYPE.AREG:
    case TYPE.REG:
    case TYPE.CONTIG:
      // Old tars mark directories with a trailing slash only (GNU tar agrees).
      return endsWithSlash(name) ? 'dir' : 'file';
    case TYPE.LINK:
      return 'hardlink';
    case TYPE.SYMLINK:
      return 'symlink';
    case TYPE.CHAR:
      return 'char';
    case TYPE.BLOCK:
      return 'block';
    case TYPE.DIR:
    case TYPE.GNU_DUMPDIR:
      return 'dir';
    case TYPE.FIFO:
      return 'fifo';
  }
  // 'A'-'Z' are reserved for vendor extensions (volume labels, ...): skipped.
  if (typeflag >= 0x41 && typeflag <= 0x5a) return null;
  const shown = typeflag >= 0x20 && typeflag < 0x7f ? `'${String.fromCharCode(typeflag)}'` : `0x${typeflag.toString(16)}`;
  throw new ClipError('BAD_TAR', `unknown tar entry type ${shown} at offset ${at}`);
}

function endsWithSlash(name: NameField): boolean {
  return typeof name === 'string' ? name.endsWith('/') : name[name.length - 1] === 0x2f;
}

/**
 * Go's isHeaderOnlyType, after Go turns an old '\0' entry whose name ends in
 * "/" into a directory. A '0' or '7' entry ending in "/" stays a regular file
 * to Go, data included (we list it as a directory, as GNU tar does).
 */
function headerOnly(typeflag: number, type: EntryType | null): boolean {
  switch (typeflag) {
    case TYPE.LINK:
    case TYPE.SYMLINK:
    case TYPE.CHAR:
    case TYPE.BLOCK:
    case TYPE.DIR:
    case TYPE.FIFO:
      return true;
    case TYPE.AREG:
      return type === 'dir';
  }
  return false;
}

function clampTime(t: Timespec): Timespec {
  if (t.sec < MIN_TIME_SEC) return { sec: MIN_TIME_SEC, nsec: 0 };
  if (t.sec > MAX_TIME_SEC) return { sec: MAX_TIME_SEC, nsec: 0 };
  return t;
}

/** Hard links name a path in the image, so they get the same treatment. */
function hardlinkTarget(raw: string, at: number): string {
  const target = normalizePath(raw, at);
  if (target === '') throw new ClipError('BAD_TAR', `hard link at offset ${at} has an empty target`);
  return target;
}

/** Symlinks are resolved inside the container: kept as stored. */
function symlinkTarget(raw: string, at: number): string {
  if (raw.includes('\0')) throw new ClipError('BAD_TAR', `NUL byte in symlink target at offset ${at}`);
  return raw;
}

function padding(size: number): number {
  const r = size % BLOCK_SIZE;
  return r === 0 ? 0 : BLOCK_SIZE - r;
}

/** GNU long names: the payload up to its first NUL. */
function cString(payload: Buffer): NameField {
  const nul = payload.indexOf(0);
  return decodeName(payload.subarray(0, nul < 0 ? payload.length : nul));
}
