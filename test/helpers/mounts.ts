// Mount hygiene for tests: a private state/data dir per suite (so tests never
// touch /run/clip), a sweep of clip mounts a crashed earlier run left under
// the temp dir, and a check that a suite left nothing mounted.

import { spawnSync } from 'node:child_process';
import { mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { readMounts } from '../../src/fuse/index.js';

/** clip mounts (FUSE and overlays) under the temp dir made by tests. */
export function testMounts(): string[] {
  const root = tmpdir();
  return readMounts()
    .filter((m) => (m.fsType === 'fuse.clip' || m.fsType === 'overlay') && m.mountPoint.startsWith(`${root}/clip-`))
    .map((m) => m.mountPoint);
}

/** Detaches every clip mount left under the temp dir, deepest (overlays) first. */
export function sweepClipMounts(): void {
  const mps = testMounts().sort((a, b) => b.length - a.length);
  for (const mp of mps) spawnSync('umount', ['-l', mp]);
}

export interface ClipWorkspace {
  dir: string;
  env: NodeJS.ProcessEnv;
}

export async function clipWorkspace(prefix: string): Promise<ClipWorkspace> {
  const dir = await mkdtemp(path.join(tmpdir(), `clip-${prefix}-`));
  return { dir, env: { CLIP_STATE_DIR: path.join(dir, 'state'), CLIP_DATA_DIR: path.join(dir, 'data') } };
}
