// npm run bench:small-layers: is fetching a small layer whole on its first
// miss worth it? For layers of real files (Python's standard library) from
// 256 KiB to 8 MiB compressed, indexed at the default span size, it times a
// cold start that reads 1 and then 8 random whole files one after another
// (an interpreter importing modules), over an emulated registry link, with
// whole-layer fetching off and on. The ratio picks SMALL_LAYER.
//
//   BENCH_LINKS="50e6:20,200e6:5"   bytes per second : round trip ms
//   BENCH_RUNS=3

import { readdirSync, readFileSync, statSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { gzipSync } from 'node:zlib';
import { loadIndex, type ClipIndex } from '../src/clip.js';
import { LayerReader } from '../src/content/layer-reader.js';
import { walk } from '../src/image/lookup.js';
import type { Node } from '../src/image/types.js';
import { indexImage } from '../src/indexer/index-image.js';
import { openBlobSource } from '../src/content/sources/open.js';
import { buildImage } from '../test/helpers/image-builder.js';
import { createPrng } from '../test/helpers/prng.js';
import { pushImage, startRegistry } from '../test/helpers/registry.js';
import type { TarEntrySpec } from '../test/helpers/tar-writer.js';
import { startThrottleProxy } from './throttle-proxy.js';

const links = (process.env['BENCH_LINKS'] ?? '50e6:20,200e6:5').split(',').map((l) => l.split(':').map(Number) as [number, number]);
const RUNS = Number(process.env['BENCH_RUNS'] ?? 3);
const SIZES = [256, 512, 1024, 2048, 4096, 8192].map((k) => k * 1024);
const SOURCE = ['/usr/lib/python3.11', '/usr/lib/python3', '/usr/share/perl', '/usr/share'].find((d) => {
  try {
    return statSync(d).isDirectory();
  } catch {
    return false;
  }
})!;

const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[xs.length >> 1]!;

/** Regular files under `dir`, sorted, as tar entries. */
function* sourceFiles(dir: string): Generator<{ rel: string; abs: string; size: number }> {
  const entries = readdirSync(dir, { withFileTypes: true }).sort((a, b) => (a.name < b.name ? -1 : 1));
  for (const e of entries) {
    const abs = path.join(dir, e.name);
    if (e.isDirectory()) yield* sourceFiles(abs);
    else if (e.isFile()) yield { rel: abs.slice(1), abs, size: statSync(abs).size };
  }
}

/** Files of SOURCE, in order, until their gzip is about `target` bytes. */
function layerOfSize(target: number): TarEntrySpec[] {
  const entries: TarEntrySpec[] = [];
  let raw = 0;
  let estimate = 0;
  for (const f of sourceFiles(SOURCE)) {
    if (f.size > 4 * 1024 * 1024) continue;
    const data = readFileSync(f.abs);
    entries.push({ type: 'file', path: f.rel, data, mode: 0o644 });
    raw += data.length;
    estimate += gzipSync(data, { level: 6 }).length;
    if (estimate >= target) break;
  }
  if (estimate < target * 0.9) throw new Error(`${SOURCE} has only ${raw} bytes; cannot make a ${target} byte layer`);
  return entries;
}

async function coldStart(index: ClipIndex, files: Node[], smallLayer: number): Promise<number> {
  const blobs = await openBlobSource(index.image.location, {});
  const reader = new LayerReader(index.layers, blobs, { smallLayer });
  try {
    const t = performance.now();
    for (const n of files) await reader.read(n.layer, n.offset, n.size);
    return performance.now() - t;
  } finally {
    await blobs.close();
  }
}

const registry = await startRegistry();
const work = await mkdtemp(path.join(tmpdir(), 'clip-smallbench-'));
try {
  // Per layer size: its index as seen through each link's proxy, and the files a start reads.
  const images: { indexes: ClipIndex[]; files: Node[] }[] = [];
  const proxies = await Promise.all(links.map(([rate, rtt]) => startThrottleProxy(registry.host, rate, rtt)));
  for (const target of SIZES) {
    process.stderr.write(`building a ${target / 1024} KiB layer from ${SOURCE}\n`);
    const built = await buildImage({ layers: [{ entries: layerOfSize(target) }], tag: 'small' });
    const repo = `bench/small-${target}`;
    await pushImage(built.dir, 'small', registry.host, repo);
    await rm(built.dir, { recursive: true, force: true });
    const indexes: ClipIndex[] = [];
    for (const proxy of proxies) {
      proxy.throttled = false;
      const out = path.join(work, `${target}-${proxy.host.replace(':', '_')}.clip`);
      await indexImage(`${proxy.host}/${repo}:small`, { output: out });
      proxy.throttled = true;
      indexes.push(await loadIndex(out));
    }
    const prng = createPrng(target);
    const candidates = [...walk(indexes[0]!)].map(([, n]) => n).filter((n) => n.type === 'file' && n.size > 0);
    const files = Array.from({ length: 8 }, () => candidates[prng.int(candidates.length)]!);
    images.push({ indexes, files });
  }

  for (const [li, [rate, rtt]] of links.entries()) {
    console.log(
      `\nlink: ${(rate / 1e6).toFixed(0)} MB/s, ${rtt} ms round trip (bandwidth x delay = ${((rate * rtt) / 1e3 / 1048576).toFixed(2)} MiB); median of ${RUNS} cold starts\n`,
    );
    console.log(
      '| layer (compressed) | spans | 1 file: by span | 1 file: whole | whole/span | 8 files: by span | 8 files: whole | whole/span |',
    );
    console.log('|---|---|---|---|---|---|---|---|');
    for (const img of images) {
      const index = img.indexes[li]!;
      const layer = index.layers[0]!;
      const cells: string[] = [];
      for (const k of [1, 8]) {
        const files = img.files.slice(0, k);
        const span: number[] = [];
        const whole: number[] = [];
        for (let r = 0; r < RUNS; r++) {
          span.push(await coldStart(index, files, 0));
          whole.push(await coldStart(index, files, Infinity));
        }
        cells.push(`${median(span).toFixed(0)} ms`, `${median(whole).toFixed(0)} ms`, `${(median(whole) / median(span)).toFixed(2)}x`);
      }
      console.log(
        `| ${(layer.spans.compressedSize / 1048576).toFixed(2)} MiB | ${layer.spans.checkpoints.length} | ${cells.join(' | ')} |`,
      );
    }
  }
  await Promise.all(proxies.map((p) => p.close()));
} finally {
  await registry.stop();
  await rm(work, { recursive: true, force: true });
}
