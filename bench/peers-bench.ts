// npm run bench:peers: clip against the peers in one run. The same images and
// workloads go through the same emulated link (../shared/peers/linkproxy.py in
// front of a loopback registry) for every method:
//   1. full pull with containerd (overlayfs): ctr image pull + ctr run;
//   2. stargz-snapshotter, eStargz optimized with the workload, and without;
//   3. SOCI 0.4.1, 4 MiB and 1 MiB spans;
//   4. clip, plain index and traced index (clip mount --rootfs + runc), and
//      through containerd (clip pull + ctr run --snapshotter clip);
// and a calibration: ctr run of an image already pulled and unpacked, against
// runc on a local directory (how much of the containerd rows is containerd's
// own start). Every daemon runs before the clock; each sample gets new
// daemons with new caches and the page cache dropped. Writes its section of
// docs/benchmarks.md.
//
//   npm run bench:peers -- [--link 50e6:20] [--runs 3] [--image python --image torch] [--only full,clip] [--no-write]

import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { copyFile, mkdir, mkdtemp, readFile, rename, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { parseArgs, promisify } from 'node:util';
import { loadIndex } from '../src/index/load.js';
import { indexImage } from '../src/indexer/index-image.js';
import { localIndexPath } from '../src/registry-index/local-store.js';
import { indexTraced } from '../src/trace/trace-image.js';
import { pushImage, startRegistry, type RegistryHandle } from '../test/helpers/registry.js';
import { CLIP, clipStartFresh, localStart } from './clip-start.js';
import { startContainerdStack, type ContainerdStack, type Snapshotter } from './containerd-stack.js';
import { debianImages, type BenchImage } from './debian-images.js';
import { startLinkEmulator, startTlsFront, PEERS_TOOLS, type LinkEmulator, type TlsFront } from './link-emulator.js';
import { dropCaches, machineDescription, median } from './machine.js';
import { markdownTable } from './markdown-table.js';
import { withParentDirs } from './parent-dirs.js';

const exec = promisify(execFile);
const DOC = path.resolve('docs/benchmarks.md');
const CACHE = path.resolve('.bench-cache/peers');
const STARGZ_BIN = path.join(CACHE, 'stargz/containerd-stargz-grpc');
const SOCI_DIR = path.join(CACHE, 'soci/usr/bin');
const SECTION = '## Against the peers';

const METHODS = ['full', 'stargz', 'stargz-noopt', 'soci-4m', 'soci-1m', 'clip', 'clip-traced', 'clip-containerd', 'calibration'] as const;
type Method = (typeof METHODS)[number];
const LABELS: Record<Method, string> = {
  full: '1. full pull, containerd overlayfs: ctr image pull + ctr run',
  stargz: '2. stargz-snapshotter, eStargz optimized with the workload',
  'stargz-noopt': '2b. stargz-snapshotter, eStargz not optimized',
  'soci-4m': '3. SOCI 0.4.1, 4 MiB spans',
  'soci-1m': '3b. SOCI 0.4.1, 1 MiB spans',
  clip: '4. clip, plain index: mount --rootfs + runc',
  'clip-traced': '4b. clip, traced index (clip index --trace)',
  'clip-containerd': '4c. clip via containerd: clip pull + ctr run --snapshotter clip',
  calibration: 'calibration: ctr run, image pulled and unpacked (warm)',
};

const { values: args } = parseArgs({
  options: {
    link: { type: 'string', default: '50e6:20' },
    runs: { type: 'string', default: '3' },
    image: { type: 'string', multiple: true },
    only: { type: 'string' },
    'no-write': { type: 'boolean', default: false },
  },
});
const [RATE, RTT] = args.link.split(':').map(Number) as [number, number];
if (!(RATE > 0) || !(RTT >= 0)) throw new Error(`--link ${args.link}: expected BYTES_PER_SECOND:RTT_MS, e.g. 50e6:20`);
const LINK_NAME = `${(RATE / 1e6).toFixed(0)} MB/s + ${RTT} ms`;
const RUNS = Number(args.runs);
if (!(RUNS >= 1)) throw new Error(`--runs ${args.runs}: expected a positive number`);
const only = args.only?.split(',').map((m) => m.trim());
for (const m of only ?? [])
  if (!(METHODS as readonly string[]).includes(m)) throw new Error(`--only ${m}: methods are ${METHODS.join(', ')}`);
const methods = METHODS.filter((m) => !only || only.includes(m));
const has = (m: Method): boolean => methods.includes(m);
// torch is built by bench:coldstart (minutes of apt-get in a chroot): here only when it is already there.
const imageNames = args.image ?? ['python', ...(existsSync(path.resolve('.bench-cache/coldstart/torch/index.json')) ? ['torch'] : [])];

const log = (m: string): void => void process.stderr.write(`${m}\n`);
const s = (ms: number): string => (ms / 1000).toFixed(2);
const mb = (b: number): string => (b / 1e6).toFixed(1);
const reason = (e: unknown): string => ((e as Error).message ?? String(e)).split('\n')[0]!.slice(0, 300).replaceAll('|', '/');

interface Sample {
  ms: number;
  bytes: number;
  requests: number;
}

/** What the peers need: containerd, ctr-remote and the stargz daemon, SOCI's binaries (cached in .bench-cache/peers). */
async function installPeers(): Promise<void> {
  const dpkg = (p: string) =>
    exec('dpkg', ['-s', p]).then(
      () => true,
      () => false,
    );
  if (!(await dpkg('containerd'))) {
    log('apt-get install containerd');
    await exec('apt-get', ['install', '-y', '-q', 'containerd'], { env: { ...process.env, DEBIAN_FRONTEND: 'noninteractive' } });
  }
  if ((has('stargz') || has('stargz-noopt')) && !existsSync(STARGZ_BIN)) {
    log('building containerd-stargz-grpc from Debian sources (~90 s)');
    await exec('bash', [path.join(PEERS_TOOLS, 'build-stargz-grpc.sh'), path.dirname(STARGZ_BIN)], { maxBuffer: 64 << 20 });
  }
  if ((has('soci-4m') || has('soci-1m')) && !existsSync(path.join(SOCI_DIR, 'soci'))) {
    log("unpacking SOCI 0.4.1 from Debian 13's package");
    await exec('bash', [path.join(PEERS_TOOLS, 'fetch-soci.sh'), path.resolve(SOCI_DIR, '../..')], { maxBuffer: 64 << 20 });
  }
}

/** What is running for the whole bench: the registry, the link in front of it, SOCI's TLS front. */
interface Bench {
  registry: RegistryHandle;
  link: LinkEmulator;
  tls: TlsFront;
  work: string;
  clipEnv: NodeJS.ProcessEnv;
}

/** A new containerd stack (new content store, snapshots and snapshotter caches), used once, then stopped. */
async function withStack<T>(
  { link, tls, work }: Bench,
  snapshotters: Snapshotter[],
  f: (stack: ContainerdStack) => Promise<T>,
): Promise<T> {
  const stack = await startContainerdStack({
    dir: await mkdtemp(path.join(work, 'containerd-')),
    snapshotters,
    linkHost: link.host,
    tlsHost: tls.host,
    cert: tls.cert,
    stargzBin: STARGZ_BIN,
    sociBinDir: SOCI_DIR,
  });
  try {
    return await f(stack);
  } finally {
    await stack.stop();
  }
}

let containerSeq = 0;
/** `ctr run` of the image's command until it exits, checking the ready line. */
async function ctrRun(stack: ContainerdStack, img: BenchImage, ref: string, snapshotter?: Snapshotter): Promise<void> {
  const id = `peers-${process.pid}-${++containerSeq}`;
  const { stdout } = await stack.run('ctr', [
    'run',
    '--rm',
    ...(snapshotter ? ['--snapshotter', snapshotter] : []),
    ref,
    id,
    ...img.command,
  ]);
  if (stdout.trim() !== img.readyOutput) throw new Error(`${img.name}: ${img.command.join(' ')} printed ${JSON.stringify(stdout.trim())}`);
}

/** Times `pull` + `ctr run` on a stack whose daemons already run; bytes and requests over the link. */
async function timed(link: LinkEmulator, f: () => Promise<void>): Promise<Sample> {
  dropCaches();
  link.bytes = 0;
  const t = performance.now();
  await f();
  return { ms: performance.now() - t, bytes: link.bytes, requests: link.requests };
}

/** Untimed conversions, straight to the registry: the eStargz images and the SOCI indexes. */
async function prepare(b: Bench, img: BenchImage, failed: Map<Method, string>): Promise<void> {
  const { registry } = b;
  const peerMethods = methods.filter((m) => m.startsWith('stargz') || m.startsWith('soci'));
  if (!peerMethods.length) return;
  await withStack(b, [], async (stack) => {
    // What the eStargz conversions start from: the same layers with their parent directories' entries (parent-dirs.ts).
    let esgzSrc: string | undefined;
    for (const m of peerMethods) {
      try {
        if (m === 'stargz' || m === 'stargz-noopt') {
          if (!esgzSrc) {
            const layout = path.join(b.work, `${img.name}-esgz-src`);
            await withParentDirs(img, path.resolve('.bench-cache/coldstart', `rootfs-${img.name}`), layout);
            await pushImage(layout, img.tag, registry.host, `bench/${img.name}-esgz-src`);
            await rm(layout, { recursive: true, force: true });
            esgzSrc = `${registry.host}/bench/${img.name}-esgz-src:${img.tag}`;
            await stack.run('ctr', ['image', 'pull', '--plain-http', esgzSrc]);
          }
          const dst = `${registry.host}/bench/${img.name}-${m}:${img.tag}`;
          log(`${img.name}: ctr-remote image optimize${m === 'stargz' ? '' : ' --no-optimize'}`);
          const [entrypoint, ...rest] = img.command;
          await stack.run(
            'ctr-remote',
            [
              'image',
              'optimize',
              '--oci',
              ...(m === 'stargz'
                ? ['--entrypoint', JSON.stringify([entrypoint]), '--args', JSON.stringify(rest), '--period', '30']
                : ['--no-optimize']),
              esgzSrc,
              dst,
            ],
            { timeoutMs: 900_000 },
          );
          await stack.run('ctr-remote', ['image', 'push', '--plain-http', dst]);
        } else {
          // SOCI finds an index by the image's digest in the image's repository: one repository per span size.
          const repo = `${registry.host}/bench/${img.name}-${m}:${img.tag}`;
          const span = m === 'soci-4m' ? 4 << 20 : 1 << 20;
          log(`${img.name}: soci create --span-size ${span}`);
          await pushImage(img.dir, img.tag, registry.host, `bench/${img.name}-${m}`);
          await stack.run('ctr', ['image', 'pull', '--plain-http', repo]);
          const soci = path.join(SOCI_DIR, 'soci');
          await stack.run(soci, ['create', '--span-size', String(span), repo], { timeoutMs: 900_000 });
          await stack.run(soci, ['push', '--plain-http', repo]);
        }
      } catch (e) {
        failed.set(m, `setup failed: ${reason(e)}`);
        log(`${img.name}, ${m}: ${reason(e)}`);
      }
    }
  });
}

/** One timed start of `m`, with its daemons started (fresh) before the clock. */
async function sample(b: Bench, m: Method, img: BenchImage, clipIndex: Record<string, string>): Promise<Sample> {
  const { link, tls } = b;
  const plainRef = (repo: string): string => `${link.host}/bench/${repo}:${img.tag}`;
  switch (m) {
    case 'full':
      return withStack(b, [], (stack) =>
        timed(link, async () => {
          await stack.run('ctr', ['image', 'pull', '--plain-http', plainRef(img.name)]);
          await ctrRun(stack, img, plainRef(img.name));
        }),
      );
    case 'calibration':
      return withStack(b, [], async (stack) => {
        await stack.run('ctr', ['image', 'pull', '--plain-http', plainRef(img.name)]);
        await ctrRun(stack, img, plainRef(img.name)); // warm: what a node that ran the image before has
        return timed(link, () => ctrRun(stack, img, plainRef(img.name)));
      });
    case 'stargz':
    case 'stargz-noopt': {
      const ref = plainRef(`${img.name}-${m}`);
      return withStack(b, ['stargz'], (stack) =>
        timed(link, async () => {
          await stack.run('ctr-remote', ['image', 'rpull', '--plain-http', '--snapshotter', 'stargz', ref]);
          await ctrRun(stack, img, ref, 'stargz');
        }),
      );
    }
    case 'soci-4m':
    case 'soci-1m': {
      // The image by its HTTPS front (SOCI's index fetches need it); its layers go to the plain link (mirror config).
      const ref = `${tls.host}/bench/${img.name}-${m}:${img.tag}`;
      const env = { ...process.env, SSL_CERT_FILE: tls.cert };
      return withStack(b, ['soci'], (stack) =>
        timed(link, async () => {
          await stack.run(path.join(SOCI_DIR, 'soci'), ['image', 'rpull', '--snapshotter', 'soci', ref], { env });
          await ctrRun(stack, img, ref, 'soci');
        }),
      );
    }
    case 'clip-containerd': {
      // The node has the index in its local store before the clock, as the plain clip rows have theirs.
      const ref = plainRef(img.name);
      return withStack(b, ['clip'], async (stack) => {
        const index = clipIndex['clip']!;
        const stored = localIndexPath(stack.clipEnv['CLIP_DATA_DIR']!, (await loadIndex(index)).image.manifestDigest);
        await mkdir(path.dirname(stored), { recursive: true });
        await copyFile(index, stored);
        return timed(link, async () => {
          await stack.run(process.execPath, [CLIP, 'pull', '--plain-http', ref], { env: stack.clipEnv });
          await ctrRun(stack, img, ref, 'clip');
        });
      });
    }
    case 'clip':
    case 'clip-traced': {
      const r = await clipStartFresh(img, clipIndex[m]!, {}, link, b.work, b.clipEnv);
      return { ms: r.ms, bytes: r.bytes, requests: r.requests ?? 0 };
    }
  }
}

/** Every method on one image: conversions and indexes, then the samples; returns the image's table. */
async function benchImage(b: Bench, img: BenchImage): Promise<string> {
  log(`${img.name}: pushing`);
  await pushImage(img.dir, img.tag, b.registry.host, `bench/${img.name}`);
  const failed = new Map<Method, string>();
  await prepare(b, img, failed).catch((e: unknown) => {
    // containerd itself did not start: every peer's row says so, clip's still run.
    for (const m of methods)
      if (m !== 'clip' && m !== 'clip-traced' && m !== 'clip-containerd' && !failed.has(m)) failed.set(m, `setup failed: ${reason(e)}`);
  });
  // clip's indexes name the image by the link's host, as an index made on a node names its registry.
  const clipIndex: Record<string, string> = {};
  const ref = `${b.link.host}/bench/${img.name}:${img.tag}`;
  let tracedPercent = '';
  if (has('clip') || has('clip-traced') || has('clip-containerd')) {
    clipIndex['clip'] = path.join(b.work, `${img.name}.clip`);
    await indexImage(ref, { output: clipIndex['clip'] });
  }
  if (has('clip-traced')) {
    clipIndex['clip-traced'] = path.join(b.work, `${img.name}-traced.clip`);
    const t = await indexTraced(ref, { output: clipIndex['clip-traced'] }, { command: img.command, output: process.stderr });
    tracedPercent = `index ${((100 * t.indexBytes) / t.compressedBytes).toFixed(2)}% of the image`;
  }
  const local = path.join(b.work, `${img.name}-local`);
  if (has('calibration')) await exec('umoci', ['unpack', '--image', `${img.dir}:${img.tag}`, local]);

  const samples = new Map<Method, Sample[]>(methods.map((m) => [m, []]));
  const localMs: number[] = [];
  for (let r = 0; r < RUNS; r++) {
    log(`${img.name}, ${LINK_NAME}: run ${r + 1} of ${RUNS}`);
    for (const m of methods) {
      if (failed.has(m)) continue;
      try {
        const x = await sample(b, m, img, clipIndex);
        log(`  ${m}: ${s(x.ms)} s, ${mb(x.bytes)} MB, ${x.requests} requests`);
        samples.get(m)!.push(x);
      } catch (e) {
        failed.set(m, `failed: ${reason(e)}`);
        log(`  ${m}: ${reason(e)}`);
      }
    }
    if (has('calibration')) localMs.push(await localStart(img, path.join(local, 'rootfs')));
  }
  await rm(local, { recursive: true, force: true });

  const med = (m: Method, k: keyof Sample): number => median(samples.get(m)!.map((x) => x[k]));
  const pull = samples.get('full')?.length ? med('full', 'ms') : undefined;
  const rows = methods.map((m) => {
    const why = failed.get(m);
    if (why) return [LABELS[m], why, '', '', ''];
    const ms = med(m, 'ms');
    const bytes = med(m, 'bytes');
    const label = m === 'clip-traced' && tracedPercent ? `${LABELS[m]}; ${tracedPercent}` : LABELS[m];
    return [
      label,
      `${s(ms)} s`,
      `${mb(bytes)} MB (${((100 * bytes) / img.compressedBytes).toFixed(1)}%)`,
      String(med(m, 'requests')),
      pull !== undefined && m !== 'calibration' ? `${(pull / ms).toFixed(1)}x` : '',
    ];
  });
  if (has('calibration'))
    rows.push(['calibration: runc on the image unpacked in a local directory', `${s(median(localMs))} s`, '', '', '']);
  return (
    `${img.name}: ${img.description}; ${img.layerFiles.length} layers, ${mb(img.compressedBytes)} MB compressed, ` +
    `${mb(img.uncompressedBytes)} MB unpacked; ready = \`${img.command.join(' ')}\` prints ${img.readyOutput}.\n\n` +
    markdownTable(['method', 'start to ready', 'fetched over the link', 'requests', 'speed-up vs full pull'], rows)
  );
}

const images = await debianImages({ log, names: imageNames });
await installPeers();
const tables: string[] = [];
const registry = await startRegistry();
const work = await mkdtemp(path.join(tmpdir(), 'clip-peers-'));
try {
  const link = await startLinkEmulator(registry.host, RATE, RTT, path.join(work, 'link.count'));
  try {
    const tls = await startTlsFront(link.host, work);
    try {
      const clipEnv = { ...process.env, CLIP_STATE_DIR: path.join(work, 'state'), CLIP_DATA_DIR: path.join(work, 'data') };
      for (const img of images) tables.push(await benchImage({ registry, link, tls, work, clipEnv }, img));
    } finally {
      await tls.stop();
    }
  } finally {
    await link.stop();
  }
} finally {
  await registry.stop();
  await rm(work, { recursive: true, force: true });
}

const command = `npm run bench:peers -- --link ${args.link} --runs ${RUNS}${images.map((i) => ` --image ${i.name}`).join('')}${only ? ` --only ${methods.join(',')}` : ''}`;
const section = `${SECTION} (bench:peers)

Measured ${new Date().toISOString().slice(0, 10)} on ${machineDescription()}, link ${LINK_NAME}, with

    ${command}

Every method reads through the same link emulator (\`shared/peers/linkproxy.py\`:
one token bucket for all connections, one round trip per request; it counts
body bytes and responses) in front of Debian's docker-registry on loopback;
SOCI's index fetches go through a TLS front to the same emulator. The
daemons (containerd 1.6 with stargz-snapshotter 0.12, SOCI 0.4.1 or clip's
snapshotter as proxy plugins, or \`clip daemon\` alone) are started before the clock, new for each sample
with new caches, page cache dropped; times are the median of ${RUNS}, from the
pull (or \`clip mount --rootfs\`) until the container exited after printing its
ready line. The containerd rows include containerd's own container start
(\`ctr run\`); rows 4 and 4b run runc directly (the calibration rows show the
difference), row 4c goes through containerd like the peers, its index in the
node's local store beforehand. Conversions (\`ctr-remote image optimize\`, \`soci create\` + push)
and clip's indexes are made beforehand. A row that could not run says why.
Percentages are of the image's gzip layers as built. The eStargz images are
converted from a copy whose upper layers also carry their parent
directories' entries (the same tree; ctr-remote 0.12's optimizer fails on
layers without them, see bench/parent-dirs.ts), and are compressed anew.

${tables.join('\n\n')}
`;
console.log(section);

/** Replaces this bench's section of docs/benchmarks.md (or adds it at the end), keeping every other section. */
async function writeSection(text: string): Promise<void> {
  const existing = await readFile(DOC, 'utf8').catch(() => '# Benchmarks\n');
  const start = existing.indexOf(`\n${SECTION}`);
  let out: string;
  if (start < 0) {
    out = `${existing.trimEnd()}\n\n${text}`;
  } else {
    const next = existing.indexOf('\n## ', start + 1);
    out = `${existing.slice(0, start)}\n${text}${next < 0 ? '' : `\n${existing.slice(next + 1)}`}`;
  }
  await mkdir(path.dirname(DOC), { recursive: true });
  await writeFile(`${DOC}.tmp`, out);
  await rename(`${DOC}.tmp`, DOC);
  log(`wrote ${DOC}`);
}
if (!args['no-write']) await writeSection(section);
