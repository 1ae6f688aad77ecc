// What the start-up benchmarks share about starting a container on clip: a
// `clip daemon` started before the clock (as on a node), `clip mount --rootfs`
// through the installed command, and runc until the image's ready line.

import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import path from 'node:path';
import { promisify } from 'node:util';
import { daemonAnswers } from '../src/daemon/client.js';
import { runContainer } from '../test/helpers/runc.js';
import type { BenchImage } from './debian-images.js';
import { dropCaches } from './machine.js';

const exec = promisify(execFile);
export const CLIP = path.resolve('bin/clip.js');
/** The installed command (a sh wrapper of bin/clip.js), as a runtime runs it. */
export const CLIP_COMMAND = path.resolve('bin/clip');

export interface Sample {
  ms: number;
  bytes: number;
  /** Responses over the link, where the link counts them. */
  requests?: number;
}

/** What counts the bytes served over the emulated link; setting `bytes` to 0 starts a new count. */
export interface ByteCounter {
  bytes: number;
  readonly requests?: number;
}

export interface ClipRun {
  profile?: string;
  recordProfile?: string;
}

/** Runs the image's command on `rootfs` and checks it printed what "ready" means. */
export async function runReady(img: BenchImage, rootfs: string): Promise<void> {
  const r = await runContainer(rootfs, img.command);
  if (r.code !== 0 || r.stdout.trim() !== img.readyOutput) {
    throw new Error(
      `${img.name}: ${img.command.join(' ')} exited ${r.code} with ${JSON.stringify(r.stdout.trim())} (stderr: ${r.stderr.trim()})`,
    );
  }
}

/**
 * A `clip daemon` of the bench's state dir with its own cache dir, in the
 * foreground as systemd runs it; returned once it answers and its spare
 * serving process has started (so that the timed start has the machine to itself).
 */
export async function startDaemon(cacheDir: string, env: NodeJS.ProcessEnv, flags: string[] = []): Promise<ChildProcess> {
  const child = spawn(process.execPath, [CLIP, 'daemon', '--cache-dir', cacheDir, ...flags], { env, stdio: ['ignore', 'ignore', 'pipe'] });
  let err = '';
  child.stderr.on('data', (b: Buffer) => (err = (err + b.toString()).slice(-4000)));
  for (let waited = 0; !(await daemonAnswers(env['CLIP_STATE_DIR']!)); waited += 50) {
    if (child.exitCode !== null || waited > 20_000) {
      // The supervisor unmounts and stops its serving processes on SIGTERM.
      child.kill('SIGTERM');
      throw new Error(`clip daemon did not start: ${err}`);
    }
    await new Promise((r) => setTimeout(r, 50));
  }
  await new Promise((r) => setTimeout(r, 2000));
  return child;
}

export async function stopDaemon(child: ChildProcess, env: NodeJS.ProcessEnv): Promise<void> {
  if (child.exitCode !== null) return;
  const exited = new Promise((r) => child.once('exit', r));
  await exec(process.execPath, [CLIP, 'daemon', '--stop'], { env });
  await exited;
}

/** `clip mount --rootfs` + runc until ready, timed; the rootfs stays mounted (unmount with clipUmount). */
export async function clipStart(
  img: BenchImage,
  index: string,
  run: ClipRun,
  link: ByteCounter,
  work: string,
  env: NodeJS.ProcessEnv,
): Promise<Sample & { rootfs: string }> {
  const rootfs = await mkdtemp(path.join(work, 'rootfs-'));
  const extra = [...(run.profile ? ['--profile', run.profile] : []), ...(run.recordProfile ? ['--record-profile', run.recordProfile] : [])];
  dropCaches();
  link.bytes = 0;
  const t = performance.now();
  await exec(CLIP_COMMAND, ['mount', index, '--rootfs', rootfs, ...extra], { env });
  try {
    await runReady(img, rootfs);
  } catch (e) {
    await clipUmount(rootfs, env);
    throw e;
  }
  const ms = performance.now() - t;
  return { ms, bytes: link.bytes, ...(link.requests !== undefined && { requests: link.requests }), rootfs };
}

/** clipStart with a daemon of its own (fresh cache unless `cacheDir` is given), stopped afterwards. */
export async function clipStartFresh(
  img: BenchImage,
  index: string,
  run: ClipRun & { cacheDir?: string; daemonFlags?: string[] },
  link: ByteCounter,
  work: string,
  env: NodeJS.ProcessEnv,
): Promise<Sample> {
  const daemon = await startDaemon(run.cacheDir ?? (await mkdtemp(path.join(work, 'cache-'))), env, run.daemonFlags);
  try {
    const started = await clipStart(img, index, run, link, work, env);
    await clipUmount(started.rootfs, env);
    return started;
  } finally {
    await stopDaemon(daemon, env);
  }
}

export async function clipUmount(rootfs: string, env: NodeJS.ProcessEnv): Promise<void> {
  await exec(process.execPath, [CLIP, 'umount', rootfs], { env });
  await rm(rootfs, { recursive: true, force: true });
}

/** runc alone on a rootfs that is already there, page cache dropped. */
export async function localStart(img: BenchImage, rootfs: string): Promise<number> {
  dropCaches();
  const t = performance.now();
  await runReady(img, rootfs);
  return performance.now() - t;
}
