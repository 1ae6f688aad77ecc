// Minimal, independent tar writer for building test fixtures (never uses the
// code under test). Writes ustar headers plus PAX extended headers when a field
// does not fit (long/unicode names, xattrs, ns times, big ids), or GNU variants.

export interface TarTime {
  sec: number;
  nsec: number;
}

interface TarEntryBase {
  /** Path as written into the archive (no normalisation; a "/" is appended to dirs). */
  path: string;
  /** Written verbatim into the mode field (permission + setuid/setgid/sticky bits). */
  mode?: number;
  uid?: number;
  gid?: number;
  uname?: string;
  gname?: string;
  mtime?: TarTime;
  /** Only ever written as PAX records. */
  atime?: TarTime;
  ctime?: TarTime;
  /** SCHILY.xattr.<name> PAX records with binary values. */
  xattrs?: Record<string, Buffer>;
  /**
   * How to store a path/linkname that does not fit in the 100-byte ustar field:
   * 'pax' (default) PAX path/linkpath records; 'prefix' ustar prefix/name split
   * (ASCII, <= 255 bytes, falls back to PAX if impossible); 'gnu' GNU ././@LongLink
   * entries ('L' and 'K'), and raw UTF-8 bytes in the ustar fields for short
   * non-ASCII names (like GNU tar).
   */
  longNames?: 'pax' | 'prefix' | 'gnu';
  /** How to store numbers too big for octal (uid/gid): 'pax' (default) or GNU 'base256'. */
  bigNumbers?: 'pax' | 'base256';
  /** Extra PAX records, written as given (e.g. to test odd keys). */
  paxExtra?: Record<string, string | Buffer>;
}

export type TarEntrySpec =
  | (TarEntryBase & { type: 'file'; data?: Buffer | string })
  | (TarEntryBase & { type: 'dir' })
  | (TarEntryBase & { type: 'symlink'; target: string })
  | (TarEntryBase & { type: 'hardlink'; target: string })
  | (TarEntryBase & { type: 'char' | 'block'; devmajor: number; devminor: number })
  | (TarEntryBase & { type: 'fifo' });

/** Where each entry (the real one, after any PAX/GNU header entries) landed in the tar. */
export interface TarEntryLayout {
  path: string;
  /** Offset of the first header block belonging to this entry (PAX/GNU headers included). */
  firstHeaderOffset: number;
  /** Offset of the entry's own ustar header. */
  headerOffset: number;
  dataOffset: number;
  size: number;
}

export interface TarOptions {
  /** Pad the archive to a multiple of this many bytes (GNU tar uses 10240). Default: no padding. */
  recordSize?: number;
  /** Number of zero blocks written at the end (default 2). */
  endBlocks?: number;
}

const BLOCK = 512;
const TYPEFLAG: Record<TarEntrySpec['type'], string> = {
  file: '0',
  hardlink: '1',
  symlink: '2',
  char: '3',
  block: '4',
  dir: '5',
  fifo: '6',
};
const MAX_OCTAL_7 = 0o7777777; // uid/gid/mode fields: 7 digits + NUL
const MAX_OCTAL_11 = 0o77777777777; // size/mtime fields: 11 digits + NUL

/** Build a complete tar archive. */
export function buildTar(entries: TarEntrySpec[], opts: TarOptions = {}): Buffer {
  return buildTarWithLayout(entries, opts).tar;
}

