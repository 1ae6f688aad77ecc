// Background prefetch (`clip mount --prefetch`): after mount, fetch the rest
// of the image's layers into the disk cache, a few spans per request, at a
// bounded rate, pausing whenever on-demand reads are in progress.

import { setTimeout as sleep } from 'node:timers/promises';
import { ClipError } from '../errors.js';
import type { LayerRecord } from '../index/types.js';
import type { LayerReader } from './layer-reader.js';

export interface PrefetchOptions {
  /** Compressed bytes per second at most (> 0; Infinity: no limit). */
  bytesPerSecond: number;
  /** Spans per request. */
  batch?: number;
  signal?: AbortSignal;
}

/** setTimeout takes at most this many ms; a longer delay fires after 1 ms (with a TimeoutOverflowWarning). */
const MAX_TIMER_MS = 2 ** 31 - 1;

/** Waits `ms` (in steps setTimeout can take), or until the signal aborts. */
async function pause(ms: number, signal: AbortSignal | undefined): Promise<void> {
  for (let left = ms; left > 0 && !signal?.aborted; left -= MAX_TIMER_MS) {
    await sleep(Math.min(left, MAX_TIMER_MS), undefined, signal ? { signal } : {}).catch(() => undefined);
  }
}

export async function prefetchLayers(reader: LayerReader, layers: LayerRecord[], opts: PrefetchOptions): Promise<number> {
  // 0 would mean a division by zero (an endless or overflowing delay): refused, as is anything not a rate.
  if (!(opts.bytesPerSecond > 0))
    throw new ClipError('BAD_ARGUMENT', `prefetch rate ${opts.bytesPerSecond}: expected more than 0 bytes per second`);
  const batch = opts.batch ?? 4;
  let total = 0;
  for (let l = 0; l < layers.length; l++) {
    const spans = layers[l]!.spans.checkpoints.length;
    for (let i = 0; i < spans; i += batch) {
      if (opts.signal?.aborted) return total;
      // On-demand reads first: wait until none is in progress.
      while (reader.active > 0 && !opts.signal?.aborted) await pause(20, opts.signal);
      if (opts.signal?.aborted) return total;
      const last = Math.min(spans - 1, i + batch - 1);
      const started = performance.now();
      const bytes = await reader.prefetch(l, i, last);
      total += bytes;
      // Spread the bytes over time so prefetch never takes the whole link.
      const minMs = (1000 * bytes) / opts.bytesPerSecond;
      const spent = performance.now() - started;
      if (minMs > spent) await pause(minMs - spent, opts.signal);
    }
  }
  return total;
}
