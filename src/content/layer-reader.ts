// Reads uncompressed byte ranges of layers on demand: fetch just the
// compressed spans that cover the range (one Range GET), check each span's
// sha256 from the index, inflate from the span's checkpoint. A span that does
// not verify is fetched once more, then the read fails: never a wrong byte.

import { createHash } from 'node:crypto';
import { ClipError } from '../errors.js';
import { inflateSpans, spanAt, spanOutputRange, spanRange } from '../gzip/span-reader.js';
import type { LayerRecord } from '../index/types.js';
import type { BlobSource } from '../oci/types.js';

interface CachedSpans {
  layer: number;
  start: number;
  data: Buffer;
}

export class LayerReader {
  /** The last inflated spans: sequential reads of one file inflate each span once. */
  private last: CachedSpans | undefined;

  constructor(
    private readonly layers: LayerRecord[],
    private readonly blobs: BlobSource,
  ) {}

  async read(layerIndex: number, offset: number, length: number): Promise<Buffer> {
    const layer = this.layers[layerIndex];
    if (!layer) throw new ClipError('BAD_INDEX', `no layer ${layerIndex} in the index`);
    const end = Math.min(offset + length, layer.spans.uncompressedSize);
    if (offset >= end) return Buffer.alloc(0);
    const c = this.last;
    if (c && c.layer === layerIndex && c.start <= offset && end <= c.start + c.data.length) {
      return c.data.subarray(offset - c.start, end - c.start);
    }
    const table = layer.spans;
    const first = spanAt(table, offset);
    const last = spanAt(table, end - 1);
    const data = await this.fetchSpans(layer, first, last);
    const start = spanOutputRange(table, first).start;
    this.last = { layer: layerIndex, start, data };
    return data.subarray(offset - start, end - start);
  }

  private async fetchSpans(layer: LayerRecord, first: number, last: number): Promise<Buffer> {
    const table = layer.spans;
    const from = spanRange(table, first).start;
    const to = spanRange(table, last).end;
    let bad = -1;
    for (let attempt = 0; attempt < 2; attempt++) {
      const compressed = await this.blobs.readRange(layer.digest, from, to);
      bad = this.firstBadSpan(layer, first, last, compressed, from);
      if (bad < 0) return inflateSpans(table, first, last, compressed);
    }
    throw new ClipError('DIGEST_MISMATCH', `layer ${layer.digest} span ${bad}: fetched bytes do not match the span digest in the index`);
  }

  /** Index of the first span whose bytes do not hash to the index's digest, or -1. */
  private firstBadSpan(layer: LayerRecord, first: number, last: number, compressed: Buffer, from: number): number {
    const table = layer.spans;
    if (compressed.length !== spanRange(table, last).end - from) return first;
    for (let i = first; i <= last; i++) {
      const r = spanRange(table, i);
      const digest = createHash('sha256').update(compressed.subarray(r.start - from, r.end - from)).digest();
      if (!digest.equals(table.digests[i]!)) return i;
    }
    return -1;
  }
}
