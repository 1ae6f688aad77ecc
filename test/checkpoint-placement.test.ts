// Checkpoint placement is a function of a layer's bytes and the index options
// only: the same gzip layer fed to the indexer in any chunking (the network
// delivers whatever it likes) gives the very same span table, windows and
// digests included. Start-up profiles and span identities rely on it. Where
// a profile names block boundaries (reads begin there), checkpoints go there.

import assert from 'node:assert/strict';
import { Readable } from 'node:stream';
import { after, before, describe, it } from 'node:test';
import { rm } from 'node:fs/promises';
import zlib from 'node:zlib';
import { inflateSpans, needsWindow, spanOutputRange, spanRange } from '../src/gzip/span-reader.js';
import type { SpanTable } from '../src/gzip/types.js';
import { EntryBudget } from '../src/image/layer-entries.js';
import { buildIndex } from '../src/indexer/index-image.js';
import { indexLayer } from '../src/indexer/index-layer.js';
import { startFaultProxy, type FaultProxy } from './helpers/fault-proxy.js';
import { MEDIA, buildImage, compressLayer, sha256, type BuiltImage } from './helpers/image-builder.js';
import { pushImage, startRegistry, type RegistryHandle } from './helpers/registry.js';
import { createPrng } from './helpers/prng.js';
import { buildTar, type TarEntrySpec } from './helpers/tar-writer.js';

const KiB = 1024;
const MiB = 1024 * KiB;

/** Files of text, random bytes and repeats: block boundaries fall irregularly, as in real layers. */
function mixedFiles(seed: number, total: number): TarEntrySpec[] {
  const prng = createPrng(seed);
  const files: TarEntrySpec[] = [{ type: 'dir', path: 'data/' }];
  let size = 0;
  for (let i = 0; size < total; i++) {
    const n = prng.range(200, 600 * KiB);
    const kind = prng.int(4);
    const data =
      kind === 0
        ? prng.bytes(n)
        : kind === 1
          ? Buffer.concat([prng.compressible(n >> 1), prng.bytes(n >> 2), prng.compressible(n >> 2)])
          : prng.compressible(n);
    files.push({ type: 'file', path: `data/f${i}`, data });
    size += n;
  }
  return files;
}

/** Long zero runs with a little text between: no byte-aligned boundary for MiBs, so checkpoints start mid-byte. */
function zeroRuns(): TarEntrySpec[] {
  const prng = createPrng(7);
  const files: TarEntrySpec[] = [];
  for (let i = 0; i < 3; i++) {
    const data = Buffer.alloc(11 * MiB);
    for (let off = 3 * MiB; off < data.length; off += 3 * MiB) prng.compressible(300).copy(data, off);
    files.push({ type: 'file', path: `zeros${i}`, data });
    files.push({ type: 'file', path: `text${i}`, data: prng.compressible(200 * KiB) });
  }
  return files;
}

interface Layer {
  name: string;
  blob: Buffer;
  diffId: string;
}

function layer(name: string, entries: TarEntrySpec[], compression: 'gzip' | 'gzip-multi'): Layer {
  const tar = buildTar(entries);
  const { blob } = compressLayer({ entries, compression, members: 6, seed: 3 }, tar);
  return { name, blob, diffId: sha256(tar) };
}

const layers: Layer[] = [
  layer('mixed data', mixedFiles(1, 6 * MiB), 'gzip'),
  layer('multi-member gzip', mixedFiles(2, 6 * MiB), 'gzip-multi'),
  layer('long zero runs', zeroRuns(), 'gzip'),
];

/** A chunking: the size of the next chunk, given the offset it starts at. */
type Chunking = (offset: number) => number;

/** Chunk sizes the network may deliver. */
function chunkings(blobSize: number): [string, Chunking][] {
  const prng = createPrng(11);
  return [
    ['1 KiB', () => KiB],
    ['7 KiB', () => 7 * KiB],
    ['64 KiB + 1', () => 64 * KiB + 1],
    ['random 1 B..100 KiB', () => prng.range(1, 100 * KiB)],
    ['the whole blob', () => blobSize],
  ];
}

