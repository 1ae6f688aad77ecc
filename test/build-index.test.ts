// Indexing and writing are separate: buildIndex returns the ClipIndex in
// memory, writeIndex writes it, and indexImage is the two. `clip archive` of
// an image indexes it in memory (it wrote a scratch .clip to the temp
// directory and read it back).

import assert from 'node:assert/strict';
import { mkdtemp, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { buildIndex, createArchive, decodeIndex, encodeIndex, indexImage, loadIndex, writeIndex } from '../src/clip.js';
import { buildFixture } from './helpers/fixtures.js';
import type { BuiltImage } from './helpers/image-builder.js';

describe('buildIndex and writeIndex', () => {
  let image: BuiltImage;
  let work: string;
  before(async () => {
    image = await buildFixture('everything');
    work = await mkdtemp(path.join(tmpdir(), 'clip-build-index-'));
  });
  after(async () => {
    if (image) await rm(image.dir, { recursive: true, force: true });
    if (work) await rm(work, { recursive: true, force: true });
  });

  it('buildIndex returns the index indexImage writes, and writes nothing', async () => {
    const ref = `oci:${image.dir}:${image.tag}`;
    const built = await buildIndex(ref, { spanSize: 64 * 1024 });
    assert.deepEqual(await readdir(work), []);
    assert.equal(built.kind, 'oci');
    assert.equal(built.image.manifestDigest, image.manifestDigest);
    assert.equal(built.layers.length, image.layers.length);

    const file = path.join(work, 'image.clip');
    const summary = await indexImage(ref, { output: file, spanSize: 64 * 1024 });
    const loaded = await loadIndex(file);
    // Only the time of indexing differs between two runs.
    assert.deepEqual({ ...loaded, image: { ...loaded.image, indexedAt: '' } }, { ...built, image: { ...built.image, indexedAt: '' } });
    assert.equal(summary.entries, built.nodes.length);
    assert.equal(summary.indexBytes, encodeIndex(loaded).length);
  });

  it('writeIndex writes what loadIndex reads back, and returns its size', async () => {
    const built = await buildIndex(`oci:${image.dir}:${image.tag}`);
    const file = path.join(work, 'written.clip');
    const size = await writeIndex(file, built);
    assert.equal(size, encodeIndex(built).length);
    assert.deepEqual(await loadIndex(file), decodeIndex(encodeIndex(built)));
    assert.deepEqual(await readdir(work).then((names) => names.filter((n) => n.includes('.tmp-'))), [], 'no temp file left');
  });

  it('archiving an image needs no temp directory (nothing is written but the archive)', async () => {
    const out = path.join(work, 'archive.clip');
    const saved = process.env['TMPDIR'];
    // A temp directory that does not exist: the scratch .clip of before could not be made there.
    process.env['TMPDIR'] = path.join(work, 'no-such-tmp');
    try {
      const summary = await createArchive(`oci:${image.dir}:${image.tag}`, { output: out });
      assert.ok(summary.files > 0);
    } finally {
      if (saved === undefined) delete process.env['TMPDIR'];
      else process.env['TMPDIR'] = saved;
    }
    const archive = await loadIndex(out);
    assert.equal(archive.kind, 'archive');
    assert.equal(archive.image.configDigest, image.configDigest);
  });
});
