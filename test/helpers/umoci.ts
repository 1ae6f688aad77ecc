// Reference extraction: `umoci unpack` (as root, umask 022) of an OCI layout
// tag into a temporary bundle; the result is what a clip mount must look like.

import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { run } from './exec.js';

export interface UmociBundle {
  /** Bundle directory (config.json, umoci.json, rootfs/). */
  bundle: string;
  /** The unpacked root filesystem. */
  rootfs: string;
  cleanup(): Promise<void>;
}

/** True when umoci can run here (root + binary present). */
export function canRunUmoci(): boolean {
  return typeof process.getuid === 'function' && process.getuid() === 0;
}

export async function umociUnpack(layoutDir: string, tag: string): Promise<UmociBundle> {
  if (!canRunUmoci()) throw new Error('umociUnpack needs root');
  const base = await mkdtemp(join(tmpdir(), 'clip-umoci-'));
  const bundle = join(base, 'bundle');
  const cleanup = (): Promise<void> => rm(base, { recursive: true, force: true });
  try {
    // umoci creates implicit parent dirs with 0777 &^ umask: pin the umask.
    await run('sh', ['-c', 'umask 022 && exec umoci unpack --image "$1" "$2"', 'sh', `${layoutDir}:${tag}`, bundle]);
  } catch (e) {
    await cleanup();
    throw e;
  }
  return { bundle, rootfs: join(bundle, 'rootfs'), cleanup };
}
