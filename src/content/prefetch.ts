// Background prefetch (`clip mount --prefetch`): after mount, fetch the rest
// of the image's layers into the disk cache, a few spans per request, at a
// bounded rate, pausing whenever on-demand reads are in progress.

import type { LayerRecord } from '../index/types.js';
import type { LayerReader } from './layer-reader.js';

export interface PrefetchOptions {
  /** Compressed bytes per second at most. */
  bytesPerSecond: number;
  /** Spans per request. */
  batch?: number;
  signal?: AbortSignal;
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

export async function prefetchLayers(reader: LayerReader, layers: LayerRecord[], opts: PrefetchOptions): Promise<number> {
  const batch = opts.batch ?? 4;
  let total = 0;
  for (let l = 0; l < layers.length; l++) {
    const spans = layers[l]!.spans.checkpoints.length;
    for (let i = 0; i < spans; i += batch) {
      if (opts.signal?.aborted) return total;
      // On-demand reads first: wait until none is in progress.
      while (reader.active > 0) await sleep(20);
      const last = Math.min(spans - 1, i + batch - 1);
      const started = performance.now();
      const bytes = await reader.prefetch(l, i, last);
      total += bytes;
      // Spread the bytes over time so prefetch never takes the whole link.
      const minMs = (1000 * bytes) / opts.bytesPerSecond;
      const spent = performance.now() - started;
      if (minMs > spent) await sleep(minMs - spent);
    }
  }
  return total;
}
