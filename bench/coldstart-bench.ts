// npm run bench:coldstart: how much sooner a container does useful work with
// clip. Debian images made with debootstrap are pushed to a registry on
// loopback and served through a throttling proxy that emulates a registry
// link; for each image and link, start-to-ready of a command run by runc:
//   1. without clip: skopeo copy + umoci unpack, then runc;
//   2. clip, index made beforehand, its daemon already running (as on a node):
//      mount --rootfs + runc, lazily; with a plain index and a traced one;
//   3. clip again, its cache warm (a new daemon, the page cache dropped);
// and, as the floor, runc on the unpacked image in a local directory.
// Fresh caches for every run (page cache dropped, new cache dirs). Also times
// indexing against native gunzip of the layers. Writes docs/benchmarks.md.
//
//   npm run bench:coldstart -- [--link 50e6:20 --link 200e6:5] [--runs 3] [--image python --image big] [--no-write]

import { parseByteSize, SIZE_SYNTAX } from '../src/util/size.js';
import { execFile } from 'node:child_process';
import { createReadStream } from 'node:fs';
import { mkdir, mkdtemp, readFile, rename, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { pipeline } from 'node:stream/promises';
import { parseArgs, promisify } from 'node:util';
import { Writable } from 'node:stream';
import zlib from 'node:zlib';
import { indexImage } from '../src/indexer/index-image.js';
import { indexTraced } from '../src/trace/trace-image.js';
import { pushImage, startRegistry } from '../test/helpers/registry.js';
import { clipStart, clipStartFresh, clipUmount, localStart, runReady, startDaemon, stopDaemon, type Sample } from './clip-start.js';
import { debianImages, type BenchImage } from './debian-images.js';
import { dropCaches, machineDescription, median } from './machine.js';
import { startThrottleProxy, type ThrottleProxy } from './throttle-proxy.js';

const exec = promisify(execFile);
const DOC = path.resolve('docs/benchmarks.md');

const { values: args } = parseArgs({
  options: {
    link: { type: 'string', multiple: true, default: ['50e6:20', '200e6:5'] },
    runs: { type: 'string', default: '3' },
    image: { type: 'string', multiple: true },
    'no-write': { type: 'boolean', default: false },
    /** Checkpoint spacings to compare (spans = windows apart), e.g. 4M,1M,512K: index size and time, plain cold start. */
    spacing: { type: 'string' },
  },
});
const sizeArg = (v: string): number => {
  const n = parseByteSize(v);
  if (n === undefined) throw new Error(`--spacing ${v}: ${SIZE_SYNTAX}`);
  return n;
};
const spacings = args.spacing ? args.spacing.split(',').map(sizeArg) : [];
const links = args.link.map((l) => {
  const [rate, rtt] = l.split(':').map(Number);
  if (!(rate! > 0) || !(rtt! >= 0)) throw new Error(`--link ${l}: expected BYTES_PER_SECOND:RTT_MS, e.g. 50e6:20`);
  return { rate: rate!, rtt: rtt!, name: `${(rate! / 1e6).toFixed(0)} MB/s + ${rtt} ms` };
});
const RUNS = Number(args.runs);
/** Span size of the profile-guided index. */
const FINE_SPAN = 128 * 1024;
const log = (m: string): void => void process.stderr.write(`${m}\n`);
const s = (ms: number): string => (ms / 1000).toFixed(2);
const mb = (b: number): string => (b / 1e6).toFixed(1);

async function fullPull(img: BenchImage, ref: string, proxy: ThrottleProxy, work: string, attempt = 1): Promise<Sample> {
  const dir = await mkdtemp(path.join(work, 'pull-'));
  try {
    dropCaches();
    proxy.bytes = 0;
    const t = performance.now();
    await exec('skopeo', ['copy', '--quiet', '--src-tls-verify=false', `docker://${ref}`, `oci:${dir}/layout:${img.tag}`]);
    await exec('umoci', ['unpack', '--image', `${dir}/layout:${img.tag}`, `${dir}/bundle`]);
    await runReady(img, `${dir}/bundle/rootfs`);
    return { ms: performance.now() - t, bytes: proxy.bytes };
  } catch (e) {
    // skopeo has been seen to lose a blob body through the emulated link (rarely): that run is taken again.
    if (attempt >= 3) throw e;
    log(`full pull failed (${(e as Error).message.split('\n').slice(-2).join(' ').trim()}); again`);
    return fullPull(img, ref, proxy, work, attempt + 1);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

/** Native streaming gunzip of every layer, output discarded (the floor for indexing). */
async function gunzipLayers(img: BenchImage): Promise<number> {
  const t = performance.now();
  for (const f of img.layerFiles) {
    await pipeline(
      createReadStream(f, { highWaterMark: 1 << 20 }),
      zlib.createGunzip({ chunkSize: 1 << 20 }),
      new Writable({ write: (_c, _e, cb) => cb() }),
    );
  }
  return performance.now() - t;
}

const images = await debianImages({ log, ...(args.image ? { names: args.image } : {}) });
const registry = await startRegistry();
const work = await mkdtemp(path.join(tmpdir(), 'clip-coldstart-'));
const env = { ...process.env, CLIP_STATE_DIR: path.join(work, 'state'), CLIP_DATA_DIR: path.join(work, 'data') };
const startRows: string[] = [];
const indexRows: string[] = [];
const spacingRows: string[] = [];
const findings: string[] = [];
try {
  for (const img of images) {
    log(`${img.name}: pushing`);
    await pushImage(img.dir, img.tag, registry.host, `bench/${img.name}`);

    // Indexing, from the layout on disk (no network), vs native gunzip of the same layers.
    const probe = path.join(work, `${img.name}-probe.clip`);
    const indexMs: number[] = [];
    const gunzipMs: number[] = [];
    let indexBytes = 0;
    for (let r = 0; r < RUNS; r++) {
      dropCaches();
      gunzipMs.push(await gunzipLayers(img));
      dropCaches();
      const t = performance.now();
      indexBytes = (await indexImage(`oci:${img.dir}:${img.tag}`, { output: probe })).indexBytes;
      indexMs.push(performance.now() - t);
    }
    indexRows.push(
      `| ${img.name} | ${img.layerFiles.length} | ${mb(img.compressedBytes)} MB / ${mb(img.uncompressedBytes)} MB | ${s(median(indexMs))} s | ${s(median(gunzipMs))} s | ` +
        `${(median(indexMs) / median(gunzipMs)).toFixed(2)}x | ${(indexBytes / 1e3).toFixed(0)} kB (${((100 * indexBytes) / img.compressedBytes).toFixed(2)}%) |`,
    );

    // The floor: the image unpacked in a local directory.
    const local = path.join(work, `${img.name}-local`);
    await exec('umoci', ['unpack', '--image', `${img.dir}:${img.tag}`, local]);
    const localMs: number[] = [];
    for (let r = 0; r < RUNS; r++) localMs.push(await localStart(img, path.join(local, 'rootfs')));
    await rm(local, { recursive: true, force: true });

    for (const link of links) {
      const proxy = await startThrottleProxy(registry.host, link.rate, link.rtt);
      try {
        const ref = `${proxy.host}/bench/${img.name}:${img.tag}`;
        const index = path.join(work, `${img.name}-${proxy.host.replace(':', '_')}.clip`);
        // Traced: `clip index --trace` ran the workload on the fresh index and shipped what it read in the index.
        const traced = index.replace(/\.clip$/, '-traced.clip');
        // Also 128 KiB spans (windows still every 4 MiB), indexed again with a start-up profile
        // recorded on them, so that windows are also kept where the start's reads begin.
        const fine = index.replace(/\.clip$/, '-fine.clip');
        const guided = index.replace(/\.clip$/, '-guided.clip');
        proxy.throttled = false;
        await indexImage(ref, { output: index });
        const tracedSummary = await indexTraced(ref, { output: traced }, { command: img.command, output: process.stderr });
        await indexImage(ref, { output: fine, spanSize: FINE_SPAN });
        // A start-up profile on the 128 KiB index, recorded once by an untimed start.
        const fineProfile = path.join(work, `${img.name}-fine.profile`);
        await clipStartFresh(img, fine, { recordProfile: fineProfile }, proxy, work, env);
        const guidedSummary = await indexImage(ref, { output: guided, spanSize: FINE_SPAN, profile: fineProfile });
        proxy.throttled = true;
        const samples: Record<string, Sample[]> = {
          pull: [],
          cold: [],
          coldNoAhead: [],
          traced: [],
          guidedProfiled: [],
          second: [],
          restart: [],
          runcOnMount: [],
        };
        for (let r = 0; r < RUNS; r++) {
          log(`${img.name}, ${link.name}: run ${r + 1} of ${RUNS}`);
          samples['pull']!.push(await fullPull(img, ref, proxy, work));
          const cacheDir = await mkdtemp(path.join(work, 'cache-'));
          const daemon = await startDaemon(cacheDir, env);
          try {
            const first = await clipStart(img, index, {}, proxy, work, env);
            samples['cold']!.push(first);
            // A second container of the image while the first runs: its rootfs shares the read-only mount.
            const second = await clipStart(img, index, {}, proxy, work, env);
            samples['second']!.push(second);
            await clipUmount(second.rootfs, env);
            // The data path alone: runc on a mounted rootfs (caches warm, page cache dropped), as runc on a local directory.
            samples['runcOnMount']!.push({ ms: await localStart(img, first.rootfs), bytes: 0 });
            await clipUmount(first.rootfs, env);
          } finally {
            await stopDaemon(daemon, env);
          }
          // The baseline of read-ahead: the same start with reads fetching only what they need.
          samples['coldNoAhead']!.push(await clipStartFresh(img, index, { daemonFlags: ['--no-read-ahead'] }, proxy, work, env));
          // A new daemon finds the spans in the disk cache.
          samples['restart']!.push(await clipStartFresh(img, index, { cacheDir }, proxy, work, env));
          samples['traced']!.push(await clipStartFresh(img, traced, {}, proxy, work, env));
          samples['guidedProfiled']!.push(await clipStartFresh(img, guided, { profile: fineProfile }, proxy, work, env));
        }
        const ms = (k: string): number => median(samples[k]!.map((x) => x.ms));
        const bytes = (k: string): number => median(samples[k]!.map((x) => x.bytes));
        const pull = ms('pull');
        const floor = median(localMs);
        const row = (what: string, k: string, extra = ''): string =>
          `| ${img.name} | ${link.name} | ${what} | ${s(ms(k))} s | ${mb(bytes(k))} MB (${((100 * bytes(k)) / img.compressedBytes).toFixed(1)}%) | ${(pull / ms(k)).toFixed(1)}x | ${extra} |`;
        startRows.push(
          row('1. full pull + unpack, then runc', 'pull'),
          row('2. clip, cold: mount + runc', 'cold', `${(ms('coldNoAhead') / ms('cold')).toFixed(2)}x faster than 2a`),
          row('2a. clip, cold, no read-ahead', 'coldNoAhead'),
          row(
            `2b. clip, cold, traced index (clip index --trace; index ${((100 * tracedSummary.indexBytes) / tracedSummary.compressedBytes).toFixed(2)}%)`,
            'traced',
          ),
          row(
            `2c. clip, cold, 128 KiB profile-guided index + start-up profile (index ${((100 * guidedSummary.indexBytes) / guidedSummary.compressedBytes).toFixed(1)}%)`,
            'guidedProfiled',
          ),
          row('3. clip, second container (mount shared, warm)', 'second', `${(ms('second') / floor).toFixed(2)}x local`),
          row('3b. clip, new daemon, disk cache warm', 'restart', `${(ms('restart') / floor).toFixed(2)}x local`),
          row('runc alone on a mounted clip rootfs (warm)', 'runcOnMount', `${(ms('runcOnMount') / floor).toFixed(2)}x local`),
          `| ${img.name} | ${link.name} | runc alone on a local directory | ${s(floor)} s | | | |`,
        );
        if (img.name === 'python' && link.rate === 50e6) {
          findings.push(
            `python at 50 MB/s: cold start with a plain index ${(pull / ms('cold')).toFixed(1)}x faster than full pull (goal >= 4x), ` +
              `${(pull / ms('traced')).toFixed(1)}x with a traced index (goal >= 10x); ` +
              `${((100 * bytes('cold')) / img.compressedBytes).toFixed(1)}% of the image fetched (goal <= 12%), ${((100 * bytes('traced')) / img.compressedBytes).toFixed(1)}% with the traced index (goal <= 10%); ` +
              `second start ${(ms('second') / floor).toFixed(2)}x of runc on a local directory, runc alone on the mounted rootfs ${(ms('runcOnMount') / floor).toFixed(2)}x (goal <= 1.5x)`,
          );
        }
        for (const spacing of spacings) {
          const file = path.join(work, `${img.name}-spacing-${spacing}.clip`);
          const opts = { output: file, spanSize: spacing, windowEvery: spacing };
          const indexMs: number[] = [];
          let summary = { indexBytes: 0 };
          for (let r = 0; r < RUNS; r++) {
            dropCaches();
            const t = performance.now();
            summary = await indexImage(`oci:${img.dir}:${img.tag}`, opts);
            indexMs.push(performance.now() - t);
          }
          proxy.throttled = false;
          await indexImage(ref, opts);
          proxy.throttled = true;
          const starts: Sample[] = [];
          for (let r = 0; r < RUNS; r++) starts.push(await clipStartFresh(img, file, {}, proxy, work, env));
          const t = median(starts.map((x) => x.ms));
          const b = median(starts.map((x) => x.bytes));
          spacingRows.push(
            `| ${img.name} | ${link.name} | ${(spacing / 1024).toFixed(0)} KiB | ${((100 * summary.indexBytes) / img.compressedBytes).toFixed(2)}% | ` +
              `${(median(indexMs) / median(gunzipMs)).toFixed(2)}x | ${s(t)} s | ${mb(b)} MB (${((100 * b) / img.compressedBytes).toFixed(1)}%) | ${(pull / t).toFixed(1)}x |`,
          );
        }
      } finally {
        await proxy.close();
      }
    }
  }
} finally {
  await registry.stop();
  await rm(work, { recursive: true, force: true });
}

const command = `npm run bench:coldstart -- ${links.map((l) => `--link ${l.rate}:${l.rtt}`).join(' ')} --runs ${RUNS}`;
const imageLines = images.map(
  (i) =>
    `- **${i.name}**: ${i.description}; ${i.layerFiles.length} layers, ${mb(i.compressedBytes)} MB compressed, ${mb(i.uncompressedBytes)} MB unpacked; ready = \`${i.command.join(' ')}\` prints ${i.readyOutput}`,
);
const doc = `# Benchmarks

## Cold start: pull + create + run until ready

Measured ${new Date().toISOString().slice(0, 10)} on ${machineDescription()}, with

    ${command}

Images (made with debootstrap from Debian bookworm, layers gzip -6 by GNU tar):
${imageLines.join('\n')}

The registry is Debian's docker-registry on loopback behind a throttling proxy
(one shared token bucket for the bandwidth, one round trip added per request).
Every run starts with the page cache dropped and new cache directories; times
are the median of ${RUNS} runs, from the first command until the container printed
its ready line.

1. full pull: \`skopeo copy\` + \`umoci unpack\` + \`runc run\`.
2. clip, cold: \`clip mount --rootfs\` (index made beforehand) + \`runc run\`, with
   clip's daemon already running (started before the clock, as on a node) and a new cache.
   2a: the same with \`clip daemon --no-read-ahead\`: reads fetch only the spans they need.
   2b: the same on a traced index (\`clip index --trace\` ran the workload on the
   fresh index and shipped what it read in the index: the mount fetches it at once).
   2c: a profile-guided index, \`clip index --span-size 128K --profile P\`, and \`--profile P\`
   at mount, P recorded on a 128 KiB-span index; windows are kept every 4 MiB and where
   the profiled reads begin, so a start fetches little more than what it reads.
3. clip, second container of the image while the first still runs: its rootfs
   shares the first one's read-only mount and daemon (caches warm).
   3b: after both are gone, a new daemon with the disk cache of the cold run.
"runc alone" rows time only \`runc run\` on a rootfs that is already there (a
mounted clip rootfs with warm caches, or the image unpacked in a local
directory), page cache dropped: the data path without set-up.

| image | link | method | start to ready | fetched over the link | speed-up vs 1 | vs local, or |
|---|---|---|---|---|---|---|
${startRows.join('\n')}

${findings.map((f) => `- ${f}`).join('\n')}

## Indexing

From the OCI layout on local disk (no network), median of ${RUNS}, page cache dropped;
"native gunzip" is Node's zlib streaming the same layers with the output discarded.

| image | layers | compressed / uncompressed | clip index | native gunzip | ratio | index size (% of compressed) |
|---|---|---|---|---|---|---|
${indexRows.join('\n')}
${
  spacingRows.length === 0
    ? ''
    : `
## Checkpoint spacing

Plain indexes with spans and windows the given distance apart (\`--spacing\`):
index size, indexing time against native gunzip, and the cold start of row 2.

| image | link | spacing | index | indexing vs gunzip | start to ready | fetched | speed-up vs 1 |
|---|---|---|---|---|---|---|---|
${spacingRows.join('\n')}
`
}`;
console.log(doc);
if (!args['no-write']) {
  await mkdir(path.dirname(DOC), { recursive: true });
  const existing = await readFile(DOC, 'utf8').catch(() => '');
  // Other sections of the file (written by hand) are kept after the generated part.
  const keep = existing.includes('\n<!-- end of generated part -->')
    ? existing.slice(existing.indexOf('\n<!-- end of generated part -->'))
    : '\n<!-- end of generated part -->\n';
  await writeFile(`${DOC}.tmp`, doc + keep);
  await rename(`${DOC}.tmp`, DOC);
  log(`wrote ${DOC}`);
}
