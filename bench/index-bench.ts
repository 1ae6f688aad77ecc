// npm run bench:index: index a realistic multi-layer image (layers made with
// GNU tar + gzip from this machine's /usr) and compare, in the same run, with
// Node's native streaming gunzip of the same layers. Prints ratios.
//
// The image is cached in .bench-cache/index-image (delete it to rebuild).

import { createReadStream } from 'node:fs';
import { rm, stat } from 'node:fs/promises';
import path from 'node:path';
import { pipeline } from 'node:stream/promises';
import { Writable } from 'node:stream';
import zlib from 'node:zlib';
import { indexImage } from '../src/indexer/index-image.js';
import { benchImage, BENCH_IMAGE_DIR } from './bench-image.js';

const CACHE = BENCH_IMAGE_DIR;

async function nativeGunzip(files: string[]): Promise<number> {
  const t = performance.now();
  for (const f of files) {
    await pipeline(createReadStream(f), zlib.createGunzip(), new Writable({ write: (_c, _e, cb) => cb() }));
  }
  return (performance.now() - t) / 1000;
}

function fmt(n: number, d = 2): string {
  return n.toFixed(d);
}

const files = await benchImage();
const compressed = (await Promise.all(files.map((f) => stat(f)))).reduce((a, s) => a + s.size, 0);
const out = path.join(CACHE, '..', 'bench.clip');
const runs = Number(process.env['BENCH_RUNS'] ?? 3);
const spanSizes = (process.env['BENCH_SPANS'] ?? '1048576,2097152,4194304').split(',').map(Number);
console.log(`image: ${files.length} layers, ${fmt(compressed / 1e6, 1)} MB compressed (cache: ${CACHE})`);
console.log(`runs: ${runs} per measurement, median reported\n`);
const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[xs.length >> 1]!;
const nativeTimes: number[] = [];
for (let r = 0; r < runs; r++) nativeTimes.push(await nativeGunzip(files));
const nat = median(nativeTimes);
console.log(`native streaming gunzip of the layers: ${fmt(nat)} s`);
console.log('| span size | index time (s) | vs native gunzip | index size | % of compressed image | files/s |');
console.log('|---|---|---|---|---|---|');
for (const spanSize of spanSizes) {
  const times: number[] = [];
  let summary: Awaited<ReturnType<typeof indexImage>> | undefined;
  for (let r = 0; r < runs; r++) {
    summary = await indexImage(`oci:${CACHE}:bench`, { output: out, spanSize });
    times.push(summary.seconds);
  }
  const t = median(times);
  console.log(
    `| ${spanSize / 1048576} MiB | ${fmt(t)} | ${fmt(t / nat)}x | ${fmt(summary!.indexBytes / 1e6, 2)} MB | ${fmt((100 * summary!.indexBytes) / compressed, 2)}% | ${Math.round(summary!.entries / t)} |`,
  );
}
await rm(out, { force: true });

// Loading: a synthetic 100k-entry image index, decoded as `clip mount` will.
{
  const { mergeLayers } = await import('../src/image/merge.js');
  const { encodeIndex, decodeIndex } = await import('../src/index/format.js');
  const entries = [];
  for (let i = 0; i < 100_000; i++) {
    entries.push({
      path: `usr/lib/pkg${i % 500}/file-${i}.py`,
      type: 'file' as const,
      mode: 0o644,
      uid: 0,
      gid: 0,
      size: 1000 + i,
      dataOffset: i * 2048,
      mtime: { sec: 1_700_000_000 + i, nsec: i },
      devmajor: 0,
      devminor: 0,
    });
  }
  const tree = mergeLayers([entries]);
  // Digests and spans as the decoder demands them (it refuses what clip could not serve).
  const d = (c: string): string => `sha256:${c.repeat(64)}`;
  const image = {
    location: 'oci:/x',
    reference: 'x',
    manifestDigest: d('a'),
    manifestMediaType: '',
    configDigest: d('b'),
    platform: { os: 'linux', architecture: 'amd64' },
    config: {},
    indexedAt: '',
    indexedBy: '',
    spanSize: 4 << 20,
  };
  const checkpoints = Array.from({ length: Math.ceil(300e6 / (4 << 20)) }, (_, i) => ({
    in: i * (4 << 20),
    out: i * (4 << 20),
    window: Buffer.alloc(0),
  }));
  const layer = {
    digest: d('c'),
    mediaType: '',
    diffId: d('d'),
    spans: {
      compression: 'none' as const,
      compressedSize: 300e6,
      uncompressedSize: 300e6,
      checkpoints,
      digests: checkpoints.map(() => Buffer.alloc(32)),
    },
  };
  const file = encodeIndex({ kind: 'oci', image, layers: [layer], ...tree });
  const rssBefore = process.memoryUsage().rss;
  const times: number[] = [];
  for (let r = 0; r < 5; r++) {
    const t = performance.now();
    decodeIndex(file);
    times.push(performance.now() - t);
  }
  console.log(
    `\nloading a 100k-entry index (${fmt(file.length / 1e6)} MB): median ${fmt(median(times), 0)} ms; RSS now ${fmt(process.memoryUsage().rss / 1e6, 0)} MB (was ${fmt(rssBefore / 1e6, 0)} MB)`,
  );
}
