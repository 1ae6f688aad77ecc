// Fixture images as layer specs for image-builder: 'everything' (every tar and
// overlay feature we care about), 'large' (thousands of files, random access)
// and 'zstd'. All content is deterministic (seeded PRNG, fixed timestamps).

import { buildImage, type BuildImageOptions, type BuiltImage, type LayerSpec } from './image-builder.js';
import { createPrng } from './prng.js';
import type { TarEntrySpec, TarTime } from './tar-writer.js';

export type FixtureName = 'everything' | 'large' | 'zstd';

export function fixtureLayers(name: FixtureName): LayerSpec[] {
  switch (name) {
    case 'everything':
      return everythingLayers();
    case 'large':
      return largeLayers();
    case 'zstd':
      return zstdLayers();
  }
}

/** Build a fixture into an OCI layout (a new temp dir unless opts.dir); tag defaults to the fixture name. Caller removes img.dir. */
export function buildFixture(name: FixtureName, opts: Omit<BuildImageOptions, 'layers'> = {}): Promise<BuiltImage> {
  return buildImage({ tag: name, ...opts, layers: fixtureLayers(name) });
}

/**
 * Paths whose mtime umoci does not take from the tar (it uses the unpack time):
 * the root and directories that only exist implicitly. Skip mtimeNs for them
 * when comparing against an umoci unpack.
 */
export function unstableMtimePaths(name: FixtureName): string[] {
  return name === 'everything' ? ['', ...EVERYTHING.implicitDirs] : [''];
}

/** A security.capability value exactly as `setcap cap_net_bind_service=+ep` writes it (VFS_CAP_REVISION_2). */
export function capabilityV2(caps: number[], effective = true): Buffer {
  const b = Buffer.alloc(20);
  b.writeUInt32LE(0x02000000 | (effective ? 1 : 0), 0);
  let lo = 0;
  let hi = 0;
  for (const c of caps) {
    if (c < 32) lo |= 1 << c;
    else hi |= 1 << (c - 32);
  }
  b.writeUInt32LE(lo >>> 0, 4); // permitted[0]
  b.writeUInt32LE(0, 8); // inheritable[0]
  b.writeUInt32LE(hi >>> 0, 12); // permitted[1]
  b.writeUInt32LE(0, 16); // inheritable[1]
  return b;
}
export const CAP_NET_BIND_SERVICE = 10;

const LONG_A = 'a'.repeat(60);
const LONG_B = 'b'.repeat(60);
const C80 = (c: string): string => c.repeat(80);
const DEEP_DIRS = [
  'long/deep',
  `long/deep/${C80('1')}`,
  `long/deep/${C80('1')}/${C80('2')}`,
  `long/deep/${C80('1')}/${C80('2')}/${C80('3')}`,
];
const DEEP_FILE = `${DEEP_DIRS[3]}/${C80('4')}/file-at-depth.txt`;
const NAME_MAX = 'n'.repeat(251) + '.txt'; // exactly 255 bytes

/**
 * Notable paths of the 'everything' image (normalised: no "./", no trailing "/")
 * and what the merged filesystem must show for them. umoci unpack is the reference.
 */
