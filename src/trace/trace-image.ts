// `clip index --trace`: index the image, mount that fresh index as a
// throwaway rootfs (a private clip daemon: its own state and data dirs under
// a temp dir, so the node's daemon and cache are not touched), run the
// image's command in it with runc, without network, and record the spans it
// reads in first-read order (the daemon's --record-profile). Then index
// again with that profile: checkpoints with windows where its reads begin,
// and the profile embedded, so a later mount fetches those ranges at once.

import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import type { Writable } from 'node:stream';
import type { MountReply, MountRequest, PsReply } from '../daemon/api.js';
import { callDaemon, daemonAnswers, ensureDaemon } from '../daemon/client.js';
import { stopDaemon } from '../daemon/control.js';
import { ClipError } from '../errors.js';
import { readMounts } from '../fuse/index.js';
import { mergeProfiles, readProfiles, type ProfileEntry } from '../index/startup-profile.js';
import type { ClipIndex } from '../index/types.js';
import { writeIndex } from '../index/write.js';
import { buildIndex, indexImage, type IndexOptions, type IndexSummary } from '../indexer/index-image.js';
import type { RegistryOptions } from '../oci/types.js';
import { isAlive } from '../util/process.js';
import { traceProcess } from './command.js';
import { runContainer } from './run-container.js';
import { resolveUser } from './user.js';

export const DEFAULT_TRACE_TIMEOUT_S = 30;

export interface TraceOptions {
  /** Exec-form command replacing the image's Entrypoint and Cmd. */
  command?: string[];
  /** Seconds the command may run before it is killed (its reads until then are the profile). */
  timeoutSeconds?: number;
  /** Where the container's output goes (never stdout: the index may go there). */
  output: Writable;
  signal?: AbortSignal;
}

export interface TraceResult {
  /** The spans read, first read first. */
  profile: ProfileEntry[];
  /** The command's exit code; undefined when it was stopped. */
  code?: number;
  timedOut: boolean;
}

export interface TracedSummary extends IndexSummary {
  trace: { spans: number; code: number | null; timedOut: boolean; seconds: number };
}

/** Indexes `ref` with a profile traced on it (see above); profiles given in opts.profile are merged in. */
export async function indexTraced(ref: string, opts: IndexOptions, trace: TraceOptions): Promise<TracedSummary> {
  const started = performance.now();
  // The final index places checkpoints where the traced reads began as well (the profile names those offsets,
  // block boundaries the first index marks). The profiles given are for the final index: the trace's mount need
  // not fetch them.
  const plain: IndexOptions = { ...opts };
  delete plain.profile;
  const first = await buildIndex(ref, plain);
  const traced = await traceIndex(first, opts, trace);
  const traceSeconds = (performance.now() - started) / 1000;
  const summary = await indexImage(ref, { ...opts, profileEntries: traced.profile });
  return {
    ...summary,
    seconds: (performance.now() - started) / 1000,
    trace: { spans: traced.profile.length, code: traced.code ?? null, timedOut: traced.timedOut, seconds: traceSeconds },
  };
}

