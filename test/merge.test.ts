// The overlay merge on hand-written layer entries: whiteouts, opaque
// directories, replacement in both directions, hardlinks and link counts,
// implicit parents, stable inode numbers.

import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { lookupPath, walk } from '../src/image/lookup.js';
import { EntryBudget, LayerEntries } from '../src/image/layer-entries.js';
import { mergeLayers } from '../src/image/merge.js';
import { createPrng } from './helpers/prng.js';
import type { ImageTree } from '../src/image/types.js';
import type { EntryType, TarEntry } from '../src/tar/types.js';

let offset = 0;
function e(path: string, type: EntryType = 'file', extra: Partial<TarEntry> = {}): TarEntry {
  offset += 512;
  return {
    path,
    type,
    mode: type === 'dir' ? 0o755 : 0o644,
    uid: 0,
    gid: 0,
    size: type === 'file' ? 10 : 0,
    dataOffset: offset,
    mtime: { sec: 1_700_000_000, nsec: 5 },
    devmajor: 0,
    devminor: 0,
    ...extra,
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
    assert.deepEqual(
      [...walk(a)].map(([p, n]) => `${p}:${n.ino}`),
      [...walk(b)].map(([p, n]) => `${p}:${n.ino}`),
    );
    assert.deepEqual(
      a.nodes.map((n) => n.ino),
      a.nodes.map((_, i) => i + 1),
    );
  });

  it('resolves symlinks inside the image root only', () => {
    const tree = mergeLayers([
      [e('etc', 'dir'), e('etc/real'), e('link', 'symlink', { linkname: '/etc/real' }), e('up', 'symlink', { linkname: '../../../etc' })],
    ]);
    assert.equal(lookupPath(tree, 'link', true), lookupPath(tree, 'etc/real'));
    assert.equal(lookupPath(tree, 'up/real', true), lookupPath(tree, 'etc/real'));
    assert.equal(lookupPath(tree, 'link').type, 'symlink');
  });

  // ---- issue 10: tar order, as containerd's applier (applyNaive) -------------

  it('applies a layer in tar order: a link made before a whiteout keeps the file', () => {
    const tree = mergeLayers([[e('a', 'file', { size: 7 }), e('b', 'hardlink', { linkname: 'a' }), e('.wh.a')]]);
    assert.deepEqual(paths(tree), ['', 'b']);
    assert.equal(lookupPath(tree, 'b').size, 7);
    assert.equal(lookupPath(tree, 'b').nlink, 1);
    // The same across layers.
    const two = mergeLayers([[e('a', 'file', { size: 7 })], [e('b', 'hardlink', { linkname: 'a' }), e('.wh.a')]]);
    assert.deepEqual(paths(two), ['', 'b']);
  });

  it('a whiteout removes what exists where it stands: lower entries and earlier ones of its layer', () => {
    assert.deepEqual(
      paths(
        mergeLayers([
          [e('x'), e('y')],
          [e('x', 'file', { size: 1 }), e('.wh.x')],
        ]),
      ),
      ['', 'y'],
    );
    const later = mergeLayers([[e('x', 'file', { size: 1 })], [e('.wh.x'), e('x', 'file', { size: 2 })]]);
    assert.equal(lookupPath(later, 'x').size, 2);
    // A whiteout in a missing directory creates it, as containerd does for any entry's parents.
    assert.deepEqual(paths(mergeLayers([[e('d/.wh.gone')]])), ['', 'd']);
    for (const bad of ['.wh.', 'd/.wh..', 'd/.wh...']) {
      assert.throws(() => mergeLayers([[e(bad)]]), { code: 'BAD_TAR', message: /invalid whiteout/ }, bad);
    }
  });

  it('an opaque marker hides lower entries but keeps what its layer unpacked before and after it', () => {
    const tree = mergeLayers([
      [e('d', 'dir'), e('d/old'), e('d/sub', 'dir'), e('d/sub/lower'), e('d/imp', 'dir'), e('d/imp/lower')],
      [e('d/before'), e('d/sub', 'dir'), e('d/sub/mine'), e('d/imp/mine'), e('d/.wh..wh..opq'), e('d/after'), e('d/sub/late')],
    ]);
    // d/imp was only implied by d/imp/mine (not unpacked), so containerd's marker removes it whole.
    assert.deepEqual(paths(tree), ['', 'd', 'd/after', 'd/before', 'd/sub', 'd/sub/late', 'd/sub/mine']);
  });

  it('an entry replaces what is at its path before a hardlink looks up its target', () => {
    const tree = mergeLayers([[e('a', 'file', { size: 1 })], [e('a', 'file', { size: 2 }), e('b', 'hardlink', { linkname: 'a' })]]);
    assert.equal(lookupPath(tree, 'b'), lookupPath(tree, 'a'));
    assert.equal(lookupPath(tree, 'b').size, 2);
    assert.throws(() => mergeLayers([[e('a'), e('a', 'hardlink', { linkname: 'a' })]]), /does not exist/);
    assert.throws(() => mergeLayers([[e('p', 'dir'), e('p/q'), e('p', 'hardlink', { linkname: 'p/q' })]]), /does not exist/);
  });

  it('numbers 20,000 levels of nesting without recursion', () => {
    const deep = Array.from({ length: 20_000 }, () => 'd').join('/');
    const tree = mergeLayers([[e(`${deep}/f`)]]);
    assert.equal(tree.nodes.length, 20_002);
    assert.equal(tree.nodes[20_001]!.type, 'file');
    assert.equal(tree.root.nlink, 3);
  });

  it('dropping entries a later one of the same path replaces never changes the merged tree', () => {
    const names = ['a', 'b', 'a/x', 'a/y', 'b/z'];
    const prng = createPrng(10);
    const budget = new EntryBudget(1000);
    let dropped = 0;
    for (let round = 0; round < 400; round++) {
      const layers: TarEntry[][] = [];
      for (let l = 0; l < 3; l++) {
        const layer: TarEntry[] = [];
        for (let i = prng.range(1, 12); i > 0; i--) {
          const path = prng.pick(names);
          const kind = prng.int(10);
          if (kind < 4) layer.push(e(path, 'file', { size: prng.int(9) }));
          else if (kind < 7) layer.push(e(path, 'dir', { mode: prng.int(0o777) }));
          else if (kind < 8) layer.push(e(path, 'hardlink', { linkname: prng.pick(names) }));
          else if (kind < 9) layer.push(e(path.replace(/[^/]+$/, (n) => `.wh.${n}`)));
          else layer.push(e(path.includes('/') ? path.replace(/[^/]+$/, '.wh..wh..opq') : '.wh..wh..opq'));
        }
        layers.push(layer);
      }
      const collected = layers.map((layer) => {
        const c = new LayerEntries(budget);
        for (const x of layer) c.add(x);
        dropped += layer.length - c.size;
        return c;
      });
      const outcome = (ls: Iterable<TarEntry>[]): unknown => {
        try {
          const t = mergeLayers(ls);
          return [...walk(t)].map(([p, n]) => [p, n.type, n.size, n.mode, n.nlink, n.ino, t.nodes.indexOf(n)]);
        } catch (err) {
          return String(err);
        }
      };
      // Fresh copies: the merge keeps entry objects' values, never mutates them, but be sure.
      assert.deepEqual(outcome(collected), outcome(layers.map((l) => l.map((x) => ({ ...x })))), `round ${round}`);
      for (const c of collected) for (const x of c) budget.release(x);
    }
    assert.ok(dropped > 200, `only ${dropped} entries dropped: the test does not exercise collapsing`);
  });

  it('one path repeated keeps one entry; the budget refuses more entries than allowed', () => {
    const budget = new EntryBudget(10);
    const c = new LayerEntries(budget);
    for (let i = 0; i < 100_000; i++) c.add(e('same', 'file', { size: i }));
    assert.equal(c.size, 1);
    assert.equal([...c][0]!.size, 99_999);
    for (let i = 0; i < 9; i++) c.add(e(`n${i}`));
    assert.throws(() => c.add(e('one-too-many')), { code: 'UNSUPPORTED', message: /more than 10 tar entries.*--max-entries/ });
  });
});
