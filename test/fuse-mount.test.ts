// The FUSE library against the real kernel: an in-memory toy filesystem is
// mounted on a temp dir and checked with ordinary system calls and tools
// (lstat, readdir, read, readlink, getfattr, getcap, stat). Needs root and
// /dev/fuse. Nothing here blocks the event loop: the server runs in this process.

import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { execFile, spawn } from 'node:child_process';
import { once } from 'node:events';
import { randomBytes } from 'node:crypto';
import * as fs from 'node:fs';
import * as fsp from 'node:fs/promises';
import * as path from 'node:path';
import {
  type Attr,
  type DirEntry,
  type Entry,
  type FileSystem,
  type FuseServer,
  type OpenResult,
  type RequestContext,
  type StatFs,
  FuseError,
  InitFlag,
  MountError,
  WANTED_INIT_FLAGS,
  attr,
  forceUnmount,
  fuseMounts,
  isMounted,
  makedev,
  mountFuse,
  serveFuse,
  unmount,
} from '../src/fuse/index.js';
import { clipWorkspace, sweepClipMounts } from './helpers/mounts.js';

const canMount = process.getuid?.() === 0 && fs.existsSync('/dev/fuse');
const skip = canMount ? false : 'needs root and /dev/fuse';

const S_IFDIR = 0o040000;
const S_IFREG = 0o100000;
const S_IFLNK = 0o120000;
const S_IFCHR = 0o020000;
const S_IFBLK = 0o060000;
const S_IFIFO = 0o010000;

const MTIME = { sec: 1_700_000_000, nsec: 123_456_789 };
/** cap_net_bind_service=ep as a VFS_CAP_REVISION_2 security.capability value. */
const CAPS = Buffer.from('0100000200040000000000000000000000000000', 'hex');

interface ToyNode {
  attr: Attr;
  parent: number;
  data?: Buffer;
  target?: string;
  children?: Map<string, number>;
  xattrs?: Map<string, Buffer>;
  open?: OpenResult;
  kind?: 'slow' | 'boom';
}

/** An in-memory read-only tree implementing the FileSystem interface. */
class ToyFs implements FileSystem {
  readonly nodes = new Map<number, ToyNode>();
  private nextIno = 2;
  maxRead = 0;
  interrupted = 0;
  forgotten = 0;
  slowStarted!: Promise<void>;
  private markSlowStarted!: () => void;

  constructor() {
    this.nodes.set(1, { attr: attr({ ino: 1, mode: S_IFDIR | 0o755, nlink: 2, mtime: MTIME }), parent: 1, children: new Map() });
    this.resetSlow();
  }

  resetSlow(): void {
    this.slowStarted = new Promise((res) => (this.markSlowStarted = res));
  }

  private add(parent: number, name: string, node: Omit<ToyNode, 'parent'>): number {
    const dir = this.nodes.get(parent)!;
    dir.children!.set(name, node.attr.ino);
    this.nodes.set(node.attr.ino, { ...node, parent });
    if ((node.attr.mode & 0o170000) === S_IFDIR) dir.attr.nlink++;
    return node.attr.ino;
  }

  dir(parent: number, name: string, extra: Partial<Attr> = {}): number {
    const ino = this.nextIno++;
    return this.add(parent, name, { attr: attr({ ino, mode: S_IFDIR | 0o755, nlink: 2, mtime: MTIME, ...extra }), children: new Map() });
  }

  file(parent: number, name: string, data: Buffer, extra: Partial<Attr> = {}, more: Partial<ToyNode> = {}): number {
    const ino = this.nextIno++;
    return this.add(parent, name, { attr: attr({ ino, mode: S_IFREG | 0o644, size: data.length, mtime: MTIME, ...extra }), data, ...more });
  }

  symlink(parent: number, name: string, target: string): number {
    const ino = this.nextIno++;
    return this.add(parent, name, { attr: attr({ ino, mode: S_IFLNK | 0o777, size: Buffer.byteLength(target) }), target });
  }

  special(parent: number, name: string, mode: number, rdev = 0): number {
    const ino = this.nextIno++;
    return this.add(parent, name, { attr: attr({ ino, mode, rdev }) });
  }

  hardlink(parent: number, name: string, ino: number): void {
    this.nodes.get(parent)!.children!.set(name, ino);
    this.nodes.get(ino)!.attr.nlink++;
  }

  private node(ino: number): ToyNode {
    const n = this.nodes.get(ino);
    if (!n) throw new FuseError('ENOENT');
    return n;
  }

