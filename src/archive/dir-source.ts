// A local directory as archive entries: walked with lstat only (a fifo or a
// socket is never opened, so nothing blocks), children in name order,
// hardlinks found by device and inode, times in nanoseconds, xattrs from one
// getfattr run. Sockets, names that are not UTF-8 (the index holds UTF-8
// names), and directories that cannot be listed, are reported and skipped; files are opened only when their bytes are written, with
// O_NONBLOCK and O_NOFOLLOW, and re-checked to still be regular files.
// File system calls are synchronous on purpose: archiving is a batch job
// that reads one file at a time, and async calls would each wait behind the
// deflate jobs on the libuv pool (bench:archive: twice as slow on /usr/share).

import { closeSync, constants, fstatSync, lstatSync, openSync, readdirSync, readlinkSync, readSync, type BigIntStats } from 'node:fs';
import path from 'node:path';
import { ClipError } from '../errors.js';
import type { Timespec } from '../tar/types.js';
import type { ArchiveEntry, ArchiveEntryType, FileData, SkipListener } from './types.js';
import { readTreeXattrs, type XattrMap } from './xattrs.js';

const READ_CHUNK = 1024 * 1024;
const NS = 1_000_000_000n;

export interface DirSourceOptions {
  /** Absolute paths left out (the archive being written, its staging files). */
  exclude?: (absPath: string) => boolean;
  /** Read extended attributes (default true; needs getfattr). */
  xattrs?: boolean;
  onSkip?: SkipListener;
}

export interface DirSource {
  entries: ArchiveEntry[];
  /** Bytes of all regular files (progress). */
  fileBytes: number;
}

function timespec(ns: bigint): Timespec {
  let sec = ns / NS;
  let nsec = ns % NS;
  if (nsec < 0n) {
    sec -= 1n;
    nsec += NS;
  }
  return { sec: Number(sec), nsec: Number(nsec) };
}

/** Linux dev_t encoding (glibc gnu_dev_major/minor). */
function splitDev(dev: bigint): { major: number; minor: number } {
  const major = ((dev >> 8n) & 0xfffn) | ((dev >> 32n) & ~0xfffn);
  const minor = (dev & 0xffn) | ((dev >> 12n) & ~0xffn);
  return { major: Number(major), minor: Number(minor) };
}

function typeOf(st: BigIntStats): ArchiveEntryType | 'socket' | undefined {
  if (st.isFile()) return 'file';
  if (st.isDirectory()) return 'dir';
  if (st.isSymbolicLink()) return 'symlink';
  if (st.isCharacterDevice()) return 'char';
  if (st.isBlockDevice()) return 'block';
  if (st.isFIFO()) return 'fifo';
  if (st.isSocket()) return 'socket';
  return undefined;
}

/** A name that is not UTF-8, printable: bytes outside printable ASCII as \\xHH. */
function escapeName(b: Buffer): string {
  let out = '';
  for (const c of b) out += c >= 0x20 && c < 0x7f && c !== 0x5c ? String.fromCharCode(c) : `\\x${c.toString(16).padStart(2, '0')}`;
  return out;
}

function errCode(e: unknown): string {
  return (e as NodeJS.ErrnoException).code ?? (e as Error).message;
}

/** Reads a regular file's bytes; refuses whatever is no longer a regular file by the time it is opened. */
async function openRegular(abs: string, ino: bigint): Promise<FileData> {
  const fd = openSync(abs, constants.O_RDONLY | constants.O_NONBLOCK | constants.O_NOFOLLOW);
  let closed = false;
  const close = async (): Promise<void> => {
    if (!closed) closeSync(fd);
    closed = true;
  };
  try {
    const st = fstatSync(fd, { bigint: true });
    if (!st.isFile() || st.ino !== ino)
      throw Object.assign(new Error('replaced while being archived'), { code: 'replaced while being archived' });
    const size = Number(st.size);
    const chunks = (function* () {
      for (let pos = 0; pos < size;) {
        const buf = Buffer.allocUnsafe(Math.min(READ_CHUNK, size - pos));
        const bytesRead = readSync(fd, buf, 0, buf.length, pos);
        if (bytesRead === 0) return;
        pos += bytesRead;
        yield buf.subarray(0, bytesRead);
      }
    })();
    return { size, chunks, close };
  } catch (e) {
    await close();
    throw e;
  }
}

