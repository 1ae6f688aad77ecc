// clip umount MOUNTPOINT

import { Command } from 'commander';
import { unmountPath } from '../mount/unmount.js';
import { requireRoot } from './require-root.js';

export function umountCommand(): Command {
  return new Command('umount')
    .alias('unmount')
    .description('unmount a clip mount or rootfs (the overlay first, then the image), stop its daemon, clean its state')
    .argument('<mountpoint>', 'image mountpoint or rootfs directory')
    .action(async (mountpoint: string) => {
      requireRoot('umount');
      await unmountPath(mountpoint);
    });
}
