// The library API: everything the CLI does, importable.

import { readFile } from 'node:fs/promises';
import { ClipError } from './errors.js';
import { decodeIndex } from './index/format.js';
import type { ClipIndex } from './index/types.js';

export { ClipError, isClipError } from './errors.js';
export type { ClipErrorCode } from './errors.js';
export { indexImage, DEFAULT_SPAN_SIZE } from './indexer/index-image.js';
export type { IndexOptions, IndexSummary } from './indexer/index-image.js';
export { encodeIndex, decodeIndex } from './index/format.js';
export type { ClipIndex, ImageRecord, LayerRecord } from './index/types.js';
export type { Node, NodeType, ImageTree } from './image/types.js';
export { mergeLayers } from './image/merge.js';
export { lookupPath, walk } from './image/lookup.js';
export { FileReader } from './content/file-reader.js';
export { LayerReader } from './content/layer-reader.js';
export { inspectIndex, listEntry, listNode } from './inspect.js';
export type { InspectReport, LayerReport, ListEntry } from './inspect.js';
export { parseReference, openImage, openBlobSource } from './oci/index.js';
export type { Platform, Reference, RegistryOptions, ResolvedImage, LayerDescriptor, BlobSource } from './oci/types.js';
export { TarScanner } from './tar/index.js';
export type { TarEntry, EntryType, Timespec } from './tar/types.js';
export { CheckpointBuilder, RawSpanBuilder, inflateSpans } from './gzip/index.js';
export type { SpanTable, Checkpoint } from './gzip/index.js';
export { VERSION } from './version.js';

/** Reads and validates a .clip file. */
export async function loadIndex(file: string): Promise<ClipIndex> {
  let data: Buffer;
  try {
    data = await readFile(file);
  } catch (e) {
    throw new ClipError('IO', `cannot read index ${file}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`);
  }
  try {
    return decodeIndex(data);
  } catch (e) {
    if (e instanceof ClipError) throw new ClipError(e.code, `${file}: ${e.message}`);
    throw e;
  }
}
