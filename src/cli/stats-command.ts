// clip stats MOUNTPOINT: per layer, how much of a served image has been
// fetched and cached (asked of the node daemon).

import { Command } from 'commander';
import path from 'node:path';
import type { StatsReply } from '../daemon/api.js';
import { stateDir } from '../mount/state.js';
import { formatBytes } from './format.js';

export function statsCommand(): Command {
  return new Command('stats')
    .description('show per layer how much of a mounted image has been fetched and cached')
    .argument('<mountpoint>', 'image mountpoint or rootfs directory')
    .option('--json', 'print as JSON')
    .action(async (mountpoint: string, o: { json?: boolean }) => {
      const { callDaemon } = await import('../daemon/client.js');
      const reply = await callDaemon<StatsReply>(stateDir(), 'GET', `/v1/stats?mountpoint=${encodeURIComponent(path.resolve(mountpoint))}`);
      // The daemon has the index: its layers come in index order, with their sizes.
      const rows = reply.layers.map((l) => ({
        layer: l.layer,
        compressedSize: l.compressedSize,
        fetchedBytes: l.fetchedBytes,
        requests: l.requests,
        cacheHits: l.cacheHits,
        cacheMisses: l.cacheMisses,
        cachedBytes: l.cachedBytes,
      }));
      if (o.json) {
        process.stdout.write(JSON.stringify(rows, null, 2) + '\n');
        return;
      }
      const lines = ['layer          compressed     fetched      %  requests  cache hits/misses  cached (this daemon)'];
      for (const r of rows) {
        const pct = ((100 * r.fetchedBytes) / Math.max(1, r.compressedSize)).toFixed(1);
        lines.push(
          `${r.layer.slice(7, 19)}  ${formatBytes(r.compressedSize).padStart(10)}  ${formatBytes(r.fetchedBytes).padStart(10)}  ${pct.padStart(5)}  ${String(r.requests).padStart(8)}  ${`${r.cacheHits}/${r.cacheMisses}`.padStart(17)}  ${formatBytes(r.cachedBytes).padStart(10)}`,
        );
      }
      process.stdout.write(lines.join('\n') + '\n');
    });
}
