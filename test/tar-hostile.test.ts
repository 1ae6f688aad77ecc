// Hand-built archives for what GNU tar will not write: corrupt checksums,
// escaping paths, NULs, negative and absurd sizes, bad PAX records, odd
// types, truncation. Every case is fed in several chunkings.

import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { TarScanner, MAX_EXTENSION_SIZE, type TarEntry } from '../src/tar/index.js';

// ---- a tiny tar writer -------------------------------------------------

interface Fields {
  name?: string | Buffer;
  mode?: number;
  uid?: number;
  gid?: number;
  size?: number;
  /** Raw 12-byte size field, overriding `size`. */
  sizeField?: Buffer;
  /** Raw 8-byte uid field, overriding `uid`. */
  uidField?: Buffer;
  mtime?: number;
  mtimeField?: Buffer;
  type?: string;
  linkname?: string;
  magic?: 'ustar' | 'gnu' | 'v7';
  uname?: string;
  gname?: string;
  devmajor?: number;
  devminor?: number;
  prefix?: string;
  checksum?: 'unsigned' | 'signed' | 'bad';
}

function octal(b: Buffer, off: number, len: number, n: number): void {
  b.write(n.toString(8).padStart(len - 1, '0') + '\0', off, len, 'latin1');
}

function header(f: Fields): Buffer {
  const b = Buffer.alloc(512);
  const name = typeof f.name === 'string' || f.name === undefined ? Buffer.from(f.name ?? 'file') : f.name;
  name.copy(b, 0, 0, 100);
  octal(b, 100, 8, f.mode ?? 0o644);
  if (f.uidField) f.uidField.copy(b, 108);
  else octal(b, 108, 8, f.uid ?? 0);
  octal(b, 116, 8, f.gid ?? 0);
  if (f.sizeField) f.sizeField.copy(b, 124);
  else octal(b, 124, 12, f.size ?? 0);
  if (f.mtimeField) f.mtimeField.copy(b, 136);
  else octal(b, 136, 12, f.mtime ?? 1700000000);
  b.write(f.type ?? '0', 156, 1, 'latin1');
  b.write(f.linkname ?? '', 157, 100);
  const magic = f.magic ?? 'ustar';
  if (magic === 'ustar') b.write('ustar\x0000', 257, 8, 'latin1');
  if (magic === 'gnu') b.write('ustar  \x00', 257, 8, 'latin1');
  if (magic !== 'v7') {
    b.write(f.uname ?? 'user', 265, 32);
    b.write(f.gname ?? 'group', 297, 32);
    octal(b, 329, 8, f.devmajor ?? 0);
    octal(b, 337, 8, f.devminor ?? 0);
  }
  if (f.prefix) b.write(f.prefix, 345, 155);
  b.fill(0x20, 148, 156);
  let sum = 0;
  for (const x of b) sum += f.checksum === 'signed' && x >= 0x80 ? x - 256 : x;
  if (f.checksum === 'bad') sum += 1;
  b.write((sum & 0o777777).toString(8).padStart(6, '0') + '\0 ', 148, 8, 'latin1');
  return b;
}

function padded(data: string | Buffer): Buffer {
  const d = typeof data === 'string' ? Buffer.from(data) : data;
  return Buffer.concat([d, Buffer.alloc((512 - (d.length % 512)) % 512)]);
}

function file(name: string, content: string, extra: Fields = {}): Buffer {
  return Buffer.concat([header({ name, size: Buffer.byteLength(content), ...extra }), padded(content)]);
}

function paxRecord(key: string, value: string | Buffer): Buffer {
  const body = Buffer.concat([Buffer.from(` ${key}=`), typeof value === 'string' ? Buffer.from(value) : value, Buffer.from('\n')]);
  let len = body.length + 1;
  while (String(len).length + body.length !== len) len++;
  return Buffer.concat([Buffer.from(String(len)), body]);
}

function pax(records: Array<[string, string | Buffer]> | Buffer, type = 'x'): Buffer {
  const payload = Buffer.isBuffer(records) ? records : Buffer.concat(records.map(([k, v]) => paxRecord(k, v)));
  return Buffer.concat([header({ name: 'PaxHeader', type, size: payload.length }), padded(payload)]);
}

