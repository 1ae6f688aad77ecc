// A start-up profile bigger than the memory cache: every profiled span is
// fetched once. Spans that a profile's parallel loads bring in push each
// other out of memory before their queued disk-cache writes land; a read (or
// another load) then found the span nowhere and fetched it again. Seen on the
// torch image: 282.7 MB fetched for a profile that lists 241.5 MB. Spans still
// in flight were evicted by the next fetch too, and fetched again by a reader.

import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { loadIndex } from '../src/clip.js';
import { LayerReader } from '../src/content/layer-reader.js';
import { openBlobSource } from '../src/content/sources/open.js';
import { SpanCache } from '../src/content/span-cache.js';
import { warmFromProfile } from '../src/content/startup-profile.js';
import { spanOutputRange, spanRange } from '../src/gzip/span-reader.js';
import type { ClipIndex } from '../src/index/types.js';
import { indexImage } from '../src/indexer/index-image.js';
import type { BlobSource } from '../src/oci/types.js';
import { buildFixture } from './helpers/fixtures.js';
import type { BuiltImage } from './helpers/image-builder.js';
import { createPrng } from './helpers/prng.js';

/** Counts the range requests a real blob source answers. */
function counting(inner: BlobSource): BlobSource & { ranges: [number, number][] } {
  const ranges: [number, number][] = [];
  return {
    ranges,
    openBlob: (d) => inner.openBlob(d),
    readRange: (d, s, e) => {
      ranges.push([s, e]);
      return inner.readRange(d, s, e);
    },
    close: () => inner.close(),
  };
}

describe('start-up profile larger than the memory cache', () => {
  let image: BuiltImage;
  let index: ClipIndex;
  let work: string;
  before(async () => {
    image = await buildFixture('large');
    work = await mkdtemp(path.join(tmpdir(), 'clip-profile-once-'));
    const out = path.join(work, 'large.clip');
    await indexImage(`oci:${image.dir}:${image.tag}`, { output: out, spanSize: 64 * 1024, windowEvery: 64 * 1024 });
    index = await loadIndex(out);
  });
  after(async () => {
    if (image) await rm(image.dir, { recursive: true, force: true });
    if (work) await rm(work, { recursive: true, force: true });
  });

  it('fetches every profiled span once, then serves the reads without another request', async () => {
    const table = index.layers[0]!.spans;
    const n = table.checkpoints.length;
    assert.ok(n >= 16, `${n} spans`);
    const blobs = counting(await openBlobSource(index.image.location));
    // Memory for two spans; the disk cache holds them all.
    const reader = new LayerReader(index.layers, blobs, {
      disk: new SpanCache(path.join(work, 'cache')),
      memoryBytes: 2 * 64 * 1024,
      smallLayer: 0,
    });
    // Every other span, in a shuffled first-read order: many runs, loaded 8 at a time.
    const random = createPrng(13);
    const spans = Array.from({ length: n }, (_, i) => i)
      .filter((i) => i % 2 === 0)
      .map((span) => ({ layer: 0, span, key: random.float() }))
      .sort((a, b) => a.key - b.key)
      .map(({ layer, span }) => ({ layer, span }));
    await warmFromProfile(reader, spans, 8);
    const fetchedByProfile = blobs.ranges.length;
    for (const { span } of spans) {
      const r = spanOutputRange(table, span);
      assert.ok((await reader.read(0, r.start, r.end - r.start)).equals(image.layers[0]!.tar.subarray(r.start, r.end)));
    }
    for (const { span } of spans) {
      const r = spanRange(table, span);
      const covering = blobs.ranges.filter(([s, e]) => s <= r.start && e >= r.end).length;
      assert.equal(covering, 1, `span ${span} fetched ${covering} times`);
    }
    assert.equal(blobs.ranges.length, fetchedByProfile, 'the reads after the profile need no request');
    await reader.diskWrites();
    await blobs.close();
  });

  it('a span in flight is not evicted by the next one: its readers wait for that fetch', async () => {
    const table = index.layers[0]!.spans;
    const blobs = counting(await openBlobSource(index.image.location));
    // Memory for one span: loading span 5 pushes out span 3, which is still being fetched.
    const a = spanOutputRange(table, 3);
    const reader = new LayerReader(index.layers, blobs, { memoryBytes: a.end - a.start, smallLayer: 0 });
    const loads = [reader.load(0, 3, 3), reader.load(0, 5, 5)];
    const read = reader.read(0, a.start, a.end - a.start);
    await Promise.all(loads);
    assert.ok((await read).equals(image.layers[0]!.tar.subarray(a.start, a.end)));
    const r = spanRange(table, 3);
    assert.equal(blobs.ranges.filter(([s, e]) => s <= r.start && e >= r.end).length, 1, 'span 3 fetched once');
    await blobs.close();
  });
});
