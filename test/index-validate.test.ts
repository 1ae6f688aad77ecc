// The decoder against hostile .clip files, one rule at a time: each crafted
// file has a correct checksum (anyone can recompute it), so only the
// decoder's checks stand between it and clip. Plus the CLI's answer to such
// files (ls -l, inspect) and the consumers at the edges of what is accepted.

import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import zlib from 'node:zlib';
import { after, before, describe, it } from 'node:test';
import { ClipError } from '../src/errors.js';
import { attrOf } from '../src/fs/attributes.js';
import { writeAttr } from '../src/fuse/wire.js';
import { MAX_SPAN_OUTPUT } from '../src/gzip/types.js';
import { mergeLayers } from '../src/image/merge.js';
import type { Node } from '../src/image/types.js';
import { decodeIndex, encodeIndex } from '../src/index/format.js';
import type { ClipIndex } from '../src/index/types.js';
import { inspectIndex, listNode } from '../src/index/inspect.js';
import { MAX_TIME_SEC, MIN_TIME_SEC, type TarEntry } from '../src/tar/types.js';
import { bytesField, mapBody, openClip, sealClip, splice, type FieldKind } from './helpers/clip-body.js';
import { runClip } from './helpers/cli.js';
import { tarEntry } from './helpers/tar-entry.js';

const D = (c: string): string => `sha256:${c.repeat(64)}`;

const entry = (p: string, extra: Partial<TarEntry> = {}): TarEntry => tarEntry(p, { mtime: { sec: 1_700_000_000, nsec: 0 }, ...extra });

/** A small valid image index: dirs a and a/b, a file with data, a symlink. */
function sample(): ClipIndex {
  const tree = mergeLayers([
    [
      entry('a', { type: 'dir', mode: 0o755 }),
      entry('a/b', { type: 'dir', mode: 0o755 }),
      entry('a/b/f', { size: 100, dataOffset: 512 }),
      entry('a/g', { size: 5, dataOffset: 1536 }),
      entry('l', { type: 'symlink', linkname: 'a/g' }),
    ],
  ]);
  return {
    kind: 'oci',
    image: {
      location: 'docker://127.0.0.1:5000/t',
      reference: '127.0.0.1:5000/t:latest',
      manifestDigest: D('a'),
      manifestMediaType: 'application/vnd.oci.image.manifest.v1+json',
      configDigest: D('b'),
      platform: { os: 'linux', architecture: 'amd64' },
      config: {},
      indexedAt: '2026-01-01T00:00:00.000Z',
      indexedBy: 'clip test',
      spanSize: 1 << 20,
    },
    layers: [
      {
        digest: D('c'),
        mediaType: 'application/vnd.oci.image.layer.v1.tar+gzip',
        diffId: D('d'),
        spans: {
          compression: 'gzip',
          compressedSize: 3000,
          uncompressedSize: 4096,
          checkpoints: [
            { in: 10, out: 0, window: Buffer.alloc(0) },
            { in: 1500, out: 2048, window: Buffer.from('w') },
          ],
          digests: [Buffer.alloc(32, 1), Buffer.alloc(32, 2)],
        },
      },
    ],
    ...tree,
  };
}

function node(index: ClipIndex, ino: number): Node {
  return index.nodes[ino - 1]!;
}

function byPath(index: ClipIndex, p: string): Node {
  let n = index.root;
  for (const part of p.split('/')) n = n.children!.get(part)!;
  return n;
}

function refused(file: Buffer, re: RegExp): void {
  assert.throws(
    () => decodeIndex(file),
    (e: unknown) => {
      assert.ok(e instanceof ClipError, `not a ClipError: ${String(e)}`);
      assert.equal(e.code, 'BAD_INDEX');
      assert.match(e.message, re);
      return true;
    },
  );
}

/** Encodes `index` after `change`, and expects the decoder to refuse it. */
function refuses(change: (i: ClipIndex) => void, re: RegExp): void {
  const index = sample();
  change(index);
  refused(encodeIndex(index), re);
}

/** The sample's body with field number `which` of `kind` replaced by `by`, sealed with a correct checksum. */
function withField(kind: FieldKind, which: number, by: Buffer): Buffer {
  const c = openClip(encodeIndex(sample()));
  const f = mapBody(c.raw, c.version).fields.filter((x) => x.kind === kind)[which]!;
  return sealClip(c, splice(c.raw, f, by));
}

