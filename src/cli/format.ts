// Human-readable numbers and modes for CLI output.

import { InvalidArgumentError } from 'commander';
import type { Node } from '../image/types.js';
import { parseByteSize, SIZE_SYNTAX } from '../util/size.js';

export function formatBytes(n: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let u = 0;
  while (n >= 1024 && u < units.length - 1) {
    n /= 1024;
    u++;
  }
  return u === 0 ? `${n} B` : `${n.toFixed(1)} ${units[u]}`;
}

/** Parses sizes like "4M", "512KiB", "1048576" (a commander option parser). */
export function parseSize(s: string): number {
  const n = parseByteSize(s);
  if (n === undefined) throw new InvalidArgumentError(`bad size "${s}": ${SIZE_SYNTAX}`);
  return n;
}

const TYPE_CHAR: Record<Node['type'], string> = { file: '-', dir: 'd', symlink: 'l', char: 'c', block: 'b', fifo: 'p' };

/** "drwxr-sr-t" as ls -l prints it. */
export function modeString(type: Node['type'], mode: number): string {
  const rwx = (bits: number, special: boolean, ch: string): string =>
    (bits & 4 ? 'r' : '-') + (bits & 2 ? 'w' : '-') + (special ? (bits & 1 ? ch : ch.toUpperCase()) : bits & 1 ? 'x' : '-');
  return (
    TYPE_CHAR[type] +
    rwx((mode >> 6) & 7, (mode & 0o4000) !== 0, 's') +
    rwx((mode >> 3) & 7, (mode & 0o2000) !== 0, 's') +
    rwx(mode & 7, (mode & 0o1000) !== 0, 't')
  );
}
