// Encodes one archive entry as tar header blocks: a ustar header, preceded by
// a PAX extended header whenever ustar cannot hold a field exactly (long or
// non-ASCII names, nanosecond or negative times, big sizes or ids, xattrs as
// SCHILY.xattr.* records). What it writes is what the tar scanner (and GNU
// tar) reads back: the archive's metadata is exact by construction.

import { BLOCK_SIZE } from './header.js';
import type { EntryType, TarEntry, Timespec } from './types.js';

export { BLOCK_SIZE };

const TYPEFLAG = { file: '0', hardlink: '1', symlink: '2', char: '3', block: '4', dir: '5', fifo: '6' } as const;
const MAX_OCTAL_7 = 0o7777777;
const MAX_OCTAL_11 = 0o77777777777;
const NAME_FIELD = 100;

/** An entry's metadata as the tar scanner reports it (TarEntry), with the path and type as written. */
export type HeaderFields = Pick<
  TarEntry,
  'mode' | 'uid' | 'gid' | 'size' | 'mtime' | 'atime' | 'ctime' | 'linkname' | 'devmajor' | 'devminor' | 'xattrs'
> & {
  /** Path as written: "./" for the root, "dir/" for directories, "a/b" otherwise. */
  name: string;
  type: keyof typeof TYPEFLAG;
};

/** Name in the tar for a normalised path: "./" for the root, a trailing "/" for directories. */
export function tarName(path: string, type: EntryType): string {
  if (path === '') return './';
  return type === 'dir' ? `${path}/` : path;
}

/** The header blocks of one entry (PAX header first when needed); data and padding follow them. */
export function encodeHeader(h: HeaderFields): Buffer {
  const pax: [string, Buffer][] = [];
  const name = fitsUstar(h.name) ? h.name : (pax.push(['path', Buffer.from(h.name, 'utf8')]), asciiStub(h.name));
  let linkname = h.linkname ?? '';
  if (!fitsUstar(linkname)) {
    pax.push(['linkpath', Buffer.from(linkname, 'utf8')]);
    linkname = asciiStub(linkname);
  }
  if (h.size > MAX_OCTAL_11) pax.push(['size', Buffer.from(String(h.size))]);
  if (h.uid > MAX_OCTAL_7) pax.push(['uid', Buffer.from(String(h.uid))]);
  if (h.gid > MAX_OCTAL_7) pax.push(['gid', Buffer.from(String(h.gid))]);
  if (h.mtime.nsec !== 0 || h.mtime.sec < 0 || h.mtime.sec > MAX_OCTAL_11) pax.push(['mtime', Buffer.from(formatPaxTime(h.mtime))]);
  if (h.atime) pax.push(['atime', Buffer.from(formatPaxTime(h.atime))]);
  if (h.ctime) pax.push(['ctime', Buffer.from(formatPaxTime(h.ctime))]);
  for (const [key, value] of h.xattrs ?? []) pax.push([`SCHILY.xattr.${key}`, value]);
  if (h.devmajor > MAX_OCTAL_7 || h.devminor > MAX_OCTAL_7)
    throw new RangeError(`device ${h.devmajor}:${h.devminor} of ${h.name} does not fit a tar header`);

  const header = ustar({
    name,
    mode: h.mode & 0o7777,
    uid: h.uid > MAX_OCTAL_7 ? 0 : h.uid,
    gid: h.gid > MAX_OCTAL_7 ? 0 : h.gid,
    size: h.size > MAX_OCTAL_11 ? 0 : h.size,
    mtime: h.mtime.sec < 0 ? 0 : Math.min(h.mtime.sec, MAX_OCTAL_11),
    typeflag: TYPEFLAG[h.type],
    linkname,
    devmajor: h.devmajor,
    devminor: h.devminor,
  });
  if (pax.length === 0) return header;
  const records = paxRecords(pax);
  const paxHeader = ustar({
    name: asciiStub(`PaxHeaders/${h.name.replace(/\/$/, '').split('/').pop() || 'root'}`),
    mode: 0o644,
    uid: 0,
    gid: 0,
    size: records.length,
    mtime: 0,
    typeflag: 'x',
    linkname: '',
    devmajor: 0,
    devminor: 0,
  });
  return Buffer.concat([paxHeader, records, Buffer.alloc(padding(records.length)), header]);
}

