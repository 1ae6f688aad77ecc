// Streams one layer blob once: checks its digest and diff id, scans the tar
// for entries and data offsets, and builds the layer's seek table, all in a
// single pass with no file data kept.

import { createHash } from 'node:crypto';
import type { Readable } from 'node:stream';
import { ClipError } from '../errors.js';
import { CheckpointBuilder } from '../gzip/checkpoint-builder.js';
import { RawSpanBuilder } from '../gzip/raw-span-builder.js';
import type { SpanTable } from '../gzip/types.js';
import type { EntryBudget, LayerEntries } from '../image/layer-entries.js';
import { digestOf } from '../util/digest.js';
import type { LayerDescriptor } from '../oci/types.js';
import { LayerScan } from './layer-scan.js';

export interface IndexedLayer {
  entries: LayerEntries;
  spans: SpanTable;
}

const GZIP_MAGIC = [0x1f, 0x8b];
const ZSTD_MAGIC = [0x28, 0xb5, 0x2f, 0xfd];

function startsWith(buf: Buffer, magic: number[]): boolean {
  return magic.every((b, i) => buf[i] === b);
}

/** Which checkpoints keep their window: every so many bytes, and those placed at these uncompressed offsets. */
export interface WindowPlan {
  every: number;
  at?: ReadonlySet<number>;
  /** Zero the window bytes nothing references (default true). */
  sparse?: boolean;
}

/** Layers up to this many uncompressed bytes pass whatever their compression ratio. */
export const RATIO_FLOOR = 256 * 1024 * 1024;

/** Whether `uncompressed` bytes out of `compressed` exceed the ratio bound (0: no bound). */
export function exceedsRatio(uncompressed: number, compressed: number, maxRatio: number): boolean {
  return maxRatio > 0 && uncompressed > Math.max(RATIO_FLOOR, maxRatio * compressed);
}

/** Throws for a layer whose media type says zstd (not supported yet). */
export function refuseZstdMediaType(layer: LayerDescriptor): void {
  if (/zstd/.test(layer.mediaType)) {
    throw new ClipError('UNSUPPORTED', `layer ${layer.digest} is zstd-compressed (${layer.mediaType}): zstd layers are not supported yet`);
  }
}

/**
 * The caller destroys `blob` when this returns or throws (it may throw before reading it).
 * @param windows which checkpoints keep their window
 * @param maxRatio refuse the layer once its output exceeds max(RATIO_FLOOR,
 *   maxRatio x its size); 0: no bound
 * @param budget entries all layers of the image may keep, shared
 * @param onBytes called with the number of compressed bytes read so far (progress)
 */
export async function indexLayer(
  layer: LayerDescriptor,
  blob: Readable,
  spanSize: number,
  windows: WindowPlan,
  maxRatio: number,
  budget: EntryBudget,
  onBytes?: (read: number) => void,
): Promise<IndexedLayer> {
  if (!layer.digest.startsWith('sha256:')) {
    throw new ClipError('UNSUPPORTED', `layer ${layer.digest}: only sha256 digests are supported`);
  }
  refuseZstdMediaType(layer);
  const scan = new LayerScan(budget);
  const blobHash = createHash('sha256');
  let uncompressed = 0;
  const onData = (chunk: Buffer): void => {
    uncompressed += chunk.length;
    // Checked as the bytes come: a gzip bomb is stopped after one chunk too many.
    if (exceedsRatio(uncompressed, layer.size, maxRatio)) {
      throw new ClipError(
        'BAD_GZIP',
        `layer ${layer.digest} inflates beyond a ratio of ${maxRatio}:1 (already ${uncompressed} bytes from ${layer.size} compressed): ` +
          'refused as a likely gzip bomb; raise the bound with --max-ratio N (0: no bound)',
      );
    }
    scan.push(chunk);
  };
  let builder: CheckpointBuilder | RawSpanBuilder | undefined;
  let read = 0;
  let head = Buffer.alloc(0);
  // A content error is reported only once the whole blob is hashed: if the
  // blob does not match its digest, that is the real cause to name.
  let failure: unknown;
  try {
    for await (const chunk of blob as AsyncIterable<Buffer>) {
      read += chunk.length;
      // A body longer than the descriptor says could be endless: stop at once (finally destroys it).
      if (read > layer.size) {
        throw new ClipError('DIGEST_MISMATCH', `layer ${layer.digest}: the blob sent more than the ${layer.size} bytes the manifest says`);
      }
      blobHash.update(chunk);
      onBytes?.(read);
      if (failure !== undefined) continue;
      try {
        feed(chunk);
      } catch (e) {
        failure = e;
      }
    }
  } finally {
    blob.destroy();
  }
  function feed(chunk: Buffer): void {
    if (!builder) {
      // Sniff the format from the bytes, not the media type: some images mislabel layers.
      head = Buffer.concat([head, chunk]);
      if (head.length < 4 && read < layer.size) return;
      if (startsWith(head, ZSTD_MAGIC)) {
        throw new ClipError('UNSUPPORTED', `layer ${layer.digest} is zstd-compressed: zstd layers are not supported yet`);
      }
      builder = startsWith(head, GZIP_MAGIC)
        ? new CheckpointBuilder(spanSize, onData, windows.every, windows.at, windows.sparse ?? true)
        : new RawSpanBuilder(spanSize, onData);
      builder.push(head);
      return;
    }
    builder.push(chunk);
  }
  if (read !== layer.size) {
    throw new ClipError('DIGEST_MISMATCH', `layer ${layer.digest}: read ${read} bytes, the manifest says ${layer.size}`);
  }
  const digest = digestOf(blobHash);
  if (digest !== layer.digest) {
    throw new ClipError('DIGEST_MISMATCH', `layer ${layer.digest}: the blob's bytes hash to ${digest}`);
  }
  if (failure !== undefined) throw failure;
  builder ??= new RawSpanBuilder(spanSize, onData);
  const spans = builder.finish();
  const { entries, diffId } = scan.finish();
  if (layer.diffId && diffId !== layer.diffId) {
    throw new ClipError(
      'DIGEST_MISMATCH',
      `layer ${layer.digest}: uncompressed content hashes to ${diffId}, the image config says ${layer.diffId}`,
    );
  }
  return { entries, spans };
}
