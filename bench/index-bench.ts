// npm run bench:index: index a realistic multi-layer image (layers made with
// GNU tar + gzip from this machine's /usr) and compare, in the same run, with
// Node's native streaming gunzip of the same layers. Prints ratios.
//
// The image is cached in .bench-cache/index-image (delete it to rebuild).

import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { createReadStream, existsSync } from 'node:fs';
import { mkdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { pipeline } from 'node:stream/promises';
import { Writable } from 'node:stream';
import zlib from 'node:zlib';
import { indexImage } from '../src/indexer/index-image.js';

const CACHE = path.resolve('.bench-cache/index-image');
const LAYERS: string[][] = [
  ['usr/bin', 'usr/sbin'],
  ['usr/include'],
  ['usr/share/doc', 'usr/share/man', 'usr/share/perl'],
  ['usr/lib/python3', 'usr/lib/python3.11'],
  ['usr/share/locale', 'usr/share/vim'],
  ['etc'],
];

async function sha256File(file: string): Promise<string> {
  const h = createHash('sha256');
  await pipeline(createReadStream(file), h);
  return h.digest('hex');
}

async function writeBlob(dir: string, data: Buffer): Promise<{ digest: string; size: number }> {
  const hex = createHash('sha256').update(data).digest('hex');
  await writeFile(path.join(dir, 'blobs/sha256', hex), data);
  return { digest: `sha256:${hex}`, size: data.length };
}

async function buildImage(): Promise<string[]> {
  const dir = CACHE;
  if (existsSync(path.join(dir, 'index.json'))) {
    const index = JSON.parse(await readFile(path.join(dir, 'index.json'), 'utf8'));
    const manifest = JSON.parse(await readFile(path.join(dir, 'blobs/sha256', index.manifests[0].digest.slice(7)), 'utf8'));
    return manifest.layers.map((l: { digest: string }) => path.join(dir, 'blobs/sha256', l.digest.slice(7)));
  }
  await rm(dir, { recursive: true, force: true });
  await mkdir(path.join(dir, 'blobs/sha256'), { recursive: true });
  const layers = [];
  const diffIds = [];
  const files = [];
  for (const [i, dirs] of LAYERS.entries()) {
    const present = dirs.filter((d) => existsSync(path.join('/', d)));
    if (present.length === 0) continue;
    const tmp = path.join(dir, `layer${i}.tar.gz`);
    process.stderr.write(`building layer ${i}: ${present.join(' ')}\n`);
    execFileSync('bash', ['-c', `tar -C / --numeric-owner -cf - ${present.join(' ')} 2>/dev/null | tee >(sha256sum > ${tmp}.diffid) | gzip -6 > ${tmp}`]);
    const diff = (await readFile(`${tmp}.diffid`, 'utf8')).split(' ')[0]!;
    const hex = await sha256File(tmp);
    const blob = path.join(dir, 'blobs/sha256', hex);
    execFileSync('mv', [tmp, blob]);
    await rm(`${tmp}.diffid`);
    layers.push({ mediaType: 'application/vnd.oci.image.layer.v1.tar+gzip', digest: `sha256:${hex}`, size: (await stat(blob)).size });
    diffIds.push(`sha256:${diff}`);
    files.push(blob);
  }
  const config = await writeBlob(dir, Buffer.from(JSON.stringify({
    architecture: process.arch === 'arm64' ? 'arm64' : 'amd64', os: 'linux',
    rootfs: { type: 'layers', diff_ids: diffIds }, config: { Cmd: ['/bin/sh'] },
  })));
  const manifest = await writeBlob(dir, Buffer.from(JSON.stringify({
    schemaVersion: 2, mediaType: 'application/vnd.oci.image.manifest.v1+json',
    config: { mediaType: 'application/vnd.oci.image.config.v1+json', ...config }, layers,
  })));
  await writeFile(path.join(dir, 'oci-layout'), JSON.stringify({ imageLayoutVersion: '1.0.0' }));
  await writeFile(path.join(dir, 'index.json'), JSON.stringify({
    schemaVersion: 2,
    manifests: [{ mediaType: 'application/vnd.oci.image.manifest.v1+json', ...manifest, annotations: { 'org.opencontainers.image.ref.name': 'bench' } }],
  }));
  return files;
}

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

const files = await buildImage();
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
  let summary;
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
      path: `usr/lib/pkg${i % 500}/file-${i}.py`, type: 'file' as const, mode: 0o644, uid: 0, gid: 0, size: 1000 + i,
      dataOffset: i * 2048, mtime: { sec: 1_700_000_000 + i, nsec: i }, devmajor: 0, devminor: 0,
    });
  }
  const tree = mergeLayers([entries]);
  const image = { location: 'oci:/x', reference: 'x', manifestDigest: '', manifestMediaType: '', configDigest: '', platform: { os: 'linux', architecture: 'amd64' }, config: {}, indexedAt: '', indexedBy: '', spanSize: 4 << 20 };
  const layer = { digest: 'sha256:x', mediaType: '', diffId: '', spans: { compression: 'none' as const, compressedSize: 300e6, uncompressedSize: 300e6, checkpoints: [{ in: 0, out: 0, window: Buffer.alloc(0) }], digests: [Buffer.alloc(32)] } };
  const file = encodeIndex({ kind: 'oci', image, layers: [layer], ...tree });
  const rssBefore = process.memoryUsage().rss;
  const times: number[] = [];
  for (let r = 0; r < 5; r++) {
    const t = performance.now();
    decodeIndex(file);
    times.push(performance.now() - t);
  }
  console.log(`\nloading a 100k-entry index (${fmt(file.length / 1e6)} MB): median ${fmt(median(times), 0)} ms; RSS now ${fmt((process.memoryUsage().rss) / 1e6, 0)} MB (was ${fmt(rssBefore / 1e6, 0)} MB)`);
}