/** Lists `root` (lstat only) into archive entries, depth first in name order. */
export async function readDirSource(root: string, opts: DirSourceOptions = {}): Promise<DirSource> {
  const abs = path.resolve(root);
  let rootStat;
  try {
    rootStat = lstatSync(abs, { bigint: true });
  } catch (e) {
    throw new ClipError('NOT_FOUND', `cannot archive ${root}: ${errCode(e)}`);
  }
  if (!rootStat.isDirectory()) throw new ClipError('BAD_ARGUMENT', `${root} is not a directory`);
  const xattrs: XattrMap = opts.xattrs === false ? new Map() : await readTreeXattrs(abs);
  const entries: ArchiveEntry[] = [];
  const skip = (rel: string, reason: string): void => opts.onSkip?.({ path: rel === '' ? '.' : rel, reason });
  let fileBytes = 0;

  const visit = async (rel: string, absPath: string, bst: BigIntStats): Promise<void> => {
    const type = typeOf(bst);
    if (type === 'socket') return skip(rel, 'it is a socket (sockets cannot be archived)');
    if (type === undefined) return skip(rel, 'unknown file type');
    const e: ArchiveEntry = {
      path: rel,
      type,
      mode: Number(bst.mode & 0o7777n),
      uid: Number(bst.uid),
      gid: Number(bst.gid),
      mtime: timespec(bst.mtimeNs),
      devmajor: 0,
      devminor: 0,
    };
    const attrs = xattrs.get(absPath);
    if (attrs) e.xattrs = attrs;
    if (type !== 'dir' && bst.nlink > 1n) e.linkKey = `${bst.dev}:${bst.ino}`;
    if (type === 'char' || type === 'block') {
      const d = splitDev(bst.rdev);
      e.devmajor = d.major;
      e.devminor = d.minor;
    }
    if (type === 'symlink') {
      try {
        e.target = readlinkSync(absPath);
      } catch (err) {
        return skip(rel, `cannot read the symlink (${errCode(err)})`);
      }
    }
    if (type === 'file') {
      fileBytes += Number(bst.size);
      const ino = bst.ino;
      e.open = () => openRegular(absPath, ino);
    }
    entries.push(e);
    if (type !== 'dir') return;
    let raw: Buffer[];
    try {
      // As bytes: as strings, a name that is not UTF-8 comes back altered and then "does not exist".
      raw = readdirSync(absPath, { encoding: 'buffer' });
    } catch (err) {
      return skip(rel, `cannot list the directory (${errCode(err)}); its contents are left out`);
    }
    const names: string[] = [];
    for (const b of raw) {
      const name = b.toString('utf8');
      if (Buffer.from(name, 'utf8').equals(b)) names.push(name);
      else
        skip(
          rel === '' ? escapeName(b) : `${rel}/${escapeName(b)}`,
          'its name is not valid UTF-8 (clip archives hold UTF-8 names only; rename it to archive it)',
        );
    }
    names.sort();
    for (const name of names) {
      const childAbs = path.join(absPath, name);
      const childRel = rel === '' ? name : `${rel}/${name}`;
      if (opts.exclude?.(childAbs)) continue;
      let cst;
      try {
        cst = lstatSync(childAbs, { bigint: true });
      } catch (err) {
        skip(childRel, `cannot stat it (${errCode(err)})`);
        continue;
      }
      await visit(childRel, childAbs, cst);
    }
  };
  await visit('', abs, rootStat);
  return { entries, fileBytes };
}
