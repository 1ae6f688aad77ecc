// A FUSE mount (clip's own FUSE library, in the test process) whose files
// fail the way a dying disk or a broken network filesystem does: reads that
// answer EIO from the first byte, or only past some offset. For tests of
// what readers of such files do (clip archive reports and skips them).

import { mkdir } from 'node:fs/promises';
import { attr, FuseError, serveFuse, type DirEntry, type Entry, type FileSystem, type FuseServer } from '../../src/fuse/index.js';

export interface EioFile {
  name: string;
  data: Buffer;
  /** Reads at or past this offset answer EIO (0: every read). Infinity: a healthy file. */
  failFrom: number;
}

const S_IFDIR = 0o040000;
const S_IFREG = 0o100000;

/** Mounts a directory of `files` at `mountpoint` (created if needed); close() unmounts. */
export async function mountEioFs(mountpoint: string, files: EioFile[]): Promise<FuseServer> {
  await mkdir(mountpoint, { recursive: true });
  const byIno = new Map(files.map((f, i) => [i + 2, f]));
  const byName = new Map(files.map((f, i) => [f.name, i + 2]));
  const attrOf = (ino: number) => {
    if (ino === 1) return attr({ ino, mode: S_IFDIR | 0o755, nlink: 2 });
    const f = byIno.get(ino);
    if (!f) throw new FuseError('ENOENT');
    return attr({ ino, mode: S_IFREG | 0o644, size: f.data.length });
  };
  const entry = (ino: number): Entry => ({ attr: attrOf(ino), entryTimeout: 1, attrTimeout: 1 });
  const filesystem: FileSystem = {
    lookup(parent, name) {
      const ino = parent === 1 ? byName.get(name) : undefined;
      if (ino === undefined) throw new FuseError('ENOENT');
      return entry(ino);
    },
    getattr: (ino) => ({ attr: attrOf(ino), timeout: 1 }),
    // Direct I/O: every read(2) reaches read() below, none is served from (or read ahead into) the page cache.
    open: () => ({ directIo: true }),
    read(ino, _fh, offset, size) {
      const f = byIno.get(ino);
      if (!f) throw new FuseError('ENOENT');
      if (offset + size > f.failFrom && offset < f.data.length) throw new FuseError('EIO');
      return f.data.subarray(offset, offset + size);
    },
    readdir(ino, _fh, offset) {
      if (ino !== 1) throw new FuseError('ENOTDIR');
      const list: DirEntry[] = [
        { name: '.', ino: 1, mode: S_IFDIR, nextOffset: 1 },
        { name: '..', ino: 1, mode: S_IFDIR, nextOffset: 2 },
        ...files.map((f, i) => ({ name: f.name, ino: i + 2, mode: S_IFREG, nextOffset: i + 3 })),
      ];
      return list.slice(offset);
    },
  };
  return serveFuse(mountpoint, filesystem, { fsname: 'clip-test-eio', subtype: 'clip-test' });
}
