// Equivalence with a tool we did not write: for each fixture image pushed to
// a real docker-registry, the tree clip indexes and the tree `umoci unpack`
// produces agree on every entry, and every file's bytes read lazily through
// clip equal umoci's.

import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { loadIndex } from '../src/clip.js';
import { FileReader } from '../src/content/file-reader.js';
import { indexImage } from '../src/indexer/index-image.js';
import { summarizeIndex } from './helpers/clip-tree.js';
import { buildFixture, unstableMtimePaths, type FixtureName } from './helpers/fixtures.js';
import { startRegistry, pushImage, type RegistryHandle } from './helpers/registry.js';
import { compareTrees, walkTree } from './helpers/tree-walk.js';
import { umociUnpack } from './helpers/umoci.js';

describe('index equivalence with umoci', () => {
  let registry: RegistryHandle;
  let work: string;
  before(async () => {
    registry = await startRegistry();
    work = await mkdtemp(path.join(tmpdir(), 'clip-equiv-'));
  });
  after(async () => {
    await registry?.stop();
    if (work) await rm(work, { recursive: true, force: true });
  });

  const cases: { name: FixtureName; format: 'oci' | 'docker'; spanSize: number }[] = [
    { name: 'everything', format: 'oci', spanSize: 64 * 1024 },
    { name: 'everything', format: 'docker', spanSize: 4 * 1024 * 1024 },
    { name: 'large', format: 'oci', spanSize: 128 * 1024 },
  ];
  for (const c of cases) {
    it(`${c.name} (${c.format} manifest, span ${c.spanSize / 1024} KiB): every entry and every byte match umoci unpack`, async () => {
      const image = await buildFixture(c.name, { format: c.format });
      try {
        const repo = `fixtures/${c.name}-${c.format}`;
        await pushImage(image.dir, image.tag, registry.host, repo);
        const out = path.join(work, `${c.name}-${c.format}.clip`);
        const summary = await indexImage(`${registry.host}/${repo}:${image.tag}`, { output: out, spanSize: c.spanSize });
        assert.equal(summary.layers, image.layers.length);
        assert.equal(summary.manifestDigest, image.manifestDigest);

        const index = await loadIndex(out);
        const reader = await FileReader.open(index);
        let actual;
        try {
          actual = await summarizeIndex(index, reader);
        } finally {
          await reader.close();
        }
        // The umoci reference is unpacked from a layout where only the OCI
        // form is readable by umoci; the docker case compares with the OCI twin.
        const reference = c.format === 'oci' ? image : await buildFixture(c.name);
        const bundle = await umociUnpack(reference.dir, reference.tag);
        let expected;
        try {
          expected = await walkTree(bundle.rootfs);
        } finally {
          await bundle.cleanup();
          if (reference !== image) await rm(reference.dir, { recursive: true, force: true });
        }
        const unstable = new Set(unstableMtimePaths(c.name));
        const diffs = compareTrees(expected, actual, { ignoreField: (p, f) => f === 'mtimeNs' && unstable.has(p) });
        assert.deepEqual(diffs, []);
        assert.ok(actual.size > 10, `${actual.size} entries compared`);
      } finally {
        await rm(image.dir, { recursive: true, force: true });
      }
    });
  }

  it('reads the same image from an OCI layout directory (oci:DIR:TAG) offline', async () => {
    const image = await buildFixture('everything');
    try {
      const out = path.join(work, 'layout.clip');
      await indexImage(`oci:${image.dir}:${image.tag}`, { output: out });
      const index = await loadIndex(out);
      assert.equal(index.image.location, `oci:${path.resolve(image.dir)}`);
      const reader = await FileReader.open(index);
      try {
        const viaLayout = await summarizeIndex(index, reader);
        const bundle = await umociUnpack(image.dir, image.tag);
        try {
          const unstable = new Set(unstableMtimePaths('everything'));
          const diffs = compareTrees(await walkTree(bundle.rootfs), viaLayout, {
            ignoreField: (p, f) => f === 'mtimeNs' && unstable.has(p),
          });
          assert.deepEqual(diffs, []);
        } finally {
          await bundle.cleanup();
        }
      } finally {
        await reader.close();
      }
    } finally {
      await rm(image.dir, { recursive: true, force: true });
    }
  });
});
