// Reads the mount table of this process's namespace (/proc/self/mountinfo)
// to tell whether a path is mounted and by what; fields there escape space,
// tab, newline and backslash as octal (\040 ...), which this undoes.

import * as fs from 'node:fs';
import * as path from 'node:path';

export interface MountEntry {
  id: number;
  parentId: number;
  /** "major:minor" of the mounted filesystem (FUSE connections are named by the minor). */
  device: string;
  root: string;
  mountPoint: string;
  options: string;
  fsType: string;
  source: string;
  superOptions: string;
}

/** Undoes mountinfo's octal escapes (\040 space, \011 tab, \012 newline, \134 backslash) on a latin1 field. */
export function unescapeMountField(s: string): string {
  return s.replace(/\\([0-7]{3})/g, (_m, oct: string) => String.fromCharCode(parseInt(oct, 8)));
}

/**
 * Parses mountinfo text (read as latin1 so each byte is one character; fields
 * come back decoded as UTF-8). Malformed lines are skipped.
 */
export function parseMountInfo(text: string): MountEntry[] {
  const out: MountEntry[] = [];
  for (const line of text.split('\n')) {
    if (!line) continue;
    const f = line.split(' ');
    const dash = f.indexOf('-', 6);
    if (dash < 0 || dash + 2 >= f.length) continue;
    const field = (s: string | undefined) => Buffer.from(unescapeMountField(s ?? ''), 'latin1').toString('utf8');
    out.push({
      id: Number(f[0]),
      parentId: Number(f[1]),
      device: f[2]!,
      root: field(f[3]),
      mountPoint: field(f[4]),
      options: f[5]!,
      fsType: field(f[dash + 1]),
      source: field(f[dash + 2]),
      superOptions: f[dash + 3] ?? '',
    });
  }
  return out;
}

/** The mounts of this process's mount namespace, in mount order. */
export function readMounts(file = '/proc/self/mountinfo'): MountEntry[] {
  return parseMountInfo(fs.readFileSync(file, 'latin1'));
}

/**
 * The absolute path the mount table would show for `p`: symlinks in its
 * parent resolved, the last component left alone (stat-ing a dead FUSE mount
 * itself fails with ENOTCONN).
 */
export function canonicalMountPath(p: string): string {
  const abs = path.resolve(p);
  if (abs === '/') return abs;
  try {
    return path.join(fs.realpathSync(path.dirname(abs)), path.basename(abs));
  } catch {
    return abs;
  }
}

/** The topmost mount at `p`, if any. */
export function findMount(p: string, mounts: MountEntry[] = readMounts()): MountEntry | undefined {
  const want = canonicalMountPath(p);
  let found: MountEntry | undefined;
  for (const m of mounts) if (m.mountPoint === want) found = m;
  return found;
}

/** Whether something is mounted at `p` (reads /proc/self/mountinfo; no I/O on `p` itself). */
export function isMounted(p: string): boolean {
  return findMount(p) !== undefined;
}