export const EVERYTHING = {
  /** Whited out (.wh.del-file.txt) in layer 1: absent. */
  deletedFile: 'del-file.txt',
  /** Whited out (.wh.del-dir) in layer 1 together with its whole subtree. */
  deletedDir: 'del-dir',
  deletedDirChildren: ['del-dir/a.txt', 'del-dir/sub', 'del-dir/sub/b.txt', 'del-dir/sub/link'],
  /** Opaque in layer 1: lower children gone; same-layer children before AND after the marker stay. */
  opaqueDir: 'opq',
  opaqueHidden: ['opq/lower1.txt', 'opq/lowersub', 'opq/lowersub/x.txt'],
  opaqueVisible: ['opq/new-before.txt', 'opq/new-after.txt', 'opq/keep-name.txt'],
  /** opq/keep-name.txt exists in layers 0 and 1; layer 1's content wins. */
  opaqueKeepNameContent: 'keep-name from layer 1\n',
  /** Lower file replaced by an upper dir (layer 2), lower dir replaced by an upper file. */
  fileToDir: 'file-to-dir',
  fileToDirChild: 'file-to-dir/inside.txt',
  dirToFile: 'dir-to-file',
  dirToFileGoneChildren: ['dir-to-file/child.txt', 'dir-to-file/sub'],
  /**
   * Hardlink tar entries carry their own (later) mtimes on purpose: umoci ignores
   * a hardlink entry's metadata, the inode keeps the first name's.
   * 3 names in layer 0, links/hard2.txt whited out in layer 1: nlink 2.
   */
  hardlinkSurvivors: ['links/orig.txt', 'links/hard1.txt'],
  hardlinkWhitedOut: 'links/hard2.txt',
  /** Two names in one layer, nothing removed: nlink 2. */
  hardlinkPair: ['links/pair-a', 'links/pair-b'],
  /** 3 names in layer 0; the first one (whose tar entry carries the data) is whited out in layer 3. */
  hardlinkTargetWhitedOut: 'links/t-orig',
  hardlinkTargetSurvivors: ['links/t-link1', 'links/t-link2'],
  /** Hardlink with long name and long target (both PAX). */
  hardlinkLong: [`long/${LONG_A}/${LONG_B}/file.txt`, `long/${LONG_A}/${LONG_B}/hardlink-to-file.txt`],
  symlinks: {
    'usr/bin/sh': 'busybox',
    'links/abs': '/etc/hostname',
    'links/dangling': '../does/not/exist',
    'links/dir-link': '../usr/lib',
    bin: 'usr/bin',
    'unicode/link-ü': 'héllo-世界.txt',
    /** Relative to long/, > 100 bytes (PAX linkpath). */
    'long/symlink-long-target': DEEP_FILE.slice('long/'.length),
  } as Record<string, string>,
  longPaxPath: `long/${LONG_A}/${LONG_B}/file.txt`,
  longPrefixPath: `long/prefix-split/${'p'.repeat(90)}/${'q'.repeat(50)}.txt`,
  longGnuPath: `long/gnu-${'g'.repeat(120)}.txt`,
  deepPath: DEEP_FILE,
  nameMaxPath: `long/${NAME_MAX}`,
  /** Created in layer 2 and whited out (long .wh. name, PAX) in layer 3. */
  longWhitedOut: `long/${'w'.repeat(150)}`,
  unicode: [
    'unicode/raw-ütf8-gnu.txt',
    'unicode/héllo-世界.txt',
    'unicode/🎉-party.txt',
    'unicode/ünïcödé-dir',
    'unicode/ünïcödé-dir/ñ.txt',
    'unicode/caf\u00e9',
    'unicode/cafe\u0301',
  ],
  /** security.capability (cap_net_bind_service=+ep) and user.comment. */
  capFile: 'usr/bin/ping',
  capValue: capabilityV2([CAP_NET_BIND_SERVICE]),
  xattrDir: 'data/xattr-dir',
  xattrFile: 'data/xattr-file',
  devices: {
    'dev/null': { type: 'char', major: 1, minor: 3 },
    'dev/zero': { type: 'char', major: 1, minor: 5 },
    'dev/sda': { type: 'block', major: 8, minor: 0 },
    'dev/loop0': { type: 'block', major: 7, minor: 0 },
  } as Record<string, { type: 'char' | 'block'; major: number; minor: number }>,
  fifo: 'run/fifo',
  modes: {
    'usr/bin/su': 0o4755,
    'usr/bin/wall': 0o2755,
    'usr/bin/suid-sgid': 0o6755,
    tmp: 0o1777,
    'srv/shared': 0o2775,
    'srv/sticky-setgid': 0o3777,
    'home/user': 0o700,
    'etc/hostname': 0o600,
  } as Record<string, number>,
  ids: {
    'ids/user1000': [1000, 1000],
    'ids/nobody': [65534, 65534],
    'ids/big': [123456, 123456],
    'ids/huge-pax': [3000000, 4000000],
    'ids/huge-base256': [2500000, 2600000],
    'home/user': [1000, 1000],
  } as Record<string, [number, number]>,
  emptyFile: 'empty.txt',
  largeFile: 'data/large.bin',
  largeFileSize: 20 * 1024 * 1024,
  /** Replaced content in layer 2. */
  modifiedFile: 'etc/motd',
  modifiedFileContent: 'motd from layer 2\n',
  /** Same content, mode/mtime changed in layer 2. */
  metadataOnlyChange: 'etc/hostname',
  /** File whose parent dirs have no tar entry (layer 2). */
  implicitFile: 'implicit/a/b/c/file.txt',
  /** Directories that exist only implicitly: umoci makes them 0755 root:root, mtime = unpack time. */
  implicitDirs: ['implicit', 'implicit/a', 'implicit/a/b', 'implicit/a/b/c', 'recreate'],
  /** Whited out and re-populated in the same layer (whiteout first): only new.txt survives. */
  recreatedDir: 'recreate',
  recreatedChild: 'recreate/new.txt',
  recreatedGone: 'recreate/old.txt',
  farFuture: 'times/far-future',
  layerCount: 4,
};

