// The toy tree of the takeover test, the same in every process that needs it:
// the serving children (to serve it) and the reader (to check every byte).
// Contents are a function of the file's index alone, so any generation of the
// server serves the same bytes under the same inode numbers.

import { createPrng } from './prng.js';

export interface TreeFile {
  name: string;
  ino: number;
  size: number;
  /** Opened with direct_io: every read(2) reaches the server (the test holds these). */
  direct: boolean;
}

const SIZES = [1, 100, 4095, 4096, 4097, 65_536, 131_079, 300_000, 1_048_579, 2_000_001];

/** Regular files under the root (inode 1), inodes 2.. in order; the last one is the file the servers hold. */
export const FILES: readonly TreeFile[] = [
  ...SIZES.map((size, i) => ({ name: `f${String(i).padStart(2, '0')}`, ino: 2 + i, size, direct: false })),
  { name: 'hold', ino: 2 + SIZES.length, size: 200_000, direct: true },
];

export const HOLD = FILES[FILES.length - 1]!;

const cache = new Map<number, Buffer>();

/** The bytes of a file, from its inode number. */
export function contentOf(f: TreeFile): Buffer {
  let b = cache.get(f.ino);
  if (!b) {
    b = createPrng(0x5eed + f.ino).bytes(f.size);
    cache.set(f.ino, b);
  }
  return b;
}
