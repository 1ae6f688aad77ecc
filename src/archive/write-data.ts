// Writes an archive's data part: entries -> tar stream -> seekable gzip
// (flushed spans), and indexes it on the way with the indexer's own per-layer
// scan (entries, data offsets, diff id) over what was written; the merge
// builds the tree, each span keeps its sha256.

import { createHash } from 'node:crypto';
import { FlushedGzipWriter } from '../gzip/flushed-writer.js';
import { EntryBudget } from '../image/layer-entries.js';
import { mergeLayers } from '../image/merge.js';
import type { ImageTree } from '../image/types.js';
import type { LayerRecord } from '../index/types.js';
import { LayerScan } from '../indexer/layer-scan.js';
import { digestOf } from '../util/digest.js';
import { tarStream, type TarStreamOptions } from './tar-stream.js';
import type { ArchiveEntry } from './types.js';

export const ARCHIVE_LAYER_MEDIA_TYPE = 'application/vnd.oci.image.layer.v1.tar+gzip';

export interface DataOptions extends TarStreamOptions {
  spanSize: number;
  level?: number;
}

export interface ArchiveData {
  layer: LayerRecord;
  tree: ImageTree;
}

/** Streams the data part of `entries` into `sink` (in order); returns its layer record and merged tree. */
export async function writeArchiveData(
  entries: AsyncIterable<ArchiveEntry> | Iterable<ArchiveEntry>,
  sink: (chunk: Buffer) => Promise<void>,
  opts: DataOptions,
): Promise<ArchiveData> {
  // No entry bound: the tar is our own making, not an untrusted layer.
  const scan = new LayerScan(new EntryBudget(Number.MAX_SAFE_INTEGER));
  const compressed = createHash('sha256');
  const gzip = new FlushedGzipWriter({ spanSize: opts.spanSize, ...(opts.level !== undefined ? { level: opts.level } : {}) }, (chunk) => {
    compressed.update(chunk);
    return sink(chunk);
  });
  // Files that failed half-way: their (zero-filled) bytes stay in the data, their entries leave the tree.
  const dropped = new Set<string>();
  const streamOpts: TarStreamOptions = {
    ...opts,
    onDropped: (p) => {
      dropped.add(p);
      opts.onDropped?.(p);
    },
  };
  for await (const chunk of tarStream(entries, streamOpts)) {
    scan.push(chunk);
    await gzip.write(chunk);
  }
  const scanned = scan.finish();
  const spans = await gzip.finish();
  return {
    layer: { digest: digestOf(compressed), mediaType: ARCHIVE_LAYER_MEDIA_TYPE, diffId: scanned.diffId, spans },
    tree: mergeLayers([
      dropped.size === 0 ? scanned.entries : [...scanned.entries].filter((e) => !(e.type === 'file' && dropped.has(e.path))),
    ]),
  };
}
