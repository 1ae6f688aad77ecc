// clip ps [--json]: what the node daemon serves: its serving process, and per
// image its index, mounts, rootfs and how much was fetched and cached.

import { Command } from 'commander';
import type { PsReply } from '../daemon/api.js';
import { stateDir } from '../mount/state.js';
import { formatBytes } from './format.js';

export function psCommand(): Command {
  return new Command('ps')
    .description('list the images the clip daemon serves, with their mounts and rootfs')
    .option('--json', 'print as JSON')
    .action(async (o: { json?: boolean }) => {
      const { callDaemon } = await import('../daemon/client.js');
      const ps = await callDaemon<PsReply>(stateDir(), 'GET', '/v1/ps');
      if (o.json) {
        process.stdout.write(JSON.stringify(ps, null, 2) + '\n');
        return;
      }
      const lines = [
        `clip daemon ${ps.daemon.version}: serving pid ${ps.daemon.pid} (supervisor ${ps.daemon.supervisor}), since ${ps.daemon.started}`,
      ];
      for (const m of ps.mounts) {
        lines.push(`${m.image}\n  index ${m.index}\n  fetched ${formatBytes(m.fetchedBytes)}, cached ${formatBytes(m.cachedBytes)}`);
        for (const mp of m.mountpoints) lines.push(`  mount  ${mp}`);
        for (const r of m.rootfs) lines.push(`  rootfs ${r}`);
      }
      process.stdout.write(lines.join('\n') + '\n');
    });
}
