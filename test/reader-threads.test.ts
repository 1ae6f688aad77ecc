// Metadata answered in the FUSE reader threads (fs/tree-responder.ts over
// fs/shared-tree.ts): a mount whose filesystem refuses every metadata call on
// the main thread must show the same tree, byte for byte, as a mount served
// the old way; and the daemon must never let a new image meet the kernel's
// caches of an image it served before at the same inode numbers.

import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { mkdir, mkdtemp, readdir, readFile, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { buildIndex, FileReader, loadIndex, writeIndex, type ClipIndex } from '../src/clip.js';
import { daemonAnswers } from '../src/daemon/client.js';
import { ImageFileSystem } from '../src/fs/image-fs.js';
import { TREE_RESPONDER_MODULE, type TreesInit } from '../src/fs/tree-responder.js';
import { readAheadKb, serveFuse, type FileSystem, type FuseServer } from '../src/fuse/index.js';
import { DEFAULT_KERNEL_READAHEAD } from '../src/daemon/config.js';
import { everythingLayers } from './helpers/fixtures.js';
import { buildImage } from './helpers/image-builder.js';
import { runClip } from './helpers/cli.js';
import { clipWorkspace, type ClipWorkspace } from './helpers/mounts.js';
import type { TarEntrySpec } from './helpers/tar-writer.js';
import { compareTrees, walkTree } from './helpers/tree-walk.js';

const METADATA = ['lookup', 'getattr', 'readlink', 'open', 'opendir', 'readdir', 'statfs', 'getxattr', 'listxattr'] as const;

/** The image filesystem with every metadata call counted (they should never come). */
function countingFs(inner: ImageFileSystem): { fs: FileSystem; calls: Map<string, number> } {
  const calls = new Map<string, number>();
  const fs = new Proxy(inner, {
    get(target, prop, receiver) {
      const v = Reflect.get(target, prop, receiver) as unknown;
      if (typeof v !== 'function') return v;
      return (...args: unknown[]) => {
        if ((METADATA as readonly string[]).includes(String(prop))) calls.set(String(prop), (calls.get(String(prop)) ?? 0) + 1);
        return (v as (...a: unknown[]) => unknown).apply(target, args);
      };
    },
  });
  return { fs, calls };
}

describe('metadata in the reader threads', () => {
  let dir: string;
  let index: ClipIndex;
  const servers: FuseServer[] = [];

  before(async () => {
    dir = await mkdtemp(path.join(tmpdir(), 'clip-readers-'));
    // A directory whose listing takes several READDIR replies, and names a hash must not confuse.
    const many: TarEntrySpec[] = [{ type: 'dir', path: 'many' }];
    for (let i = 0; i < 700; i++) many.push({ type: 'file', path: `many/${'n'.repeat(40)}-${i}`, data: `${i}\n` });
    many.push(
      { type: 'file', path: 'many/caf\u00e9', data: 'accent\n' },
      { type: 'symlink', path: 'many/link', target: '../many/caf\u00e9' },
    );
    const image = await buildImage({ dir: path.join(dir, 'layout'), layers: [...everythingLayers(), { entries: many }] });
    await writeIndex(path.join(dir, 'image.clip'), await buildIndex(`oci:${image.dir}:latest`));
    index = await loadIndex(path.join(dir, 'image.clip'));
  });
  after(async () => {
    for (const s of servers) await s.close().catch(() => undefined);
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  it('answers every metadata request without the main thread, as the filesystem would', async () => {
    const plainMp = path.join(dir, 'plain');
    const threadMp = path.join(dir, 'threads');
    await mkdir(plainMp);
    await mkdir(threadMp);
    servers.push(await serveFuse(plainMp, new ImageFileSystem(index, await FileReader.open(index))));
    const image = new ImageFileSystem(index, await FileReader.open(index));
    const { fs, calls } = countingFs(image);
    const init: TreesInit = { trees: [[0, image.sharedTree()]] };
    servers.push(await serveFuse(threadMp, fs, { responder: { module: TREE_RESPONDER_MODULE, init }, readers: 2 }));

    const expected = await walkTree(plainMp);
    const actual = await walkTree(threadMp);
    assert.ok(expected.size > 750, `the walk saw the whole tree (${expected.size} entries)`);
    assert.deepEqual(compareTrees(expected, actual), []);
    assert.equal(await readFile(path.join(threadMp, 'many/link'), 'utf8'), 'accent\n');
    // A missing name, twice (the second may come from the kernel's negative cache).
    for (let i = 0; i < 2; i++) await assert.rejects(stat(path.join(threadMp, 'many/absent')), { code: 'ENOENT' });
    await assert.rejects(stat(path.join(threadMp, 'many/caf\u00e9/x')), { code: 'ENOTDIR' });

    assert.deepEqual(Object.fromEntries(calls), {}, 'no metadata call reached the main thread');
  });

  it('encodes the same tree from the same index (what a takeover relies on: same inodes, same offsets)', async () => {
    const a = Buffer.from(new ImageFileSystem(index, await FileReader.open(index), undefined, 7 * 2 ** 32).sharedTree());
    const b = Buffer.from(
      new ImageFileSystem(await loadIndex(path.join(dir, 'image.clip')), await FileReader.open(index), undefined, 7 * 2 ** 32).sharedTree(),
    );
    assert.ok(a.equals(b), 'byte-identical encodings');
  });
});

describe('daemon: a new image after an old one went', () => {
  let ws: ClipWorkspace;
  let dir: string;
  let daemon: ChildProcess | undefined;
  before(async () => {
    ws = await clipWorkspace('readers');
    dir = ws.dir;
    // A daemon that outlives its mounts (as systemd runs it): both images are served on one FUSE connection.
    daemon = spawn(process.execPath, [path.resolve('bin/clip.js'), 'daemon'], { env: { ...process.env, ...ws.env }, stdio: 'ignore' });
    while (!(await daemonAnswers(ws.env['CLIP_STATE_DIR']!))) {
      if (daemon.exitCode !== null) throw new Error('clip daemon did not start');
      await new Promise((r) => setTimeout(r, 50));
    }
  });
  after(async () => {
    if (daemon && daemon.exitCode === null) {
      const exited = once(daemon, 'exit');
      await runClip(['daemon', '--stop'], { env: ws.env });
      await exited;
    }
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  it('serves the new image, not what the kernel cached of the old one', async () => {
    const clips: string[] = [];
    for (const name of ['first', 'second']) {
      const image = await buildImage({
        dir: path.join(dir, name),
        layers: [{ entries: [{ type: 'file', path: 'which', data: `${name}\n` }] }],
      });
      const file = path.join(dir, `${name}.clip`);
      await writeIndex(file, await buildIndex(`oci:${image.dir}:latest`));
      clips.push(file);
    }
    const mp = path.join(dir, 'mnt');
    await mkdir(mp);
    const inodes: number[] = [];
    for (const [i, file] of clips.entries()) {
      const r = await runClip(['mount', file, mp], { env: ws.env });
      assert.equal(r.code, 0, r.stderr);
      try {
        assert.equal(await readFile(path.join(mp, 'which'), 'utf8'), i === 0 ? 'first\n' : 'second\n');
        inodes.push((await stat(mp)).ino);
      } finally {
        const u = await runClip(['umount', mp], { env: ws.env });
        assert.equal(u.code, 0, u.stderr);
      }
    }
    assert.notEqual(inodes[0], inodes[1], 'the second image got inode numbers of its own');
  });

  it('opens cost no request, and the listing of the images stays true as they come and go', async () => {
    const root = path.join(ws.env['CLIP_STATE_DIR']!, 'fs');
    assert.equal(readAheadKb(root), DEFAULT_KERNEL_READAHEAD / 1024, "the kernel's readahead on the daemon's mount");
    const served: string[] = [];
    const mps: string[] = [];
    try {
      for (const name of ['one', 'two']) {
        const image = await buildImage({ dir: path.join(dir, name), layers: [{ entries: [{ type: 'file', path: 'f', data: name }] }] });
        const file = path.join(dir, `${name}.clip`);
        await writeIndex(file, await buildIndex(`oci:${image.dir}:latest`));
        const mp = path.join(dir, `mnt-${name}`);
        await mkdir(mp);
        const r = await runClip(['mount', file, mp], { env: ws.env });
        assert.equal(r.code, 0, r.stderr);
        mps.push(mp);
        // Opened and read twice: the kernel opens without asking (ENOSYS once), the bytes are right.
        for (let i = 0; i < 2; i++) assert.equal(await readFile(path.join(mp, 'f'), 'utf8'), name);
        const listing = await readdir(root);
        assert.equal(listing.length, served.length + 1, `the root lists every image: ${listing.join(' ')}`);
        served.push(...listing.filter((n) => !served.includes(n)));
      }
      const u = await runClip(['umount', mps.shift()!], { env: ws.env });
      assert.equal(u.code, 0, u.stderr);
      assert.deepEqual(await readdir(root), [served[1]], 'the listing after the first image went (the kernel was told)');
    } finally {
      for (const mp of mps) await runClip(['umount', mp], { env: ws.env });
    }
  });
});
