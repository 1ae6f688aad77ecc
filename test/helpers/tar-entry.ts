// A TarEntry as the scanner would report it, for tests that build trees
// without a tar stream: a plain file of root's at time 0 unless `extra` says otherwise.

import type { TarEntry } from '../../src/tar/types.js';

export function tarEntry(path: string, extra: Partial<TarEntry> = {}): TarEntry {
  return {
    path,
    type: 'file',
    mode: 0o644,
    uid: 0,
    gid: 0,
    size: 0,
    dataOffset: 0,
    mtime: { sec: 0, nsec: 0 },
    devmajor: 0,
    devminor: 0,
    ...extra,
  };
}
