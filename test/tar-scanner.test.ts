// Round trips through GNU tar: build real archives (gnu, pax, ustar) from a
// tree with every entry type, scan them in many chunkings, and check offsets,
// content and metadata against the source files and `tar --list`.

import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { TarScanner, type TarEntry } from '../src/tar/index.js';

const CHUNKINGS: Array<number | 'random'> = [1, 511, 512, 513, 65536, 'random'];

function scan(tar: Buffer, chunk: number | 'random' | 'whole' = 'whole'): TarEntry[] {
  const entries: TarEntry[] = [];
  const s = new TarScanner((e) => entries.push(e));
  if (chunk === 'whole') {
    s.push(tar);
  } else {
    let seed = 12345;
    for (let off = 0; off < tar.length;) {
      let n: number;
      if (chunk === 'random') {
        seed = (seed * 1103515245 + 12345) & 0x7fffffff;
        n = 1 + (seed % 3000);
      } else {
        n = chunk;
      }
      // Copy and then scribble over the chunk: the scanner must not keep it.
      const piece = Buffer.from(tar.subarray(off, off + n));
      s.push(piece);
      piece.fill(0xaa);
      off += n;
    }
  }
  s.finish();
  assert.equal(s.position, tar.length);
  return entries;
}

/** Scan in every chunking and insist on identical results. */
function scanAll(tar: Buffer): TarEntry[] {
  const ref = scan(tar);
  for (const c of CHUNKINGS) assert.deepStrictEqual(scan(tar, c), ref, `chunking ${c}`);
  return ref;
}

function run(cmd: string, args: string[]): string {
  return execFileSync(cmd, args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, TZ: 'UTC' } });
}

let tmp: string;
let xattrsWork = true;

const LONG_DIR = `${'p'.repeat(60)}/${'q'.repeat(60)}`; // with LONG_FILE: > 100, fits ustar's prefix
const LONG_FILE = 'f'.repeat(99);
const VERY_LONG = ['x'.repeat(100), 'y'.repeat(100), 'z'.repeat(100)].join('/'); // > 255 in total
const UNICODE = 'héllo-世界-🎉.txt';

/** A source tree with every kind of entry. `veryLong` adds what ustar cannot store. */
function makeTree(root: string, veryLong: boolean): void {
  fs.mkdirSync(root);
  fs.writeFileSync(path.join(root, 'a.txt'), 'hello, world\n');
  fs.writeFileSync(path.join(root, 'empty'), '');
  fs.writeFileSync(path.join(root, 'block512'), Buffer.alloc(512, 7));
  const big = Buffer.alloc(3 * 1024 * 1024 + 123);
  for (let i = 0; i < big.length; i++) big[i] = (i * 2654435761) >>> 24;
  fs.writeFileSync(path.join(root, 'big.bin'), big);
  fs.mkdirSync(path.join(root, 'dir/sub'), { recursive: true });
  fs.mkdirSync(path.join(root, 'dir/emptydir'));
  fs.writeFileSync(path.join(root, 'dir/sub/file'), 'nested\n');
  fs.linkSync(path.join(root, 'a.txt'), path.join(root, 'dir/hardlink'));
  fs.symlinkSync('../outside/../target', path.join(root, 'rel-symlink'));
  fs.symlinkSync('/etc/passwd', path.join(root, 'abs-symlink'));
  run('mkfifo', [path.join(root, 'fifo')]);
  run('mknod', [path.join(root, 'null'), 'c', '1', '3']);
  run('mknod', [path.join(root, 'loop9'), 'b', '7', '9']);
  fs.writeFileSync(path.join(root, 'setuid'), '#!/bin/sh\n');
  fs.chmodSync(path.join(root, 'setuid'), 0o4755);
  fs.writeFileSync(path.join(root, 'setgid'), 'g');
  fs.chmodSync(path.join(root, 'setgid'), 0o2711);
  fs.mkdirSync(path.join(root, 'sticky'));
  fs.chmodSync(path.join(root, 'sticky'), 0o1777);
  fs.writeFileSync(path.join(root, UNICODE), 'unicode\n');
  fs.mkdirSync(path.join(root, LONG_DIR), { recursive: true });
  fs.writeFileSync(path.join(root, LONG_DIR, LONG_FILE), 'long name\n');
  fs.writeFileSync(path.join(root, 'frac'), 'x');
  fs.utimesSync(path.join(root, 'frac'), 1600000000.5, 1600000000.25);
  if (veryLong) {
    fs.mkdirSync(path.join(root, path.dirname(VERY_LONG)), { recursive: true });
    fs.writeFileSync(path.join(root, VERY_LONG), 'very long\n');
    fs.symlinkSync('t'.repeat(150), path.join(root, 'long-symlink'));
    fs.linkSync(path.join(root, VERY_LONG), path.join(root, 'link-to-very-long'));
    try {
      fs.writeFileSync(path.join(root, 'xattrs'), 'x');
      run('setfattr', ['-n', 'user.plain', '-v', 'value', path.join(root, 'xattrs')]);
      run('setfattr', ['-n', 'user.binary', '-v', '0x00ff0a3d', path.join(root, 'xattrs')]);
      run('setfattr', ['-n', 'user.empty', path.join(root, 'xattrs')]);
    } catch {
      xattrsWork = false;
    }
  }
}

