// npm run bench:index-load: how long a fresh serving process takes to be
// ready to serve a 100k-file image (issue 12: after a crash the new process
// reloads every mounted index before it answers, so this is the stall a
// container sees). Each run is a new Node process that loads the .clip file,
// builds the ImageFileSystem and answers a first LOOKUP and GETATTR (no FUSE:
// the methods are called), then reports its times and memory.
//
// The image (a Python site-packages tree, two gzip layers) and its .clip are
// cached in .bench-cache/index-load (delete it to rebuild).
//
//   BENCH_FILES=100000  BENCH_RUNS=5  BENCH_PROF=dir (node --cpu-prof of each run, into dir)

import { execFileSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdir, rm, stat } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { buildIndex, FileReader, loadIndex, writeIndex } from '../src/clip.js';
import { ImageFileSystem } from '../src/fs/image-fs.js';
import { buildImage } from '../test/helpers/image-builder.js';
import { sitePackagesLayers } from '../test/helpers/site-packages.js';
import { median } from './machine.js';

const GOAL_MS = 500;
const FILES = Number(process.env['BENCH_FILES'] ?? 100_000);
const RUNS = Number(process.env['BENCH_RUNS'] ?? 5);
const CACHE = path.resolve(`.bench-cache/index-load-${FILES}`);
const CLIP = path.join(CACHE, 'image.clip');

interface RunResult {
  loadMs: number;
  readyMs: number;
  heapMB: number;
  rssMB: number;
}

/** One measured run, in this (fresh) process: printed as JSON for the parent. */
async function child(file: string): Promise<void> {
  const t0 = performance.now();
  const index = await loadIndex(file);
  const t1 = performance.now();
  const reader = await FileReader.open(index);
  const fs = new ImageFileSystem(index, reader);
  const usr = fs.lookup(1, 'usr');
  fs.getattr(usr.attr.ino);
  const t2 = performance.now();
  global.gc?.();
  const mem = process.memoryUsage();
  const result: RunResult = { loadMs: t1 - t0, readyMs: t2 - t0, heapMB: mem.heapUsed / 1e6, rssMB: mem.rss / 1e6 };
  // Keep the index alive until memory is measured.
  if (index.nodes.length === 0) throw new Error('empty index');
  process.stdout.write(JSON.stringify(result) + '\n');
}

async function prepare(): Promise<void> {
  if (existsSync(CLIP)) return;
  await rm(CACHE, { recursive: true, force: true });
  await mkdir(CACHE, { recursive: true });
  const t = performance.now();
  const layers = sitePackagesLayers({ files: FILES, maxSize: 1500 });
  const image = await buildImage({ dir: path.join(CACHE, 'layout'), tag: 'bench', layers: layers.map((entries) => ({ entries })) });
  const index = await buildIndex(`oci:${image.dir}:bench`);
  await writeIndex(CLIP, index);
  console.log(`built the image and its index in ${((performance.now() - t) / 1000).toFixed(1)} s (cache: ${CACHE})`);
}

async function main(): Promise<void> {
  await prepare();
  const size = (await stat(CLIP)).size;
  const self = fileURLToPath(import.meta.url);
  const prof = process.env['BENCH_PROF'];
  const results: RunResult[] = [];
  for (let r = 0; r < RUNS; r++) {
    const flags = ['--expose-gc', ...(prof ? ['--cpu-prof', `--cpu-prof-dir=${prof}`] : [])];
    const out = execFileSync(process.execPath, [...flags, self, '--child', CLIP], { encoding: 'utf8' });
    results.push(JSON.parse(out.trim().split('\n').pop()!) as RunResult);
  }
  const p50 = (k: keyof RunResult): number => median(results.map((x) => x[k]));
  const ready = p50('readyMs');
  const least = (k: keyof RunResult): number => Math.min(...results.map((x) => x[k]));
  console.log(`index: ${FILES} files, ${(size / 1e6).toFixed(2)} MB .clip; ${RUNS} runs, each a fresh process, p50 reported`);
  // The least of the runs too: on a shared machine the median moves with the neighbours' load.
  console.log('| load ms (least) | ready-to-serve ms (least) | heap MB | RSS MB | ready / 0.5 s goal |');
  console.log('|---|---|---|---|---|');
  console.log(
    `| ${p50('loadMs').toFixed(0)} (${least('loadMs').toFixed(0)}) | ${ready.toFixed(0)} (${least('readyMs').toFixed(0)}) | ${p50('heapMB').toFixed(0)} | ${p50('rssMB').toFixed(0)} | ${(ready / GOAL_MS).toFixed(2)} |`,
  );
}

if (process.argv[2] === '--child') await child(process.argv[3]!);
else await main();
