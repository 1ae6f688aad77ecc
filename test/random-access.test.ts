// Random access: many random ranges of the large fixture's big files, read
// lazily from the registry through the index, are byte-identical to the
// original tar contents; across span and gzip member boundaries.

import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { loadIndex } from '../src/clip.js';
import { FileReader } from '../src/content/file-reader.js';
import { lookupPath } from '../src/image/lookup.js';
import { indexImage } from '../src/indexer/index-image.js';
import { buildFixture, LARGE } from './helpers/fixtures.js';
import type { BuiltImage } from './helpers/image-builder.js';
import { createPrng } from './helpers/prng.js';
import { pushImage, startRegistry, type RegistryHandle } from './helpers/registry.js';

/** The original bytes of a file, straight from the fixture's tar. */
function original(image: BuiltImage, file: string): Buffer {
  for (let i = image.layers.length - 1; i >= 0; i--) {
    const layer = image.layers[i]!;
    const e = layer.tarLayout.find((l) => l.path.replace(/^\.\//, '') === file);
    if (e) return layer.tar.subarray(e.dataOffset, e.dataOffset + e.size);
  }
  throw new Error(`${file} not in fixture`);
}

describe('random access', () => {
  let registry: RegistryHandle;
  let image: BuiltImage;
  let work: string;
  before(async () => {
    registry = await startRegistry();
    image = await buildFixture('large');
    work = await mkdtemp(path.join(tmpdir(), 'clip-random-'));
    await pushImage(image.dir, image.tag, registry.host, 'fixtures/large');
  });
  after(async () => {
    await registry?.stop();
    if (image) await rm(image.dir, { recursive: true, force: true });
    if (work) await rm(work, { recursive: true, force: true });
  });

  for (const spanSize of [64 * 1024, 1024 * 1024]) {
    it(`400 random ranges of big files are byte-identical (span ${spanSize / 1024} KiB)`, async () => {
      const out = path.join(work, `large-${spanSize}.clip`);
      await indexImage(`${registry.host}/fixtures/large:${image.tag}`, { output: out, spanSize });
      const index = await loadIndex(out);
      const spans = index.layers.reduce((a, l) => a + l.spans.checkpoints.length, 0);
      assert.ok(spans > index.layers.length, `${spans} spans`);
      const reader = await FileReader.open(index);
      try {
        const prng = createPrng(spanSize);
        const files = Object.keys(LARGE.bigFiles);
        const originals = new Map(files.map((f) => [f, original(image, f)]));
        for (let k = 0; k < 400; k++) {
          const file = files[prng.int(files.length)]!;
          const want = originals.get(file)!;
          const node = lookupPath(index, file);
          assert.equal(node.size, want.length);
          const offset = prng.int(want.length);
          const length = k % 10 === 0 ? prng.int(3 * 1024 * 1024) : 1 + prng.int(64 * 1024);
          const got = await reader.read(node, offset, length);
          assert.ok(got.equals(want.subarray(offset, offset + length)), `${file} [${offset}, +${length})`);
        }
        const tail = lookupPath(index, files[0]!);
        assert.equal((await reader.read(tail, tail.size, 10)).length, 0, 'reads at end of file are empty');
      } finally {
        await reader.close();
      }
    });
  }
});
