// What a .clip index holds: the image it describes, each layer with its seek
// table, and the merged tree. Metadata only: never file contents.

import type { SpanTable } from '../gzip/types.js';
import type { ImageTree, Platform } from '../image/types.js';
import type { ProfileEntry } from './startup-profile.js';

/**
 * Version 2: checkpoints may keep no window (resumed from the span before).
 * Version 3: the kinds 'archive' and 's3' (clip archive).
 * Version 4: checkpoints may start mid-byte (a bit offset per checkpoint).
 * Version 5: windows may be sparse (a flag per checkpoint): only the bytes the
 * data after the checkpoint references are kept, the others are zero, so a
 * reader must never serve a window's bytes as output.
 * Version 6: per span of a gzip layer, marks (block boundaries: how far a read
 * must fetch) and a sha256 per 64 KiB chunk of compressed bytes, so a read
 * fetches and verifies a prefix of a span. Older files still load.
 */
export const FORMAT_VERSION = 6;
export const OLDEST_FORMAT_VERSION = 1;

/**
 * 'oci': an image's index, its bytes in the registry's (or an OCI layout's) layer blobs;
 * 'archive': a local archive, the data embedded in the same .clip file;
 * 's3': an archive whose data is an S3 object.
 */
export type IndexKind = 'oci' | 'archive' | 's3';

/** What `clip inspect` calls each kind. */
export const KIND_NAMES: Record<IndexKind, string> = { oci: 'OCI image index', archive: 'local archive', s3: 'S3 archive' };

export interface ImageRecord {
  /**
   * Where blobs are read from: "docker://registry/repository", "oci:/dir",
   * "s3://bucket/key?region=R&endpoint=URL", or for a local archive "archive:"
   * (the data follows the index in the same file; once loaded from a file,
   * "archive:/abs/path/of/that/file.clip").
   */
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

/**
 * How the registry of an 'oci' index was reached when it was indexed, the
 * default for reading it later so that `clip cat/mount` need not be told
 * again (flags and host settings win). In the body's JSON metadata, which
 * older readers skip (so no new format version); keys a later version adds
 * are ignored.
 */
export interface RegistryReach {
  /** The registry answered over plain HTTP (--plain-http, or a loopback registry). */
  plainHttp: boolean;
}

export interface ClipIndex extends ImageTree {
  kind: IndexKind;
  image: ImageRecord;
  layers: LayerRecord[];
  /**
   * A start-up profile shipped with the index (traced at index time, or given
   * to `clip index --profile`): [layer digest, start, end, until?] of the
   * spans read, first read first; a mount fetches them at once. In the body's
   * JSON metadata, which older readers skip (so no new format version); an
   * `until` only on entries of layers with marks (format v6 anyway).
   */
  profile?: ProfileEntry[];
  /** Only for indexes read from a registry (location docker://...). */
  registry?: RegistryReach;
}