/** Zero bytes that follow `size` bytes of data to the next block boundary. */
export function padding(size: number): number {
  const r = size % BLOCK_SIZE;
  return r === 0 ? 0 : BLOCK_SIZE - r;
}

/** Two zero blocks end an archive. */
export const END_OF_ARCHIVE = Buffer.alloc(2 * BLOCK_SIZE);

/** "1234.5" style PAX time; negative times as tar writes them ({-2, 0.75e9} -> "-1.25"). */
export function formatPaxTime(t: Timespec): string {
  let sec = t.sec;
  let nsec = t.nsec;
  let sign = '';
  if (sec < 0 && nsec > 0) {
    sec = sec + 1;
    nsec = 1_000_000_000 - nsec;
  }
  if (sec < 0 || (sec === 0 && t.sec < 0)) {
    sign = '-';
    sec = -sec;
  }
  const frac = nsec === 0 ? '' : '.' + String(nsec).padStart(9, '0').replace(/0+$/, '');
  return `${sign}${sec}${frac}`;
}

/** A name ustar holds exactly: ASCII and at most 100 bytes (prefix splitting is not worth it: PAX is exact). */
function fitsUstar(s: string): boolean {
  return s.length <= NAME_FIELD && /^[\x20-\x7e]*$/.test(s);
}

/** What goes in the ustar field when PAX holds the real value: printable ASCII, short. */
function asciiStub(s: string): string {
  return s.replace(/[^\x20-\x7e]/g, '_').slice(0, NAME_FIELD - 1);
}

/** "LEN key=value\n" records; LEN counts itself. */
function paxRecords(records: [string, Buffer][]): Buffer {
  const parts: Buffer[] = [];
  for (const [key, value] of records) {
    const rest = Buffer.byteLength(key) + value.length + 3; // " " "=" "\n"
    let len = rest + 1;
    while (len !== rest + String(len).length) len = rest + String(len).length;
    parts.push(Buffer.from(`${len} ${key}=`), value, Buffer.from('\n'));
  }
  return Buffer.concat(parts);
}

interface UstarFields {
  name: string;
  mode: number;
  uid: number;
  gid: number;
  size: number;
  mtime: number;
  typeflag: string;
  linkname: string;
  devmajor: number;
  devminor: number;
}

function ustar(f: UstarFields): Buffer {
  const b = Buffer.alloc(BLOCK_SIZE);
  b.write(f.name, 0, NAME_FIELD, 'latin1');
  octal(b, 100, 8, f.mode);
  octal(b, 108, 8, f.uid);
  octal(b, 116, 8, f.gid);
  octal(b, 124, 12, f.size);
  octal(b, 136, 12, f.mtime);
  b.write(f.typeflag, 156, 1, 'latin1');
  b.write(f.linkname, 157, NAME_FIELD, 'latin1');
  b.write('ustar\x0000', 257, 8, 'latin1');
  octal(b, 329, 8, f.devmajor);
  octal(b, 337, 8, f.devminor);
  // The checksum counts its own field as spaces.
  b.fill(0x20, 148, 156);
  let sum = 0;
  for (const byte of b) sum += byte;
  b.write(sum.toString(8).padStart(6, '0') + '\0 ', 148, 8, 'latin1');
  return b;
}

function octal(b: Buffer, at: number, width: number, value: number): void {
  b.write(value.toString(8).padStart(width - 1, '0') + '\0', at, width, 'latin1');
}
