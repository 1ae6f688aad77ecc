// What a .clip index holds: the image it describes, each layer with its seek
// table, and the merged tree. Metadata only: never file contents.

import type { SpanTable } from '../gzip/types.js';
import type { ImageTree } from '../image/types.js';
import type { Platform } from '../oci/types.js';

/** Version 2: checkpoints may keep no window (resumed from the span before). Version 1 files still load. */
export const FORMAT_VERSION = 2;
export const OLDEST_FORMAT_VERSION = 1;

export type IndexKind = 'oci';

export interface ImageRecord {
  /** Where blobs are read from: "docker://registry/repository" or "oci:/dir". */
  location: string;
  reference: string;
  manifestDigest: string;
  manifestMediaType: string;
  configDigest: string;
  platform: Platform;
  /** The image config (entrypoint, env, ...), as the registry served it. */
  config: Record<string, unknown>;
  /** When the index was made (ISO 8601) and by which clip version. */
  indexedAt: string;
  indexedBy: string;
  spanSize: number;
}

export interface LayerRecord {
  digest: string;
  mediaType: string;
  diffId: string;
  spans: SpanTable;
}

/** A layer as described without its seek table (the index's JSON metadata, `clip inspect`). */
export interface LayerSummary {
  digest: string;
  mediaType: string;
  diffId: string;
  compression: SpanTable['compression'];
  compressedSize: number;
  uncompressedSize: number;
}

export function summarizeLayer(l: LayerRecord): LayerSummary {
  const { compression, compressedSize, uncompressedSize } = l.spans;
  return { digest: l.digest, mediaType: l.mediaType, diffId: l.diffId, compression, compressedSize, uncompressedSize };
}

export interface ClipIndex extends ImageTree {
  kind: IndexKind;
  image: ImageRecord;
  layers: LayerRecord[];
}
