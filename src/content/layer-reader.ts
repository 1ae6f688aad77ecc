// Reads uncompressed byte ranges of layers on demand: fetch just the
// compressed span(s) that cover the range (Range GETs), check each span's
// sha256 from the index, inflate from the span's checkpoint. A span that does
// not verify is fetched once more, then the read fails: never a wrong byte.
// Inflated spans stay in a bounded in-memory LRU; concurrent readers of one
// span share one fetch.

import { createHash } from 'node:crypto';
import { ClipError } from '../errors.js';
import { inflateSpans, spanAt, spanOutputRange, spanRange } from '../gzip/span-reader.js';
import type { LayerRecord } from '../index/types.js';
import type { BlobSource } from '../oci/types.js';
import type { SpanCache } from './span-cache.js';

export const DEFAULT_MEMORY_CACHE = 256 * 1024 * 1024;

interface CachedSpan {
  data: Promise<Buffer>;
  size: number;
}

export class LayerReader {
  /** Map order is recency order: the first entry is the least recently used. */
  private readonly spans = new Map<string, CachedSpan>();
  private cachedBytes = 0;

  constructor(
    private readonly layers: LayerRecord[],
    private readonly blobs: BlobSource,
    private readonly disk?: SpanCache,
    private readonly maxCacheBytes = DEFAULT_MEMORY_CACHE,
  ) {}

  async read(layerIndex: number, offset: number, length: number): Promise<Buffer> {
    const layer = this.layers[layerIndex];
    if (!layer) throw new ClipError('BAD_INDEX', `no layer ${layerIndex} in the index`);
    const table = layer.spans;
    const end = Math.min(offset + length, table.uncompressedSize);
    if (offset >= end) return Buffer.alloc(0);
    const first = spanAt(table, offset);
    const last = spanAt(table, end - 1);
    const parts: Buffer[] = [];
    const datas = [];
    for (let i = first; i <= last; i++) datas.push(this.span(layerIndex, i));
    const spans = await Promise.all(datas);
    for (let i = first; i <= last; i++) {
      const range = spanOutputRange(table, i);
      const data = spans[i - first]!;
      parts.push(data.subarray(Math.max(offset, range.start) - range.start, Math.min(end, range.end) - range.start));
    }
    return parts.length === 1 ? parts[0]! : Buffer.concat(parts);
  }

  private span(layerIndex: number, i: number): Promise<Buffer> {
    const key = `${layerIndex}:${i}`;
    const hit = this.spans.get(key);
    if (hit) {
      this.spans.delete(key);
      this.spans.set(key, hit);
      return hit.data;
    }
    const layer = this.layers[layerIndex]!;
    const range = spanOutputRange(layer.spans, i);
    const entry: CachedSpan = { data: this.fetchSpan(layer, i), size: range.end - range.start };
    this.spans.set(key, entry);
    this.cachedBytes += entry.size;
    // A failed fetch is not cached: the next read tries again.
    entry.data.catch(() => {
      if (this.spans.get(key) === entry) {
        this.spans.delete(key);
        this.cachedBytes -= entry.size;
      }
    });
    this.evict(key);
    return entry.data;
  }

  private evict(keep: string): void {
    for (const [key, e] of this.spans) {
      if (this.cachedBytes <= this.maxCacheBytes) break;
      if (key === keep) continue;
      this.spans.delete(key);
      this.cachedBytes -= e.size;
    }
  }

  private async fetchSpan(layer: LayerRecord, i: number): Promise<Buffer> {
    const table = layer.spans;
    const out = spanOutputRange(table, i);
    const cached = await this.disk?.get(layer.digest, i, out.end - out.start);
    if (cached) return cached;
    const data = await this.fetchRemote(layer, i);
    // A cache that cannot be written only costs a refetch later; the read goes on.
    await this.disk?.put(layer.digest, i, data).catch(() => undefined);
    return data;
  }

  private async fetchRemote(layer: LayerRecord, i: number): Promise<Buffer> {
    const table = layer.spans;
    const { start, end } = spanRange(table, i);
    for (let attempt = 0; attempt < 2; attempt++) {
      const compressed = await this.blobs.readRange(layer.digest, start, end);
      if (compressed.length === end - start && createHash('sha256').update(compressed).digest().equals(table.digests[i]!)) {
        return inflateSpans(table, i, i, compressed);
      }
    }
    throw new ClipError('DIGEST_MISMATCH', `layer ${layer.digest} span ${i}: fetched bytes do not match the span digest in the index`);
  }
}