function makeTar(name: string, srcDir: string, args: string[], members = ['.']): Buffer {
  const out = path.join(tmp, name);
  run('tar', ['-c', '-f', out, '-C', srcDir, ...args, ...members]);
  return fs.readFileSync(out);
}

interface Listed {
  perms: string;
  uid: number;
  gid: number;
  sizeOrDev: string;
  date: string;
  name: string;
  target?: string;
}

/** `tar --list --verbose --full-time` in a form we can compare with. */
function listTar(file: string): Listed[] {
  const out = run('tar', ['--list', '--verbose', '--full-time', '--numeric-owner', '--quoting-style=literal', '-f', file]);
  return out
    .split('\n')
    .filter((l) => l !== '')
    .map((line) => {
      const m = /^(\S{10}) (\d+)\/(\d+)\s+(\d+|\d+,\d+) (\S+ \S+) +(.*)$/.exec(line);
      assert.ok(m, `unparsed tar listing line ${line}`);
      let name = m[6]!;
      let target: string | undefined;
      for (const sep of [' -> ', ' link to ']) {
        const i = name.indexOf(sep);
        if (i >= 0) {
          target = name.slice(i + sep.length);
          name = name.slice(0, i);
        }
      }
      return {
        perms: m[1]!,
        uid: Number(m[2]),
        gid: Number(m[3]),
        sizeOrDev: m[4]!,
        date: m[5]!,
        name,
        ...(target !== undefined ? { target } : {}),
      };
    });
}

