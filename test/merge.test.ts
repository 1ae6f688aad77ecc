// The overlay merge on hand-written layer entries: whiteouts, opaque
// directories, replacement in both directions, hardlinks and link counts,
// implicit parents, stable inode numbers.

import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { lookupPath, walk } from '../src/image/lookup.js';
import { mergeLayers } from '../src/image/merge.js';
import type { ImageTree } from '../src/image/types.js';
import type { EntryType, TarEntry } from '../src/tar/types.js';

let offset = 0;
function e(path: string, type: EntryType = 'file', extra: Partial<TarEntry> = {}): TarEntry {
  offset += 512;
  return {
    path, type, mode: type === 'dir' ? 0o755 : 0o644, uid: 0, gid: 0, size: type === 'file' ? 10 : 0,
    dataOffset: offset, mtime: { sec: 1_700_000_000, nsec: 5 }, devmajor: 0, devminor: 0, ...extra,
  };
}

function paths(tree: ImageTree): string[] {
  return [...walk(tree)].map(([p]) => p);
}

describe('overlay merge', () => {
  it('whiteouts delete lower files and subtrees but not entries of the same layer', () => {
    const tree = mergeLayers([
      [e('a', 'dir'), e('a/f'), e('a/sub', 'dir'), e('a/sub/g'), e('b')],
      [e('a/sub', 'dir'), e('a/.wh.sub'), e('a/.wh.f'), e('a/sub/new'), e('.wh.b')],
    ]);
    assert.deepEqual(paths(tree), ['', 'a', 'a/sub', 'a/sub/new']);
  });

  it('opaque directories hide lower contents but keep their own layer', () => {
    const tree = mergeLayers([
      [e('d', 'dir'), e('d/old'), e('d/deep', 'dir'), e('d/deep/x')],
      [e('d/mine'), e('d/.wh..wh..opq'), e('d', 'dir', { mode: 0o700 })],
    ]);
    assert.deepEqual(paths(tree), ['', 'd', 'd/mine']);
    assert.equal(lookupPath(tree, 'd').mode, 0o700);
  });

  it('an upper file replaces a lower directory and vice versa', () => {
    const tree = mergeLayers([
      [e('x', 'dir'), e('x/in'), e('y')],
      [e('x'), e('y', 'dir'), e('y/z')],
    ]);
    assert.equal(lookupPath(tree, 'x').type, 'file');
    assert.equal(lookupPath(tree, 'y').type, 'dir');
    assert.deepEqual(paths(tree), ['', 'x', 'y', 'y/z']);
  });

  it('hardlinks share a node; link counts follow whiteouts of a name', () => {
    const tree = mergeLayers([
      [e('f', 'file', { size: 3 }), e('g', 'hardlink', { linkname: 'f' }), e('h', 'hardlink', { linkname: 'f' })],
      [e('.wh.g')],
    ]);
    const f = lookupPath(tree, 'f');
    assert.equal(f, lookupPath(tree, 'h'));
    assert.equal(f.nlink, 2);
    assert.equal(f.size, 3);
    assert.throws(() => mergeLayers([[e('l', 'hardlink', { linkname: 'missing' })]]), /does not exist/);
  });

  it('creates missing parents and counts directory links', () => {
    const tree = mergeLayers([[e('p/q/r'), e('p/s', 'dir')]]);
    assert.equal(lookupPath(tree, 'p').type, 'dir');
    assert.equal(lookupPath(tree, 'p').nlink, 4);
    assert.equal(tree.root.nlink, 3);
  });

  it('numbers inodes in a stable depth-first name order, root first', () => {
    const a = mergeLayers([[e('z'), e('a', 'dir'), e('a/b'), e('m')]]);
    const b = mergeLayers([[e('m'), e('a/b'), e('z'), e('a', 'dir')]]);
    assert.equal(a.root.ino, 1);
    assert.deepEqual([...walk(a)].map(([p, n]) => `${p}:${n.ino}`), [...walk(b)].map(([p, n]) => `${p}:${n.ino}`));
    assert.deepEqual(a.nodes.map((n) => n.ino), a.nodes.map((_, i) => i + 1));
  });

  it('resolves symlinks inside the image root only', () => {
    const tree = mergeLayers([[e('etc', 'dir'), e('etc/real'), e('link', 'symlink', { linkname: '/etc/real' }), e('up', 'symlink', { linkname: '../../../etc' })]]);
    assert.equal(lookupPath(tree, 'link', true), lookupPath(tree, 'etc/real'));
    assert.equal(lookupPath(tree, 'up/real', true), lookupPath(tree, 'etc/real'));
    assert.equal(lookupPath(tree, 'link').type, 'symlink');
  });
});
