// Mount hygiene for tests: a private state/data dir per suite (so tests never
// touch /run/clip), a sweep of clip mounts a crashed earlier run left under
// the temp dir, and a check that a suite left nothing mounted.

import { spawnSync } from 'node:child_process';
import { mkdtemp, readdir, readFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { readMounts } from '../../src/fuse/index.js';
import { isAlive } from '../../src/util/process.js';

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

/** The state records (mountpoint, daemon pid) of a workspace's mounts. */
export async function mountRecords(ws: ClipWorkspace): Promise<{ pid: number; mountpoint: string }[]> {
  const dir = path.join(ws.env['CLIP_STATE_DIR']!, 'mounts');
  const names = await readdir(dir).catch(() => [] as string[]);
  return Promise.all(names.filter((f) => f.endsWith('.json')).map(async (f) => JSON.parse(await readFile(path.join(dir, f), 'utf8'))));
}

export interface ClipWorkspace {
  dir: string;
  env: NodeJS.ProcessEnv;
}

export async function clipWorkspace(prefix: string): Promise<ClipWorkspace> {
  const dir = await mkdtemp(path.join(tmpdir(), `clip-${prefix}-${process.pid}-`));
  return { dir, env: { CLIP_STATE_DIR: path.join(dir, 'state'), CLIP_DATA_DIR: path.join(dir, 'data') } };
}
