// npm run bench:fuse: read throughput, tree walk, mount time and daemon RSS
// through a clip mount, each against the same work on local disk, measured
// in one run. Images are built once into .bench-cache/fuse (deleted = rebuilt).

import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, readdir, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { indexImage } from '../src/indexer/index-image.js';
import { buildImage } from '../test/helpers/image-builder.js';
import { createPrng } from '../test/helpers/prng.js';
import type { TarEntrySpec } from '../test/helpers/tar-writer.js';
import { dropCaches } from './machine.js';

const CACHE = path.resolve('.bench-cache/fuse');
const BIG = 128 * 1024 * 1024;
const FILES = 100_000;
const CLIP = path.resolve('bin/clip.js');

function clip(args: string[], env: NodeJS.ProcessEnv): string {
  return execFileSync(process.execPath, [CLIP, ...args], { env: { ...process.env, ...env }, encoding: 'utf8' });
}

function seconds(fn: () => void): number {
  const t = performance.now();
  fn();
  return (performance.now() - t) / 1000;
}

async function image(name: string, entries: () => TarEntrySpec[]): Promise<string> {
  const dir = path.join(CACHE, name);
  if (!existsSync(path.join(dir, 'index.json'))) {
    process.stderr.write(`building ${name} image...\n`);
    await rm(dir, { recursive: true, force: true });
    await mkdir(dir, { recursive: true });
    await buildImage({ dir, tag: name, layers: [{ entries: entries() }] });
  }
  return dir;
}

const t0 = { sec: 1_700_000_000, nsec: 0 };
const bigDir = await image('big', () => [
  { type: 'dir', path: 'data', mtime: t0 },
  { type: 'file', path: 'data/big.bin', data: createPrng(7).compressible(BIG), mtime: t0 },
]);
const treeDir = await image('tree', () => {
  const e: TarEntrySpec[] = [];
  for (let d = 0; d < 1000; d++) {
    e.push({ type: 'dir', path: `d${d}`, mtime: t0 });
    for (let f = 0; f < FILES / 1000 - 1; f++) e.push({ type: 'file', path: `d${d}/f${f}.txt`, data: `${d}/${f}\n`, mtime: t0 });
  }
  return e;
});

const work = await mkdtemp(path.join(tmpdir(), 'clip-bench-'));
const env = { CLIP_STATE_DIR: path.join(work, 'state'), CLIP_DATA_DIR: path.join(work, 'data') };
const mounts: string[] = [];
try {
  // Indexes and local copies (the baselines).
  await indexImage(`oci:${bigDir}:big`, { output: path.join(work, 'big.clip') });
  await indexImage(`oci:${treeDir}:tree`, { output: path.join(work, 'tree.clip') });
  const local = path.join(work, 'local');
  await mkdir(local);
  for (const [dir, tag] of [
    [bigDir, 'big'],
    [treeDir, 'tree'],
  ] as const) {
    const idx = JSON.parse(await readFile(path.join(dir, 'index.json'), 'utf8'));
    const manifest = JSON.parse(
      await readFile(
        path.join(
          dir,
          'blobs/sha256',
          idx.manifests
            .find((m: { annotations: Record<string, string> }) => m.annotations['org.opencontainers.image.ref.name'] === tag)
            .digest.slice(7),
        ),
        'utf8',
      ),
    );
    execFileSync('tar', ['-xzf', path.join(dir, 'blobs/sha256', manifest.layers[0].digest.slice(7)), '-C', local]);
  }

  // 1. Sequential read of a 128 MiB file once its bytes are local (in clip's span cache).
  const bigMp = path.join(work, 'mnt-big');
  await mkdir(bigMp);
  clip(['mount', path.join(work, 'big.clip'), bigMp], env);
  mounts.push(bigMp);
  const cat = (file: string): void => void execFileSync('bash', ['-c', `cat '${file}' > /dev/null`]);
  cat(path.join(bigMp, 'data/big.bin')); // fetch + inflate once: now local to clip
  dropCaches();
  const tClip = seconds(() => cat(path.join(bigMp, 'data/big.bin')));
  const tClipWarm = seconds(() => cat(path.join(bigMp, 'data/big.bin')));
  dropCaches();
  const tLocalCold = seconds(() => cat(path.join(local, 'data/big.bin')));
  const tLocal = seconds(() => cat(path.join(local, 'data/big.bin')));
  const mb = BIG / 1e6;
  console.log('## sequential read of a 128 MiB file');
  console.log('| source | MB/s | vs local (page cache) |');
  console.log('|---|---|---|');
  console.log(`| local disk, page cache | ${(mb / tLocal).toFixed(0)} | 1.00 |`);
  console.log(`| local disk, cold | ${(mb / tLocalCold).toFixed(0)} | ${(tLocal / tLocalCold).toFixed(2)} |`);
  console.log(`| clip mount, bytes in clip's cache, kernel cache dropped | ${(mb / tClip).toFixed(0)} | ${(tLocal / tClip).toFixed(2)} |`);
  console.log(`| clip mount, kernel page cache warm | ${(mb / tClipWarm).toFixed(0)} | ${(tLocal / tClipWarm).toFixed(2)} |`);

  // 2. Mount time, tree walk and RSS for a 100k-entry image.
  const treeMp = path.join(work, 'mnt-tree');
  await mkdir(treeMp);
  const tMount = seconds(() => clip(['mount', path.join(work, 'tree.clip'), treeMp], env));
  mounts.push(treeMp);
  const find = (root: string): number => seconds(() => void execFileSync('find', [root, '-printf', '%s %m %u\n'], { maxBuffer: 1 << 28 }));
  dropCaches();
  const walkClipCold = find(treeMp);
  const walkClipWarm = find(treeMp);
  dropCaches();
  const walkLocalCold = find(path.join(local));
  const walkLocalWarm = find(path.join(local));
  const recordsDir = path.join(env.CLIP_STATE_DIR, 'mounts');
  const records = await Promise.all(
    (await readdir(recordsDir)).map(async (f) => JSON.parse(await readFile(path.join(recordsDir, f), 'utf8'))),
  );
  const rec = records.find((r: { mountpoint: string }) => r.mountpoint === treeMp);
  const rss = Number(/VmRSS:\s+(\d+)/.exec(await readFile(`/proc/${rec.pid}/status`, 'utf8'))![1]) / 1024;
  console.log(`\n## ${FILES.toLocaleString()}-entry image`);
  console.log('| measure | clip | local disk | ratio |');
  console.log('|---|---|---|---|');
  console.log(
    `| find with stat, cold caches (s) | ${walkClipCold.toFixed(2)} | ${walkLocalCold.toFixed(2)} | ${(walkClipCold / walkLocalCold).toFixed(2)}x |`,
  );
  console.log(
    `| find with stat, warm (s) | ${walkClipWarm.toFixed(2)} | ${walkLocalWarm.toFixed(2)} | ${(walkClipWarm / walkLocalWarm).toFixed(2)}x |`,
  );
  console.log(`| clip mount until ready (s) | ${tMount.toFixed(2)} | | |`);
  console.log(`| daemon RSS after the walk (MB) | ${rss.toFixed(0)} | | |`);
} finally {
  for (const mp of mounts.reverse()) spawnSync(process.execPath, [CLIP, 'umount', mp], { env: { ...process.env, ...env } });
  await rm(work, { recursive: true, force: true });
}