describe('.clip decoder: hostile files', () => {
  it('accepts the sample (the rules below are what makes each variant bad)', () => {
    const back = decodeIndex(encodeIndex(sample()));
    assert.equal(back.nodes.length, sample().nodes.length);
  });

  it('refuses digests that are not algorithm:hex (sha256:../../X would become a cache path)', () => {
    refuses((i) => (i.layers[0]!.digest = 'sha256:../../../../tmp/x'), /layers\[0\]\.digest "sha256:\.\.\/\.\.\/.*" is not a digest/);
    refuses((i) => (i.layers[0]!.digest = `sha256:${'A'.repeat(64)}`), /not a digest/);
    refuses((i) => (i.layers[0]!.digest = 'sha256:abc'), /not a digest/);
    refuses((i) => (i.layers[0]!.diffId = ''), /layers\[0\]\.diffId "" is not a digest/);
    refuses((i) => (i.image.manifestDigest = 'md5:0'), /image\.manifestDigest/);
    refuses((i) => (i.image.configDigest = ''), /image\.configDigest "" is not a digest/);
    // clip archive of a directory writes no config digest: '' is kept there.
    const s3 = sample();
    s3.kind = 's3';
    s3.image.configDigest = '';
    assert.equal(decodeIndex(encodeIndex(s3)).image.configDigest, '');
  });

  it('refuses an image record or layer summary of the wrong types', () => {
    refuses((i) => ((i.image as unknown as Record<string, unknown>).spanSize = 1.5), /image\.spanSize 1\.5 is not a byte count/);
    refuses((i) => ((i.image as unknown as Record<string, unknown>).config = null), /image\.config is not an object/);
    refuses((i) => ((i.image as unknown as Record<string, unknown>).config = [1]), /image\.config is not an object/);
    refuses((i) => ((i.image.platform as unknown as Record<string, unknown>).os = 7), /image\.platform\.os is not a string/);
    refuses((i) => ((i.image as unknown as Record<string, unknown>).location = { x: 1 }), /image\.location is not a string/);
    refuses((i) => ((i.layers[0]!.spans as unknown as Record<string, unknown>).compression = 'zstd'), /unknown compression "zstd"/);
    refuses((i) => (i.layers[0]!.spans.compressedSize = -1), /compressedSize -1 is not a byte count/);
    refuses((i) => (i.layers[0]!.spans.uncompressedSize = 2 ** 60), /uncompressedSize \d+ is not a byte count/);
  });

  it('refuses seek tables a read could not trust', () => {
    const cps = (i: ClipIndex) => i.layers[0]!.spans.checkpoints;
    refuses((i) => (cps(i)[0]!.out = 1), /checkpoint 0 is not at the start/);
    refuses((i) => (cps(i)[0]!.window = Buffer.from('x')), /checkpoint 0 is not at the start/);
    refuses((i) => (cps(i)[1]!.in = 10), /checkpoint 1 does not come after checkpoint 0/);
    refuses((i) => (cps(i)[1]!.out = 5000), /checkpoint 1 lies past the end/);
    refuses((i) => (cps(i)[1]!.window = Buffer.alloc(40 * 1024 + 1)), /40961-byte window/);
    refuses((i) => {
      i.layers[0]!.spans.compression = 'none';
      i.layers[0]!.spans.compressedSize = 4096;
      cps(i)[0]!.in = 0;
    }, /checkpoint 1 of an uncompressed layer maps 1500 to 2048/);
    // One span of 100 MiB: a read would inflate all of it.
    refuses(
      (i) => {
        i.layers[0]!.spans.uncompressedSize = 100 * 1024 * 1024;
      },
      new RegExp(`span 1 covers \\d+ uncompressed bytes \\(at most ${MAX_SPAN_OUTPUT}\\)`),
    );
    refuses((i) => {
      i.layers[0]!.spans.compressedSize = 300 * 1024 * 1024;
    }, /span 1 covers \d+ compressed bytes/);
  });

  it('refuses a huge count before looping or allocating', () => {
    const c = openClip(encodeIndex(sample()));
    const count = mapBody(c.raw, c.version).fields.find((f) => f.kind === 'cp-count')!;
    refused(sealClip(c, splice(c.raw, count, Buffer.from([0xff, 0xff, 0xff, 0xff, 0x0f]))), /4294967295 checkpoints of layer 0 cannot fit/);
  });

  it('refuses times outside years 1 to 9999, keeps the bounds', () => {
    refuses((i) => (byPath(i, 'a/g').mtime = { sec: 1e13, nsec: 0 }), /inode \d+ has a time 10000000000000 s outside years 1 to 9999/);
    refuses((i) => (byPath(i, 'a/g').atime = { sec: MIN_TIME_SEC - 1, nsec: 0 }), /outside years 1 to 9999/);
    refuses((i) => (byPath(i, 'a/g').ctime = { sec: MAX_TIME_SEC + 1, nsec: 0 }), /outside years 1 to 9999/);
    const edge = sample();
    byPath(edge, 'a/g').mtime = { sec: MAX_TIME_SEC, nsec: 999_999_999 };
    byPath(edge, 'a/b/f').mtime = { sec: MIN_TIME_SEC, nsec: 0 };
    const back = decodeIndex(encodeIndex(edge));
    const listed = listNode('', back.root, true);
    assert.equal(listed.find((e) => e.path === 'a/g')!.mtime, '9999-12-31T23:59:59.999Z');
    assert.equal(listed.find((e) => e.path === 'a/b/f')!.mtime, '0001-01-01T00:00:00.000Z');
  });

  it('refuses a directory that contains itself, an ancestor, or the root, and a directory with two parents', () => {
    refuses((i) => byPath(i, 'a/b').children!.set('up', byPath(i, 'a')), /directory inode \d+ has more than one parent/);
    refuses((i) => byPath(i, 'a/b').children!.set('self', byPath(i, 'a/b')), /more than one parent/);
    refuses((i) => byPath(i, 'a').children!.set('root', i.root), /lists the root directory/);
    refuses((i) => i.root.children!.set('again', byPath(i, 'a/b')), /more than one parent/);
    // A cycle cut off from the root: each directory has one parent, none is reached.
    refuses((i) => {
      const a = byPath(i, 'a');
      i.root.children!.delete('a');
      a.children!.get('b')!.children!.set('a', a);
    }, /not reachable from the root/);
    // Hardlinks (a file under two names) stay fine.
    const ok = sample();
    ok.root.children!.set('g2', byPath(ok, 'a/g'));
    assert.equal(decodeIndex(encodeIndex(ok)).root.children!.get('g2')!.ino, byPath(ok, 'a/g').ino);
  });

  it('refuses bad names: invalid UTF-8, ".", "..", "/", NUL, duplicates', () => {
    for (const [name, re] of [
      [Buffer.from([0x6e, 0xff]), /invalid UTF-8/],
      [Buffer.from('.'), /bad entry "\."/],
      [Buffer.from('..'), /bad entry "\.\."/],
      [Buffer.from('x/y'), /bad entry "x\/y"/],
      [Buffer.from('x\0y'), /bad entry "x\\u0000y"/],
    ] as const) {
      refused(withField('name', 0, bytesField(name)), re);
    }
    // Root's entries are "a" then "l": renaming "l" to "a" lists "a" twice.
    refused(withField('name', 1, bytesField(Buffer.from('a'))), /entry "a" appears twice/);
    // A byte-order mark is a character of the name, not dropped.
    const bom = sample();
    bom.root.children!.set('\uFEFFa', byPath(bom, 'l'));
    assert.ok(decodeIndex(encodeIndex(bom)).root.children!.has('\uFEFFa'));
  });

  it('refuses entries that name no inode, data on non-files, files without data, and bad symlinks or xattrs', () => {
    refused(withField('child', 0, Buffer.from([0])), /names no inode/);
    refused(withField('child', 0, Buffer.from([0x7f])), /names no inode/);
    const c = openClip(encodeIndex(sample()));
    const dirFlags = mapBody(c.raw, c.version).fields.filter((f) => f.kind === 'flags' && f.ino === 2)[0]!;
    refused(sealClip(c, splice(c.raw, dirFlags, Buffer.from([8]))), /inode 2 is a dir with file data/);
    refused(sealClip(c, splice(c.raw, dirFlags, Buffer.from([64]))), /unknown flags 64/);
    refuses((i) => {
      const f = byPath(i, 'a/g');
      f.layer = -1;
    }, /has 5 bytes but no data/);
    refuses((i) => (byPath(i, 'a').size = 4096), /is a dir with size 4096/);
    refuses((i) => (byPath(i, 'l').target = 'a\0b'), /NUL byte in its symlink target/);
    refuses((i) => (byPath(i, 'a/g').xattrs = new Map([['', Buffer.from('v')]])), /xattr named ""/);
    refuses((i) => (byPath(i, 'a/g').uid = 2 ** 32), /owner id beyond 32 bits/);
    refuses((i) => (byPath(i, 'a/g').mode = 0o100644), /beyond permission bits/);
    refuses((i) => (byPath(i, 'a/g').offset = 4095), /points outside its layer/);
  });

  it('FUSE attributes and inspect take every extreme the decoder accepts', () => {
    const edge = sample();
    const g = byPath(edge, 'a/g');
    g.uid = 0xffffffff;
    g.gid = 0xffffffff;
    g.nlink = Number.MAX_SAFE_INTEGER;
    g.mtime = { sec: MIN_TIME_SEC, nsec: 999_999_999 };
    g.atime = { sec: MAX_TIME_SEC, nsec: 0 };
    const back = decodeIndex(encodeIndex(edge));
    const b = Buffer.alloc(88);
    writeAttr(b, 0, attrOf(node(back, g.ino)));
    assert.equal(b.readBigInt64LE(32), BigInt(MIN_TIME_SEC));
    assert.equal(b.readBigInt64LE(24), BigInt(MAX_TIME_SEC));
    assert.equal(b.readUInt32LE(68), 0xffffffff);
    assert.equal(inspectIndex(back).counts.file, 2);
  });
});

