// The identity of a span as the reading index describes it: a sha256 over
// everything that determines the span's inflated bytes. The disk cache is
// keyed by it, so a span that another index described differently (a hostile
// .clip claiming a genuine layer digest with other bytes behind it) is a
// different cache file and never served in place of this one.

import { createHash } from 'node:crypto';
import { needsWindow, spanOutputRange, spanRange } from '../gzip/span-reader.js';
import type { LayerRecord } from '../index/types.js';

const DOMAIN = 'clip span identity v1\n';

/** Identities of one layer's spans, computed on first use and remembered. */
export class SpanIdentities {
  private readonly known = new Map<number, string>();

  constructor(private readonly layer: LayerRecord) {}

  /** Hex sha256 identifying span i of the layer as this index describes it. */
  of(i: number): string {
    const hit = this.known.get(i);
    if (hit !== undefined) return hit;
    // A span without a window inflates from the output of the span before,
    // so its identity includes that one's: walk back to the nearest known or
    // self-contained span, then forward (a loop: chains can be long).
    const table = this.layer.spans;
    let start = i;
    while (!this.known.has(start - 1) && needsWindow(table, start)) start--;
    let previous = this.known.get(start - 1);
    for (let k = start; k <= i; k++) {
      previous = this.compute(k, needsWindow(table, k) ? previous : undefined);
      this.known.set(k, previous);
    }
    return previous!;
  }

  private compute(i: number, before: string | undefined): string {
    const table = this.layer.spans;
    const cp = table.checkpoints[i]!;
    const compressed = spanRange(table, i);
    const output = spanOutputRange(table, i);
    // An unaligned checkpoint's bit offset (optional field; 0 when absent).
    const bits = (cp as { bits?: number }).bits ?? 0;
    const h = createHash('sha256');
    h.update(DOMAIN);
    h.update(`${this.layer.digest}\n${table.compression}\n`);
    h.update(JSON.stringify([i, compressed.start, compressed.end, output.start, output.end, cp.in, cp.out, bits, cp.window.length]) + '\n');
    h.update(cp.window);
    h.update(table.digests[i]!);
    h.update(before === undefined ? 'self-contained' : `after ${before}`);
    return h.digest('hex');
  }
}

const PREFIX_DOMAIN = 'clip span prefix v2\n';

/**
 * Hex sha256 naming the first `chunks` chunks of a span's compressed bytes
 * (the disk cache's key for a verified prefix): the span's identity, the
 * prefix's length and the digests of the chunks it covers. Another domain
 * than span identities, so a prefix is never taken for a whole span, and an
 * index that states other chunk digests names another file.
 */
export function prefixIdentity(span: string, chunkDigests: readonly Buffer[], chunks: number, bytes: number): string {
  const h = createHash('sha256').update(`${PREFIX_DOMAIN}${span}\n${chunks}\n${bytes}\n`);
  for (const d of chunkDigests.slice(0, chunks)) h.update(d);
  return h.digest('hex');
}
