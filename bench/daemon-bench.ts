// npm run bench:daemon: the node daemon's costs, measured in one run.
// - mount latency: `clip mount --rootfs` of an image the daemon already serves
//   (the whole CLI process, as a runtime would call it), against the 80 ms goal,
//   and the first mount (which starts the daemon) for scale;
// - memory: RSS of the daemon (supervisor + serving process) with 1 and with
//   10 images mounted, against the 1.3x goal;
// - takeover: a reader that reads files through a mount in a loop (page cache
//   dropped, so every read reaches FUSE) while the serving process is SIGKILLed
//   and then upgraded: reads served, errors, and the longest stall, against
//   the same reader's longest gap with no kill.

import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdir, mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { callDaemon } from '../src/daemon/client.js';
import { indexImage } from '../src/indexer/index-image.js';
import { buildBusyboxImage } from '../test/helpers/busybox-image.js';
import { createPrng } from '../test/helpers/prng.js';
import { pushImage, startRegistry } from '../test/helpers/registry.js';
import type { TarEntrySpec } from '../test/helpers/tar-writer.js';
import { dropCaches, median } from './machine.js';

const BIN_DIR = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../bin');
const IMAGES = Number(process.env['BENCH_IMAGES'] ?? 10);
const MOUNT_RUNS = 15;

/** BENCH_PROF=DIR: the timed mounts run with --cpu-prof into DIR (what the CLI's own start costs). */
const PROF = process.env['BENCH_PROF'];

function clip(args: string[], env: NodeJS.ProcessEnv, prof = false): Promise<{ code: number; out: string; err: string; ms: number }> {
  const started = performance.now();
  return new Promise((resolve, reject) => {
    // The command as installed (bin/clip, a sh wrapper), as a runtime runs it; Node with flags to profile.
    const [cmd, argv]: [string, string[]] =
      prof && PROF
        ? [process.execPath, ['--cpu-prof', '--cpu-prof-dir', PROF, path.join(BIN_DIR, 'clip.js'), ...args]]
        : [path.join(BIN_DIR, 'clip'), args];
    const child = spawn(cmd, argv, { env: { ...process.env, ...env } });
    let out = '';
    let err = '';
    child.stdout.on('data', (b: Buffer) => (out += b.toString()));
    child.stderr.on('data', (b: Buffer) => (err += b.toString()));
    child.on('error', reject);
    child.on('close', (code) => resolve({ code: code ?? -1, out, err, ms: performance.now() - started }));
  });
}

async function must(args: string[], env: NodeJS.ProcessEnv, prof = false): Promise<{ out: string; ms: number }> {
  const r = await clip(args, env, prof);
  if (r.code !== 0) throw new Error(`clip ${args.join(' ')}: ${r.err}`);
  return r;
}

async function rssMb(pid: number): Promise<number> {
  const status = await readFile(`/proc/${pid}/status`, 'utf8');
  return Number(/VmRSS:\s+(\d+)/.exec(status)![1]) / 1024;
}

/** RSS of the whole daemon: the supervisor and every child (the serving process and its spare). */
async function daemonRss(env: NodeJS.ProcessEnv): Promise<{ rss: number; pid: number; supervisor: number }> {
  const ps = JSON.parse((await must(['ps', '--json'], env)).out) as { daemon: { pid: number; supervisor: number } };
  const sup = ps.daemon.supervisor;
  const children = (await readFile(`/proc/${sup}/task/${sup}/children`, 'utf8')).trim().split(/\s+/).filter(Boolean).map(Number);
  if (children.length < 2) {
    // The spare starts a second after the serving process: measure the daemon as it runs.
    await new Promise((r) => setTimeout(r, 1500));
    return daemonRss(env);
  }
  let rss = await rssMb(sup);
  for (const c of children) rss += await rssMb(c).catch(() => 0);
  return { rss, ...ps.daemon };
}

/** Reads every file under `dir` in turn for `ms`, dropping the page cache each round; returns reads, errors and the longest read. */
function readLoop(dir: string, files: string[], sums: Map<string, string>, stop: { done: boolean }) {
  const gaps: number[] = [];
  const spans: [number, number][] = [];
  let reads = 0;
  let errors = 0;
  const run = (async () => {
    while (!stop.done) {
      dropCaches();
      for (const f of files) {
        const t = performance.now();
        try {
          const data = await readFile(path.join(dir, f));
          if (createHash('sha256').update(data).digest('hex') !== sums.get(f)) errors++;
        } catch {
          errors++;
        }
        gaps.push(performance.now() - t);
        spans.push([t, performance.now()]);
        reads++;
      }
    }
  })();
  /** The longest read that was in progress at `at` or started within `ms` after it. */
  const stallAfter = (at: number, ms: number): number =>
    Math.max(0, ...spans.filter(([a, b]) => b >= at && a <= at + ms).map(([a, b]) => b - a));
  return { run, stallAfter, result: () => ({ reads, errors, maxMs: Math.max(...gaps), p50Ms: median(gaps) }) };
}