function gnuLong(type: 'L' | 'K', value: string): Buffer {
  const payload = Buffer.from(value + '\0');
  return Buffer.concat([header({ name: '././@LongLink', type, size: payload.length, magic: 'gnu' }), padded(payload)]);
}

const END = Buffer.alloc(1024);

function tar(...parts: Buffer[]): Buffer {
  return Buffer.concat([...parts, END]);
}

function base256(n: bigint, len: number): Buffer {
  const b = Buffer.alloc(len);
  let v = n < 0n ? (1n << BigInt(8 * len)) + n : n;
  for (let i = len - 1; i >= 0; i--) {
    b[i] = Number(v & 0xffn);
    v >>= 8n;
  }
  if (n >= 0n) b[0] = 0x80;
  return b;
}

// ---- scanning ------------------------------------------------------------

const CHUNKINGS = [1, 511, 512, 513, 65536];

function scanWith(buf: Buffer, chunk: number): TarEntry[] {
  const entries: TarEntry[] = [];
  const s = new TarScanner((e) => entries.push(e));
  for (let off = 0; off < buf.length; off += chunk) s.push(Buffer.from(buf.subarray(off, off + chunk)));
  s.finish();
  assert.equal(s.position, buf.length);
  return entries;
}

function scan(buf: Buffer): TarEntry[] {
  const ref = scanWith(buf, buf.length || 1);
  for (const c of CHUNKINGS) assert.deepStrictEqual(scanWith(buf, c), ref, `chunking ${c}`);
  return ref;
}

function rejects(buf: Buffer, code: 'BAD_TAR' | 'UNSUPPORTED', message: RegExp): void {
  for (const c of [buf.length || 1, ...CHUNKINGS]) {
    assert.throws(
      () => scanWith(buf, c),
      (e: unknown) => {
        assert.equal((e as { name?: string }).name, 'ClipError', String(e));
        assert.equal((e as { code?: string }).code, code, String(e));
        assert.match((e as Error).message, message);
        return true;
      },
      `chunking ${c}`,
    );
  }
}

// ---- tests -----------------------------------------------------------------

