// The default bound on inflated spans kept in memory: a share of the
// machine's RAM. One daemon serves every container of a node, and an ML
// start-up touches a working set far bigger than the old fixed 256 MiB:
// `import torch` reads 151 spans of 4 MiB (~640 MB inflated), and with 256 MiB
// a second container re-read (and re-hashed) every span from the disk cache:
// 9.4 CPU-s where a memory cache that holds them needs 0.8 (bench:ml).

/** Share of RAM, and the floor and ceiling of the default. */
const SHARE = 1 / 8;
const FLOOR = 256 * 1024 * 1024;
const CEILING = 4 * 1024 * 1024 * 1024;

/** 1/8 of `totalBytes` of RAM, at least 256 MiB and at most 4 GiB, in whole MiB. */
export function defaultMemoryBound(totalBytes: number): number {
  const share = Math.floor((totalBytes * SHARE) / (1024 * 1024)) * 1024 * 1024;
  return Math.min(CEILING, Math.max(FLOOR, share));
}

/** How config help and docs describe the default. */
export const DEFAULT_MEMORY_BOUND_TEXT = '1/8 of RAM, 256M to 4G';
