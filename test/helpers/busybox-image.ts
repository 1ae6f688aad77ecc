// A runnable fixture image: Debian's static busybox plus a few files, in two
// gzip layers, for containers run by runc on a clip rootfs.

import { readFileSync } from 'node:fs';
import { buildImage, type BuiltImage } from './image-builder.js';
import { createPrng } from './prng.js';
import type { TarEntrySpec } from './tar-writer.js';

export const BUSYBOX = '/bin/busybox';
export const HELLO = 'hello from a clip rootfs\n';
const TOOLS = ['sh', 'cat', 'echo', 'ls', 'sha256sum', 'wc', 'head', 'id', 'stat', 'mkdir', 'touch', 'grep', 'true'];

/** `extra`: a third layer (images that share the first two layers and differ in it); `cmd`: the config's Cmd. */
export function buildBusyboxImage(extra: TarEntrySpec[] = [], tag = 'busybox', cmd = ['/bin/sh']): Promise<BuiltImage> {
  const t = { sec: 1_700_000_000, nsec: 123_456_789 };
  const base: TarEntrySpec[] = [
    ...['bin', 'etc', 'proc', 'sys', 'dev', 'root', 'usr', 'usr/share'].map((path): TarEntrySpec => ({
      type: 'dir',
      path,
      mode: 0o755,
      mtime: t,
    })),
    { type: 'dir', path: 'tmp', mode: 0o1777, mtime: t },
    { type: 'file', path: 'bin/busybox', mode: 0o755, data: readFileSync(BUSYBOX), mtime: t },
    ...TOOLS.map((tool): TarEntrySpec => ({ type: 'symlink', path: `bin/${tool}`, target: 'busybox', mtime: t })),
    { type: 'file', path: 'etc/hello', mode: 0o644, data: HELLO, mtime: t },
    { type: 'file', path: 'etc/passwd', mode: 0o644, data: 'root:x:0:0:root:/root:/bin/sh\n', mtime: t },
  ];
  const prng = createPrng(42);
  const data: TarEntrySpec[] = [
    { type: 'file', path: 'usr/share/data.bin', mode: 0o644, data: prng.compressible(6 * 1024 * 1024), mtime: t },
    { type: 'file', path: 'usr/share/random.bin', mode: 0o600, data: prng.bytes(2 * 1024 * 1024), mtime: t },
  ];
  const layers = [{ entries: base }, { entries: data }, ...(extra.length > 0 ? [{ entries: extra }] : [])];
  return buildImage({ tag, layers, cmd });
}