/** Build a tar archive and report where each entry's header and data are. */
export function buildTarWithLayout(entries: TarEntrySpec[], opts: TarOptions = {}): { tar: Buffer; layout: TarEntryLayout[] } {
  const chunks: Buffer[] = [];
  const layout: TarEntryLayout[] = [];
  let offset = 0;
  const push = (b: Buffer): void => {
    chunks.push(b);
    offset += b.length;
  };
  for (const e of entries) {
    const first = offset;
    const { pre, header, data } = encodeEntry(e);
    for (const b of pre) push(b);
    const headerOffset = offset;
    push(header);
    const dataOffset = offset;
    push(padBlock(data));
    layout.push({ path: e.path, firstHeaderOffset: first, headerOffset, dataOffset, size: data.length });
  }
  push(Buffer.alloc(BLOCK * (opts.endBlocks ?? 2)));
  if (opts.recordSize && offset % opts.recordSize !== 0) {
    push(Buffer.alloc(opts.recordSize - (offset % opts.recordSize)));
  }
  return { tar: Buffer.concat(chunks), layout };
}

function entryData(e: TarEntrySpec): Buffer {
  if (e.type !== 'file' || e.data === undefined) return Buffer.alloc(0);
  return typeof e.data === 'string' ? Buffer.from(e.data, 'utf8') : e.data;
}

function isAscii(s: string): boolean {
  return /^[\x00-\x7f]*$/.test(s);
}

/** Split an ASCII path into (prefix <= 155, name <= 100) at a "/", as ustar does. */
function splitPrefix(p: string): { prefix: string; name: string } | null {
  if (!isAscii(p) || p.length > 256) return null;
  for (let i = p.length - 1; i >= 0; i--) {
    if (p[i] !== '/') continue;
    const prefix = p.slice(0, i);
    const name = p.slice(i + 1);
    if (prefix.length <= 155 && name.length <= 100 && name.length > 0) return { prefix, name };
    if (prefix.length > 155) continue;
    return null; // name part only gets longer further left
  }
  return null;
}

function formatTime(t: TarTime): string {
  if (t.nsec === 0) return String(t.sec);
  const frac = String(t.nsec).padStart(9, '0').replace(/0+$/, '');
  return `${t.sec}.${frac}`;
}