let clock = 0;
/** Deterministic, distinct mtimes with nanoseconds (some with trailing zeros, some whole). */
function nextTime(): TarTime {
  clock++;
  const nsec = clock % 7 === 0 ? 0 : clock % 5 === 0 ? 500000000 : (clock * 123456791) % 1000000000;
  return { sec: 1700000000 + clock * 61, nsec };
}

type Spec = TarEntrySpec;
function withTimes(entries: Spec[]): Spec[] {
  return entries.map((e) => (e.mtime ? e : { ...e, mtime: nextTime() }));
}

export function everythingLayers(): LayerSpec[] {
  clock = 0;
  const prng = createPrng(0xc11b);
  const dir = (path: string, extra: Partial<Spec> = {}): Spec => ({ type: 'dir', path, ...extra }) as Spec;
  const file = (path: string, data: string | Buffer, extra: Partial<Spec> = {}): Spec => ({ type: 'file', path, data, ...extra }) as Spec;
  const symlink = (path: string, target: string): Spec => ({ type: 'symlink', path, target });
  const hardlink = (path: string, target: string): Spec => ({ type: 'hardlink', path, target });
  const wh = (path: string): Spec => ({ type: 'file', path, data: '' });

  // Layer 0: base system, written the way `tar -C rootfs -c .` does ("./" prefixes).
  const base: Spec[] = [
    dir('./'),
    symlink('./bin', 'usr/bin'),
    dir('./etc'),
    file('./etc/hostname', 'clip-fixture\n'),
    file('./etc/passwd', 'root:x:0:0:root:/root:/bin/sh\nuser:x:1000:1000::/home/user:/bin/sh\nnobody:x:65534:65534::/:/bin/false\n'),
    file('./etc/motd', 'motd from layer 0\n'),
    dir('./usr'),
    dir('./usr/bin'),
    dir('./usr/lib'),
    file('./usr/lib/libfake.so.1', prng.bytes(10000), { mode: 0o755 }),
    file('./usr/bin/busybox', prng.bytes(65536), { mode: 0o755 }),
    symlink('./usr/bin/sh', 'busybox'),
    file('./usr/bin/su', 'su binary\n', { mode: 0o4755 }),
    file('./usr/bin/wall', 'wall binary\n', { mode: 0o2755, gid: 5, gname: 'tty' }),
    file('./usr/bin/suid-sgid', 'both\n', { mode: 0o6755 }),
    dir('./tmp', { mode: 0o1777 }),
    dir('./srv'),
    dir('./srv/shared', { mode: 0o2775, gid: 100, gname: 'users' }),
    dir('./srv/sticky-setgid', { mode: 0o3777 }),
    dir('./var'),
    dir('./var/lib'),
    file('./var/lib/state', prng.compressible(3000)),
    file('./del-file.txt', 'to be deleted\n'),
    dir('./del-dir'),
    file('./del-dir/a.txt', 'a\n'),
    dir('./del-dir/sub'),
    file('./del-dir/sub/b.txt', 'b\n'),
    symlink('./del-dir/sub/link', '../a.txt'),
    dir('./opq'),
    file('./opq/lower1.txt', 'lower 1\n'),
    file('./opq/keep-name.txt', 'keep-name from layer 0\n'),
    dir('./opq/lowersub'),
    file('./opq/lowersub/x.txt', 'x\n'),
    file('./file-to-dir', 'I am a file in layer 0\n'),
    dir('./dir-to-file'),
    file('./dir-to-file/child.txt', 'child\n'),
    dir('./dir-to-file/sub'),
    dir('./links'),
    file('./links/orig.txt', 'hardlinked content\n'),
    hardlink('./links/hard1.txt', './links/orig.txt'),
    hardlink('./links/hard2.txt', './links/orig.txt'),
    file('./links/pair-a', 'pair\n'),
    hardlink('./links/pair-b', './links/pair-a'),
    file('./links/t-orig', 'target name gets whited out\n'),
    hardlink('./links/t-link1', './links/t-orig'),
    hardlink('./links/t-link2', './links/t-orig'),
    symlink('./links/abs', '/etc/hostname'),
    symlink('./links/dangling', '../does/not/exist'),
    symlink('./links/dir-link', '../usr/lib'),
    file('./empty.txt', ''),
    dir('./ids'),
    file('./ids/user1000', 'u\n', { uid: 1000, gid: 1000, uname: 'user', gname: 'user' }),
    file('./ids/nobody', 'n\n', { uid: 65534, gid: 65534, uname: 'nobody', gname: 'nogroup' }),
    file('./ids/big', 'b\n', { uid: 123456, gid: 123456 }),
    file('./ids/huge-pax', 'h\n', { uid: 3000000, gid: 4000000 }),
    file('./ids/huge-base256', 'h\n', { uid: 2500000, gid: 2600000, bigNumbers: 'base256' }),
    dir('./home'),
    dir('./home/user', { mode: 0o700, uid: 1000, gid: 1000 }),
    file('./home/user/.profile', 'export PS1=x\n', { uid: 1000, gid: 1000 }),
    dir('./recreate'),
    file('./recreate/old.txt', 'old\n'),
  ];

  // Layer 1: deletions, opaque dir, devices, xattrs, unicode, the large file.
  const changes: Spec[] = [
    wh('.wh.del-file.txt'),
    wh('.wh.del-dir'),
    dir('opq'),
    file('opq/new-before.txt', 'written before the opaque marker\n'),
    wh('opq/.wh..wh..opq'),
    file('opq/new-after.txt', 'written after the opaque marker\n'),
    file('opq/keep-name.txt', 'keep-name from layer 1\n'),
    wh('links/.wh.hard2.txt'),
    file('usr/bin/ping', 'ping binary\n', {
      mode: 0o755,
      xattrs: { 'security.capability': capabilityV2([CAP_NET_BIND_SERVICE]), 'user.comment': Buffer.from('ping binary') },
    }),
    dir('data'),
    dir('data/xattr-dir', { xattrs: { 'user.dirattr': Buffer.from([0, 1, 2, 0xfe, 0xff, 0]) } }),
    file('data/xattr-file', 'xattrs\n', {
      xattrs: {
        'user.one': Buffer.from('1'),
        'user.binary': Buffer.from([0x00, 0x0a, 0x3d, 0x80, 0xff]),
        'user.long-value': Buffer.from('v'.repeat(1000)),
      },
    }),
    file('data/large.bin', prng.compressible(EVERYTHING.largeFileSize)),
    dir('dev'),
    { type: 'char', path: 'dev/null', devmajor: 1, devminor: 3, mode: 0o666 },
    { type: 'char', path: 'dev/zero', devmajor: 1, devminor: 5, mode: 0o666 },
    { type: 'block', path: 'dev/sda', devmajor: 8, devminor: 0, mode: 0o660, gid: 6, gname: 'disk' },
    { type: 'block', path: 'dev/loop0', devmajor: 7, devminor: 0, mode: 0o660, gid: 6 },
    dir('run'),
    { type: 'fifo', path: 'run/fifo', mode: 0o620 },
    dir('unicode'),
    file('unicode/héllo-世界.txt', 'unicode name\n'),
    file('unicode/🎉-party.txt', 'emoji name\n'),
    dir('unicode/ünïcödé-dir'),
    file('unicode/ünïcödé-dir/ñ.txt', 'n tilde\n'),
    file('unicode/raw-ütf8-gnu.txt', 'raw UTF-8 in the ustar name field\n', { longNames: 'gnu', mtime: { sec: 1700005000, nsec: 0 } }),
    file('unicode/caf\u00e9', 'NFC\n'),
    file('unicode/cafe\u0301', 'NFD\n'),
    symlink('unicode/link-ü', 'héllo-世界.txt'),
  ];

  // Layer 2 (uncompressed): type replacements, long names, implicit parents, modifications.
  const replace: Spec[] = [
    dir('file-to-dir'),
    file('file-to-dir/inside.txt', 'dir replaced a file\n'),
    file('dir-to-file', 'file replaced a dir\n'),
    file('etc/motd', EVERYTHING.modifiedFileContent),
    file('etc/hostname', 'clip-fixture\n', { mode: 0o600 }),
    dir('long'),
    dir(`long/${LONG_A}`),
    dir(`long/${LONG_A}/${LONG_B}`),
    file(EVERYTHING.longPaxPath, 'long pax path\n'),
    hardlink(EVERYTHING.hardlinkLong[1]!, EVERYTHING.longPaxPath),
    dir('long/prefix-split', { longNames: 'prefix' }),
    dir(`long/prefix-split/${'p'.repeat(90)}`, { longNames: 'prefix' }),
    file(EVERYTHING.longPrefixPath, 'ustar prefix/name split\n', { longNames: 'prefix' }),
    file(EVERYTHING.longGnuPath, 'GNU long name\n', { longNames: 'gnu', mtime: { sec: 1700006000, nsec: 0 } }),
    ...DEEP_DIRS.map((d) => dir(d)),
    dir(`${DEEP_DIRS[3]}/${C80('4')}`),
    file(DEEP_FILE, 'deep\n'),
    file(EVERYTHING.nameMaxPath, '255-byte name\n'),
    symlink('long/symlink-long-target', EVERYTHING.symlinks['long/symlink-long-target']!),
    file(EVERYTHING.longWhitedOut, 'whited out later\n'),
    file(EVERYTHING.implicitFile, 'parents are implicit\n', { uid: 1000, gid: 1000 }),
    dir('times'),
    file('times/far-future', 'year 2255\n', { mtime: { sec: 9000000000, nsec: 5 } }),
    file('times/whole-second', 'no fraction\n', { mtime: { sec: 1600000000, nsec: 0 } }),
    file('times/max-nsec', 'max\n', { mtime: { sec: 1600000000, nsec: 999999999 } }),
  ];

  // Layer 3: whiteouts of things from layers 0 and 2, a dir re-created after its whiteout.
  const last: Spec[] = [
    wh(`long/.wh.${'w'.repeat(150)}`),
    wh('links/.wh.t-orig'),
    wh('.wh.recreate'),
    file('recreate/new.txt', 'new\n'),
    file('etc/os-release', 'ID=clip-fixture\n'),
  ];

  return [
    { entries: withTimes(base), compression: 'gzip', comment: 'base' },
    { entries: withTimes(changes), compression: 'gzip-multi', members: 7, seed: 7, comment: 'changes' },
    { entries: withTimes(replace), compression: 'none', comment: 'replace' },
    { entries: withTimes(last), compression: 'gzip', comment: 'last' },
  ];
}

