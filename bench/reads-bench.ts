// npm run bench:reads: cold 4 KiB random reads through a clip mount over an
// emulated registry link (throttling proxy on loopback: bandwidth + RTT), per
// span size, vs archivemount of the same layer (download first) and vs a full
// download + gunzip; and warm (cached) reads. All measured in one run.
//
//   BENCH_LINK="50e6:20"  bytes per second : round trip ms
//   BENCH_SPANS="1048576,2097152,4194304"   BENCH_READS=200
//   BENCH_FINE="both"  chunks: v6 index (a read fetches the chunks it needs);
//                      whole: the same index without marks and chunk digests
//                      (v5: a read fetches whole spans); both: a row each
//
// Measured (50 MB/s + 20 ms, 100 reads, 128 MB layer): 4 MiB spans, whole
// 57.5 MB fetched, p50/p99 3.2/144 ms; chunks 35.5 MB, 42/113 ms (a read
// fetches from its checkpoint, so half a span on average, and a later read of
// the same span is a new request where a whole span would be a hit). 1 MiB
// spans: 42.5 vs 41.2 MB. Index 0.31% -> 0.37% of the compressed image.

import { execFile, spawnSync } from 'node:child_process';
import { promisify } from 'node:util';
import { createWriteStream } from 'node:fs';
import { mkdir, mkdtemp, open, rm } from 'node:fs/promises';
import http from 'node:http';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { pipeline } from 'node:stream/promises';
import zlib from 'node:zlib';
import { writeFile } from 'node:fs/promises';
import { loadIndex } from '../src/clip.js';
import { encodeIndex } from '../src/index/format.js';
import { walk } from '../src/image/lookup.js';
import { indexImage } from '../src/indexer/index-image.js';
import { createPrng } from '../test/helpers/prng.js';
import { pushImage, startRegistry } from '../test/helpers/registry.js';
import { benchImage, BENCH_IMAGE_DIR, BENCH_TAG } from './bench-image.js';
import { dropCaches } from './machine.js';
import { startThrottleProxy } from './throttle-proxy.js';

const [rate, rtt] = (process.env['BENCH_LINK'] ?? '50e6:20').split(':').map(Number) as [number, number];
const spanSizes = (process.env['BENCH_SPANS'] ?? '1048576,2097152,4194304').split(',').map(Number);
const READS = Number(process.env['BENCH_READS'] ?? 200);
const FINE = process.env['BENCH_FINE'] ?? 'both';
const variants = (FINE === 'both' ? ['whole', 'chunks'] : [FINE]) as ('whole' | 'chunks')[];
const CLIP = path.resolve('bin/clip.js');
const execFileAsync = promisify(execFile);

const pct = (xs: number[], p: number): number => [...xs].sort((a, b) => a - b)[Math.min(xs.length - 1, Math.floor((p / 100) * xs.length))]!;
const ms = (x: number): string => x.toFixed(x < 10 ? 2 : 0);

async function timedReads(root: string, reads: { file: string; offset: number }[]): Promise<number[]> {
  const out: number[] = [];
  const buf = Buffer.alloc(4096);
  for (const r of reads) {
    const t = performance.now();
    const fh = await open(path.join(root, r.file), 'r');
    await fh.read(buf, 0, 4096, r.offset);
    await fh.close();
    out.push(performance.now() - t);
  }
  return out;
}

function download(url: string, file: string): Promise<void> {
  return new Promise((resolve, reject) => {
    http
      .get(url, (res) => {
        pipeline(res, createWriteStream(file)).then(resolve, reject);
      })
      .on('error', reject);
  });
}