function norm(p: string): string {
  return p.replace(/^\.\//, '').replace(/\/$/, '').replace(/^\.$/, '');
}

const TYPE_CHAR: Record<TarEntry['type'], string> = {
  file: '-',
  hardlink: 'h',
  symlink: 'l',
  dir: 'd',
  char: 'c',
  block: 'b',
  fifo: 'p',
};

function permString(mode: number): string {
  const r = (b: number, c: string) => (mode & b ? c : '-');
  const x = (exec: number, special: number, on: string) =>
    mode & special ? (mode & exec ? on : on.toUpperCase()) : mode & exec ? 'x' : '-';
  return (
    r(0o400, 'r') +
    r(0o200, 'w') +
    x(0o100, 0o4000, 's') +
    r(0o40, 'r') +
    r(0o20, 'w') +
    x(0o10, 0o2000, 's') +
    r(0o4, 'r') +
    r(0o2, 'w') +
    x(0o1, 0o1000, 't')
  );
}

/** "2023-01-02 03:04:05.123456789" (UTC) for an entry's mtime. */
function fullTime(t: { sec: number; nsec: number }): string {
  const d = new Date(t.sec * 1000).toISOString().replace('T', ' ').slice(0, 19);
  return t.nsec === 0 ? d : `${d}.${String(t.nsec).padStart(9, '0')}`.replace(/0+$/, '');
}

/** The checks shared by every format. */
function checkAgainstSource(tar: Buffer, tarFile: string, entries: TarEntry[], src: string, opts: { nsec: boolean }): void {
  // 1. Same entries, same order, same metadata as tar's own listing.
  const listed = listTar(tarFile);
  assert.equal(entries.length, listed.length);
  entries.forEach((e, i) => {
    const l = listed[i]!;
    assert.equal(e.path, norm(l.name));
    assert.equal(TYPE_CHAR[e.type] + permString(e.mode), l.perms, e.path);
    assert.equal(e.uid, l.uid, e.path);
    assert.equal(e.gid, l.gid, e.path);
    if (e.type === 'char' || e.type === 'block') assert.equal(l.sizeOrDev, `${e.devmajor},${e.devminor}`, e.path);
    else assert.equal(Number(l.sizeOrDev), e.size, e.path);
    assert.equal(fullTime(e.mtime), l.date, e.path);
    if (e.type === 'symlink') assert.equal(e.linkname, l.target);
    if (e.type === 'hardlink') assert.equal(e.linkname, norm(l.target!));
  });

  // 2. Every source file is there, with its content at dataOffset.
  const seen = new Map<string, TarEntry>();
  for (const e of entries) {
    assert.ok(!seen.has(e.path), `duplicate ${e.path}`);
    seen.set(e.path, e);
  }
  const walk = (rel: string): void => {
    const abs = path.join(src, rel);
    const st = fs.lstatSync(abs, { bigint: true });
    const e = seen.get(rel);
    assert.ok(e, `missing ${JSON.stringify(rel)}`);
    assert.equal(e.mode, Number(st.mode & 0o7777n), rel);
    const mtimeNs = st.mtimeNs;
    assert.equal(e.mtime.sec, Number(mtimeNs / 1_000_000_000n), rel);
    assert.equal(e.mtime.nsec, opts.nsec ? Number(mtimeNs % 1_000_000_000n) : 0, rel);
    assert.ok(e.dataOffset % 512 === 0 && e.dataOffset > 0 && e.dataOffset <= tar.length, rel);
    if (st.isDirectory()) {
      assert.equal(e.type, 'dir', rel);
      assert.equal(e.size, 0);
      for (const child of fs.readdirSync(abs)) walk(rel === '' ? child : `${rel}/${child}`);
    } else if (st.isSymbolicLink()) {
      assert.equal(e.type, 'symlink', rel);
      assert.equal(e.linkname, fs.readlinkSync(abs));
      assert.equal(e.size, 0);
    } else if (st.isFile()) {
      if (e.type === 'hardlink') {
        const target = seen.get(e.linkname!);
        assert.ok(target && target.type === 'file', rel);
        assert.equal(fs.lstatSync(path.join(src, e.linkname!)).ino, Number(st.ino));
        assert.equal(e.size, 0);
      } else {
        assert.equal(e.type, 'file', rel);
        assert.equal(e.size, Number(st.size), rel);
        assert.ok(tar.subarray(e.dataOffset, e.dataOffset + e.size).equals(fs.readFileSync(abs)), `content of ${rel}`);
      }
    } else if (st.isFIFO()) {
      assert.equal(e.type, 'fifo', rel);
    } else if (st.isCharacterDevice() || st.isBlockDevice()) {
      assert.equal(e.type, st.isCharacterDevice() ? 'char' : 'block', rel);
      const rdev = Number(st.rdev); // small numbers: the classic Linux encoding
      assert.equal(e.devmajor, (rdev >> 8) & 0xfff);
      assert.equal(e.devminor, (rdev & 0xff) | ((rdev >> 12) & 0xfff00));
    } else {
      assert.fail(`unexpected file type at ${rel}`);
    }
  };
  walk('');
  assert.equal(seen.size, entries.length);
}

before(() => {
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'clip-tar-'));
  makeTree(path.join(tmp, 'full'), true);
  makeTree(path.join(tmp, 'short'), false);
});

