// clip archive / extract / mount of local archives, end to end as a user
// runs them: a tree with every kind of entry comes back identical (metadata
// and bytes) from extract and from a mount; sockets and unreadable entries
// are reported and skipped; a corrupted data byte fails the read (EIO, a log
// line, a non-zero clip cat), never serves wrong bytes; a truncated archive
// is refused at mount with a clear message.

import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { chmod, mkdir, open, readFile, rm, truncate, writeFile, copyFile } from 'node:fs/promises';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { isMounted } from '../src/fuse/index.js';
import { spanRange } from '../src/gzip/span-reader.js';
import { loadIndex } from '../src/index/load.js';
import { indexImage } from '../src/indexer/index-image.js';
import { runClip } from './helpers/cli.js';
import { buildFixture } from './helpers/fixtures.js';
import type { BuiltImage } from './helpers/image-builder.js';
import { clipWorkspace, mountRecords, sweepClipMounts, type ClipWorkspace } from './helpers/mounts.js';
import { BIG_FILE, BIG_SIZE, buildSourceTree, LONG_NAME, SOCKET, type SourceTree } from './helpers/source-tree.js';
import { compareTrees, walkTree } from './helpers/tree-walk.js';

const SPAN = '64K';

describe('clip archive (local)', () => {
  let ws: ClipWorkspace;
  let tree: SourceTree;
  let archive: string;
  let archived: { code: number; stderr: string };

  async function mount(file: string, mp: string): Promise<void> {
    await mkdir(mp, { recursive: true });
    const r = await runClip(['mount', file, mp, '--cache-dir', path.join(ws.dir, `cache-${path.basename(mp)}`)], { env: ws.env });
    assert.equal(r.code, 0, r.stderr);
  }

  async function umount(mp: string): Promise<void> {
    const r = await runClip(['umount', mp], { env: ws.env });
    assert.equal(r.code, 0, r.stderr);
    assert.ok(!isMounted(mp));
  }

  before(async () => {
    sweepClipMounts();
    ws = await clipWorkspace('archive');
    tree = await buildSourceTree(path.join(ws.dir, 'src'));
    archive = path.join(ws.dir, 'tree.clip');
    archived = await runClip(['archive', tree.root, '-o', archive, '--span-size', SPAN]);
  });
  after(async () => {
    sweepClipMounts();
    await tree?.close();
    if (ws) await rm(ws.dir, { recursive: true, force: true });
  });

  const notTheSocket = (p: string): boolean => p === SOCKET;

  it('archives every kind of entry, reporting and skipping the socket', async () => {
    assert.equal(archived.code, 0, archived.stderr);
    assert.match(archived.stderr, new RegExp(`^clip: skipped ${SOCKET}: it is a socket`, 'm'));
    assert.equal(archived.stderr.trim().split('\n').length, 1, archived.stderr);
    const text = (await runClip(['inspect', archive])).stdout.toString();
    assert.match(text, /^kind: +local archive$/m);
    assert.match(text, new RegExp(`^source: +dir:${tree.root}$`, 'm'));
    const report = JSON.parse((await runClip(['inspect', '--json', archive])).stdout.toString());
    assert.equal(report.kind, 'archive');
    assert.equal(report.layers.length, 1);
    assert.ok(report.layers[0].spans > BIG_SIZE / (64 * 1024), `${report.layers[0].spans} spans`);
    const names = (await runClip(['ls', '-R', archive])).stdout.toString().split('\n');
    assert.ok(names.includes(LONG_NAME) && names.includes('dev/wide') && !names.includes(SOCKET), names.join(','));
  });

  it('extract writes the tree back exactly (types, modes, owners, ns times, xattrs, links, devices, bytes)', async () => {
    const out = path.join(ws.dir, 'extracted');
    const r = await runClip(['extract', archive, out]);
    assert.equal(r.code, 0, r.stderr);
    const expected = await walkTree(tree.root);
    assert.equal(expected.get(SOCKET)?.type, 'socket');
    const diffs = compareTrees(expected, await walkTree(out), { ignore: notTheSocket });
    assert.deepEqual(diffs, []);
    assert.equal((await walkTree(out)).get(SOCKET), undefined, 'no socket in the extracted tree');
    // A second extract to the same, now non-empty, directory is refused and changes nothing.
    const again = await runClip(['extract', archive, out]);
    assert.notEqual(again.code, 0);
    assert.match(again.stderr, /is not empty/);
  });

  it('the mount serves the tree exactly', async () => {
    const mp = path.join(ws.dir, 'mnt');
    await mount(archive, mp);
    try {
      const diffs = compareTrees(await walkTree(tree.root), await walkTree(mp), { ignore: notTheSocket });
      assert.deepEqual(diffs, []);
      const [rec] = (await mountRecords(ws)) as unknown as { log: string }[];
      assert.match(await readFile(rec!.log, 'utf8'), /"kind":"local archive"/);
    } finally {
      await umount(mp);
    }
  });

  it('cat reads a file of the archive; the data part is a plain tar.gz that gzip and GNU tar read', async () => {
    const r = await runClip(['cat', archive, BIG_FILE]);
    assert.equal(r.code, 0, r.stderr);
    assert.ok(r.stdout.equals(tree.big));
    const index = await loadIndex(archive);
    const data = (await readFile(archive)).subarray(80, 80 + index.layers[0]!.spans.compressedSize);
    assert.equal(`sha256:${createHash('sha256').update(data).digest('hex')}`, index.layers[0]!.digest);
    const list = spawnSync('tar', ['-tzf', '-'], { input: data, encoding: 'utf8' });
    assert.equal(list.status, 0, list.stderr);
    assert.ok(list.stdout.split('\n').includes(BIG_FILE), list.stdout);
  });

  it('unreadable files and directories are reported and skipped, never fatal (archived as an unprivileged user)', async () => {
    const shared = path.join(ws.dir, 'shared');
    await mkdir(path.join(shared, 'src', 'locked'), { recursive: true });
    await chmod(ws.dir, 0o755);
    await chmod(shared, 0o777);
    await writeFile(path.join(shared, 'src', 'ok.txt'), 'fine\n');
    await writeFile(path.join(shared, 'src', 'secret.txt'), 'secret\n', { mode: 0o600 });
    await writeFile(path.join(shared, 'src', 'locked', 'inside.txt'), 'inside\n');
    await chmod(path.join(shared, 'src', 'locked'), 0o700);
    const out = path.join(shared, 'u.clip');
    const r = spawnSync(
      'setpriv',
      [
        '--reuid=65534',
        '--regid=65534',
        '--clear-groups',
        process.execPath,
        path.resolve('bin/clip.js'),
        'archive',
        path.join(shared, 'src'),
        '-o',
        out,
      ],
      { encoding: 'utf8' },
    );
    assert.equal(r.status, 0, r.stderr);
    assert.match(r.stderr, /^clip: skipped secret\.txt: cannot read it \(EACCES\)$/m);
    assert.match(r.stderr, /^clip: skipped locked: cannot list the directory \(EACCES\)/m);
    const names = (await runClip(['ls', '-R', out])).stdout.toString().trim().split('\n');
    assert.deepEqual(names, ['locked', 'ok.txt']);
    assert.equal((await runClip(['cat', out, 'ok.txt'])).stdout.toString(), 'fine\n');
  });

  it('a corrupted data byte: the read fails (EIO through the mount, with a log line; clip cat exits non-zero), no wrong byte is served', async () => {
    const bad = path.join(ws.dir, 'corrupt.clip');
    await copyFile(archive, bad);
    const index = await loadIndex(bad);
    const big = index.nodes.find((n) => n.type === 'file' && n.size === BIG_SIZE)!;
    const table = index.layers[0]!.spans;
    // Flip one byte in the middle of the span that holds the big file's middle.
    const span = table.checkpoints.findIndex(
      (cp, i) =>
        cp.out <= big.offset + BIG_SIZE / 2 &&
        (i + 1 === table.checkpoints.length || table.checkpoints[i + 1]!.out > big.offset + BIG_SIZE / 2),
    );
    const range = spanRange(table, span);
    const at = 80 + Math.floor((range.start + range.end) / 2);
    const fh = await open(bad, 'r+');
    try {
      const b = Buffer.alloc(1);
      await fh.read(b, 0, 1, at);
      b[0] = b[0]! ^ 0x55;
      await fh.write(b, 0, 1, at);
    } finally {
      await fh.close();
    }
    const cat = await runClip(['cat', bad, BIG_FILE]);
    assert.notEqual(cat.code, 0);
    assert.match(cat.stderr, /do not match the span digest/);
    assert.ok(
      cat.stdout.length < BIG_SIZE && tree.big.subarray(0, cat.stdout.length).equals(cat.stdout),
      'only correct bytes before the failure',
    );
    // Files in other spans still read.
    assert.equal((await runClip(['cat', bad, 'deep/a/b/c/leaf.txt'])).stdout.toString(), 'leaf\n');

    const mp = path.join(ws.dir, 'mnt-corrupt');
    await mount(bad, mp);
    try {
      const file = await open(path.join(mp, BIG_FILE), 'r');
      try {
        const buf = Buffer.alloc(4096);
        await assert.rejects(file.read(buf, 0, buf.length, Math.floor(BIG_SIZE / 2)), { code: 'EIO' });
        const { bytesRead } = await file.read(buf, 0, 4096, 0);
        assert.ok(buf.subarray(0, bytesRead).equals(tree.big.subarray(0, bytesRead)), 'other spans still read right');
      } finally {
        await file.close();
      }
      const [rec] = (await mountRecords(ws)) as unknown as { log: string }[];
      const log = await readFile(rec!.log, 'utf8');
      assert.match(log, /read failed/);
      assert.match(log, /span digest/);
    } finally {
      await umount(mp);
    }
  });

  it('a truncated archive is refused at mount with a clear message, nothing mounted', async () => {
    const cut = path.join(ws.dir, 'truncated.clip');
    await copyFile(archive, cut);
    const size = (await readFile(cut)).length;
    await truncate(cut, size - 1000);
    const mp = path.join(ws.dir, 'mnt-truncated');
    await mkdir(mp);
    const r = await runClip(['mount', cut, mp], { env: ws.env });
    assert.notEqual(r.code, 0);
    assert.match(r.stderr, new RegExp(`^clip: ${cut}: clip archive is truncated: ${size - 1000} bytes, its header promises ${size}`));
    assert.ok(!isMounted(mp));
    const ls = await runClip(['ls', cut]);
    assert.notEqual(ls.code, 0);
    assert.match(ls.stderr, /truncated/);
  });

  it('archives an image (OCI layout reference): the same tree as its index, bytes read through it', async () => {
    let image: BuiltImage | undefined;
    try {
      image = await buildFixture('everything');
      const ref = `oci:${image.dir}:${image.tag}`;
      const idx = path.join(ws.dir, 'everything.clip');
      await indexImage(ref, { output: idx });
      const out = path.join(ws.dir, 'everything-archive.clip');
      const r = await runClip(['archive', ref, '-o', out]);
      assert.equal(r.code, 0, r.stderr);
      const strip = (buf: Buffer): unknown[] =>
        JSON.parse(buf.toString()).map(({ ino: _i, layer: _l, offset: _o, ...rest }: Record<string, unknown>) => rest);
      const want = strip((await runClip(['ls', '-R', '--json', idx])).stdout);
      const got = strip((await runClip(['ls', '-R', '--json', out])).stdout);
      assert.ok(want.length > 20);
      assert.deepEqual(got, want);
      const report = JSON.parse((await runClip(['inspect', '--json', out])).stdout.toString());
      assert.equal(report.image.configDigest, image.configDigest, 'the image config is kept');
      const a = await runClip(['cat', idx, 'etc/hostname']);
      const b = await runClip(['cat', out, 'etc/hostname']);
      assert.equal(a.code, 0, a.stderr);
      assert.ok(a.stdout.length > 0 && a.stdout.equals(b.stdout));
    } finally {
      if (image) await rm(image.dir, { recursive: true, force: true });
    }
  });

  it('bad input: clear message, exit 1, no output file', async () => {
    const out = path.join(ws.dir, 'nothing.clip');
    const missing = await runClip(['archive', path.join(ws.dir, 'no-such-dir'), '-o', out]);
    assert.equal(missing.code, 1);
    assert.match(missing.stderr, /^clip: /);
    const badS3 = await runClip(['archive', tree.root, '-o', out, '--s3', 'http://bucket/key']);
    assert.equal(badS3.code, 1);
    assert.match(badS3.stderr, /expected s3:\/\/BUCKET\/KEY/);
    assert.equal(spawnSync('ls', [out]).status, 2, 'no output written');
  });
});
