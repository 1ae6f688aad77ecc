// Writes an archive's data part: entries -> tar stream -> seekable gzip
// (flushed spans), and indexes it on the way exactly as a layer is indexed:
// the tar scanner reads back what was written (entries and data offsets),
// the merge builds the tree, each span keeps its sha256.

import { createHash } from 'node:crypto';
import { mergeLayers } from '../image/merge.js';
import type { ImageTree } from '../image/types.js';
import type { LayerRecord } from '../index/types.js';
import { TarScanner, type TarEntry } from '../tar/index.js';
import { FlushedGzipWriter } from './flushed-gzip.js';
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
  const scanned: TarEntry[] = [];
  const scanner = new TarScanner((e) => scanned.push(e));
  const diff = createHash('sha256');
  const gzip = new FlushedGzipWriter({ spanSize: opts.spanSize, ...(opts.level !== undefined ? { level: opts.level } : {}) }, sink);
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
    scanner.push(chunk);
    diff.update(chunk);
    await gzip.write(chunk);
  }
  scanner.finish();
  const { spans, digest } = await gzip.finish();
  return {
    layer: { digest, mediaType: ARCHIVE_LAYER_MEDIA_TYPE, diffId: `sha256:${diff.digest('hex')}`, spans },
    tree: mergeLayers([dropped.size === 0 ? scanned : scanned.filter((e) => !(e.type === 'file' && dropped.has(e.path)))]),
  };
}
