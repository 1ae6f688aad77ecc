// A 100k-file image (Python site-packages, two gzip layers) indexed, written
// and loaded back, served through ImageFileSystem: a sample of its paths
// looked up name by name from the root give the attributes, link targets,
// xattrs and bytes that were put in the image (the loader's fast paths for
// big indexes must not change what is served).

import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { buildIndex, FileReader, loadIndex, writeIndex, type ClipIndex } from '../src/clip.js';
import { ImageFileSystem } from '../src/fs/image-fs.js';
import { buildImage } from './helpers/image-builder.js';
import { createPrng } from './helpers/prng.js';
import { expectedEntries, sitePackagesLayers } from './helpers/site-packages.js';
import type { TarEntrySpec } from './helpers/tar-writer.js';

const FILES = 100_000;
const SAMPLE = 2_000;
const S_IFREG = 0o100000;
const S_IFDIR = 0o040000;
const S_IFLNK = 0o120000;

describe('a 100k-file index', () => {
  let dir: string;
  let index: ClipIndex;
  let fs: ImageFileSystem;
  let expected: Map<string, TarEntrySpec>;
  let links: Map<string, number>;

  before(async () => {
    dir = await mkdtemp(path.join(tmpdir(), 'clip-large-'));
    const layers = sitePackagesLayers({ files: FILES, maxSize: 200 });
    expected = expectedEntries(layers);
    // Names per file: a hardlink adds one to its target's count.
    links = new Map();
    for (const e of layers[0]!) if (e.type === 'hardlink') links.set(e.target, (links.get(e.target) ?? 1) + 1);
    const image = await buildImage({ dir: path.join(dir, 'layout'), layers: layers.map((entries) => ({ entries })) });
    await writeIndex(path.join(dir, 'image.clip'), await buildIndex(`oci:${image.dir}:latest`));
    index = await loadIndex(path.join(dir, 'image.clip'));
    fs = new ImageFileSystem(index, await FileReader.open(index));
  });
  after(async () => {
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  /** LOOKUP of each component from the root, as the kernel walks a path. */
  const lookup = (p: string): ReturnType<ImageFileSystem['lookup']> => {
    let entry = { attr: fs.getattr(1).attr } as ReturnType<ImageFileSystem['lookup']>;
    for (const name of p.split('/')) entry = fs.lookup(entry.attr.ino, name);
    return entry;
  };

  it('holds every file and directory that was put in the image', () => {
    assert.ok(index.nodes.length > FILES, `${index.nodes.length} nodes`);
    const files = [...expected.values()].filter((e) => e.type === 'file');
    // Hardlinked names share a node: count distinct entries.
    assert.equal(index.nodes.filter((n) => n.type === 'file').length, new Set(files).size);
    assert.equal(index.nodes.filter((n) => n.type === 'dir').length, [...expected.values()].filter((e) => e.type === 'dir').length + 1);
  });

  it('serves the attributes, targets and xattrs of a sample of paths as in the image', () => {
    const prng = createPrng(7);
    const paths = [...expected.keys()];
    // Random paths, and every rare one: symlinks, hardlinks, files with xattrs.
    const rare = paths.filter((p) => expected.get(p)!.type === 'symlink' || expected.get(p)!.xattrs || p.endsWith('/__main__.py'));
    assert.ok(rare.length > 100, `${rare.length} rare paths`);
    for (const p of [...Array.from({ length: SAMPLE }, () => paths[prng.int(paths.length)]!), ...rare]) {
      const want = expected.get(p)!;
      const { attr } = lookup(p);
      assert.deepEqual(fs.getattr(attr.ino).attr, attr, p);
      if (want.type === 'file') {
        const data = Buffer.from(want.data ?? '');
        assert.equal(attr.mode, S_IFREG | want.mode!, p);
        assert.equal(attr.size, data.length, p);
        assert.equal(attr.uid, want.uid, p);
        assert.equal(attr.gid, want.gid, p);
        assert.deepEqual(attr.mtime, want.mtime, p);
        assert.equal(attr.nlink, links.get(p) ?? links.get(p.replace(/__main__\.py$/, '__init__.py')) ?? 1, p);
        for (const [k, v] of Object.entries(want.xattrs ?? {})) assert.deepEqual(fs.getxattr(attr.ino, k), v, `${p} ${k}`);
        if (!want.xattrs) assert.deepEqual(fs.listxattr(attr.ino), [], p);
      } else if (want.type === 'dir') {
        assert.equal(attr.mode, S_IFDIR | want.mode!, p);
      } else if (want.type === 'symlink') {
        assert.equal(attr.mode & 0o170000, S_IFLNK, p);
        assert.equal(fs.readlink(attr.ino), want.target, p);
      } else assert.fail(`unexpected entry type ${want.type} at ${p}`);
    }
  });

  it('serves the bytes of a sample of files as in the image, the second layer winning', async () => {
    const prng = createPrng(8);
    const files = [...expected].filter(([, e]) => e.type === 'file');
    const rewritten = files.filter(([, e]) => e.uid === 4242);
    assert.ok(rewritten.length > 100, 'the second layer replaces files');
    for (const [p, want] of [...Array.from({ length: 200 }, () => files[prng.int(files.length)]!), ...rewritten.slice(0, 50)]) {
      const { attr } = lookup(p);
      const data = Buffer.from(want.type === 'file' ? (want.data ?? '') : '');
      assert.deepEqual(Buffer.concat(await fs.read(attr.ino, 0, 0, data.length + 10)), data, p);
    }
  });

  it('answers ENOENT for names not in the image', () => {
    const pkg = lookup('usr/lib/python3.11/site-packages');
    assert.throws(() => fs.lookup(pkg.attr.ino, 'not_a_package'), { code: 'ENOENT' });
    assert.throws(() => fs.lookup(lookup('usr/bin').attr.ino, 'python9'), { code: 'ENOENT' });
  });
});