function encodeEntry(e: TarEntrySpec): { pre: Buffer[]; header: Buffer; data: Buffer } {
  const data = entryData(e);
  const pax: Array<[string, Buffer]> = [];
  const addPax = (k: string, v: string | Buffer): void => {
    pax.push([k, typeof v === 'string' ? Buffer.from(v, 'utf8') : v]);
  };
  const pre: Buffer[] = [];
  const longNames = e.longNames ?? 'pax';

  let path = e.path;
  if (e.type === 'dir' && !path.endsWith('/')) path += '/';
  let name = path;
  let prefix = '';
  if (longNames === 'gnu' && !isAscii(path) && Buffer.byteLength(path) <= 100) {
    name = rawUtf8(path); // GNU tar style: raw UTF-8 bytes in the ustar field
  } else if (Buffer.byteLength(path) > 100 || !isAscii(path)) {
    const split = longNames === 'prefix' ? splitPrefix(path) : null;
    if (split) {
      ({ prefix, name } = split);
    } else if (longNames === 'gnu') {
      pre.push(...gnuLong('L', path));
      name = truncUtf8(path, 100);
    } else {
      addPax('path', path);
      name = asciiFallback(path, 100);
    }
  }

  let linkname = '';
  if (e.type === 'symlink' || e.type === 'hardlink') {
    linkname = e.target;
    if (longNames === 'gnu' && !isAscii(linkname) && Buffer.byteLength(linkname) <= 100) {
      linkname = rawUtf8(linkname);
    } else if (Buffer.byteLength(linkname) > 100 || !isAscii(linkname)) {
      if (longNames === 'gnu') {
        pre.push(...gnuLong('K', linkname));
        linkname = truncUtf8(linkname, 100);
      } else {
        addPax('linkpath', linkname);
        linkname = asciiFallback(linkname, 100);
      }
    }
  }

  const uid = e.uid ?? 0;
  const gid = e.gid ?? 0;
  const bigNumbers = e.bigNumbers ?? 'pax';
  if (uid > MAX_OCTAL_7 && bigNumbers === 'pax') addPax('uid', String(uid));
  if (gid > MAX_OCTAL_7 && bigNumbers === 'pax') addPax('gid', String(gid));

  let uname = e.uname ?? '';
  let gname = e.gname ?? '';
  if (Buffer.byteLength(uname) > 32 || !isAscii(uname)) {
    addPax('uname', uname);
    uname = asciiFallback(uname, 32);
  }
  if (Buffer.byteLength(gname) > 32 || !isAscii(gname)) {
    addPax('gname', gname);
    gname = asciiFallback(gname, 32);
  }

  const mtime = e.mtime ?? { sec: 0, nsec: 0 };
  if (mtime.nsec !== 0 || mtime.sec < 0 || mtime.sec > MAX_OCTAL_11) addPax('mtime', formatTime(mtime));
  if (e.atime) addPax('atime', formatTime(e.atime));
  if (e.ctime) addPax('ctime', formatTime(e.ctime));

  if (data.length > MAX_OCTAL_11) addPax('size', String(data.length));

  for (const [k, v] of Object.entries(e.xattrs ?? {})) addPax(`SCHILY.xattr.${k}`, v);
  for (const [k, v] of Object.entries(e.paxExtra ?? {})) addPax(k, v);

  if (pax.length > 0) {
    const body = encodePaxRecords(pax);
    const paxName = asciiFallback(`PaxHeaders.0/${lastComponent(path)}`, 100);
    const h = rawHeader({
      name: paxName,
      mode: 0o644,
      uid: 0,
      gid: 0,
      size: body.length,
      mtime: 0,
      typeflag: 'x',
      linkname: '',
      uname: '',
      gname: '',
      devmajor: 0,
      devminor: 0,
      prefix: '',
      bigNumbers: 'pax',
    });
    pre.push(h, padBlock(body));
  }

  const header = rawHeader({
    name,
    mode: e.mode ?? (e.type === 'dir' ? 0o755 : e.type === 'symlink' ? 0o777 : 0o644),
    uid: uid > MAX_OCTAL_7 && bigNumbers === 'pax' ? 0 : uid,
    gid: gid > MAX_OCTAL_7 && bigNumbers === 'pax' ? 0 : gid,
    size: data.length > MAX_OCTAL_11 ? 0 : data.length,
    mtime: mtime.sec >= 0 && mtime.sec <= MAX_OCTAL_11 ? mtime.sec : 0,
    typeflag: TYPEFLAG[e.type],
    linkname,
    uname,
    gname,
    devmajor: e.type === 'char' || e.type === 'block' ? e.devmajor : 0,
    devminor: e.type === 'char' || e.type === 'block' ? e.devminor : 0,
    prefix,
    bigNumbers,
    gnuMagic: longNames === 'gnu',
  });
  return { pre, header, data };
}

function lastComponent(p: string): string {
  const parts = p.split('/').filter((s) => s.length > 0);
  return parts[parts.length - 1] ?? 'root';
}

/** ASCII-only, byte-limited stand-in for a field whose real value is in PAX. */
function asciiFallback(s: string, max: number): string {
  return s.replace(/[^\x20-\x7e]/g, '_').slice(0, max);
}

/** The UTF-8 bytes of s (first `max`), as a latin1 string for writeStr. */
function truncUtf8(s: string, max: number): string {
  return Buffer.from(s, 'utf8').subarray(0, max).toString('latin1');
}

function rawUtf8(s: string): string {
  return Buffer.from(s, 'utf8').toString('latin1');
}

function gnuLong(kind: 'L' | 'K', value: string): Buffer[] {
  const body = Buffer.concat([Buffer.from(value, 'utf8'), Buffer.alloc(1)]);
  const h = rawHeader({
    name: '././@LongLink',
    mode: 0o644,
    uid: 0,
    gid: 0,
    size: body.length,
    mtime: 0,
    typeflag: kind,
    linkname: '',
    uname: 'root',
    gname: 'root',
    devmajor: 0,
    devminor: 0,
    prefix: '',
    bigNumbers: 'pax',
    gnuMagic: true,
  });
  return [h, padBlock(body)];
}

