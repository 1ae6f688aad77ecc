// Prefetch rates: 0 (or anything not a positive rate) is refused, and a rate
// so low that the pause after one request exceeds what setTimeout takes
// waits (in steps) instead of overflowing into a 1 ms timer, and stops when
// the mount stops.

import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { loadIndex } from '../src/clip.js';
import { LayerReader } from '../src/content/layer-reader.js';
import { prefetchLayers } from '../src/content/prefetch.js';
import { SpanCache } from '../src/content/span-cache.js';
import { ClipError } from '../src/errors.js';
import type { ClipIndex } from '../src/index/types.js';
import { indexImage } from '../src/indexer/index-image.js';
import { openBlobSource } from '../src/content/sources/open.js';
import type { BlobSource } from '../src/oci/types.js';
import { buildFixture } from './helpers/fixtures.js';
import type { BuiltImage } from './helpers/image-builder.js';

describe('prefetch rate', () => {
  let image: BuiltImage;
  let index: ClipIndex;
  let work: string;
  before(async () => {
    image = await buildFixture('large');
    work = await mkdtemp(path.join(tmpdir(), 'clip-prefetch-'));
    const out = path.join(work, 'large.clip');
    await indexImage(`oci:${image.dir}:${image.tag}`, { output: out, spanSize: 64 * 1024 });
    index = await loadIndex(out);
  });
  after(async () => {
    if (image) await rm(image.dir, { recursive: true, force: true });
    if (work) await rm(work, { recursive: true, force: true });
  });

  it('refuses a rate of 0, a negative one and NaN', async () => {
    const blobs = await openBlobSource(index.image.location);
    const reader = new LayerReader(index.layers, blobs, { disk: new SpanCache(path.join(work, 'c0')) });
    for (const bytesPerSecond of [0, -1, NaN]) {
      await assert.rejects(prefetchLayers(reader, index.layers, { bytesPerSecond }), ClipError);
    }
    await blobs.close();
  });

  it('a tiny rate pauses without a TimeoutOverflowWarning, and abort ends the pause', async () => {
    const warnings: string[] = [];
    const onWarning = (w: Error): void => {
      warnings.push(w.name);
    };
    process.on('warning', onWarning);
    const inner = await openBlobSource(index.image.location);
    let requests = 0;
    const stop = new AbortController();
    const blobs: BlobSource = {
      openBlob: (d) => inner.openBlob(d),
      readRange: async (d, s, e) => {
        requests++;
        const got = await inner.readRange(d, s, e);
        // Abort once the first request is answered: prefetch is then in its pause.
        setImmediate(() => stop.abort());
        return got;
      },
      close: () => inner.close(),
    };
    try {
      const reader = new LayerReader(index.layers, blobs, { disk: new SpanCache(path.join(work, 'c1')), smallLayer: 0 });
      // One batch of 64 KiB spans at 0.001 bytes/s: a pause of about 10^11 ms, past setTimeout's 2^31 - 1.
      const fetched = await prefetchLayers(reader, index.layers, { bytesPerSecond: 0.001, signal: stop.signal });
      assert.equal(requests, 1, 'one request, then the pause until the abort');
      assert.ok(fetched > 0 && fetched < index.layers[0]!.spans.compressedSize);
      // Warnings are emitted on the next tick.
      await new Promise((r) => setImmediate(r));
      assert.deepEqual(
        warnings.filter((w) => w === 'TimeoutOverflowWarning'),
        [],
      );
    } finally {
      process.off('warning', onWarning);
      await blobs.close();
    }
  });
});
