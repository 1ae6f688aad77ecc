// Summarise a directory tree (lstat with ns times, symlink targets, devices,
// xattrs via one recursive getfattr call, sha256 of files) and diff two such
// summaries into readable lines: compare an umoci unpack against a clip mount.

import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { lstat, readdir, readlink } from 'node:fs/promises';
import { join, resolve } from 'node:path';

export interface EntrySummary {
  type: 'file' | 'dir' | 'symlink' | 'char' | 'block' | 'fifo' | 'socket';
  /** 12 permission bits incl. setuid/setgid/sticky. */
  mode: number;
  uid: number;
  gid: number;
  /** Files: byte length; symlinks: target length (bytes); everything else 0. */
  size: number;
  mtimeNs: bigint;
  /** st_nlink as reported (files: link count; dirs: normally 2 + number of subdirectories). */
  nlink: number;
  target?: string;
  rdev?: { major: number; minor: number };
  /** xattr name -> hex value. */
  xattrs: Record<string, string>;
  sha256?: string;
}

export type TreeSummary = Map<string, EntrySummary>;

export interface WalkOptions {
  /** Read xattrs with getfattr (default true). */
  xattrs?: boolean;
  /** Hash file contents (default true). */
  hash?: boolean;
}

/** Walk `root` (not following symlinks). Keys: relative paths without leading "/", "" = root. */
export async function walkTree(root: string, opts: WalkOptions = {}): Promise<TreeSummary> {
  const absRoot = resolve(root);
  const out: TreeSummary = new Map();
  const visit = async (rel: string): Promise<void> => {
    const abs = rel === '' ? absRoot : join(absRoot, rel);
    const st = await lstat(abs, { bigint: true });
    const type = fileType(st);
    const e: EntrySummary = {
      type,
      mode: Number(st.mode & 0o7777n),
      uid: Number(st.uid),
      gid: Number(st.gid),
      size: 0,
      mtimeNs: st.mtimeNs,
      nlink: Number(st.nlink),
      xattrs: {},
    };
    if (type === 'file') {
      e.size = Number(st.size);
      if (opts.hash !== false) e.sha256 = await hashFile(abs);
    } else if (type === 'symlink') {
      const target = await readlink(abs, { encoding: 'buffer' });
      e.size = target.length;
      e.target = target.toString('utf8');
    } else if (type === 'char' || type === 'block') {
      e.rdev = splitDev(st.rdev);
    }
    out.set(rel, e);
    if (type === 'dir') {
      const names = (await readdir(abs)).sort();
      for (const n of names) await visit(rel === '' ? n : `${rel}/${n}`);
    }
  };
  await visit('');
  if (opts.xattrs !== false) {
    for (const [path, attrs] of await readAllXattrs(absRoot)) {
      const e = out.get(path);
      if (e) e.xattrs = attrs;
    }
  }
  return out;
}

function fileType(st: {
  isFile(): boolean;
  isDirectory(): boolean;
  isSymbolicLink(): boolean;
  isCharacterDevice(): boolean;
  isBlockDevice(): boolean;
  isFIFO(): boolean;
}): EntrySummary['type'] {
  if (st.isFile()) return 'file';
  if (st.isDirectory()) return 'dir';
  if (st.isSymbolicLink()) return 'symlink';
  if (st.isCharacterDevice()) return 'char';
  if (st.isBlockDevice()) return 'block';
  if (st.isFIFO()) return 'fifo';
  return 'socket';
}

/** Linux dev_t encoding (glibc gnu_dev_major/minor). */
export function splitDev(dev: bigint): { major: number; minor: number } {
  const major = ((dev >> 8n) & 0xfffn) | ((dev >> 32n) & ~0xfffn);
  const minor = (dev & 0xffn) | ((dev >> 12n) & ~0xffn);
  return { major: Number(major), minor: Number(minor) };
}

async function hashFile(path: string): Promise<string> {
  const h = createHash('sha256');
  for await (const chunk of createReadStream(path)) h.update(chunk as Buffer);
  return h.digest('hex');
}

/** getfattr prints odd bytes as \ooo (C locale); turn them back into the raw bytes. */
function unescapeGetfattr(s: Buffer): string {
  const bytes: number[] = [];
  for (let i = 0; i < s.length; i++) {
    if (s[i] === 0x5c && i + 3 < s.length && /^[0-7]{3}$/.test(s.subarray(i + 1, i + 4).toString('latin1'))) {
      bytes.push(parseInt(s.subarray(i + 1, i + 4).toString('latin1'), 8));
      i += 3;
    } else {
      bytes.push(s[i]!);
    }
  }
  return Buffer.from(bytes).toString('utf8');
}

