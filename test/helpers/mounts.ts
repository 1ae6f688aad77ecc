// Mount hygiene for tests: a private state/data dir per suite (so tests never
// touch /run/clip), a sweep of clip mounts a crashed earlier run left under
// the temp dir, and a check that a suite left nothing mounted.

import { spawnSync } from 'node:child_process';
import { mkdtemp, readdir, readFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { readMounts } from '../../src/fuse/index.js';
import { isAlive } from '../../src/util/process.js';
import { runClip } from './cli.js';

/** clip mounts (FUSE and overlays) under the temp dir made by tests; `mine`: only this process's. */
export function testMounts(mine = false): string[] {
  const root = tmpdir();
  return readMounts()
    .filter((m) => (m.fsType === 'fuse.clip' || m.fsType === 'overlay') && m.mountPoint.startsWith(`${root}/clip-`))
    .map((m) => m.mountPoint)
    .filter((mp) => !mine || ownerPid(mp) === process.pid);
}

/** The test process that made a workspace path (clip-<name>-<pid>-XXXXXX), if the path is one. */
function ownerPid(mountpoint: string): number | undefined {
  const m = new RegExp(`^${tmpdir()}/clip-[a-z]+-(\\d+)-`).exec(mountpoint);
  return m ? Number(m[1]) : undefined;
}

/** Whether a process is still running (a zombie is not). */
export const alive = isAlive;

/**
 * Detaches clip mounts that a crashed earlier test run left under the temp
 * dir, deepest (overlays) first. Mounts of test runs still alive are theirs.
 */
export function sweepClipMounts(): void {
  const stale = testMounts().filter((mp) => {
    const pid = ownerPid(mp);
    return pid !== undefined && (pid === process.pid || !alive(pid));
  });
  for (const mp of stale.sort((a, b) => b.length - a.length)) spawnSync('umount', ['-l', mp]);
}

/** What a workspace's daemon serves, one row per mount (read-only mount, rootfs, and each image's own directory), with the serving pid and the daemon's log. */
export async function mountRecords(ws: ClipWorkspace): Promise<{ pid: number; mountpoint: string; log: string; image: string }[]> {
  const state = ws.env['CLIP_STATE_DIR']!;
  const table = await readFile(path.join(state, 'daemon', 'table.json'), 'utf8').catch(() => undefined);
  if (table === undefined) return [];
  const images = (
    JSON.parse(table) as { images: { key: string; image: string; mounts: { mountpoint: string }[]; rootfs: { mountpoint: string }[] }[] }
  ).images;
  if (images.length === 0) return [];
  const r = await runClip(['ps', '--json'], { env: ws.env });
  const pid = r.code === 0 ? (JSON.parse(r.stdout.toString()) as { daemon: { pid: number } }).daemon.pid : 0;
  const log = path.join(state, 'logs', 'daemon.log');
  return images.flatMap((i) =>
    [path.join(state, 'fs', i.key), ...i.mounts.map((m) => m.mountpoint), ...i.rootfs.map((m) => m.mountpoint)].map((mountpoint) => ({
      pid,
      mountpoint,
      log,
      image: i.image,
    })),
  );
}

export interface ClipWorkspace {
  dir: string;
  env: NodeJS.ProcessEnv;
}

export async function clipWorkspace(prefix: string): Promise<ClipWorkspace> {
  const dir = await mkdtemp(path.join(tmpdir(), `clip-${prefix}-${process.pid}-`));
  return { dir, env: { CLIP_STATE_DIR: path.join(dir, 'state'), CLIP_DATA_DIR: path.join(dir, 'data') } };
}

/** Every daemon log of the workspace, concatenated ('' before the daemon wrote one). */
export async function daemonLog(ws: ClipWorkspace): Promise<string> {
  const dir = path.join(ws.env['CLIP_STATE_DIR']!, 'logs');
  let text = '';
  for (const f of await readdir(dir).catch(() => [] as string[])) text += await readFile(path.join(dir, f), 'utf8');
  return text;
}
