// Seeded, deterministic pseudo-random numbers and data for fixtures
// (mulberry32). Same seed -> same bytes on every run and machine.

export interface Prng {
  /** Next uint32. */
  u32(): number;
  /** Float in [0, 1). */
  float(): number;
  /** Integer in [0, n). */
  int(n: number): number;
  /** Integer in [lo, hi] (inclusive). */
  range(lo: number, hi: number): number;
  pick<T>(items: readonly T[]): T;
  /** Incompressible bytes. */
  bytes(n: number): Buffer;
  /** Text-like bytes from a small vocabulary: gzip shrinks them roughly 3-4x. */
  compressible(n: number): Buffer;
}

export function createPrng(seed: number): Prng {
  let s = seed >>> 0;
  const u32 = (): number => {
    s = (s + 0x6d2b79f5) >>> 0;
    let t = s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return (t ^ (t >>> 14)) >>> 0;
  };
  const int = (n: number): number => Math.floor((u32() / 0x100000000) * n);
  let vocab: Buffer[] | undefined;
  const prng: Prng = {
    u32,
    float: () => u32() / 0x100000000,
    int,
    range: (lo, hi) => lo + int(hi - lo + 1),
    pick: (items) => items[int(items.length)]!,
    bytes(n) {
      const b = Buffer.alloc(n);
      let i = 0;
      for (; i + 4 <= n; i += 4) b.writeUInt32LE(u32(), i);
      for (; i < n; i++) b[i] = u32() & 0xff;
      return b;
    },
    compressible(n) {
      if (!vocab) {
        vocab = [];
        for (let w = 0; w < 512; w++) {
          const len = 2 + int(9);
          const word = Buffer.alloc(len + 1);
          for (let i = 0; i < len; i++) word[i] = 0x61 + int(26);
          word[len] = int(8) === 0 ? 0x0a : 0x20;
          vocab.push(word);
        }
      }
      const b = Buffer.alloc(n);
      let off = 0;
      while (off < n) {
        const w = vocab[int(vocab.length)]!;
        off += w.copy(b, off, 0, Math.min(w.length, n - off));
      }
      return b;
    },
  };
  return prng;
}