/** Mounts `index` in a private daemon, runs the command on it, and returns what it read. */
export async function traceIndex(index: ClipIndex, registry: RegistryOptions, opts: TraceOptions): Promise<TraceResult> {
  const process = traceProcess(index.image.config, opts.command);
  const timeoutMs = 1000 * (opts.timeoutSeconds ?? DEFAULT_TRACE_TIMEOUT_S);
  const dir = await mkdtemp(path.join(tmpdir(), `clip-trace-${globalThis.process.pid}-`));
  const state = path.join(dir, 'state');
  const data = path.join(dir, 'data');
  const file = path.join(dir, 'image.clip');
  const recorded = path.join(dir, 'profile.json');
  const rootfs = path.join(dir, 'rootfs');
  let mounted = false;
  let supervisor: number | undefined;
  try {
    await writeIndex(file, index);
    await mkdir(rootfs);
    // An empty config file: the node's /etc/clip/daemon.toml must not point this daemon at the node's dirs.
    const config = path.join(dir, 'daemon.toml');
    await writeFile(config, '');
    await ensureDaemon(state, ['--config', config, '--data-dir', data, '--cache-dir', path.join(data, 'cache')]);
    const req: MountRequest = { index: file, rootfs, registry: onlyRegistry(registry), image: { recordProfile: recorded }, daemon: {} };
    await callDaemon<MountReply>(state, 'POST', '/v1/mount', req);
    mounted = true;
    supervisor = (await callDaemon<PsReply>(state, 'GET', '/v1/ps')).daemon.supervisor;
    const user = await resolveUser(rootfs, process.user);
    const run = await runContainer({
      rootfs,
      dir,
      process,
      user,
      timeoutMs,
      output: opts.output,
      ...(opts.signal ? { signal: opts.signal } : {}),
    });
    // The profile is written when the image's last mount goes.
    await callDaemon(state, 'POST', '/v1/umount', { mountpoint: rootfs });
    mounted = false;
    const [profile] = await readProfiles([recorded], index.image.manifestDigest, index.image.spanSize);
    return { profile: mergeProfiles([profile ?? []]), ...(run.code !== undefined ? { code: run.code } : {}), timedOut: run.timedOut };
  } finally {
    try {
      await stopPrivateDaemon(state, mounted ? rootfs : undefined, supervisor);
    } finally {
      // Never remove a tree something is still mounted in (the rootfs is writable).
      const left = readMounts().filter((m) => m.mountPoint === dir || m.mountPoint.startsWith(dir + '/'));
      if (left.length === 0) await rm(dir, { recursive: true, force: true });
      else opts.output.write(`clip: left ${dir} in place: ${left.map((m) => m.mountPoint).join(', ')} still mounted\n`);
    }
  }
}

/** The registry settings a mount needs (nothing else of the index options goes to the daemon). */
function onlyRegistry(o: RegistryOptions): RegistryOptions {
  const r: RegistryOptions = {};
  if (o.plainHttp !== undefined) r.plainHttp = o.plainHttp;
  if (o.username !== undefined) r.username = o.username;
  if (o.password !== undefined) r.password = o.password;
  if (o.platform !== undefined) r.platform = o.platform;
  if (o.deadline !== undefined) r.deadline = o.deadline;
  if (o.hostsDir !== undefined) r.hostsDir = o.hostsDir;
  if (o.certDir !== undefined) r.certDir = o.certDir;
  if (o.tlsVerify !== undefined) r.tlsVerify = o.tlsVerify;
  return r;
}

/**
 * Ends the trace's daemon and waits until its process (`supervisor`, when
 * known) is gone. Started with --idle-exit, it ends by itself once its last
 * mount went; what is still mounted (a failed run) is detached and it is
 * stopped.
 */
async function stopPrivateDaemon(state: string, rootfs: string | undefined, supervisor: number | undefined): Promise<void> {
  const gone = async (ms: number): Promise<boolean> => {
    for (let waited = 0; supervisor !== undefined && isAlive(supervisor) && waited < ms; waited += 50) await sleep(50);
    return supervisor === undefined || !isAlive(supervisor);
  };
  if (rootfs === undefined && supervisor !== undefined && (await gone(10_000))) return;
  try {
    if (await daemonAnswers(state)) {
      supervisor ??= (await callDaemon<PsReply>(state, 'GET', '/v1/ps')).daemon.supervisor;
      if (rootfs !== undefined) await callDaemon(state, 'POST', '/v1/umount', { mountpoint: rootfs, lazy: true });
      if (await daemonAnswers(state)) await stopDaemon(state);
    }
  } catch {
    // Ending already (a reset connection): waited for below.
  }
  if (!(await gone(30_000))) throw new ClipError('IO', `the trace's clip daemon (pid ${supervisor}, state dir ${state}) did not stop`);
}

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}