export const LARGE = {
  layer0Files: 1500,
  layer1Files: 500,
  /** Multi-MB files: path -> size. */
  bigFiles: {
    'big/a.bin': 5 * 1024 * 1024 + 17,
    'big/b.bin': 3 * 1024 * 1024,
    'big/c.bin': 2 * 1024 * 1024 + 511,
    'big/d.bin': 4 * 1024 * 1024 + 1,
  } as Record<string, number>,
};

/** 2000 files of assorted sizes in 2 layers (gzip, gzip-multi) plus a few multi-MB files. */
export function largeLayers(): LayerSpec[] {
  const prng = createPrng(0x1a26e);
  const t = (i: number): TarTime => ({ sec: 1650000000 + i, nsec: (i * 7919) % 1000000000 });
  const size = (): number => {
    const r = prng.float();
    if (r < 0.05) return 0;
    if (r < 0.45) return prng.int(1024);
    if (r < 0.92) return 1024 + prng.int(15 * 1024);
    return 16 * 1024 + prng.int(112 * 1024);
  };
  const data = (n: number): Buffer => (prng.int(4) === 0 ? prng.bytes(n) : prng.compressible(n));
  const layer = (first: number, count: number, bigs: string[], dirPrefix: string): TarEntrySpec[] => {
    const entries: TarEntrySpec[] = [];
    const dirs = new Set<string>();
    for (let i = first; i < first + count; i++) {
      const d = `${dirPrefix}${String(i % 20).padStart(2, '0')}`;
      if (!dirs.has(d)) {
        dirs.add(d);
        entries.push({ type: 'dir', path: d, mtime: t(i) });
      }
      entries.push({ type: 'file', path: `${d}/file-${String(i).padStart(5, '0')}.dat`, data: data(size()), mtime: t(i) });
    }
    if (bigs.length > 0) {
      entries.push({ type: 'dir', path: 'big', mtime: t(0) });
      for (const b of bigs) entries.push({ type: 'file', path: b, data: data(LARGE.bigFiles[b]!), mtime: t(1) });
    }
    return entries;
  };
  return [
    { entries: layer(0, LARGE.layer0Files, ['big/a.bin', 'big/b.bin', 'big/c.bin'], 'd'), compression: 'gzip' },
    {
      entries: layer(LARGE.layer0Files, LARGE.layer1Files, ['big/d.bin'], 'e'),
      compression: 'gzip-multi',
      members: 9,
      seed: 99,
    },
  ];
}

/** One zstd-compressed layer (for "zstd is not supported yet"). */
export function zstdLayers(): LayerSpec[] {
  const prng = createPrng(0x25d);
  return [
    {
      compression: 'zstd',
      entries: [
        { type: 'dir', path: 'etc', mtime: { sec: 1700000000, nsec: 1 } },
        { type: 'file', path: 'etc/hostname', data: 'zstd\n', mtime: { sec: 1700000000, nsec: 2 } },
        { type: 'file', path: 'blob.bin', data: prng.compressible(100000), mtime: { sec: 1700000000, nsec: 3 } },
      ],
    },
  ];
}