  private entry(ino: number): Entry {
    return { attr: this.node(ino).attr, entryTimeout: 1, attrTimeout: 1 };
  }

  lookup(parent: number, name: string): Entry {
    const dir = this.node(parent);
    if (!dir.children) throw new FuseError('ENOTDIR');
    const ino = dir.children.get(name);
    if (ino === undefined) throw new FuseError('ENOENT');
    return this.entry(ino);
  }

  forget(_ino: number, nlookup: number): void {
    this.forgotten += nlookup;
  }

  getattr(ino: number) {
    return { attr: this.node(ino).attr, timeout: 1 };
  }

  readlink(ino: number): string {
    const t = this.node(ino).target;
    if (t === undefined) throw new FuseError('EINVAL');
    return t;
  }

  open(ino: number): OpenResult {
    return this.node(ino).open ?? { keepCache: true };
  }

  async read(ino: number, _fh: number, offset: number, size: number, ctx: RequestContext): Promise<Buffer> {
    const n = this.node(ino);
    this.maxRead = Math.max(this.maxRead, size);
    if (n.kind === 'boom') throw new Error('toy read failure');
    if (n.kind === 'slow' && offset === 0) {
      this.markSlowStarted();
      await new Promise<void>((resolve, reject) => {
        const t = setTimeout(resolve, 2000);
        ctx.signal.addEventListener('abort', () => {
          clearTimeout(t);
          this.interrupted++;
          reject(ctx.signal.reason);
        });
      });
    }
    return n.data!.subarray(offset, offset + size);
  }

  opendir(ino: number): OpenResult {
    return { cacheDir: ino === 1, keepCache: ino === 1 };
  }

  readdir(ino: number, _fh: number, offset: number, plus: boolean): Iterable<DirEntry> {
    const dir = this.node(ino);
    if (!dir.children) throw new FuseError('ENOTDIR');
    const list: Array<[string, number]> = [['.', ino], ['..', dir.parent], ...dir.children];
    const self = this;
    return (function* () {
      for (let i = offset; i < list.length; i++) {
        const [name, child] = list[i]!;
        const e: DirEntry = { name, ino: child, mode: self.node(child).attr.mode, nextOffset: i + 1 };
        if (plus && i >= 2) e.entry = self.entry(child);
        yield e;
      }
    })();
  }

  statfs(): StatFs {
    return { blocks: 1000, bfree: 0, bavail: 0, files: 5100, ffree: 0, bsize: 4096, namelen: 255, frsize: 4096 };
  }

  getxattr(ino: number, name: string): Buffer | undefined {
    return this.node(ino).xattrs?.get(name);
  }

  listxattr(ino: number): string[] {
    return [...(this.node(ino).xattrs?.keys() ?? [])];
  }
}

interface Toy {
  filesystem: ToyFs;
  data: Map<string, Buffer>;
  manyNames: string[];
  manyIno: number;
}

function buildToy(): Toy {
  const t = new ToyFs();
  const data = new Map<string, Buffer>();
  const file = (parent: number, rel: string, d: Buffer, extra: Partial<Attr> = {}, more: Partial<ToyNode> = {}) => {
    data.set(rel, d);
    return t.file(parent, path.basename(rel), d, extra, more);
  };
  const big = randomBytes(5 * 1024 * 1024 + 4097);
  file(1, 'hello.txt', Buffer.from('hello, world\n'), {
    uid: 1000,
    gid: 1001,
    atime: { sec: 1_600_000_000, nsec: 1 },
    ctime: { sec: 1_650_000_000, nsec: 999_999_999 },
  });
  file(1, 'empty', Buffer.alloc(0));
  file(1, 'odd.bin', randomBytes(100_003));
  file(1, 'big.bin', big);
  file(1, 'big-direct.bin', big, {}, { open: { directIo: true } });
  file(1, 'slow.bin', Buffer.from('slow data\n'), {}, { open: { directIo: true }, kind: 'slow' });
  file(1, 'boom.bin', Buffer.from('never read\n'), {}, { kind: 'boom' });
  file(1, 'setuid', Buffer.from('#!/bin/sh\n'), { mode: S_IFREG | 0o4755 });
  file(
    1,
    'caps',
    Buffer.from('#!/bin/sh\n'),
    { mode: S_IFREG | 0o755 },
    {
      xattrs: new Map([
        ['security.capability', CAPS],
        ['user.comment', Buffer.from('a comment')],
        ['user.bin', Buffer.from([0, 1, 2, 255])],
      ]),
    },
  );
  file(1, 'name with space.txt', Buffer.from('spaced\n'));
  file(1, 'ünïcødé.txt', Buffer.from('unicode\n'));
  t.symlink(1, 'link', 'hello.txt');
  t.symlink(1, 'abs-link', '/nonexistent/target');
  t.special(1, 'null', S_IFCHR | 0o666, makedev(1, 3));
  t.special(1, 'disk', S_IFBLK | 0o660, makedev(8, 300));
  t.special(1, 'fifo', S_IFIFO | 0o644);
  const hard = file(1, 'hard1', Buffer.from('two names\n'));
  const dir = t.dir(1, 'dir', { mode: S_IFDIR | 0o750, uid: 1000, gid: 1000 });
  file(dir, 'dir/nested.txt', Buffer.from('nested\n'));
  t.hardlink(dir, 'hard2', hard);
  const sub = t.dir(dir, 'sub');
  file(sub, 'dir/sub/deeper.txt', Buffer.from('deeper\n'));
  file(dir, 'dir/fresh.txt', Buffer.from('looked up only once\n'));
  t.symlink(sub, 'up', '../../hello.txt');
  const manyIno = t.dir(1, 'many');
  const manyNames: string[] = [];
  for (let i = 0; i < 5000; i++) {
    const name = `f${String(i).padStart(5, '0')}`;
    manyNames.push(name);
    file(manyIno, `many/${name}`, Buffer.from(`${i}\n`));
  }
  return { filesystem: t, data, manyNames, manyIno };
}

