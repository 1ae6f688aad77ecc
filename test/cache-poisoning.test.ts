// A hostile .clip must not poison the span cache for other images: it claims
// the layer digest of a genuine image, points at a layout it controls whose
// "blob" under that digest holds other bytes, and carries span digests that
// match those bytes. Mounted once, it must leave nothing that a later mount
// of the genuine image, sharing the cache directory, would serve.

import assert from 'node:assert/strict';
import { copyFile, mkdir, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { encodeIndex, loadIndex } from '../src/clip.js';
import { isMounted } from '../src/fuse/index.js';
import { indexImage } from '../src/indexer/index-image.js';
import { runClip } from './helpers/cli.js';
import { buildImage, type BuiltImage } from './helpers/image-builder.js';
import { clipWorkspace, sweepClipMounts, type ClipWorkspace } from './helpers/mounts.js';

const SIZE = 200_000;
// Same names and sizes, so both layers' tars (and their single span) have the same length.
const layer = (fill: string) => ({ entries: [{ type: 'file' as const, path: 'data.txt', data: fill.repeat(SIZE / fill.length) }] });

async function waitFor(cond: () => Promise<boolean>, what: string): Promise<void> {
  for (let i = 0; i < 400; i++) {
    if (await cond()) return;
    await new Promise((r) => setTimeout(r, 25));
  }
  throw new Error(`timed out waiting for ${what}`);
}

async function spanFiles(dir: string): Promise<string[]> {
  const all = await readdir(dir, { recursive: true }).catch(() => [] as string[]);
  return all.filter((f) => f.endsWith('.span'));
}

describe('span cache and hostile indexes', () => {
  let ws: ClipWorkspace;
  let genuine: BuiltImage;
  let other: BuiltImage;
  before(async () => {
    sweepClipMounts();
    ws = await clipWorkspace('poison');
    genuine = await buildImage({ tag: 'genuine', layers: [layer('genuine!')] });
    other = await buildImage({ tag: 'other', layers: [layer('HOSTILE!')] });
  });
  after(async () => {
    sweepClipMounts();
    for (const img of [genuine, other]) if (img) await rm(img.dir, { recursive: true, force: true });
    if (ws) await rm(ws.dir, { recursive: true, force: true });
  });

  async function mountRead(index: string, mp: string, cacheDir: string): Promise<string> {
    await mkdir(mp, { recursive: true });
    const m = await runClip(['mount', index, mp, '--cache-dir', cacheDir], { env: ws.env });
    assert.equal(m.code, 0, m.stderr);
    try {
      const text = await readFile(path.join(mp, 'data.txt'), 'utf8');
      // The span is written to the cache after the read returns: wait for it before unmounting.
      await waitFor(async () => (await spanFiles(cacheDir)).length > 0, 'the span to be cached');
      return text;
    } finally {
      const u = await runClip(['umount', mp], { env: ws.env });
      assert.equal(u.code, 0, u.stderr);
      assert.ok(!isMounted(mp));
    }
  }

  it('a hostile index claiming a genuine layer digest does not change what the genuine image serves', async () => {
    const genuineIndex = path.join(ws.dir, 'genuine.clip');
    const otherIndex = path.join(ws.dir, 'other.clip');
    await indexImage(`oci:${genuine.dir}:genuine`, { output: genuineIndex, spanSize: 4 << 20 });
    await indexImage(`oci:${other.dir}:other`, { output: otherIndex, spanSize: 4 << 20 });

    // The hostile layout: the other image's layer bytes stored under the genuine layer's digest.
    const digest = genuine.layers[0]!.digest;
    const hostileDir = path.join(ws.dir, 'hostile-layout');
    await mkdir(path.join(hostileDir, 'blobs', 'sha256'), { recursive: true });
    await copyFile(path.join(other.dir, 'oci-layout'), path.join(hostileDir, 'oci-layout'));
    await writeFile(path.join(hostileDir, 'blobs', 'sha256', digest.slice('sha256:'.length)), other.layers[0]!.blob);
    const hostile = await loadIndex(otherIndex);
    const genuineRecord = (await loadIndex(genuineIndex)).layers[0]!;
    assert.equal(
      hostile.layers[0]!.spans.uncompressedSize,
      genuineRecord.spans.uncompressedSize,
      'same span length, so a cache keyed by (digest, span) would hit',
    );
    hostile.layers[0] = { ...hostile.layers[0]!, digest, diffId: genuineRecord.diffId };
    hostile.image = { ...hostile.image, location: `oci:${hostileDir}` };
    const hostileIndex = path.join(ws.dir, 'hostile.clip');
    await writeFile(hostileIndex, encodeIndex(hostile));

    const cacheDir = path.join(ws.dir, 'shared-cache');
    const served = await mountRead(hostileIndex, path.join(ws.dir, 'mnt-hostile'), cacheDir);
    assert.ok(
      served === 'HOSTILE!'.repeat(SIZE / 8),
      `the hostile index serves the bytes it describes, got ${JSON.stringify(served.slice(0, 16))}...`,
    );

    const text = await mountRead(genuineIndex, path.join(ws.dir, 'mnt-genuine'), cacheDir);
    assert.ok(
      text === 'genuine!'.repeat(SIZE / 8),
      `the genuine image must serve its own bytes, not the cached hostile span; got ${JSON.stringify(text.slice(0, 16))}...`,
    );
  });
});