describe('.clip decoder: what the CLI says', () => {
  let dir: string;
  before(async () => {
    dir = await mkdtemp(path.join(os.tmpdir(), 'clip-validate-'));
  });
  after(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  const noStack = (stderr: string): void => assert.doesNotMatch(stderr, /\n\s+at |unexpected error/, stderr);

  it('clip ls -l of an mtime of 10^13 s: a clear message, exit 1, no stack trace', async () => {
    for (const sec of [1e13, -1e13]) {
      const index = sample();
      byPath(index, 'a/g').mtime = { sec, nsec: 0 };
      const file = path.join(dir, `time${sec}.clip`);
      await writeFile(file, encodeIndex(index));
      const r = await runClip(['ls', '-l', file, 'a']);
      assert.equal(r.code, 1, r.stderr);
      assert.match(
        r.stderr,
        new RegExp(`^clip: .*time${sec}\\.clip: index body is corrupt: inode \\d+ has a time ${sec} s outside years 1 to 9999\\n$`),
      );
      noStack(r.stderr);
    }
  });

  it('clip inspect of a 64 KiB file whose body inflates to 64 MiB: refused before inflating', async () => {
    // A real deflate bomb, sealed with a correct checksum; the header says what it inflates to.
    const raw = Buffer.alloc(64 * 1024 * 1024);
    const deflated = zlib.deflateRawSync(raw, { level: 9 });
    const c = openClip(encodeIndex(sample()));
    const file = path.join(dir, 'bomb.clip');
    await writeFile(file, sealClip(c, raw, deflated));
    const r = await runClip(['inspect', file]);
    assert.equal(r.code, 1, r.stderr);
    assert.match(
      r.stderr,
      new RegExp(
        `^clip: .*bomb\\.clip: clip index body claims ${raw.length} bytes inflated from ${deflated.length}: more than 64 times its size`,
      ),
    );
    noStack(r.stderr);
  });

  it('clip ls -R of a directory that contains its parent: refused, not an endless listing', async () => {
    const index = sample();
    byPath(index, 'a/b').children!.set('loop', byPath(index, 'a'));
    const file = path.join(dir, 'cycle.clip');
    await writeFile(file, encodeIndex(index));
    const r = await runClip(['ls', '-R', file]);
    assert.equal(r.code, 1, r.stderr);
    assert.match(r.stderr, /^clip: .*cycle\.clip: index body is corrupt: directory inode \d+ has more than one parent\n$/);
    assert.equal(r.stdout.length, 0);
  });
});
