// `clip index` through a proxy that cuts layer downloads mid-way: a cut
// stream is resumed from the byte reached (a Range request) and the index is
// the same as one made over a healthy link; a link that cuts every attempt
// ends in a clear error, exit 1, and no output file.

import assert from 'node:assert/strict';
import { readdir, rm } from 'node:fs/promises';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { loadIndex } from '../src/index/load.js';
import { buildBusyboxImage } from './helpers/busybox-image.js';
import { runClip } from './helpers/cli.js';
import { startDropProxy, type DropProxy } from './helpers/drop-proxy.js';
import type { BuiltImage } from './helpers/image-builder.js';
import { clipWorkspace, type ClipWorkspace } from './helpers/mounts.js';
import { pushImage, startRegistry, type RegistryHandle } from './helpers/registry.js';

describe('layer downloads cut while indexing', () => {
  let registry: RegistryHandle;
  let proxy: DropProxy;
  let image: BuiltImage;
  let ws: ClipWorkspace;
  let ref: string;
  let baseline: string;

  /** The index without what differs between two runs (when it was made). */
  async function content(file: string): Promise<string> {
    const index = await loadIndex(file);
    const { indexedAt: _, ...image } = index.image;
    return JSON.stringify({ ...index, image }, (_k, v: unknown) =>
      v instanceof Map ? [...v] : Buffer.isBuffer(v) ? v.toString('hex') : v,
    );
  }

  before(async () => {
    registry = await startRegistry();
    proxy = await startDropProxy(registry.host);
    image = await buildBusyboxImage();
    await pushImage(image.dir, image.tag, registry.host, 'resume/busybox');
    ws = await clipWorkspace('resume');
    ref = `${proxy.host}/resume/busybox:${image.tag}`;
    baseline = path.join(ws.dir, 'baseline.clip');
    const r = await runClip(['index', ref, '-o', baseline, '--span-size', '256K']);
    assert.equal(r.code, 0, r.stderr);
  });
  after(async () => {
    await proxy?.close();
    await registry?.stop();
    if (image) await rm(image.dir, { recursive: true, force: true });
    if (ws) await rm(ws.dir, { recursive: true, force: true });
  });

  it('a layer GET cut mid-way is resumed where it stopped: the same index as without faults', async () => {
    const layer = image.layers[1]!;
    assert.ok(layer.size > 1024 * 1024, 'a layer big enough to cut');
    const out = path.join(ws.dir, 'cut-once.clip');
    const seen = proxy.log.length;
    proxy.drop({ method: 'GET', url: new RegExp(`/blobs/${layer.digest}$`), times: 2, after: 300 * 1024 });
    const r = await runClip(['index', ref, '-o', out, '--span-size', '256K']);
    proxy.heal();
    assert.equal(r.code, 0, r.stderr);
    const requests = proxy.log.slice(seen).filter((l) => l.url.endsWith(`/blobs/${layer.digest}`));
    assert.deepEqual(
      requests.map((l) => l.dropped),
      [true, true, false],
      'cut twice, then resumed to the end',
    );
    assert.equal(await content(out), await content(baseline));
  });

  it('a layer GET cut on every attempt: a clear REGISTRY error, exit 1, no output file', async () => {
    const layer = image.layers[1]!;
    const out = path.join(ws.dir, 'always-cut.clip');
    proxy.drop({ method: 'GET', url: new RegExp(`/blobs/${layer.digest}$`), times: Infinity, after: 64 * 1024 });
    const r = await runClip(['index', ref, '-o', out, '--span-size', '256K']);
    proxy.heal();
    assert.equal(r.code, 1);
    assert.match(r.stderr, new RegExp(`^clip: .*blob ${layer.digest}.*gave up after \\d+ attempts`, 'm'));
    assert.doesNotMatch(r.stderr, /unexpected error|\n\s+at /);
    const left = (await readdir(ws.dir)).filter((f) => f.includes('always-cut'));
    assert.deepEqual(left, [], 'no output file, no temp file');
  });
});