/** One `getfattr -R` for the whole tree: relative path -> {name: hex}. */
export async function readAllXattrs(root: string): Promise<Map<string, Record<string, string>>> {
  const absRoot = resolve(root);
  const stdout = await new Promise<Buffer>((res, rej) => {
    execFile(
      'getfattr',
      ['-R', '-d', '-m', '-', '-e', 'hex', '--absolute-names', '-h', absRoot],
      { encoding: 'buffer', maxBuffer: 1 << 28, env: { ...process.env, LC_ALL: 'C' } },
      (err, out, errOut) => {
        if (err) rej(new Error(`getfattr failed: ${err.message}\n${errOut.toString()}`));
        else res(out);
      },
    );
  });
  const result = new Map<string, Record<string, string>>();
  let current: Record<string, string> | undefined;
  let start = 0;
  while (start < stdout.length) {
    let end = stdout.indexOf(0x0a, start);
    if (end < 0) end = stdout.length;
    const line = stdout.subarray(start, end);
    start = end + 1;
    if (line.length === 0) continue;
    if (line.subarray(0, 8).toString('latin1') === '# file: ') {
      const abs = unescapeGetfattr(line.subarray(8));
      const rel = abs === absRoot ? '' : abs.startsWith(absRoot + '/') ? abs.slice(absRoot.length + 1) : abs;
      current = {};
      result.set(rel, current);
      continue;
    }
    if (!current) continue;
    const eq = line.indexOf(0x3d);
    const name = unescapeGetfattr(eq < 0 ? line : line.subarray(0, eq));
    let value = eq < 0 ? '' : line.subarray(eq + 1).toString('latin1');
    if (value.startsWith('0x')) value = value.slice(2);
    else if (value === '""') value = '';
    current[name] = value.toLowerCase();
  }
  return result;
}

export type SummaryField = keyof EntrySummary;
export const ALL_FIELDS: SummaryField[] = ['type', 'mode', 'uid', 'gid', 'size', 'mtimeNs', 'nlink', 'target', 'rdev', 'xattrs', 'sha256'];

export interface CompareOptions {
  /** Paths to leave out entirely (on both sides). */
  ignore?: (path: string) => boolean;
  /** Fields to compare (default ALL_FIELDS). */
  fields?: SummaryField[];
  /** Skip one field for one path (e.g. mtimeNs of implicit dirs). */
  ignoreField?: (path: string, field: SummaryField, expected: EntrySummary) => boolean;
  /** Stop after this many differences (default 200). */
  max?: number;
}

function show(field: SummaryField, v: unknown): string {
  if (v === undefined) return 'undefined';
  if (field === 'mode') return '0o' + (v as number).toString(8);
  if (field === 'mtimeNs') {
    const ns = v as bigint;
    const sec = ns / 1000000000n;
    const frac = (ns % 1000000000n).toString().padStart(9, '0');
    const iso = new Date(Number(sec) * 1000).toISOString().replace('.000Z', '');
    return `${iso}.${frac}Z (${ns}ns)`;
  }
  if (field === 'rdev') {
    const r = v as { major: number; minor: number };
    return `${r.major}:${r.minor}`;
  }
  if (typeof v === 'object') return JSON.stringify(v, Object.keys(v as object).sort());
  return JSON.stringify(v);
}

function equal(field: SummaryField, a: unknown, b: unknown): boolean {
  return show(field, a) === show(field, b);
}

/** Differences between two tree summaries, one readable line each; [] = equal. */
export function compareTrees(expected: TreeSummary, actual: TreeSummary, opts: CompareOptions = {}): string[] {
  const diffs: string[] = [];
  const max = opts.max ?? 200;
  const fields = opts.fields ?? ALL_FIELDS;
  const ignore = opts.ignore ?? (() => false);
  const label = (p: string): string => (p === '' ? '/' : p);
  const paths = [...new Set([...expected.keys(), ...actual.keys()])].sort();
  for (const p of paths) {
    if (diffs.length >= max) {
      diffs.push(`... stopped after ${max} differences`);
      break;
    }
    if (ignore(p)) continue;
    const e = expected.get(p);
    const a = actual.get(p);
    if (!a) {
      diffs.push(`${label(p)}: missing (expected ${e!.type})`);
      continue;
    }
    if (!e) {
      diffs.push(`${label(p)}: unexpected ${a.type}`);
      continue;
    }
    if (fields.includes('type') && e.type !== a.type) {
      diffs.push(`${label(p)}: type: expected ${e.type}, got ${a.type}`);
      continue;
    }
    for (const f of fields) {
      if (f === 'type' || opts.ignoreField?.(p, f, e)) continue;
      if (!equal(f, e[f], a[f])) diffs.push(`${label(p)}: ${f}: expected ${show(f, e[f])}, got ${show(f, a[f])}`);
    }
  }
  return diffs;
}