interface Run {
  stdout: string;
  stderr: string;
  code: number | null;
}

/** Runs a tool without blocking the event loop (the server answers its requests meanwhile). */
function sh(cmd: string, args: string[]): Promise<Run> {
  return new Promise((resolve) => {
    execFile(cmd, args, { env: { ...process.env, LC_ALL: 'C', TZ: 'UTC' }, maxBuffer: 64 << 20 }, (err, stdout, stderr) => {
      const code = err ? (typeof err.code === 'number' ? err.code : 1) : 0;
      resolve({ stdout, stderr, code });
    });
  });
}

/** A fresh directory under the temp dir, named after this process (test/helpers/mounts.ts sweeps what a dead run left). */
async function runDir(): Promise<string> {
  return (await clipWorkspace('fuse')).dir;
}

function devFuseFds(): number {
  let n = 0;
  for (const fd of fs.readdirSync('/proc/self/fd')) {
    try {
      if (fs.readlinkSync(`/proc/self/fd/${fd}`) === '/dev/fuse') n++;
    } catch {
      // closed meanwhile
    }
  }
  return n;
}

async function readRange(file: string, offset: number, length: number): Promise<Buffer> {
  const fh = await fsp.open(file, 'r');
  try {
    const buf = Buffer.alloc(length);
    const { bytesRead } = await fh.read(buf, 0, length, offset);
    return buf.subarray(0, bytesRead);
  } finally {
    await fh.close();
  }
}

const WRITES: Array<[string, (p: (rel: string) => string) => Promise<unknown>]> = [
  ['create a file', (p) => fsp.writeFile(p('new.txt'), 'x')],
  ['overwrite a file', (p) => fsp.writeFile(p('hello.txt'), 'x')],
  ['append', (p) => fsp.appendFile(p('hello.txt'), 'x')],
  ['open read-write', (p) => fsp.open(p('hello.txt'), 'r+')],
  ['truncate', (p) => fsp.truncate(p('hello.txt'), 1)],
  ['mkdir', (p) => fsp.mkdir(p('newdir'))],
  ['unlink', (p) => fsp.unlink(p('hello.txt'))],
  ['rmdir', (p) => fsp.rmdir(p('dir/sub'))],
  ['chmod', (p) => fsp.chmod(p('hello.txt'), 0o600)],
  ['chown', (p) => fsp.chown(p('hello.txt'), 1, 1)],
  ['utimes', (p) => fsp.utimes(p('hello.txt'), 1, 1)],
  ['rename', (p) => fsp.rename(p('hello.txt'), p('renamed.txt'))],
  ['symlink', (p) => fsp.symlink('hello.txt', p('newlink'))],
  ['link', (p) => fsp.link(p('hello.txt'), p('newhard'))],
  ['mknod (mkfifo)', (p) => sh('mkfifo', [p('newfifo')]).then((r) => (r.code === 0 ? r : Promise.reject(r)))],
];