const layerFiles = await benchImage();
const registry = await startRegistry();
const work = await mkdtemp(path.join(tmpdir(), 'clip-readbench-'));
const env = { ...process.env, CLIP_STATE_DIR: path.join(work, 'state'), CLIP_DATA_DIR: path.join(work, 'data') };
const proxy = await startThrottleProxy(registry.host, rate, rtt);
try {
  await pushImage(BENCH_IMAGE_DIR, BENCH_TAG, registry.host, 'bench/image');
  const ref = `${proxy.host}/bench/image:${BENCH_TAG}`;
  console.log(`link: ${(rate / 1e6).toFixed(0)} MB/s, ${rtt} ms round trip; ${READS} random 4 KiB reads in files of the biggest layer\n`);

  // The reads: random files of the biggest layer, random 4 KiB-aligned offsets.
  const probe = path.join(work, 'probe.clip');
  await indexImage(`oci:${BENCH_IMAGE_DIR}:${BENCH_TAG}`, { output: probe });
  const probeIndex = await loadIndex(probe);
  const big = probeIndex.layers.reduce(
    (best, l, i) => (l.spans.compressedSize > probeIndex.layers[best]!.spans.compressedSize ? i : best),
    0,
  );
  const candidates = [...walk(probeIndex)].filter(([, n]) => n.type === 'file' && n.layer === big && n.size >= 8192 && n.nlink === 1);
  const prng = createPrng(1234);
  const reads = Array.from({ length: READS }, () => {
    const [file, n] = candidates[prng.int(candidates.length)]!;
    return { file, offset: Math.floor(prng.int(n.size - 4096) / 4096) * 4096 };
  });
  const layerBytes = probeIndex.layers[big]!.spans.compressedSize;

  const rows: string[] = [];
  for (const spanSize of spanSizes)
    for (const variant of variants) {
      let idx = path.join(work, `span-${spanSize}.clip`);
      // Indexing happens once, ahead of time: not over the emulated link.
      proxy.throttled = false;
      const summary = await indexImage(ref, { output: idx, spanSize });
      if (variant === 'whole') {
        // The same index without marks and chunk digests: what a read fetched before format v6.
        const coarse = await loadIndex(idx);
        for (const l of coarse.layers) delete l.spans.fine;
        idx = path.join(work, `span-${spanSize}-whole.clip`);
        const bytes = encodeIndex(coarse);
        await writeFile(idx, bytes);
        summary.indexBytes = bytes.length;
      }
      proxy.throttled = true;
      const mp = path.join(work, `mnt-${spanSize}-${variant}`);
      await mkdir(mp);
      const cache = path.join(work, `cache-${spanSize}-${variant}`);
      dropCaches();
      proxy.bytes = 0;
      // Async: the proxy runs in this process and must keep serving meanwhile.
      await execFileAsync(process.execPath, [CLIP, 'mount', idx, mp, '--cache-dir', cache], { env });
      try {
        const cold = await timedReads(mp, reads);
        const fetched = proxy.bytes;
        dropCaches();
        const warm = await timedReads(mp, reads);
        console.error(`span ${spanSize} ${variant}: done`);
        rows.push(
          `| clip, span ${spanSize / 1048576} MiB, ${variant === 'whole' ? 'whole spans (v5)' : '64 KiB chunks (v6)'} | ${ms(pct(cold, 50))} | ${ms(pct(cold, 99))} | ${ms(pct(warm, 50))} | ${ms(pct(warm, 99))} | ` +
            `${(fetched / 1e6).toFixed(1)} MB (${((100 * fetched) / layerBytes).toFixed(0)}% of layer) | ${((100 * summary.indexBytes) / summary.compressedBytes).toFixed(2)}% |`,
        );
      } finally {
        await execFileAsync(process.execPath, [CLIP, 'umount', mp], { env });
      }
    }

  // archivemount: the layer must be downloaded first, then mounted (it reads the archive through).
  const layerDigest = probeIndex.layers[big]!.digest;
  const blobUrl = `http://${proxy.host}/v2/bench/image/blobs/${layerDigest}`;
  const local = path.join(work, 'layer.tar.gz');
  let t = performance.now();
  await download(blobUrl, local);
  const tDownload = performance.now() - t;
  const amp = path.join(work, 'archivemount');
  await mkdir(amp);
  t = performance.now();
  await execFileAsync('archivemount', ['-o', 'ro,readonly', local, amp]);
  try {
    const first = await timedReads(amp, reads.slice(0, 1));
    const tFirst = performance.now() - t + tDownload;
    // archivemount re-inflates from the archive start on backward seeks: a few reads are enough to see it.
    const few = reads.slice(0, Number(process.env['BENCH_ARCHIVEMOUNT_READS'] ?? 20));
    const cold = await timedReads(amp, few);
    dropCaches();
    const warm = await timedReads(amp, few);
    rows.push(
      `| archivemount (download ${ms(tDownload)} ms first; first read after ${ms(tFirst)} ms) | ${ms(pct(cold, 50))} | ${ms(pct(cold, 99))} | ${ms(pct(warm, 50))} | ${ms(pct(warm, 99))} | ${(layerBytes / 1e6).toFixed(1)} MB (100%) | |`,
    );
    void first;
  } finally {
    spawnSync('umount', [amp]);
  }

  // Full download + gunzip: nothing can be read before this is done.
  t = performance.now();
  await new Promise<void>((resolve, reject) => {
    http
      .get(blobUrl, (res) => {
        pipeline(res, zlib.createGunzip(), createWriteStream(path.join(work, 'layer.tar'))).then(resolve, reject);
      })
      .on('error', reject);
  });
  const tFull = performance.now() - t;
  rows.push(`| full download + gunzip before any read | ${ms(tFull)} | ${ms(tFull)} | | | ${(layerBytes / 1e6).toFixed(1)} MB (100%) | |`);

  console.log(`layer: ${layerDigest.slice(0, 19)}…, ${(layerBytes / 1e6).toFixed(1)} MB compressed; of ${layerFiles.length} layers\n`);
  console.log('| method | cold p50 (ms) | cold p99 (ms) | warm p50 (ms) | warm p99 (ms) | fetched over the link | index size |');
  console.log('|---|---|---|---|---|---|---|');
  for (const r of rows) console.log(r);
} finally {
  await proxy.close();
  await registry.stop();
  await rm(work, { recursive: true, force: true });
}
