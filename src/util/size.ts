// Byte sizes as people write them ("4M", "512KiB", "1048576"): one parser for
// the command line and the daemon's config file.

/** The size `s` names in bytes, or undefined when it is not a size. */
export function parseByteSize(s: string): number | undefined {
  const m = /^(\d+)\s*([kmg]?)(i?b)?$/i.exec(s.trim());
  if (!m) return undefined;
  const scale = { '': 1, k: 1024, m: 1024 ** 2, g: 1024 ** 3 }[m[2]!.toLowerCase() as '' | 'k' | 'm' | 'g'];
  return Number(m[1]) * scale;
}

export const SIZE_SYNTAX = 'expected a number with an optional K, M or G suffix';
