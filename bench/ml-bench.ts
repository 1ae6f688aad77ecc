// npm run bench:ml: what clip's daemon spends to serve an ML start-up. The
// torch image (bench/debian-images.ts) is pushed to a registry on loopback
// (optionally behind bench/throttle-proxy.ts), indexed, and
// `python3 -c "import torch"` run by runc on a clip rootfs, with the daemon
// started before the clock as on a node. Rows: cold (fresh caches), a second
// container (memory cache warm), a new daemon on the warm disk cache, a cold
// start with a start-up profile recorded by the cold row, and runc on the
// image unpacked in a local directory (the floor). For each: start to ready,
// MB fetched, FUSE MB served, and the serving process's CPU-seconds (also its main thread's)
// (utime + stime from /proc/PID/stat) per GB served. BENCH_PROF=DIR writes a
// CPU profile of each of the daemon's processes into DIR (cpu-prof-hook.ts).
//
//   npm run bench:ml -- [--image torch] [--link 50e6:20] [--runs 1] [--span-size 4M] [--memory-cache-size 2G]

import { execFile, type ChildProcess } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { mkdir, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { parseArgs, promisify } from 'node:util';
import { spanRange } from '../src/gzip/span-reader.js';
import { loadIndex } from '../src/index/load.js';
import { loadProfile } from '../src/index/startup-profile.js';
import { indexImage } from '../src/indexer/index-image.js';
import { parseByteSize } from '../src/util/size.js';
import { freePort, pushImage, startRegistry } from '../test/helpers/registry.js';
import { debianImages, type BenchImage } from './debian-images.js';
import { dropCaches, machineDescription, median } from './machine.js';
import { startThrottleProxy, type ThrottleProxy } from './throttle-proxy.js';
import { CLIP, CLIP_COMMAND, clipUmount, runReady, startDaemon, stopDaemon } from './clip-start.js';
import { metric } from '../test/helpers/prometheus.js';

const exec = promisify(execFile);
/** Profiles every process of the daemon (BENCH_PROF). */
const HOOK = new URL('./cpu-prof-hook.js', import.meta.url).href;

const { values: args } = parseArgs({
  options: {
    image: { type: 'string', default: 'torch' },
    link: { type: 'string' },
    runs: { type: 'string', default: '1' },
    'span-size': { type: 'string' },
    /** Passed to `clip daemon --memory-cache-size` (default: the daemon's). */
    'memory-cache-size': { type: 'string' },
  },
});
const RUNS = Number(args.runs);
const log = (m: string): void => void process.stderr.write(`${m}\n`);
const PROF = process.env['BENCH_PROF'];
/** Clock ticks per second of /proc/PID/stat (USER_HZ: 100 on Linux). */
const HZ = Number((await exec('getconf', ['CLK_TCK'])).stdout.trim()) || 100;

/** What the serving process has done so far. */
interface Counters {
  cpu: number;
  /** Of which the main thread (JavaScript, GC on it, FUSE replies); the rest is zlib, hashing, fs and V8's helpers. */
  mainCpu: number;
  fetched: number;
  requests: number;
  served: number;
}

interface Row {
  ms: number;
  fetched: number;
  requests: number;
  served: number;
  cpu: number;
  mainCpu: number;
}

/** utime + stime of a process (`/proc/PID/stat`) or of one of its threads (`/proc/PID/task/TID/stat`). */
function cpuSeconds(statFile: string): number {
  // Fields after the command name (which is in parentheses and may hold spaces): utime and stime are the 12th and 13th.
  const stat = readFileSync(statFile, 'utf8');
  const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return (Number(f[11]) + Number(f[12])) / HZ;
}

class Daemon {
  private constructor(
    private readonly child: ChildProcess,
    private readonly metricsAddr: string,
    readonly pid: number,
  ) {}

  /** A `clip daemon` with its own cache dir, in the foreground; returned once it answers and its spare has started. */
  static async start(cacheDir: string, env: NodeJS.ProcessEnv): Promise<Daemon> {
    const metricsAddr = `127.0.0.1:${await freePort()}`;
    const childEnv = { ...env };
    if (PROF) {
      childEnv['BENCH_PROF'] = path.resolve(PROF);
      childEnv['NODE_OPTIONS'] = `${env['NODE_OPTIONS'] ?? ''} --import ${HOOK}`.trim();
    }
    const memory = args['memory-cache-size'] ? ['--memory-cache-size', args['memory-cache-size']] : [];
    const child = await startDaemon(cacheDir, childEnv, ['--metrics-addr', metricsAddr, ...memory]);
    try {
      const ps = JSON.parse((await exec(process.execPath, [CLIP, 'ps', '--json'], { env })).stdout) as { daemon: { pid: number } };
      return new Daemon(child, metricsAddr, ps.daemon.pid);
    } catch (e) {
      child.kill('SIGTERM');
      throw e;
    }
  }

  async counters(): Promise<Counters> {
    const text = await (await fetch(`http://${this.metricsAddr}/metrics`)).text();
    return {
      cpu: cpuSeconds(`/proc/${this.pid}/stat`),
      mainCpu: cpuSeconds(`/proc/${this.pid}/task/${this.pid}/stat`),
      fetched: metric(text, 'clip_fetched_bytes_total'),
      requests: metric(text, 'clip_fetch_requests_total'),
      served: metric(text, 'clip_fuse_read_bytes_total'),
    };
  }

  stop(env: NodeJS.ProcessEnv): Promise<void> {
    return stopDaemon(this.child, env);
  }
}

/** `clip mount --rootfs` + runc until ready, measured on the daemon; the rootfs stays mounted. */
async function clipStart(
  img: BenchImage,
  index: string,
  daemon: Daemon,
  work: string,
  env: NodeJS.ProcessEnv,
  extra: string[] = [],
): Promise<Row & { rootfs: string }> {
  const rootfs = await mkdtemp(path.join(work, 'rootfs-'));
  dropCaches();
  const before = await daemon.counters();
  const t = performance.now();
  await exec(CLIP_COMMAND, ['mount', index, '--rootfs', rootfs, ...extra], { env });
  await runReady(img, rootfs);
  const ms = performance.now() - t;
  // Read before the unmount: an image's series leave the endpoint with it.
  const after = await daemon.counters();
  return {
    ms,
    rootfs,
    cpu: after.cpu - before.cpu,
    mainCpu: after.mainCpu - before.mainCpu,
    fetched: after.fetched - before.fetched,
    requests: after.requests - before.requests,
    served: after.served - before.served,
  };
}

const [img] = await debianImages({ log, names: [args.image] });
if (!img) throw new Error(`no image ${args.image}`);
const registry = await startRegistry();
const work = await mkdtemp(path.join(tmpdir(), 'clip-ml-'));
const env = { ...process.env, CLIP_STATE_DIR: path.join(work, 'state'), CLIP_DATA_DIR: path.join(work, 'data') };
let proxy: ThrottleProxy | undefined;
const samples: Record<string, Row[]> = { cold: [], second: [], restart: [], profiled: [], local: [] };
let profileBytes = 0;
let profileSpans = 0;
try {
  log(`${img.name}: pushing`);
  await pushImage(img.dir, img.tag, registry.host, `bench/${img.name}`);
  let host = registry.host;
  if (args.link) {
    const [rate, rtt] = args.link.split(':').map(Number);
    if (!(rate! > 0) || !(rtt! >= 0)) throw new Error(`--link ${args.link}: expected BYTES_PER_SECOND:RTT_MS, e.g. 50e6:20`);
    proxy = await startThrottleProxy(registry.host, rate!, rtt!);
    host = proxy.host;
    proxy.throttled = false;
  }
  const ref = `${host}/bench/${img.name}:${img.tag}`;
  const index = path.join(work, `${img.name}.clip`);
  log(`${img.name}: indexing ${ref}`);
  await indexImage(ref, { output: index, ...(args['span-size'] ? { spanSize: parseByteSize(args['span-size'])! } : {}) });
  if (proxy) proxy.throttled = true;
  if (PROF) await mkdir(PROF, { recursive: true });

  const local = path.join(work, 'local');
  await exec('umoci', ['unpack', '--image', `${img.dir}:${img.tag}`, local]);
  for (let r = 0; r < RUNS; r++) {
    log(`run ${r + 1} of ${RUNS}`);
    const cacheDir = await mkdtemp(path.join(work, 'cache-'));
    const profile = path.join(work, `profile-${r}.json`);
    const daemon = await Daemon.start(cacheDir, env);
    try {
      const first = await clipStart(img, index, daemon, work, env, ['--record-profile', profile]);
      samples['cold']!.push(first);
      log(`cold: ${(first.ms / 1000).toFixed(2)} s`);
      const second = await clipStart(img, index, daemon, work, env);
      samples['second']!.push(second);
      await clipUmount(second.rootfs, env);
      await clipUmount(first.rootfs, env);
    } finally {
      await daemon.stop(env);
    }
    const restarted = await Daemon.start(cacheDir, env);
    try {
      const row = await clipStart(img, index, restarted, work, env);
      samples['restart']!.push(row);
      await clipUmount(row.rootfs, env);
    } finally {
      await restarted.stop(env);
    }
    // What the profile lists, in compressed bytes of this index's spans.
    const clip = await loadIndex(index);
    const listed = await loadProfile(profile, clip);
    profileSpans = listed.spans.length;
    profileBytes = listed.spans.reduce((sum, s) => {
      const range = spanRange(clip.layers[s.layer]!.spans, s.span);
      return sum + range.end - range.start;
    }, 0);
    const fresh = await Daemon.start(await mkdtemp(path.join(work, 'cache-')), env);
    try {
      const row = await clipStart(img, index, fresh, work, env, ['--profile', profile]);
      samples['profiled']!.push(row);
      await clipUmount(row.rootfs, env);
    } finally {
      await fresh.stop(env);
    }
    dropCaches();
    const t = performance.now();
    await runReady(img, path.join(local, 'rootfs'));
    samples['local']!.push({ ms: performance.now() - t, fetched: 0, requests: 0, served: 0, cpu: 0, mainCpu: 0 });
  }
} finally {
  await proxy?.close();
  await registry.stop();
  await rm(work, { recursive: true, force: true });
}

const mb = (b: number): string => (b / 1e6).toFixed(1);
const pick = (k: string, f: keyof Row): number => median(samples[k]!.map((x) => x[f]));
const floor = pick('local', 'ms');
const row = (what: string, k: string): string => {
  const served = pick(k, 'served');
  const cpu = pick(k, 'cpu');
  const perGb = served > 0 ? (cpu / (served / 1e9)).toFixed(1) : '';
  return k === 'local'
    ? `| ${what} | ${(floor / 1000).toFixed(2)} s | 1.00x | | | | | | |`
    : `| ${what} | ${(pick(k, 'ms') / 1000).toFixed(2)} s | ${(pick(k, 'ms') / floor).toFixed(2)}x | ${mb(pick(k, 'fetched'))} MB | ${pick(k, 'requests')} | ${mb(served)} MB | ${cpu.toFixed(2)} | ${pick(k, 'mainCpu').toFixed(2)} | ${perGb} |`;
};
console.log(`# bench:ml, ${new Date().toISOString().slice(0, 16)}, ${machineDescription()}

image ${img.name}: ${img.description}; ${mb(img.compressedBytes)} MB compressed, ${mb(img.uncompressedBytes)} MB unpacked;
ready = \`${img.command.join(' ')}\`; registry on loopback${args.link ? ` behind a ${args.link} link` : ', no link'}; median of ${RUNS}

| row | start to ready | vs local | fetched | requests | FUSE served | daemon CPU-s | of which main thread | CPU-s per GB served |
|---|---|---|---|---|---|---|---|---|
${row('cold (fresh caches)', 'cold')}
${row('second container (memory warm)', 'second')}
${row('new daemon, disk cache warm', 'restart')}
${row('cold with the start-up profile of the cold row', 'profiled')}
${row('runc on a local directory', 'local')}

profile: ${profileSpans} spans, ${mb(profileBytes)} MB compressed listed; the profiled start fetched ${mb(pick('profiled', 'fetched'))} MB`);