/** "%d key=value\n" records; the length counts itself. */
export function encodePaxRecords(records: Array<[string, Buffer]>): Buffer {
  const out: Buffer[] = [];
  for (const [k, v] of records) {
    const rest = Buffer.byteLength(k) + v.length + 3; // ' ' '=' '\n'
    let len = rest + String(rest).length;
    if (String(len).length !== String(rest).length) len = rest + String(len).length;
    out.push(Buffer.from(`${len} ${k}=`, 'utf8'), v, Buffer.from('\n'));
  }
  return Buffer.concat(out);
}

function padBlock(b: Buffer): Buffer {
  const rem = b.length % BLOCK;
  return rem === 0 ? b : Buffer.concat([b, Buffer.alloc(BLOCK - rem)]);
}

interface RawHeader {
  name: string;
  mode: number;
  uid: number;
  gid: number;
  size: number;
  mtime: number;
  typeflag: string;
  linkname: string;
  uname: string;
  gname: string;
  devmajor: number;
  devminor: number;
  prefix: string;
  bigNumbers: 'pax' | 'base256';
  gnuMagic?: boolean;
}

function rawHeader(h: RawHeader): Buffer {
  const b = Buffer.alloc(BLOCK);
  writeStr(b, 0, 100, h.name);
  writeNum(b, 100, 8, h.mode, 'pax');
  writeNum(b, 108, 8, h.uid, h.bigNumbers);
  writeNum(b, 116, 8, h.gid, h.bigNumbers);
  writeNum(b, 124, 12, h.size, 'pax');
  writeNum(b, 136, 12, h.mtime, 'pax');
  b.fill(0x20, 148, 156); // checksum placeholder: spaces
  b.write(h.typeflag, 156, 1, 'latin1');
  writeStr(b, 157, 100, h.linkname);
  if (h.gnuMagic) {
    b.write('ustar  \0', 257, 8, 'latin1');
  } else {
    b.write('ustar\0', 257, 6, 'latin1');
    b.write('00', 263, 2, 'latin1');
  }
  writeStr(b, 265, 32, h.uname);
  writeStr(b, 297, 32, h.gname);
  writeNum(b, 329, 8, h.devmajor, 'pax');
  writeNum(b, 337, 8, h.devminor, 'pax');
  writeStr(b, 345, 155, h.prefix);
  let sum = 0;
  for (let i = 0; i < BLOCK; i++) sum += b[i]!;
  b.write(sum.toString(8).padStart(6, '0') + '\0 ', 148, 8, 'latin1');
  return b;
}

/** `s` holds one char per byte (ASCII, or UTF-8 bytes made into a latin1 string). */
function writeStr(b: Buffer, off: number, len: number, s: string): void {
  if (!/^[\x00-\xff]*$/.test(s)) throw new Error(`tar-writer: field value "${s}" is not byte-encoded`);
  const bytes = Buffer.from(s, 'latin1');
  if (bytes.length > len) throw new Error(`tar-writer: "${s}" does not fit in ${len} bytes`);
  bytes.copy(b, off);
}

/** Octal, width-1 digits + NUL; base-256 (GNU) when asked and needed. */
function writeNum(b: Buffer, off: number, len: number, v: number, big: 'pax' | 'base256'): void {
  const max = 8 ** (len - 1) - 1;
  if (v >= 0 && v <= max) {
    b.write(v.toString(8).padStart(len - 1, '0') + '\0', off, len, 'latin1');
    return;
  }
  if (big !== 'base256' || v < 0) throw new Error(`tar-writer: ${v} does not fit in a ${len}-byte field`);
  b[off] = 0x80;
  let x = BigInt(v);
  for (let i = off + len - 1; i > off; i--) {
    b[i] = Number(x & 0xffn);
    x >>= 8n;
  }
}
