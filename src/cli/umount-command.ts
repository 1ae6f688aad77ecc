// clip umount [--lazy] MOUNTPOINT: asks the node daemon to take down a mount
// or rootfs it serves (the image goes when nothing uses it any more).

import { Command } from 'commander';
import path from 'node:path';
import type { UmountReply } from '../daemon/api.js';
import { ClipError } from '../errors.js';
import { stateDir } from '../mount/state.js';
import { requireRoot } from './require-root.js';

export function umountCommand(): Command {
  return new Command('umount')
    .alias('unmount')
    .description('unmount a clip mount or rootfs (the image is no longer served once nothing uses it)')
    .argument('<mountpoint>', 'image mountpoint or rootfs directory')
    .option('--lazy', 'detach it even while processes use it (umount -l); their open files keep being served until closed')
    .action(async (mountpoint: string, o: { lazy?: boolean }) => {
      requireRoot('umount');
      const { callDaemon, daemonAnswers, pidFileAlive } = await import('../daemon/client.js');
      const mp = path.resolve(mountpoint);
      const state = stateDir();
      if (!(await daemonAnswers(state)) && !(await pidFileAlive(state))) {
        const { notAClipMount } = await import('../daemon/stacked-mounts.js');
        const e = notAClipMount(mp);
        throw new ClipError(e.code, `${e.message}: no clip daemon runs for state dir ${state}`);
      }
      const r = await callDaemon<UmountReply>(state, 'POST', '/v1/umount', { mountpoint: mp, lazy: o.lazy === true });
      if (r.kept !== undefined)
        process.stderr.write(`clip: kept ${r.kept}: the detached rootfs still uses it; remove it once its processes are gone\n`);
    });
}