async function main(): Promise<void> {
  const work = await mkdtemp(path.join(tmpdir(), 'clip-bench-daemon-'));
  const env = { CLIP_STATE_DIR: path.join(work, 'state'), CLIP_DATA_DIR: path.join(work, 'data') };
  const registry = await startRegistry();
  const mounted: string[] = [];
  try {
    process.stderr.write(`building ${IMAGES} images...\n`);
    const indexes: string[] = [];
    const sums = new Map<string, string>();
    const files: string[] = [];
    for (let i = 0; i < IMAGES; i++) {
      const prng = createPrng(1000 + i);
      const extra: TarEntrySpec[] = [{ type: 'dir', path: 'data', mode: 0o755 }];
      for (let f = 0; f < 40; f++) {
        const data = prng.bytes(64 * 1024);
        extra.push({ type: 'file', path: `data/f${f}`, mode: 0o644, data });
        if (i === 0) {
          sums.set(`data/f${f}`, createHash('sha256').update(data).digest('hex'));
          files.push(`data/f${f}`);
        }
      }
      const image = await buildBusyboxImage(extra, `v${i}`);
      await pushImage(image.dir, image.tag, registry.host, `bench/v${i}`);
      const index = path.join(work, `v${i}.clip`);
      await indexImage(`${registry.host}/bench/v${i}:${image.tag}`, { output: index, spanSize: 256 * 1024 });
      indexes.push(index);
      await rm(image.dir, { recursive: true, force: true });
    }

    // The first mount starts the daemon; later ones of the same image only stack an overlay.
    const first = path.join(work, 'rootfs-first');
    await mkdir(first);
    const cold = await must(['mount', indexes[0]!, '--rootfs', first], env);
    mounted.push(first);
    const one = await daemonRss(env);
    const times: number[] = [];
    for (let i = 0; i < MOUNT_RUNS; i++) {
      const dir = path.join(work, `rootfs-${i}`);
      await mkdir(dir);
      times.push((await must(['mount', indexes[0]!, '--rootfs', dir], env, true)).ms);
      mounted.push(dir);
    }
    // The floor: Node starting and exiting, spawned the same way; and so without
    // NODE_EXTRA_CA_CERTS (if set), as bin/clip starts this call.
    const floor: number[] = [];
    const bare: number[] = [];
    const noCerts = { ...process.env };
    delete noCerts['NODE_EXTRA_CA_CERTS'];
    for (let i = 0; i < MOUNT_RUNS; i++) {
      let t = performance.now();
      await new Promise((r) => spawn(process.execPath, ['-e', '0']).on('close', r));
      floor.push(performance.now() - t);
      t = performance.now();
      await new Promise((r) => spawn(process.execPath, ['-e', '0'], { env: noCerts }).on('close', r));
      bare.push(performance.now() - t);
    }
    // The same through the API from a process already running: what the daemon itself takes.
    const api: number[] = [];
    for (let i = 0; i < MOUNT_RUNS; i++) {
      const dir = path.join(work, `rootfs-api-${i}`);
      await mkdir(dir);
      const t = performance.now();
      await callDaemon(env.CLIP_STATE_DIR, 'POST', '/v1/mount', { index: indexes[0]!, rootfs: dir, registry: {}, image: {}, daemon: {} });
      api.push(performance.now() - t);
      mounted.push(dir);
    }
    for (let i = 1; i < IMAGES; i++) {
      const mp = path.join(work, `mnt-${i}`);
      await mkdir(mp);
      await must(['mount', indexes[i]!, mp], env);
      mounted.push(mp);
      await readFile(path.join(mp, 'data/f0'));
    }
    const ten = await daemonRss(env);

    // Takeover: the same reader without a kill, then across a SIGKILL and an upgrade.
    const calm = { done: false };
    const base = readLoop(first, files, sums, calm);
    await new Promise((r) => setTimeout(r, 3000));
    calm.done = true;
    await base.run;
    const stop = { done: false };
    const loop = readLoop(first, files, sums, stop);
    await new Promise((r) => setTimeout(r, 1000));
    const before = await daemonRss(env);
    const killedAt = performance.now();
    process.kill(before.pid, 'SIGKILL');
    await new Promise((r) => setTimeout(r, 2000));
    const upgradedAt = performance.now();
    await must(['daemon', '--upgrade'], env);
    await new Promise((r) => setTimeout(r, 2000));
    stop.done = true;
    await loop.run;
    const calmR = base.result();
    const t = loop.result();

    const p50 = median(times);
    console.log('clip daemon bench');
    console.log(
      `mount --rootfs of a served image: p50 ${p50.toFixed(0)} ms over ${MOUNT_RUNS} (goal 80 ms: ${(p50 / 80).toFixed(2)}x); first mount, daemon start included: ${cold.ms.toFixed(0)} ms`,
    );
    console.log(
      `  of which the daemon (the API call from a running process): p50 ${median(api).toFixed(0)} ms; Node's own start and exit (node -e 0): p50 ${median(floor).toFixed(0)} ms, without NODE_EXTRA_CA_CERTS (${process.env['NODE_EXTRA_CA_CERTS'] ?? 'not set'}) ${median(bare).toFixed(0)} ms`,
    );
    console.log(
      `RSS, supervisor + serving process + spare: 1 image ${one.rss.toFixed(0)} MB, ${IMAGES} images ${ten.rss.toFixed(0)} MB: ${(ten.rss / one.rss).toFixed(2)}x (goal <= 1.3x)`,
    );
    console.log(
      `reads with no kill: ${calmR.reads}, errors ${calmR.errors}, p50 ${calmR.p50Ms.toFixed(1)} ms, longest ${calmR.maxMs.toFixed(0)} ms`,
    );
    console.log(
      `reads across SIGKILL + upgrade: ${t.reads}, errors ${t.errors}, p50 ${t.p50Ms.toFixed(1)} ms, longest ${t.maxMs.toFixed(0)} ms`,
    );
    console.log(
      `max stall: SIGKILL of the serving process ${loop.stallAfter(killedAt, 2000).toFixed(0)} ms (a new process starts and loads), ` +
        `clip daemon --upgrade ${loop.stallAfter(upgradedAt, 2000).toFixed(0)} ms (loaded before the switch); longest read with no kill ${calmR.maxMs.toFixed(0)} ms`,
    );
  } finally {
    for (const mp of mounted.reverse()) await clip(['umount', mp], env);
    await registry.stop();
    await rm(work, { recursive: true, force: true }).catch(() => undefined);
  }
}

await main();
