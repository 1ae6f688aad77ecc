// The bugs a new user hit (issue 11), each end to end through the CLI against
// a real registry: a clear one-line `clip: ...` message, exit 1, no stack
// trace, no output file, nothing left running.

import assert from 'node:assert/strict';
import { mkdir, mkdtemp, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { runClip, type CliResult } from './helpers/cli.js';
import { buildImage, compressLayer, hostArchitecture, type BuiltImage, type LayerSpec } from './helpers/image-builder.js';
import { replaceLayerBlob } from './helpers/mutate-image.js';
import { createPrng } from './helpers/prng.js';
import { pushImage, startRegistry, type RegistryHandle } from './helpers/registry.js';

/** Exit 1 with exactly one line on stderr, `clip: ` and matching `message`. */
function failsWith(r: CliResult, message: RegExp): void {
  assert.equal(r.code, 1, `exit code (stderr: ${r.stderr})`);
  assert.match(r.stderr, /^clip: [^\n]*\n$/, 'one line on stderr');
  assert.match(r.stderr, message);
  assert.doesNotMatch(r.stderr, /unexpected error|UND_ERR|at .*\.js:\d+/, 'a message, not a stack trace');
}

async function assertEmpty(dir: string): Promise<void> {
  assert.deepEqual(await readdir(dir), [], `nothing written in ${dir}`);
}

/** A layer of `mib` MiB of incompressible data, so the blob is that large too. */
function bigLayer(seed: number, mib: number, compression: LayerSpec['compression']): LayerSpec {
  const prng = createPrng(seed);
  return {
    compression,
    entries: [
      { type: 'dir', path: `d${seed}`, mtime: { sec: 1700000000, nsec: 0 } },
      { type: 'file', path: `d${seed}/blob.bin`, data: prng.bytes(mib * 1024 * 1024), mtime: { sec: 1700000000, nsec: 0 } },
    ],
  };
}

describe('bugs a new user hits', () => {
  let registry: RegistryHandle;
  let work: string;
  const images: BuiltImage[] = [];
  let small: string;
  before(async () => {
    registry = await startRegistry();
    work = await mkdtemp(path.join(tmpdir(), 'clip-newuser-'));
    const img = await buildImage({ tag: 'small', layers: [bigLayer(1, 1, 'gzip')], platform: { os: 'linux', architecture: hostArchitecture() } });
    images.push(img);
    small = (await pushImage(img.dir, img.tag, registry.host, 'newuser/small')).reference;
  });
  after(async () => {
    await registry?.stop();
    for (const img of images) await rm(img.dir, { recursive: true, force: true });
    if (work) await rm(work, { recursive: true, force: true });
  });

  async function outDir(): Promise<string> {
    return mkdtemp(path.join(work, 'out-'));
  }

  it('a zstd layer of several MB from a registry is refused, not a silent exit 0', async () => {
    const img = await buildImage({ tag: 'zstd', layers: [bigLayer(2, 8, 'zstd')] });
    images.push(img);
    assert.ok(img.layers[0]!.size > 8 * 1024 * 1024, 'the blob is larger than a socket buffer');
    const { reference } = await pushImage(img.dir, img.tag, registry.host, 'newuser/zstd');
    const dir = await outDir();
    const r = await runClip(['index', reference, '-o', path.join(dir, 'x.clip')]);
    failsWith(r, /zstd.*not supported/);
    await assertEmpty(dir);
  });

  it('many layers, several of them zstd, big gzip ones among them: refused with one clear error, no UND_ERR_ABORTED', async () => {
    const layers: LayerSpec[] = [];
    for (let i = 0; i < 8; i++) layers.push(bigLayer(10 + i, 4, i % 3 === 1 ? 'zstd' : 'gzip'));
    const img = await buildImage({ tag: 'many', layers });
    images.push(img);
    const { reference } = await pushImage(img.dir, img.tag, registry.host, 'newuser/many');
    const dir = await outDir();
    failsWith(await runClip(['index', reference, '-o', path.join(dir, 'x.clip')]), /zstd.*not supported/);
    await assertEmpty(dir);
  });

  it('zstd bytes under a gzip media type, found while other big layers are in flight: one clear error', async () => {
    const layers: LayerSpec[] = [];
    for (let i = 0; i < 7; i++) layers.push(bigLayer(30 + i, 6, 'gzip'));
    const img = await buildImage({ tag: 'mislabelled', layers });
    images.push(img);
    // Layers 1 and 4 hold zstd of the same tar (the diff ids still match): only the bytes tell.
    for (const i of [1, 4]) await replaceLayerBlob(img, i, compressLayer({ entries: [], compression: 'zstd' }, img.layers[i]!.tar).blob);
    const { reference } = await pushImage(img.dir, img.tag, registry.host, 'newuser/mislabelled');
    const dir = await outDir();
    for (let run = 0; run < 3; run++) {
      failsWith(await runClip(['index', reference, '-o', path.join(dir, 'x.clip')]), /zstd-compressed: zstd layers are not supported/);
    }
    await assertEmpty(dir);
  });
});
