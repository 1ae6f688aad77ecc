// What benchmarks share about the machine: dropping the page cache between
// cold runs, and a one-line description of the machine for published tables.

import { spawnSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import os from 'node:os';

let warned = false;

/** Writes dirty pages back and drops the page cache (root only; warns once elsewhere). */
export function dropCaches(): void {
  spawnSync('sync');
  try {
    writeFileSync('/proc/sys/vm/drop_caches', '3');
  } catch {
    if (!warned) console.warn('(cannot drop the page cache here; cold numbers are warm)');
    warned = true;
  }
}

export function machineDescription(): string {
  const cpus = os.cpus();
  return `${cpus.length} x ${cpus[0]?.model.trim() ?? 'unknown CPU'}, ${(os.totalmem() / 1024 ** 3).toFixed(0)} GiB RAM, Linux ${os.release()}, Node ${process.version}`;
}

export const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[xs.length >> 1]!;