after(() => {
  fs.rmSync(tmp, { recursive: true, force: true });
});

describe('TarScanner on GNU tar archives', () => {
  for (const format of ['gnu', 'pax', 'ustar'] as const) {
    it(`reads --format=${format}`, () => {
      const src = path.join(tmp, format === 'ustar' ? 'short' : 'full');
      const tar = makeTar(`${format}.tar`, src, [`--format=${format}`]);
      const entries = scanAll(tar);
      checkAgainstSource(tar, path.join(tmp, `${format}.tar`), entries, src, { nsec: format === 'pax' });
      const root = entries.find((e) => e.path === '');
      assert.equal(root?.type, 'dir');
      // uname/gname come through (the tree is owned by root here).
      const a = entries.find((e) => e.path === 'a.txt')!;
      const owner = os.userInfo();
      assert.equal(a.uid, owner.uid);
      if (format !== 'pax') assert.equal(a.atime, undefined);
      assert.equal(typeof a.uname, 'string');
      // A long name went through the prefix field (ustar), 'L' (gnu) or PAX path.
      assert.ok(entries.some((e) => e.path === `${LONG_DIR}/${LONG_FILE}` && e.type === 'file'));
      assert.ok(entries.some((e) => e.path === UNICODE && e.type === 'file'));
      if (format !== 'ustar') {
        assert.ok(entries.some((e) => e.path === VERY_LONG && e.type === 'file'));
        assert.equal(entries.find((e) => e.path === 'long-symlink')?.linkname, 't'.repeat(150));
      }
    });
  }

  it('reads member names without a ./ prefix and absolute-looking ones', () => {
    const src = path.join(tmp, 'short');
    const tar = makeTar('members.tar', src, ['--format=gnu'], ['a.txt', 'dir', 'null']);
    const entries = scanAll(tar);
    assert.deepEqual(entries.map((e) => e.path).sort(), [
      'a.txt',
      'dir',
      'dir/emptydir',
      'dir/hardlink',
      'dir/sub',
      'dir/sub/file',
      'null',
    ]);
    // -P keeps the leading "/", which the scanner strips.
    const abs = makeTar('abs.tar', '/', ['--format=pax', '-P'], [path.join(src, 'a.txt')]);
    const [e] = scanAll(abs);
    assert.equal(e!.path, path.join(src, 'a.txt').slice(1));
    assert.equal(abs.subarray(e!.dataOffset, e!.dataOffset + e!.size).toString(), 'hello, world\n');
  });

  it('reads owner overrides, large ids (base-256 / PAX) and uname/gname', () => {
    const src = path.join(tmp, 'short');
    const named = scanAll(makeTar('owner.tar', src, ['--format=ustar', '--owner=alice:1234', '--group=staff:5678'], ['a.txt']));
    assert.deepEqual([named[0]!.uid, named[0]!.gid, named[0]!.uname, named[0]!.gname], [1234, 5678, 'alice', 'staff']);
    const numeric = scanAll(makeTar('numeric.tar', src, ['--format=gnu', '--owner=1234', '--group=5678', '--numeric-owner'], ['a.txt']));
    assert.deepEqual([numeric[0]!.uid, numeric[0]!.gid, numeric[0]!.uname, numeric[0]!.gname], [1234, 5678, undefined, undefined]);
    for (const format of ['gnu', 'pax']) {
      const big = scanAll(
        makeTar(
          `bigid-${format}.tar`,
          src,
          [`--format=${format}`, '--owner=4000000000', '--group=4294967294', '--numeric-owner'],
          ['a.txt'],
        ),
      );
      assert.equal(big[0]!.uid, 4000000000, format);
      assert.equal(big[0]!.gid, 4294967294, format);
    }
  });

  it('reads fractional and negative mtimes', () => {
    const src = path.join(tmp, 'short');
    const frac = scanAll(makeTar('frac.tar', src, ['--format=pax', '--mtime=@1700000000.123456789'], ['a.txt']));
    assert.deepEqual(frac[0]!.mtime, { sec: 1700000000, nsec: 123456789 });
    const neg = scanAll(makeTar('negfrac.tar', src, ['--format=pax', '--mtime=@-1.25'], ['a.txt']));
    assert.deepEqual(neg[0]!.mtime, { sec: -2, nsec: 750000000 });
    // gnu format stores a negative mtime in base-256.
    const gnu = scanAll(makeTar('neg.tar', src, ['--format=gnu', '--mtime=@-1000'], ['a.txt']));
    assert.deepEqual(gnu[0]!.mtime, { sec: -1000, nsec: 0 });
    // utimes() gave "frac" sub-second times; pax keeps them.
    const fromFile = scanAll(makeTar('frac-file.tar', src, ['--format=pax'], ['frac']));
    assert.deepEqual(fromFile[0]!.mtime, { sec: 1600000000, nsec: 250000000 });
    assert.ok(fromFile[0]!.atime && fromFile[0]!.ctime, 'GNU tar pax writes atime and ctime');
  });

  it('reads SCHILY.xattr records as raw bytes', (t) => {
    if (!xattrsWork) {
      t.skip('no user xattrs on this filesystem');
      return;
    }
    const src = path.join(tmp, 'full');
    const entries = scanAll(makeTar('xattrs.tar', src, ['--format=pax', '--xattrs', '--xattrs-include=user.*'], ['xattrs', 'a.txt']));
    const x = entries.find((e) => e.path === 'xattrs')!;
    assert.deepEqual(
      x.xattrs,
      new Map([
        ['user.plain', Buffer.from('value')],
        ['user.binary', Buffer.from([0x00, 0xff, 0x0a, 0x3d])],
        ['user.empty', Buffer.alloc(0)],
      ]),
    );
    assert.equal(entries.find((e) => e.path === 'a.txt')!.xattrs, undefined);
  });

  it('tolerates missing end-of-archive blocks but not a truncated entry', () => {
    const src = path.join(tmp, 'short');
    const tar = makeTar('trunc.tar', src, ['--format=gnu'], ['a.txt', 'block512']);
    const full = scanAll(tar);
    // Strip all trailing zero blocks (GNU tar pads to a 10 KiB record).
    let end = tar.length;
    while (end > 0 && tar.subarray(end - 512, end).every((b) => b === 0)) end -= 512;
    assert.deepEqual(scanAll(tar.subarray(0, end)), full);
    // Data of the last entry cut short.
    assert.throws(() => scan(tar.subarray(0, end - 1), 513), { code: 'BAD_TAR', message: /truncated inside the data of "block512"/ });
    // Cut in the middle of the second header.
    const second = full[1]!.dataOffset - 512;
    assert.throws(() => scan(tar.subarray(0, second + 100), 1), { code: 'BAD_TAR', message: /truncated inside the header/ });
  });

  it('refuses GNU sparse files in every sparse flavour', () => {
    const dir = path.join(tmp, 'sparse');
    fs.mkdirSync(dir);
    const f = path.join(dir, 'holes');
    run('truncate', ['-s', '10M', f]);
    const fd = fs.openSync(f, 'r+');
    fs.writeSync(fd, 'data in the middle', 5 * 1024 * 1024);
    fs.closeSync(fd);
    const flavours = [
      ['--format=gnu'],
      ['--format=pax', '--sparse-version=0.0'],
      ['--format=pax', '--sparse-version=0.1'],
      ['--format=pax', '--sparse-version=1.0'],
    ];
    for (const args of flavours) {
      const tar = makeTar('sparse.tar', dir, ['--sparse', ...args], ['holes']);
      assert.throws(() => scan(tar), { code: 'UNSUPPORTED', message: /sparse file .* not supported/ }, args.join(' '));
    }
  });
});