/** Chunks that end exactly at the given offsets (and every 64 KiB between): where a chunk-edge bug shows. */
function cutAt(offsets: number[]): Chunking {
  const sorted = [...new Set(offsets)].sort((a, b) => a - b);
  return (off) => {
    const next = sorted.find((o) => o > off);
    return Math.min(64 * KiB, (next ?? Infinity) - off);
  };
}

async function spanTable(l: Layer, spanSize: number, nextSize: Chunking): Promise<SpanTable> {
  const chunks: Buffer[] = [];
  for (let off = 0; off < l.blob.length;) {
    const n = Math.min(nextSize(off), l.blob.length - off);
    chunks.push(l.blob.subarray(off, off + n));
    off += n;
  }
  const descriptor = { digest: sha256(l.blob), mediaType: MEDIA.ociLayerGzip, size: l.blob.length, diffId: l.diffId };
  const { spans } = await indexLayer(descriptor, Readable.from(chunks), spanSize, { every: spanSize }, 0, new EntryBudget());
  return spans;
}

describe('checkpoint placement depends on the bytes and the options only', () => {
  it('the fixtures are what the test needs: several members, unaligned checkpoints', () => {
    assert.ok(layers[0]!.blob.length > 2 * MiB, `mixed layer is ${layers[0]!.blob.length} bytes compressed`);
    // A second gzip member starts somewhere after the first one's header.
    assert.ok(layers[1]!.blob.indexOf(Buffer.from([0x1f, 0x8b, 8]), 10) > 0, 'the multi-member layer has several members');
    assert.ok(zlib.gunzipSync(layers[1]!.blob).length > 6 * MiB);
  });

  for (const spanSize of [128 * KiB, 4 * MiB]) {
    for (const l of layers) {
      it(`${l.name}, ${spanSize / KiB} KiB spans: every chunking gives the same span table`, async () => {
        const reference = await spanTable(l, spanSize, () => 64 * KiB);
        // Zeros come in deflate blocks of ~4 MiB of output each: far fewer spans there.
        const fewest = spanSize === 4 * MiB ? 2 : l.name === 'long zero runs' ? 5 : 20;
        assert.ok(reference.checkpoints.length >= fewest, `${reference.checkpoints.length} checkpoints`);
        if (l.name === 'long zero runs') {
          assert.ok(
            reference.checkpoints.some((c) => (c.bits ?? 0) > 0),
            'some checkpoints start mid-byte',
          );
        }
        // Block boundaries: the reference's checkpoints, and every boundary
        // after a gzip header (a member's first block).
        const boundaries = reference.checkpoints.map((c) => c.in);
        const cuts: [string, Chunking][] = [
          ...chunkings(l.blob.length),
          ['chunks ending at each checkpoint', cutAt(boundaries)],
          ['chunks ending one byte after each checkpoint', cutAt(boundaries.map((o) => o + 1))],
          ['chunks ending one byte before each checkpoint', cutAt(boundaries.map((o) => o - 1))],
        ];
        for (const [name, nextSize] of cuts) {
          const table = await spanTable(l, spanSize, nextSize);
          assert.equal(table.checkpoints.length, reference.checkpoints.length, `${name}: number of checkpoints`);
          assert.deepEqual(table, reference, `${name}: the span table`);
        }
      });
    }
  }
});

