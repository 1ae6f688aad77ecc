// Files clip writes at a path a user gave: only an absent path or a regular
// file is written (replaced whole); a device, FIFO, directory or symbolic link
// is refused with a clear message before any work. And the mount options
// that would only fail later in the daemon (--record-profile, --prefetch-rate)
// are checked before it starts.

import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { lstat, mkdir, readFile, rm, symlink, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { createArchive } from '../src/archive/create-archive.js';
import { ClipError } from '../src/errors.js';
import { isMounted } from '../src/fuse/index.js';
import { indexImage } from '../src/indexer/index-image.js';
import { writeFileAtomic } from '../src/util/atomic-write.js';
import { runClip } from './helpers/cli.js';
import { buildImage, type BuiltImage } from './helpers/image-builder.js';
import { clipWorkspace, mountRecords, sweepClipMounts, type ClipWorkspace } from './helpers/mounts.js';

describe('output paths', () => {
  let ws: ClipWorkspace;
  let image: BuiltImage;
  let index: string;
  /** Special files made by the test (a real /dev/null is never put at risk). */
  const special: Record<string, string> = {};
  before(async () => {
    sweepClipMounts();
    ws = await clipWorkspace('outputs');
    image = await buildImage({ tag: 'small', layers: [{ entries: [{ type: 'file', path: 'hello.txt', data: 'hello\n' }] }] });
    index = path.join(ws.dir, 'small.clip');
    await indexImage(`oci:${image.dir}:small`, { output: index });
    special.device = path.join(ws.dir, 'null');
    assert.equal(spawnSync('mknod', [special.device, 'c', '1', '3']).status, 0, 'mknod');
    special.fifo = path.join(ws.dir, 'fifo');
    assert.equal(spawnSync('mkfifo', [special.fifo]).status, 0, 'mkfifo');
    special.dir = path.join(ws.dir, 'a-dir');
    await mkdir(special.dir);
    const target = path.join(ws.dir, 'target.clip');
    await writeFile(target, 'keep me');
    special.symlink = path.join(ws.dir, 'link.clip');
    await symlink(target, special.symlink);
  });
  after(async () => {
    sweepClipMounts();
    if (image) await rm(image.dir, { recursive: true, force: true });
    if (ws) await rm(ws.dir, { recursive: true, force: true });
  });

  /** The special files are exactly as made: nothing replaced them. */
  async function unchanged(): Promise<void> {
    assert.ok((await lstat(special.device!)).isCharacterDevice(), 'the device is still a device');
    assert.ok((await lstat(special.fifo!)).isFIFO(), 'the FIFO is still a FIFO');
    assert.ok((await lstat(special.dir!)).isDirectory());
    assert.ok((await lstat(special.symlink!)).isSymbolicLink(), 'the link is still a link');
    assert.equal(await readFile(special.symlink!, 'utf8'), 'keep me', 'the link target is untouched');
  }

  const expected: Record<string, RegExp> = {
    device: /it is a character device, not a regular file/,
    fifo: /it is a FIFO, not a regular file/,
    dir: /it is a directory, not a regular file/,
    symlink: /it is a symbolic link \(to .*target\.clip\); give the path of a regular file/,
  };

  it('clip index -o refuses a device, a FIFO, a directory and a symbolic link before any work', async () => {
    for (const [name, file] of Object.entries(special)) {
      const r = await runClip(['index', `oci:${image.dir}:small`, '-o', file]);
      assert.equal(r.code, 1, `${name}: ${r.stderr}`);
      assert.match(r.stderr, new RegExp(`^clip: refusing to write output ${file.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}: `));
      assert.match(r.stderr, expected[name]!);
      assert.doesNotMatch(r.stderr, /\n\s+at /, 'no stack trace');
    }
    await unchanged();
    // A regular file is replaced, as before.
    const regular = path.join(ws.dir, 'regular.clip');
    await writeFile(regular, 'old');
    const ok = await runClip(['index', `oci:${image.dir}:small`, '-o', regular]);
    assert.equal(ok.code, 0, ok.stderr);
    assert.notEqual(await readFile(regular, 'utf8'), 'old');
  });

  it('clip archive -o refuses them too', async () => {
    const src = path.join(ws.dir, 'tree');
    await mkdir(src, { recursive: true });
    await writeFile(path.join(src, 'f.txt'), 'x');
    for (const [name, file] of Object.entries(special)) {
      const r = await runClip(['archive', src, '-o', file, '--no-xattrs']);
      assert.equal(r.code, 1, `${name}: ${r.stderr}`);
      assert.match(r.stderr, expected[name]!);
    }
    await unchanged();
  });

  it('clip mount refuses such a --record-profile file and --prefetch-rate 0 before a daemon starts', async () => {
    const mp = path.join(ws.dir, 'mnt');
    await mkdir(mp, { recursive: true });
    for (const [name, file] of Object.entries(special)) {
      const r = await runClip(['mount', index, mp, '--record-profile', file], { env: ws.env });
      assert.equal(r.code, 1, `${name}: ${r.stderr}`);
      assert.match(r.stderr, new RegExp(`^clip: refusing to write start-up profile .*${expected[name]!.source}`));
    }
    const rate = await runClip(['mount', index, mp, '--prefetch', '--prefetch-rate', '0'], { env: ws.env });
    assert.equal(rate.code, 1, rate.stderr);
    assert.match(rate.stderr, /^clip: bad --prefetch-rate 0: give at least 1 byte per second/);
    assert.doesNotMatch(rate.stderr, /TimeoutOverflowWarning/);
    assert.ok(!isMounted(mp), 'nothing was mounted');
    assert.deepEqual(await mountRecords(ws), []);
    await unchanged();
  });

  it('createArchive, the library call, refuses them too', async () => {
    const src = path.join(ws.dir, 'tree-lib');
    await mkdir(src, { recursive: true });
    await writeFile(path.join(src, 'f.txt'), 'x');
    for (const [name, file] of Object.entries(special)) {
      await assert.rejects(
        createArchive(src, { output: file, xattrs: false }),
        (e: unknown) => e instanceof ClipError && e.code === 'BAD_ARGUMENT',
        name,
      );
    }
    await unchanged();
  });

  it('writeFileAtomic never replaces what is not a regular file (checked again at the rename)', async () => {
    for (const file of Object.values(special)) {
      await assert.rejects(writeFileAtomic(file, Buffer.from('x')), ClipError);
    }
    await unchanged();
    const fresh = path.join(ws.dir, 'fresh.txt');
    await writeFileAtomic(fresh, Buffer.from('new'));
    assert.equal(await readFile(fresh, 'utf8'), 'new');
  });
});
