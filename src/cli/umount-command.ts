// clip umount [--lazy] MOUNTPOINT

import { Command } from 'commander';
import { unmountPath } from '../mount/unmount.js';
import { requireRoot } from './require-root.js';

export function umountCommand(): Command {
  return new Command('umount')
    .alias('unmount')
    .description('unmount a clip mount or rootfs (the overlay first, then the image), stop its daemon, clean its state')
    .argument('<mountpoint>', 'image mountpoint or rootfs directory')
    .option('--lazy', 'detach it even while processes use it (umount -l); their open files keep being served until closed')
    .action(async (mountpoint: string, o: { lazy?: boolean }) => {
      requireRoot('umount');
      const r = await unmountPath(mountpoint, { lazy: o.lazy === true });
      if (r.kept !== undefined)
        process.stderr.write(`clip: kept ${r.kept}: the detached rootfs still uses it; remove it once its processes are gone\n`);
    });
}