describe('TarScanner on hand-built archives', () => {
  it('reports data offsets of a plain ustar archive', () => {
    const buf = tar(file('a', 'hello'), file('b', ''), file('c', 'x'.repeat(512)), file('d', 'y'.repeat(513)));
    const entries = scan(buf);
    assert.deepEqual(
      entries.map((e) => [e.path, e.size, e.dataOffset]),
      [
        ['a', 5, 512],
        ['b', 0, 1536],
        ['c', 512, 2048],
        ['d', 513, 3072],
      ],
    );
    assert.equal(buf.subarray(3072, 3072 + 513).toString(), 'y'.repeat(513));
    assert.deepEqual(entries[0], {
      path: 'a',
      type: 'file',
      mode: 0o644,
      uid: 0,
      gid: 0,
      uname: 'user',
      gname: 'group',
      size: 5,
      dataOffset: 512,
      mtime: { sec: 1700000000, nsec: 0 },
      devmajor: 0,
      devminor: 0,
    });
  });

  it('verifies checksums, accepting signed sums', () => {
    rejects(tar(file('a', 'x'), file('b', 'y', { checksum: 'bad' })), 'BAD_TAR', /checksum at offset 1024\b/);
    const high = Buffer.from('café-ÿ', 'utf8'); // bytes >= 0x80, where signed and unsigned sums differ
    for (const checksum of ['signed', 'unsigned'] as const) {
      const [e] = scan(tar(Buffer.concat([header({ name: high, size: 1, checksum }), padded('z')])));
      assert.equal(e!.size, 1);
    }
  });

  it('normalises absolute and redundant paths', () => {
    const entries = scan(
      tar(
        header({ name: './', type: '5' }),
        header({ name: '/', type: '5' }),
        header({ name: '.', type: '5' }),
        file('/etc/passwd', 'root'),
        header({ name: '//a/./b//c/', type: '5' }),
        file('./x/./y', ''),
        header({ name: 'h', type: '1', linkname: '/etc//passwd' }),
        header({ name: 's', type: '2', linkname: '/../../etc/./passwd' }),
        header({ name: 'pre.txt', prefix: '/usr/./share' }),
        header({ name: '.hidden/..dots.../...', type: '5' }),
      ),
    );
    assert.deepEqual(
      entries.map((e) => [e.path, e.type, e.linkname]),
      [
        ['', 'dir', undefined],
        ['', 'dir', undefined],
        ['', 'dir', undefined],
        ['etc/passwd', 'file', undefined],
        ['a/b/c', 'dir', undefined],
        ['x/y', 'file', undefined],
        ['h', 'hardlink', 'etc/passwd'],
        ['s', 'symlink', '/../../etc/./passwd'], // symlink targets are kept as stored
        ['usr/share/pre.txt', 'file', undefined],
        ['.hidden/..dots.../...', 'dir', undefined],
      ],
    );
  });

  it('refuses ".." components wherever a path comes from', () => {
    rejects(tar(file('../evil', 'x')), 'BAD_TAR', /"\.\.\/evil".*"\.\." component/);
    rejects(tar(file('a/../../b', 'x')), 'BAD_TAR', /"a\/\.\.\/\.\.\/b"/);
    rejects(tar(header({ name: 'a/..', type: '5' })), 'BAD_TAR', /"\.\." component/);
    rejects(tar(header({ name: 'x', prefix: '../up' })), 'BAD_TAR', /"\.\.\/up\/x"/);
    rejects(tar(pax([['path', 'ok/../../../etc/shadow']]), file('innocent', 'x')), 'BAD_TAR', /"ok\/\.\.\/\.\.\/\.\.\/etc\/shadow"/);
    rejects(tar(gnuLong('L', 'long/../../escape'), file('short', 'x', { magic: 'gnu' })), 'BAD_TAR', /long\/\.\.\/\.\.\/escape/);
    rejects(tar(header({ name: 'h', type: '1', linkname: '../../etc/shadow' })), 'BAD_TAR', /"\.\.\/\.\.\/etc\/shadow"/);
    rejects(tar(gnuLong('K', '../x'), header({ name: 'h', type: '1', magic: 'gnu' })), 'BAD_TAR', /"\.\.\/x"/);
    // ... but symlink targets are the container's business.
    const [s] = scan(tar(header({ name: 's', type: '2', linkname: '../../..' })));
    assert.equal(s!.linkname, '../../..');
  });

  it('refuses NUL bytes in PAX paths and link targets', () => {
    rejects(tar(pax([['path', 'a\0b']]), file('x', '')), 'BAD_TAR', /NUL byte in PAX path/);
    rejects(tar(pax([['linkpath', 'a\0b']]), header({ name: 's', type: '2' })), 'BAD_TAR', /NUL byte in PAX linkpath/);
  });

  it('refuses empty names and non-directories at the root', () => {
    rejects(tar(file('', 'x')), 'BAD_TAR', /empty name/);
    rejects(tar(header({ name: '', type: '5' })), 'BAD_TAR', /empty name/);
    rejects(tar(file('.', 'x', { type: '7' })), 'BAD_TAR', /file entry "." at offset 0 names the root/);
    // A regular file with a trailing slash is a directory (old tars), so "./" is the root.
    assert.deepEqual(
      scan(tar(file('./', 'x'))).map((e) => [e.path, e.type, e.size]),
      [['', 'dir', 0]],
    );
    rejects(tar(header({ name: '/', type: '2', linkname: 'x' })), 'BAD_TAR', /names the root/);
    rejects(tar(header({ name: 'h', type: '1', linkname: './' })), 'BAD_TAR', /empty target/);
  });

  it('reads base-256 numbers and refuses negative or absurd sizes', () => {
    const content = 'b'.repeat(1000);
    const [e] = scan(tar(Buffer.concat([header({ sizeField: base256(1000n, 12), magic: 'gnu' }), padded(content)])));
    assert.equal(e!.size, 1000);
    rejects(tar(header({ sizeField: base256(-1n, 12) })), 'BAD_TAR', /negative size -1 in tar header at offset 0/);
    rejects(tar(header({ sizeField: base256(-(2n ** 80n), 12) })), 'BAD_TAR', /negative size/);
    rejects(tar(header({ sizeField: base256(2n ** 53n, 12) })), 'BAD_TAR', /size too large/);
    rejects(tar(header({ sizeField: base256(2n ** 80n, 12) })), 'BAD_TAR', /size too large/);
    rejects(tar(header({ sizeField: Buffer.from('0000000001x\0') })), 'BAD_TAR', /invalid size field/);
    rejects(tar(header({ sizeField: Buffer.from([0x81, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1]) })), 'BAD_TAR', /invalid size field/);
    rejects(tar(header({ uidField: base256(2n ** 32n, 8) })), 'BAD_TAR', /uid 4294967296 out of range/);
    rejects(tar(header({ uidField: base256(-5n, 8) })), 'BAD_TAR', /uid -5 out of range/);
    rejects(tar(pax([['size', '-5']]), file('x', '')), 'BAD_TAR', /invalid PAX size/);
    rejects(tar(pax([['size', '9007199254740992']]), file('x', '')), 'BAD_TAR', /PAX size .* out of range/);
    // A size that fits but whose data is not there: reported, then truncation.
    const big = 2 ** 40;
    const entries: TarEntry[] = [];
    const s = new TarScanner((x) => entries.push(x));
    s.push(header({ name: 'huge', sizeField: base256(BigInt(big), 12) }));
    s.push(Buffer.alloc(4096));
    assert.deepEqual(
      entries.map((x) => [x.path, x.size, x.dataOffset]),
      [['huge', big, 512]],
    );
    assert.equal(s.position, 4608);
    assert.throws(() => s.finish(), { code: 'BAD_TAR', message: /truncated inside the data of "huge" \(1099511623680 bytes missing\)/ });
    // Negative mtimes are fine.
    const [old] = scan(tar(header({ mtimeField: base256(-86400n, 12) })));
    assert.deepEqual(old!.mtime, { sec: -86400, nsec: 0 });
  });

  it('applies PAX records: size, ids, names, times, xattrs', () => {
    const entries = scan(
      tar(
        pax([
          ['path', 'pax/name'],
          ['size', '3'],
          ['uid', '70000'],
          ['gid', '80000'],
          ['uname', 'ünïcode'],
          ['gname', 'g'],
          ['mtime', '1700000000.000000001'],
          ['atime', '-0.5'],
          ['ctime', '12.9999999999'],
          ['SCHILY.xattr.user.raw', Buffer.from([0, 10, 61, 255])],
          ['SCHILY.xattr.security.capability', Buffer.from([1, 0, 0, 2])],
          ['LIBARCHIVE.xattr.user.a%3Db%25', Buffer.from('dmEAbA', 'latin1')], // "va\0l", unpadded base64
          ['comment', 'ignored'],
        ]),
        Buffer.concat([header({ name: 'header/name', size: 0 }), padded('abc')]),
        file('after', 'z'),
      ),
    );
    assert.equal(entries.length, 2);
    const e = entries[0]!;
    assert.deepEqual([e.path, e.size, e.dataOffset, e.uid, e.gid, e.uname, e.gname], ['pax/name', 3, 1536, 70000, 80000, 'ünïcode', 'g']);
    assert.deepEqual(e.mtime, { sec: 1700000000, nsec: 1 });
    assert.deepEqual(e.atime, { sec: -1, nsec: 500000000 });
    assert.deepEqual(e.ctime, { sec: 12, nsec: 999999999 });
    assert.deepEqual(
      e.xattrs,
      new Map([
        ['user.raw', Buffer.from([0, 10, 61, 255])],
        ['security.capability', Buffer.from([1, 0, 0, 2])],
        ['user.a=b%', Buffer.from('va\0l', 'latin1')],
      ]),
    );
    // The per-entry header applied to one entry only.
    assert.deepEqual([entries[1]!.path, entries[1]!.uname, entries[1]!.xattrs], ['after', 'user', undefined]);
  });

  it('keeps applying global PAX headers; per-entry records win', () => {
    const entries = scan(
      tar(
        pax(
          [
            ['uname', 'global'],
            ['mtime', '5.5'],
            ['comment', 'git archive'],
          ],
          'g',
        ),
        file('one', ''),
        pax([
          ['uname', ''],
          ['uid', '42'],
        ]), // empty value: back to the header's uname
        file('two', '', { uname: 'hdr' }),
        pax([['uname', '']], 'g'), // empty value in a global header: forget it
        file('three', '', { uname: 'hdr3' }),
      ),
    );
    assert.deepEqual(
      entries.map((e) => [e.path, e.uname, e.uid, e.mtime.sec, e.mtime.nsec]),
      [
        ['one', 'global', 0, 5, 500000000],
        ['two', 'hdr', 42, 5, 500000000],
        ['three', 'hdr3', 0, 5, 500000000],
      ],
    );
  });

  it('validates PAX record lengths', () => {
    const bad = (payload: string) => tar(pax(Buffer.from(payload)), file('x', ''));
    rejects(bad('99 path=abc\n'), 'BAD_TAR', /PAX record length beyond the header/);
    rejects(bad('13 path=abc\n'), 'BAD_TAR', /PAX record length beyond the header/);
    rejects(bad('5 path=abc\n'), 'BAD_TAR', /not terminated by newline/);
    rejects(bad('11 path=abc\n\n'), 'BAD_TAR', /not terminated by newline/);
    rejects(bad('12 path=abcd'), 'BAD_TAR', /not terminated by newline/);
    rejects(bad('x path=abc\n'), 'BAD_TAR', /bad PAX record length/);
    rejects(bad('11path=abc\n'), 'BAD_TAR', /bad PAX record length/);
    rejects(bad('7 noeq\n'), 'BAD_TAR', /without key/);
    rejects(bad('7 =abc\n'), 'BAD_TAR', /without key/);
    rejects(bad('3 \n'), 'BAD_TAR', /bad PAX record length/);
    rejects(bad('12 path=abc\nJUNK'), 'BAD_TAR', /bad PAX record length/);
    rejects(bad('13 mtime=1e5\n'), 'BAD_TAR', /invalid PAX mtime "1e5"/);
    rejects(bad('12 uid=0x10\n'), 'BAD_TAR', /invalid PAX uid/);
    // NUL padding after the last record is tolerated.
    const [e] = scan(tar(pax(Buffer.from('12 path=abc\n\0\0\0')), file('x', '')));
    assert.equal(e!.path, 'abc');
    rejects(
      tar(Buffer.concat([header({ type: 'x', size: MAX_EXTENSION_SIZE + 1 })]), Buffer.alloc(MAX_EXTENSION_SIZE + 512)),
      'BAD_TAR',
      /extended header of 1048577 bytes at offset 0 is too large/,
    );
  });

  it('reads GNU long names and long link targets', () => {
    const longName = 'n'.repeat(300);
    const longTarget = 't/'.repeat(200) + 'end';
    const entries = scan(
      tar(
        gnuLong('L', longName),
        file('truncated-name', 'data', { magic: 'gnu' }),
        gnuLong('L', 'sym'),
        gnuLong('K', longTarget),
        header({ name: 'x', type: '2', linkname: 'short', magic: 'gnu' }),
        gnuLong('K', longName),
        header({ name: 'hl', type: '1', magic: 'gnu' }),
        file('plain', '', { magic: 'gnu' }),
      ),
    );
    assert.deepEqual(
      entries.map((e) => [e.path, e.type, e.linkname]),
      [
        [longName, 'file', undefined],
        ['sym', 'symlink', longTarget],
        ['hl', 'hardlink', longName],
        ['plain', 'file', undefined],
      ],
    );
  });

  it('reads every entry type; links, devices, fifos and directories have no data, whatever the size says', () => {
    const entries = scan(
      tar(
        file('reg', 'r'),
        file('areg', 'a', { type: '\0' }),
        file('contig', 'c', { type: '7' }),
        header({ name: 'hl', type: '1', linkname: 'reg', size: 3 }),
        header({ name: 'sl', type: '2', linkname: 'reg', size: 600 }),
        header({ name: 'chr', type: '3', devmajor: 1, devminor: 3, mode: 0o20666, size: 512 }),
        header({ name: 'blk', type: '4', devmajor: 259, devminor: 65536 }),
        header({ name: 'dir/', type: '5', mode: 0o41777, size: 10 }),
        header({ name: 'fifo', type: '6', mode: 0o10600, size: 1 }),
        header({ name: 'setuid', mode: 0o104755 }),
        header({ name: 'dumpdir', type: 'D', size: 4 }),
        padded('Yabc'),
        header({ name: 'vol', type: 'V', size: 700 }),
        padded('v'.repeat(700)),
        pax([['path', 'not/applied/to/next']]),
        header({ name: 'vendor', type: 'X', size: 1 }),
        padded('?'),
        file('last', 'end'),
      ),
    );
    assert.deepEqual(
      entries.map((e) => [e.path, e.type, e.size, e.mode.toString(8), e.devmajor, e.devminor, e.linkname ?? null]),
      [
        ['reg', 'file', 1, '644', 0, 0, null],
        ['areg', 'file', 1, '644', 0, 0, null],
        ['contig', 'file', 1, '644', 0, 0, null],
        ['hl', 'hardlink', 0, '644', 0, 0, 'reg'],
        ['sl', 'symlink', 0, '644', 0, 0, 'reg'],
        ['chr', 'char', 0, '666', 1, 3, null],
        ['blk', 'block', 0, '644', 259, 65536, null],
        ['dir', 'dir', 0, '1777', 0, 0, null],
        ['fifo', 'fifo', 0, '600', 0, 0, null],
        ['setuid', 'file', 0, '4755', 0, 0, null],
        ['dumpdir', 'dir', 0, '644', 0, 0, null],
        ['last', 'file', 3, '644', 0, 0, null],
      ],
    );
    const buf = tar(file('q', 'x', { type: 'q' }));
    rejects(buf, 'BAD_TAR', /unknown tar entry type 'q' at offset 0/);
    rejects(tar(file('q', 'x', { type: '\x01' })), 'BAD_TAR', /unknown tar entry type 0x1/);
  });

  it('reads v7 headers (no magic): trailing slash means directory', () => {
    const entries = scan(tar(header({ name: 'olddir/', type: '\0', magic: 'v7' }), file('oldfile', 'v7', { type: '\0', magic: 'v7' })));
    assert.deepEqual(
      entries.map((e) => [e.path, e.type, e.size, e.uname]),
      [
        ['olddir', 'dir', 0, undefined],
        ['oldfile', 'file', 2, undefined],
      ],
    );
  });

  it('refuses sparse files', () => {
    rejects(tar(header({ name: 'sp', type: 'S', magic: 'gnu', size: 0 })), 'UNSUPPORTED', /sparse file "sp" at offset 0 is not supported/);
    rejects(
      tar(
        pax([
          ['GNU.sparse.major', '1'],
          ['GNU.sparse.minor', '0'],
          ['GNU.sparse.name', 'sp'],
        ]),
        file('GNUSparseFile.0/sp', ''),
      ),
      'UNSUPPORTED',
      /sparse file/,
    );
    rejects(tar(pax([['GNU.sparse.numblocks', '0']], 'g'), file('any', '')), 'UNSUPPORTED', /sparse file "any"/);
  });

  it('stops at two zero blocks and ignores what follows', () => {
    const buf = Buffer.concat([file('a', 'x'), END, file('after-end', 'x'), Buffer.from('garbage'), Buffer.alloc(3)]);
    const entries = scan(buf);
    assert.deepEqual(
      entries.map((e) => e.path),
      ['a'],
    );
  });

  it('refuses a lone zero block followed by a header', () => {
    rejects(
      Buffer.concat([file('a', 'x'), Buffer.alloc(512), file('b', 'y'), END]),
      'BAD_TAR',
      /lone zero block followed by a header at offset 1536/,
    );
  });

  it('tolerates missing end blocks and padding, not truncation', () => {
    assert.deepEqual(
      scan(file('a', 'x')).map((e) => e.path),
      ['a'],
    );
    assert.deepEqual(
      scan(Buffer.concat([file('a', 'x'), Buffer.alloc(512)])).map((e) => e.path),
      ['a'],
    );
    assert.deepEqual(
      scan(Buffer.concat([file('a', 'x'), Buffer.alloc(700)])).map((e) => e.path),
      ['a'],
    );
    const noPad = Buffer.concat([header({ name: 'a', size: 3 }), Buffer.from('abc')]);
    assert.deepEqual(
      scan(noPad).map((e) => [e.path, e.size]),
      [['a', 3]],
    );
    assert.deepEqual(scan(Buffer.alloc(0)), []);

    const two = Buffer.concat([file('a', 'xyz'), file('b', 'hello')]);
    rejects(two.subarray(0, 1024 + 100), 'BAD_TAR', /truncated inside the header at offset 1024/);
    rejects(two.subarray(0, 1024 + 512 + 2), 'BAD_TAR', /truncated inside the data of "b" \(3 bytes missing\)/);
    rejects(Buffer.concat([header({ name: 'a', size: 3 }), Buffer.from('ab')]), 'BAD_TAR', /truncated inside the data/);
    const ext = pax([['path', 'p']]);
    rejects(ext.subarray(0, 520), 'BAD_TAR', /truncated inside an extended header at offset 512/);
    rejects(ext, 'BAD_TAR', /extended header not followed by an entry/);
    rejects(Buffer.concat([gnuLong('L', 'x'), END]), 'BAD_TAR', /extended header not followed by an entry at offset 1024/);
  });

  it('keeps failing after an error, and counts every byte', () => {
    const s = new TarScanner(() => {});
    const bad = header({ checksum: 'bad' });
    assert.throws(() => s.push(bad), { code: 'BAD_TAR' });
    assert.throws(() => s.push(Buffer.alloc(512)), { code: 'BAD_TAR', message: /checksum at offset 0/ });
    assert.throws(() => s.finish(), { code: 'BAD_TAR' });

    const ok = new TarScanner(() => {});
    ok.push(Buffer.alloc(0));
    ok.push(file('a', 'x').subarray(0, 100));
    assert.equal(ok.position, 100);
  });

  it('does not keep references to pushed chunks', () => {
    const buf = tar(
      pax([
        ['path', 'pax-path'],
        ['SCHILY.xattr.user.k', 'v'],
      ]),
      gnuLong('K', 'target'),
      header({ name: 's', type: '2' }),
    );
    const entries: TarEntry[] = [];
    const s = new TarScanner((e) => entries.push(e));
    for (let off = 0; off < buf.length; off += 100) {
      const chunk = Buffer.from(buf.subarray(off, off + 100));
      s.push(chunk);
      chunk.fill(0x41);
    }
    s.finish();
    assert.deepEqual(
      entries.map((e) => [e.path, e.linkname, e.xattrs?.get('user.k')?.toString()]),
      [['pax-path', 'target', 'v']],
    );
  });

  // ---- issue 10: what Go's archive/tar (containerd, docker) reads --------

  it('lists a header hidden in the "data" of a link, device, fifo or directory, as Go does', () => {
    const hidden = (name: string): Buffer => file(name, 'x');
    const entries = scan(
      tar(
        header({ name: 'd/', type: '5', size: 512 }),
        hidden('h-dir'),
        header({ name: 'sl', type: '2', linkname: 't', size: 1024 }),
        hidden('h-symlink'),
        header({ name: 'hl', type: '1', linkname: 'd', size: 600 }),
        hidden('h-hardlink'),
        header({ name: 'c', type: '3', size: 512 }),
        hidden('h-char'),
        header({ name: 'b', type: '4', size: 512 }),
        hidden('h-block'),
        header({ name: 'p', type: '6', size: 512 }),
        hidden('h-fifo'),
        // A PAX size does not give them data either.
        pax([['size', '512']]),
        header({ name: 'sl2', type: '2', linkname: 't' }),
        hidden('h-pax'),
        // An old '\0' entry named "x/" is a directory to Go: no data.
        header({ name: 'old/', type: '\0', size: 512 }),
        hidden('h-old'),
        // GNU dumpdirs and regular files keep their data.
        header({ name: 'dump', type: 'D', size: 512 }),
        file('not-an-entry', 'x').subarray(0, 512),
        header({ name: 'reg', size: 512 }),
        file('not-an-entry-either', 'x').subarray(0, 512),
        file('last', 'end'),
      ),
    );
    assert.deepEqual(
      entries.map((e) => `${e.path}:${e.type}:${e.size}`),
      [
        'd:dir:0',
        'h-dir:file:1',
        'sl:symlink:0',
        'h-symlink:file:1',
        'hl:hardlink:0',
        'h-hardlink:file:1',
        'c:char:0',
        'h-char:file:1',
        'b:block:0',
        'h-block:file:1',
        'p:fifo:0',
        'h-fifo:file:1',
        'sl2:symlink:0',
        'h-pax:file:1',
        'old:dir:0',
        'h-old:file:1',
        'dump:dir:0',
        'reg:file:512',
        'last:file:3',
      ],
    );
  });

  it('refuses names that are not UTF-8 wherever they come from, showing the bytes', () => {
    const n = (tail: number): Buffer => Buffer.from([0x6e, tail]);
    rejects(tar(header({ name: n(0xff) })), 'BAD_TAR', /^name "n\\xff" of the entry at offset 0 is not UTF-8/);
    rejects(
      tar(file('ok', 'x'), header({ name: 'x', prefix: 'dir' }), header({ name: Buffer.concat([Buffer.from('a/'), n(0xfe)]) })),
      'BAD_TAR',
      /name "a\/n\\xfe" of the entry at offset 1536 is not UTF-8/,
    );
    rejects(tar(pax([['path', n(0xfe)]]), file('x', '')), 'BAD_TAR', /name "n\\xfe" of the entry at offset 1024/);
    rejects(tar(pax([['linkpath', n(0xfe)]]), header({ name: 's', type: '2' })), 'BAD_TAR', /link target "n\\xfe"/);
    const gnu = (type: 'L' | 'K', value: Buffer): Buffer =>
      Buffer.concat([
        header({ name: '././@LongLink', type, size: value.length + 1, magic: 'gnu' }),
        padded(Buffer.concat([value, Buffer.alloc(1)])),
      ]);
    rejects(tar(gnu('L', n(0xff)), file('x', '')), 'BAD_TAR', /name "n\\xff"/);
    rejects(tar(gnu('K', n(0xff)), header({ name: 'h', type: '1' })), 'BAD_TAR', /link target "n\\xff"/);
    const badLink = header({ name: 's', type: '2' });
    Buffer.from([0x74, 0xc3]).copy(badLink, 157); // "t" + half a UTF-8 sequence
    badLink.fill(0x20, 148, 156);
    let sum = 0;
    for (const x of badLink) sum += x;
    badLink.write(sum.toString(8).padStart(6, '0') + '\0 ', 148, 8, 'latin1');
    rejects(tar(badLink), 'BAD_TAR', /link target "t\\xc3"/);
    // Two xattr names that would both decode to "user.\uFFFD".
    const record = Buffer.concat([Buffer.from('25 SCHILY.xattr.user.'), Buffer.from([0xff]), Buffer.from('=v\n')]);
    assert.equal(record.length, 25);
    rejects(tar(pax(record), file('x', '')), 'BAD_TAR', /xattr name in PAX key "SCHILY.xattr.user.\\xff" is not UTF-8/);
    // Only what an entry uses counts: a ustar name cut inside a character, replaced by a PAX path, is fine.
    const cut = Buffer.from('é'.repeat(50), 'utf8').subarray(0, 99);
    const [e] = scan(tar(pax([['path', 'é'.repeat(50)]]), header({ name: cut, size: 0 })));
    assert.equal(e!.path, 'é'.repeat(50));
  });

  it('clamps times to years 1..9999, from PAX records and base-256 fields', () => {
    const MAX = 253402300799;
    const MIN = -62135596800;
    const entries = scan(
      tar(
        pax([
          ['mtime', '9007199254740991'],
          ['atime', '-9007199254740991.5'],
          ['ctime', '1' + '0'.repeat(30)],
        ]),
        file('pax', ''),
        file('b256', '', { mtimeField: base256(2n ** 60n, 12) }),
        file('b256neg', '', { mtimeField: base256(-(2n ** 62n), 12) }),
        file('inside', '', { mtimeField: base256(BigInt(MAX), 12) }),
      ),
    );
    assert.deepEqual(
      entries.map((e) => [e.path, e.mtime.sec, e.mtime.nsec, e.atime?.sec, e.ctime?.sec]),
      [
        ['pax', MAX, 0, MIN, MAX],
        ['b256', MAX, 0, undefined, undefined],
        ['b256neg', MIN, 0, undefined, undefined],
        ['inside', MAX, 0, undefined, undefined],
      ],
    );
  });

  it('refuses device numbers Linux cannot hold (they would alias other devices)', () => {
    const [ok] = scan(tar(header({ name: 'c', type: '3', devmajor: 0xfff, devminor: 0xfffff })));
    assert.deepEqual([ok!.devmajor, ok!.devminor], [0xfff, 0xfffff]);
    rejects(tar(header({ name: 'c', type: '3', devmajor: 0x1000 })), 'BAD_TAR', /device number 4096:0 of "c" at offset 0 is out of range/);
    rejects(tar(header({ name: 'b', type: '4', devminor: 0x100000 })), 'BAD_TAR', /device number 0:1048576/);
    // Other types' device fields mean nothing and are ignored.
    const [f] = scan(tar(header({ name: 'f', devmajor: 0x7ffff })));
    assert.equal(f!.devmajor, 0);
  });
});
