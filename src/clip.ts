// The library API: everything the CLI does, importable.

export { ClipError, isClipError } from './errors.js';
export type { ClipErrorCode } from './errors.js';
export { indexImage, DEFAULT_SPAN_SIZE, DEFAULT_WINDOW_EVERY } from './indexer/index-image.js';
export type { IndexOptions, IndexSummary } from './indexer/index-image.js';
export { encodeIndex, decodeIndex } from './index/format.js';
export { loadIndex } from './index/load.js';
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
export { CheckpointBuilder, RawSpanBuilder, inflateSpans, needsWindow } from './gzip/index.js';
export { ProfileRecorder, loadProfile, warmFromProfile } from './content/startup-profile.js';
export type { SpanTable, Checkpoint } from './gzip/index.js';
export { VERSION } from './version.js';
export { createArchive } from './archive/create-archive.js';
export type { ArchiveOptions, ArchiveSummary } from './archive/create-archive.js';
export { extractArchive } from './archive/extract.js';
export type { ExtractOptions, ExtractSummary } from './archive/extract.js';
export type { IndexKind } from './index/types.js';
