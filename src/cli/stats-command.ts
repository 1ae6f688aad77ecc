// clip stats MOUNTPOINT: per layer, how much of a running mount's image has
// been fetched and cached (asked of the daemon over its unix socket).

import { Command } from 'commander';
import http from 'node:http';
import path from 'node:path';
import { loadIndex } from '../index/load.js';
import { ClipError } from '../errors.js';
import type { LayerStats } from '../metrics/mount-metrics.js';
import { loadRecord, statsSocketPath } from '../mount/state.js';
import { formatBytes } from './format.js';

function ask(socketPath: string): Promise<LayerStats[]> {
  return new Promise((resolve, reject) => {
    http
      .get({ socketPath, path: '/stats' }, (res) => {
        let body = '';
        res.on('data', (c: Buffer) => (body += c.toString()));
        res.on('end', () => {
          try {
            resolve(JSON.parse(body) as LayerStats[]);
          } catch (e) {
            reject(e);
          }
        });
      })
      .on('error', reject);
  });
}

export function statsCommand(): Command {
  return new Command('stats')
    .description('show per layer how much of a mounted image has been fetched and cached')
    .argument('<mountpoint>', 'image mountpoint or rootfs directory')
    .option('--json', 'print as JSON')
    .action(async (mountpoint: string, o: { json?: boolean }) => {
      let record = await loadRecord(path.resolve(mountpoint));
      if (record?.kind === 'rootfs') record = await loadRecord(record.lower);
      if (!record) throw new ClipError('BAD_ARGUMENT', `${path.resolve(mountpoint)} is not a clip mount`);
      let stats: LayerStats[];
      try {
        stats = await ask(statsSocketPath(record.mountpoint));
      } catch (e) {
        throw new ClipError('IO', `the daemon of ${record.mountpoint} does not answer: ${(e as Error).message}`);
      }
      const index = await loadIndex(record.index);
      const byLayer = new Map(stats.map((s) => [s.layer, s]));
      const rows = index.layers.map((l) => {
        const s = byLayer.get(l.digest);
        return {
          layer: l.digest,
          compressedSize: l.spans.compressedSize,
          fetchedBytes: s?.fetchedBytes ?? 0,
          requests: s?.requests ?? 0,
          cacheHits: s?.cacheHits ?? 0,
          cacheMisses: s?.cacheMisses ?? 0,
          cachedBytes: s?.cachedBytes ?? 0,
        };
      });
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