async function assertAllWritesRefused(p: (rel: string) => string): Promise<void> {
  for (const [what, op] of WRITES) {
    await assert.rejects(
      op(p),
      (e: { code?: string; stderr?: string }) => {
        if (e.stderr !== undefined) return /Read-only file system/.test(e.stderr);
        return e.code === 'EROFS';
      },
      what,
    );
  }
  const set = await sh('setfattr', ['-n', 'user.x', '-v', '1', p('hello.txt')]);
  assert.notEqual(set.code, 0);
  assert.match(set.stderr, /Read-only file system/);
  assert.equal((await fsp.readFile(p('hello.txt'))).toString(), 'hello, world\n', 'contents unchanged');
}

describe('FUSE: a toy filesystem mounted read-only through the kernel', { skip, timeout: 120_000 }, () => {
  let tmp = '';
  let mnt = '';
  let toy: Toy;
  let server: FuseServer | undefined;
  const logs: string[] = [];
  const p = (rel: string) => path.join(mnt, rel);

  before(async () => {
    sweepClipMounts();
    tmp = await runDir();
    mnt = path.join(tmp, 'mnt point'); // a space, escaped as \040 in mountinfo
    fs.mkdirSync(mnt);
    toy = buildToy();
    server = await serveFuse(mnt, toy.filesystem, {
      fsname: 'clip-test',
      subtype: 'clip',
      debug: true,
      log: (level, m) => logs.push(`${level} ${m}`),
    });
  });

  after(async () => {
    try {
      if (server) await server.close();
    } finally {
      if (tmp && isMounted(mnt)) await forceUnmount(mnt);
      if (tmp) fs.rmSync(tmp, { recursive: true, force: true });
    }
  });

  it('negotiated the protocol and shows in the mount table as fuse.clip', () => {
    const c = server!.connection;
    assert.equal(c.minor, 38);
    for (const f of [InitFlag.ASYNC_READ, InitFlag.PARALLEL_DIROPS, InitFlag.MAX_PAGES, InitFlag.DO_READDIRPLUS, InitFlag.CACHE_SYMLINKS]) {
      assert.ok(c.flags & f, `flag ${f.toString(16)}`);
    }
    assert.equal(c.maxPages, 256);
    assert.ok(isMounted(mnt));
    const m = fuseMounts({ fsType: 'fuse.clip', under: tmp });
    assert.equal(m.length, 1);
    assert.equal(m[0]!.mountPoint, mnt);
    assert.equal(m[0]!.source, 'clip-test');
    assert.match(m[0]!.options, /(^|,)ro(,|$)/);
  });

  it('reports attributes: mode, owner, size, nlink, times to the nanosecond, rdev', async () => {
    const st = await fsp.lstat(p('hello.txt'), { bigint: true });
    assert.equal(st.mode, BigInt(S_IFREG | 0o644));
    assert.equal(st.uid, 1000n);
    assert.equal(st.gid, 1001n);
    assert.equal(st.size, 13n);
    assert.equal(st.nlink, 1n);
    assert.equal(st.blocks, 1n);
    assert.equal(st.mtimeNs, 1_700_000_000_123_456_789n);
    assert.equal(st.atimeNs, 1_600_000_000_000_000_001n);
    assert.equal(st.ctimeNs, 1_650_000_000_999_999_999n);
    assert.equal(st.ino, BigInt(toy.filesystem.lookup(1, 'hello.txt').attr.ino));

    const root = await fsp.stat(mnt);
    assert.ok(root.isDirectory());
    assert.equal(root.mode & 0o7777, 0o755);
    assert.equal(root.ino, 1);
    assert.equal((await fsp.stat(p('dir'))).nlink, 3);
    assert.equal((await fsp.stat(p('hard1'))).nlink, 2);
    assert.equal((await fsp.stat(p('dir/hard2'))).ino, (await fsp.stat(p('hard1'))).ino);
    assert.equal((await fsp.lstat(p('link'))).size, 'hello.txt'.length);
    assert.ok((await fsp.lstat(p('link'))).isSymbolicLink());
    assert.ok((await fsp.lstat(p('fifo'))).isFIFO());
    const nul = await fsp.lstat(p('null'));
    assert.ok(nul.isCharacterDevice());
    assert.equal(nul.rdev, makedev(1, 3));
    assert.ok((await fsp.lstat(p('disk'))).isBlockDevice());

    const out = await sh('stat', [
      '-c',
      '%n|%a|%A|%u|%g|%s|%h|%F|%t|%T|%y',
      p('hello.txt'),
      p('setuid'),
      p('null'),
      p('disk'),
      p('fifo'),
      p('dir'),
    ]);
    assert.equal(out.code, 0, out.stderr);
    const rows = out.stdout
      .trim()
      .split('\n')
      .map((l) => l.split('|').slice(1));
    assert.deepEqual(rows, [
      ['644', '-rw-r--r--', '1000', '1001', '13', '1', 'regular file', '0', '0', '2023-11-14 22:13:20.123456789 +0000'],
      ['4755', '-rwsr-xr-x', '0', '0', '10', '1', 'regular file', '0', '0', '2023-11-14 22:13:20.123456789 +0000'],
      ['666', 'crw-rw-rw-', '0', '0', '0', '1', 'character special file', '1', '3', '1970-01-01 00:00:00.000000000 +0000'],
      ['660', 'brw-rw----', '0', '0', '0', '1', 'block special file', '8', '12c', '1970-01-01 00:00:00.000000000 +0000'],
      ['644', 'prw-r--r--', '0', '0', '0', '1', 'fifo', '0', '0', '1970-01-01 00:00:00.000000000 +0000'],
      ['750', 'drwxr-x---', '1000', '1000', '0', '3', 'directory', '0', '0', '2023-11-14 22:13:20.123456789 +0000'],
    ]);
    const sf = await sh('stat', ['-f', '-c', '%S %l %b %c', mnt]);
    assert.equal(sf.stdout.trim(), '4096 255 1000 5100');
  });

  it('lists directories, one of 5000 entries over many READDIRPLUS buffers', async () => {
    const root = await fsp.readdir(mnt);
    assert.deepEqual(root.sort(), [...toy.filesystem.nodes.get(1)!.children!.keys()].sort());
    const typed = new Map((await fsp.readdir(mnt, { withFileTypes: true })).map((d) => [d.name, d]));
    assert.ok(typed.get('dir')!.isDirectory());
    assert.ok(typed.get('link')!.isSymbolicLink());
    assert.ok(typed.get('fifo')!.isFIFO());
    assert.ok(typed.get('null')!.isCharacterDevice());
    assert.ok(typed.get('hello.txt')!.isFile());
    assert.deepEqual((await fsp.readdir(p('dir/sub'))).sort(), ['deeper.txt', 'up']);

    const many = await fsp.readdir(p('many'));
    assert.equal(many.length, 5000);
    assert.deepEqual([...many].sort(), toy.manyNames);
    // ls -f keeps the server's order: every entry exactly once, none skipped at buffer boundaries.
    const ls = await sh('ls', ['-f', p('many')]);
    assert.deepEqual(ls.stdout.trim().split('\n'), ['.', '..', ...toy.manyNames]);
    const requests = logs.filter((l) => new RegExp(`^debug <- \\d+ READDIRPLUS n${toy.manyIno} `).test(l));
    assert.ok(requests.length > 2, `${requests.length} READDIRPLUS requests for the big directory`);
    assert.ok(
      requests.some((l) => !/offset:0,/.test(l)),
      'continued at a nonzero offset',
    );
    // Every name resolves with the attributes READDIRPLUS sent.
    assert.equal((await fsp.readFile(p('many/f04999'))).toString(), '4999\n');
  });

  it('returns contents byte-identical, at odd offsets, and in 1 MiB requests', async () => {
    for (const [rel, want] of toy.data) {
      // (dir/fresh.txt stays unlooked-up for the concurrency test.)
      if (rel === 'slow.bin' || rel === 'boom.bin' || rel === 'dir/fresh.txt' || rel.startsWith('many/')) continue;
      assert.ok((await fsp.readFile(p(rel))).equals(want), rel);
    }
    const big = toy.data.get('big.bin')!;
    const odd = toy.data.get('odd.bin')!;
    const ranges: Array<[string, Buffer, number, number]> = [
      ['odd.bin', odd, 0, 1],
      ['odd.bin', odd, 1, 4095],
      ['odd.bin', odd, 4095, 4099],
      ['odd.bin', odd, 99_999, 100],
      ['odd.bin', odd, 100_003, 10],
      ['big.bin', big, 123_457, 70_001],
      ['big.bin', big, big.length - 10, 100],
      ['big-direct.bin', big, 3, 8191],
      ['big-direct.bin', big, 1_048_575, 2],
    ];
    for (const [rel, src, off, len] of ranges) {
      const got = await readRange(p(rel), off, len);
      assert.ok(got.equals(src.subarray(off, off + len)), `${rel} @${off}+${len}`);
    }
    // One 3 MiB read(2) of a direct-I/O file reaches the server as requests of up to max_pages (1 MiB).
    toy.filesystem.maxRead = 0;
    const got = await readRange(p('big-direct.bin'), 777, 3 * 1024 * 1024 + 5);
    assert.ok(got.equals(big.subarray(777, 777 + 3 * 1024 * 1024 + 5)));
    assert.ok(
      toy.filesystem.maxRead > 1024 * 1024 - 4096 && toy.filesystem.maxRead <= 1024 * 1024,
      `largest READ ${toy.filesystem.maxRead}`,
    );
  });

  it('resolves symlinks', async () => {
    assert.equal(await fsp.readlink(p('link')), 'hello.txt');
    assert.equal(await fsp.readlink(p('abs-link')), '/nonexistent/target');
    assert.equal(await fsp.readlink(p('dir/sub/up')), '../../hello.txt');
    assert.equal((await fsp.readFile(p('dir/sub/up'))).toString(), 'hello, world\n');
    assert.equal(await fsp.realpath(p('link')), p('hello.txt'));
    await assert.rejects(fsp.readlink(p('hello.txt')), { code: 'EINVAL' });
  });

  it('serves xattrs, security.capability included (getfattr, getcap)', async () => {
    const dump = await sh('getfattr', ['--absolute-names', '-d', '-m', '-', '-e', 'hex', p('caps')]);
    assert.equal(dump.code, 0, dump.stderr);
    const lines = dump.stdout.split('\n').filter((l) => l.includes('='));
    assert.deepEqual(lines.sort(), [
      `security.capability=0x${CAPS.toString('hex')}`,
      'user.bin=0x000102ff',
      `user.comment=0x${Buffer.from('a comment').toString('hex')}`,
    ]);
    const one = await sh('getfattr', ['--absolute-names', '--only-values', '-n', 'user.comment', p('caps')]);
    assert.equal(one.stdout, 'a comment');
    const cap = await sh('getcap', [p('caps')]);
    assert.match(cap.stdout, /cap_net_bind_service=ep/);
    const missing = await sh('getfattr', ['-n', 'user.nope', p('caps')]);
    assert.notEqual(missing.code, 0);
    assert.match(missing.stderr, /No such attribute/);
    const none = await sh('getfattr', ['--absolute-names', '-d', '-m', '-', p('hello.txt')]);
    assert.equal(none.stdout.trim(), '');
  });

  it('refuses every write with EROFS', async () => {
    await assertAllWritesRefused(p);
  });

  it('keeps serving after operations it does not implement', async () => {
    const fh = await fsp.open(p('hello.txt'), 'r');
    await fh.sync(); // FSYNC: ENOSYS, which the kernel takes as "nothing to sync"
    await fh.datasync();
    await fh.close();
    await sh('lsattr', [p('hello.txt')]); // IOCTL
    await sh('stat', ['-c', '%W', p('hello.txt')]); // STATX asking for btime
    await sh('flock', ['-s', p('hello.txt'), 'true']);
    await sh('sync', ['-f', p('hello.txt')]);
    assert.ok(logs.some((l) => /^debug -> \d+ FSYNC ENOSYS$/.test(l)));
    assert.equal((await fsp.readFile(p('hello.txt'))).toString(), 'hello, world\n');
    assert.ok(isMounted(mnt));
  });

  it('answers a lookup and 32 parallel reads while one READ is slow', async () => {
    const order: string[] = [];
    toy.filesystem.resetSlow();
    const slow = fsp.readFile(p('slow.bin')).then((b) => {
      order.push('slow');
      return b;
    });
    await toy.filesystem.slowStarted;
    const big = toy.data.get('big.bin')!;
    const reads = Array.from({ length: 32 }, async (_, i) => {
      const off = i * 150_001 + (i % 7);
      const got = await readRange(p('big-direct.bin'), off, 65_537); // direct I/O: each one reaches the server
      assert.ok(got.equals(big.subarray(off, off + 65_537)), `read ${i}`);
    });
    const stat = fsp.stat(p('dir/fresh.txt')).then((st) => {
      order.push('stat');
      assert.equal(st.size, 20);
    });
    await Promise.all([...reads, stat]);
    order.push('reads');
    assert.equal((await slow).toString(), 'slow data\n');
    assert.deepEqual(order, ['stat', 'reads', 'slow']);
  });

  it('aborts a READ the kernel interrupts (the reader was killed)', async () => {
    toy.filesystem.resetSlow();
    const before = toy.filesystem.interrupted;
    const child = spawn('cat', [p('slow.bin')], { stdio: 'ignore' });
    const exited = once(child, 'exit');
    await toy.filesystem.slowStarted;
    child.kill('SIGTERM');
    const [code, signal] = await exited;
    assert.ok(signal === 'SIGTERM' || code !== 0);
    assert.equal(toy.filesystem.interrupted, before + 1);
    assert.ok(logs.some((l) => /^debug <- \d+ INTERRUPT n0 \{unique:\d+\}/.test(l)));
    assert.ok(logs.some((l) => /^debug -> \d+ READ EINTR$/.test(l)));
    assert.equal((await fsp.readFile(p('hello.txt'))).toString(), 'hello, world\n');
  });

  it('answers a failing handler with EIO and logs it', async () => {
    await assert.rejects(fsp.readFile(p('boom.bin')), { code: 'EIO' });
    assert.ok(
      logs.some((l) => l.startsWith('error READ') && l.includes('toy read failure')),
      'logged',
    );
  });

  it('prints each request and reply on one line in debug mode', () => {
    assert.ok(logs.some((l) => /^debug <- \d+ LOOKUP n1 \{name:"hello.txt"\} uid=0 gid=0 pid=\d+$/.test(l)));
    assert.ok(logs.some((l) => /^debug -> \d+ LOOKUP OK \{attr:\{ino:\d+,mode:0o100644,nlink:1,uid:1000,gid:1001,/.test(l)));
    assert.ok(logs.some((l) => /^debug -> \d+ READDIRPLUS OK \{data:<\d+ bytes>,count:\d+\}$/.test(l)));
    assert.ok(logs.some((l) => /^debug -> \d+ READ OK <\d+ bytes>$/.test(l)));
    assert.ok(logs.filter((l) => l.startsWith('debug')).every((l) => !l.includes('\n')));
    assert.deepEqual(
      logs.filter((l) => l.startsWith('error') && !l.includes('toy read failure')),
      [],
    );
  });

  it('ends the session when unmounted (ENODEV) and leaves nothing mounted', async () => {
    let closeEvent = false;
    server!.session.on('close', () => (closeEvent = true));
    await server!.close();
    server = undefined;
    assert.ok(closeEvent);
    assert.ok(!isMounted(mnt));
    assert.deepEqual(await fsp.readdir(mnt), []);
    assert.ok(toy.filesystem.forgotten >= 0);
  });
});

describe('FUSE: mounted without "ro" and without READDIRPLUS', { skip, timeout: 60_000 }, () => {
  let tmp = '';
  let mnt = '';
  let toy: Toy;
  let server: FuseServer | undefined;
  const logs: string[] = [];
  const p = (rel: string) => path.join(mnt, rel);

  before(async () => {
    sweepClipMounts();
    tmp = await runDir();
    mnt = path.join(tmp, 'mnt');
    fs.mkdirSync(mnt);
    toy = buildToy();
    server = await serveFuse(mnt, toy.filesystem, {
      options: ['allow_other', 'default_permissions'],
      wantFlags: WANTED_INIT_FLAGS & ~InitFlag.DO_READDIRPLUS,
      debug: true,
      log: (level, m) => logs.push(`${level} ${m}`),
    });
  });

  after(async () => {
    try {
      if (server) await server.close();
    } finally {
      if (tmp && isMounted(mnt)) await forceUnmount(mnt);
      if (tmp) fs.rmSync(tmp, { recursive: true, force: true });
    }
  });

  it('answers every write with EROFS itself', async () => {
    await assertAllWritesRefused(p);
    for (const op of ['MKDIR', 'UNLINK', 'SETATTR', 'CREATE', 'OPEN', 'SETXATTR', 'SYMLINK', 'LINK', 'RMDIR', 'MKNOD']) {
      assert.ok(
        logs.some((l) => new RegExp(`^debug -> \\d+ ${op} EROFS$`).test(l)),
        `${op} reached the server and was refused`,
      );
    }
    assert.ok(logs.some((l) => /^debug -> \d+ RENAME2? EROFS$/.test(l)));
  });

  it('lists a large directory with plain READDIR', async () => {
    const many = await fsp.readdir(p('many'));
    assert.deepEqual(many, toy.manyNames);
    assert.ok(logs.filter((l) => /^debug <- \d+ READDIR n/.test(l)).length > 2);
    assert.ok(!logs.some((l) => / READDIRPLUS n/.test(l)));
    const st = await fsp.stat(p('many/f00042'));
    assert.equal(st.size, 3);
  });
});

describe('FUSE: mount errors and cleanup', { skip, timeout: 60_000 }, () => {
  let tmp = '';

  before(async () => {
    sweepClipMounts();
    tmp = await runDir();
  });

  after(async () => {
    for (const m of fuseMounts({ under: tmp })) await forceUnmount(m.mountPoint);
    if (tmp) fs.rmSync(tmp, { recursive: true, force: true });
  });

  it('refuses a missing mount point with a clear error and leaves nothing behind', async () => {
    const fds = devFuseFds();
    const missing = path.join(tmp, 'no such dir');
    await assert.rejects(mountFuse(missing), (e: unknown) => {
      assert.ok(e instanceof MountError);
      assert.equal(e.code, 'NO_MOUNTPOINT');
      assert.match(e.message, /mount point .*no such dir does not exist/);
      return true;
    });
    assert.ok(!isMounted(missing));
    assert.ok(!fs.existsSync(missing));
    assert.equal(devFuseFds(), fds, 'no /dev/fuse descriptor left open');
    assert.deepEqual(fuseMounts({ under: tmp }), []);
  });

  it('refuses a mount point that is a file', async () => {
    const file = path.join(tmp, 'file');
    fs.writeFileSync(file, '');
    await assert.rejects(mountFuse(file), { name: 'MountError', code: 'NOT_A_DIRECTORY' });
    assert.ok(!isMounted(file));
  });

  it('tells a non-root caller that clip must run as root', async () => {
    const dir = path.join(tmp, 'for-nobody');
    fs.mkdirSync(dir);
    fs.chmodSync(tmp, 0o755);
    const lib = new URL('../src/fuse/index.js', import.meta.url).href;
    const code = `import(${JSON.stringify(lib)}).then((m) => m.mountFuse(${JSON.stringify(dir)})).then(() => console.log('MOUNTED'), (e) => console.log(e.code + ': ' + e.message))`;
    const child = spawn(process.execPath, ['-e', code], { uid: 65534, gid: 65534, stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    child.stdout.setEncoding('utf8').on('data', (d: string) => (out += d));
    child.stderr.setEncoding('utf8').on('data', (d: string) => (out += d));
    await once(child, 'close');
    assert.match(out, /^NOT_ROOT: clip must run as root/);
    assert.ok(!isMounted(dir));
  });

  it('a serving process that exits or crashes while mounted leaves nothing mounted', async () => {
    const lib = new URL('../src/fuse/index.js', import.meta.url).href;
    for (const ending of ['process.exit(3)', 'throw new Error("crash while mounted")']) {
      const dir = path.join(tmp, `exiting-${ending.length}`);
      fs.mkdirSync(dir);
      const code = `
        const m = await import(${JSON.stringify(lib)});
        const root = { attr: m.attr({ ino: 1, mode: 0o40755, nlink: 2 }), timeout: 1 };
        const filesystem = { lookup() { throw new m.FuseError('ENOENT'); }, getattr: () => root, read: () => Buffer.alloc(0), readdir: () => [] };
        await m.serveFuse(${JSON.stringify(dir)}, filesystem);
        console.log('mounted');
        setTimeout(() => { ${ending}; }, 50);`;
      const child = spawn(process.execPath, ['--input-type=module', '-e', code], { stdio: ['ignore', 'pipe', 'pipe'] });
      let out = '';
      child.stdout.setEncoding('utf8').on('data', (d: string) => (out += d));
      child.stderr.setEncoding('utf8').on('data', () => {});
      const [status] = (await once(child, 'exit')) as [number | null];
      assert.equal(out.trim(), 'mounted');
      assert.notEqual(status, 0);
      assert.ok(!isMounted(dir), `${ending}: nothing left mounted`);
    }
  });

  it('cleans up after a dead server: unmount and forceUnmount leave no ENOTCONN mount', async () => {
    const a = path.join(tmp, 'dead-a');
    const b = path.join(tmp, 'dead-b');
    for (const d of [a, b]) {
      fs.mkdirSync(d);
      const m = await mountFuse(d);
      fs.closeSync(m.fd); // the server dies without a word
      assert.ok(isMounted(d));
      await assert.rejects(fsp.stat(d), { code: 'ENOTCONN' });
    }
    await assert.rejects(mountFuse(a), { name: 'MountError', code: 'STALE_MOUNT' });
    await unmount(a);
    assert.ok(!isMounted(a));
    assert.ok((await fsp.stat(a)).isDirectory());
    await forceUnmount(b);
    assert.ok(!isMounted(b));
    assert.ok((await fsp.stat(b)).isDirectory());
    await unmount(b); // nothing mounted: a no-op
  });
});