describe('checkpoints where a profile says reads begin', () => {
  it('block boundaries named (marks of a first index) become checkpoints with windows, that resume right, in any chunking', async () => {
    // Compressible data: after a stored block (random bytes) several bit positions resume alike, and such a
    // boundary is not taken (a read there starts at the checkpoint before, as without a profile).
    const prng = createPrng(5);
    const l = layer('text', [{ type: 'file', path: 'text', data: prng.compressible(6 * MiB) }], 'gzip');
    const tar = zlib.gunzipSync(l.blob);
    const spanSize = 1 * MiB;
    const first = await spanTable(l, spanSize, () => 64 * KiB);
    // Marks are zlib's block boundaries: mostly not byte-aligned, so each is proven at every bit.
    const marks = first.fine!.flatMap((f) => f.marks).filter((_, k) => k % 3 === 1);
    assert.ok(marks.length >= 5, `${marks.length} marks chosen`);
    const at = new Set(marks.map((m) => m.out));
    const table = async (nextSize: Chunking): Promise<SpanTable> => {
      const chunks: Buffer[] = [];
      for (let off = 0; off < l.blob.length; off += nextSize(off)) chunks.push(l.blob.subarray(off, off + nextSize(off)));
      const descriptor = { digest: sha256(l.blob), mediaType: MEDIA.ociLayerGzip, size: l.blob.length, diffId: l.diffId };
      return (await indexLayer(descriptor, Readable.from(chunks), spanSize, { every: 4 * spanSize, at }, 0, new EntryBudget())).spans;
    };
    const guided = await table(() => 64 * KiB);
    const starts = new Map(guided.checkpoints.map((c, i) => [c.out, i]));
    for (const m of marks) {
      const i = starts.get(m.out);
      assert.ok(i !== undefined, `a checkpoint at ${m.out}`);
      assert.ok(!needsWindow(guided, i), `the checkpoint at ${m.out} keeps its window`);
      const r = spanRange(guided, i);
      const o = spanOutputRange(guided, i);
      const out = await inflateSpans(guided, i, i, l.blob.subarray(r.start, r.end));
      assert.ok(out.equals(tar.subarray(o.start, o.end)), `span ${i} from the checkpoint at ${m.out} inflates to the layer's bytes`);
    }
    // Up to the first one named, the placement is the plain one.
    const firstAt = Math.min(...at);
    const before = (t: SpanTable): number[] => t.checkpoints.filter((c) => c.out < firstAt).map((c) => c.out);
    assert.deepEqual(before(guided), before(first));
    assert.deepEqual(await table(() => 7 * KiB), guided, 'the same table in another chunking');
  });
});

describe('an image indexed from a registry gets the span tables of its OCI layout', () => {
  let registry: RegistryHandle;
  let proxy: FaultProxy;
  let image: BuiltImage;
  before(async () => {
    registry = await startRegistry();
    proxy = await startFaultProxy(registry.host);
    image = await buildImage({
      layers: [{ entries: mixedFiles(3, 4 * MiB) }, { entries: mixedFiles(4, 4 * MiB), compression: 'gzip-multi', members: 4 }],
    });
    await pushImage(image.dir, image.tag, registry.host, 'placement/mixed');
  });
  after(async () => {
    await proxy?.close();
    await registry?.stop();
    if (image) await rm(image.dir, { recursive: true, force: true });
  });

  it('128 KiB spans: from the layout, from the registry, and through cut connections (resumed mid-blob), the same tables', async () => {
    const spanSize = 128 * KiB;
    const tables = async (ref: string): Promise<SpanTable[]> => (await buildIndex(ref, { spanSize })).layers.map((l) => l.spans);
    const layout = await tables(`oci:${image.dir}:${image.tag}`);
    assert.ok(
      layout.every((t) => t.checkpoints.length > 10),
      `spans per layer: ${layout.map((t) => t.checkpoints.length).join(', ')}`,
    );
    assert.deepEqual(await tables(`${registry.host}/placement/mixed:${image.tag}`), layout, 'straight from the registry');
    // Each of the first blob bodies stops half-way: the indexer resumes it with a Range GET, so the chunks fall elsewhere.
    proxy.set('truncate', 2);
    const before = proxy.blobRequests;
    assert.deepEqual(await tables(`${proxy.host}/placement/mixed:${image.tag}`), layout, 'through cut connections');
    assert.ok(proxy.blobRequests >= before + 4, `${proxy.blobRequests - before} blob requests: the cut bodies were resumed`);
  });
});
