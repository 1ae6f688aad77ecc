// The library API: everything the CLI does, importable.

export { ClipError, isClipError } from './errors.js';
export type { ClipErrorCode } from './errors.js';
export { indexImage, buildIndex, DEFAULT_SPAN_SIZE, DEFAULT_WINDOW_EVERY } from './indexer/index-image.js';
export type { BuildOptions, IndexOptions, IndexSummary } from './indexer/index-image.js';
export { encodeIndex, decodeIndex } from './index/format.js';
export { loadIndex } from './index/load.js';
export { writeIndex } from './index/write.js';
export type { ClipIndex, ImageRecord, LayerRecord, RegistryReach } from './index/types.js';
export type { Node, NodeType, ImageTree } from './image/types.js';
export { mergeLayers } from './image/merge.js';
export { lookupPath, walk } from './image/lookup.js';
export { FileReader } from './content/file-reader.js';
export type { ReaderOptions } from './content/file-reader.js';
export type { ReadAheadOptions, ReadAheadStats } from './content/read-ahead.js';
export { LayerReader } from './content/layer-reader.js';
export type { LayerReaderOptions } from './content/layer-reader.js';
export type { ReadEvents } from './content/read-events.js';
export { SpanCache } from './content/span-cache.js';
export { ReadPool } from './content/read-pool.js';
export type { ReadPoolOptions } from './content/read-pool.js';
export { SharedBlocks, SharedBlocksView } from './content/shared-blocks.js';
export type { SharedBlocksInit, LayerBlocksView } from './content/shared-blocks.js';
export { SpanMemory } from './content/span-memory.js';
export type { MemorySpan } from './content/span-memory.js';
export type { Lease } from './util/ref-counted.js';
export type { SpanCacheOptions, SpanKey } from './content/span-cache.js';
export { inspectIndex, listEntry, listNode } from './index/inspect.js';
export type { InspectReport, LayerReport, ListEntry } from './index/inspect.js';
export { parseReference, openImage } from './oci/index.js';
export { openBlobSource } from './content/sources/open.js';
export type { Platform, Reference, RegistryOptions, ResolvedImage, LayerDescriptor, BlobSource, RangeOptions } from './oci/types.js';
export type { ResponseDeadline } from './http/client.js';
export type { OpenedImage } from './oci/open.js';
export { TarScanner } from './tar/index.js';
export type { TarEntry, EntryType, Timespec } from './tar/types.js';
export { CheckpointBuilder, RawSpanBuilder, inflateSpans, needsWindow } from './gzip/index.js';
export { ProfileRecorder, loadProfile, warmFromProfile } from './content/startup-profile.js';
export type { LoadedProfile, ProfiledSpan } from './content/startup-profile.js';
export type { ProfileEntry } from './index/startup-profile.js';
export type { SpanTable, Checkpoint, FineSpan, LayerCompression, Mark } from './gzip/index.js';
export { VERSION } from './version.js';
export { createArchive } from './archive/create-archive.js';
export type { ArchiveOptions, ArchiveSummary } from './archive/create-archive.js';
export type { SkippedEntry, SkipListener } from './archive/types.js';
export { extractArchive } from './archive/extract.js';
export type { ExtractOptions, ExtractSummary } from './archive/extract.js';
export type { IndexKind } from './index/types.js';
export { runService } from './daemon/service.js';
export type { ServiceOptions } from './daemon/service.js';
export { callDaemon, daemonAnswers, ensureDaemon } from './daemon/client.js';
export { upgradeDaemon, stopDaemon } from './daemon/control.js';
export { loadDaemonConfig } from './daemon/config.js';
export type { DaemonConfig, DaemonFlags, LoadedConfig, LoadOptions, LogFormat } from './daemon/config.js';
export type { MountLogLevel } from './mount/settings.js';
export type { MountIdentity } from './mount/state.js';
export type {
  AskedDaemonSettings,
  MountRequest,
  MountReply,
  UmountRequest,
  UmountReply,
  PsReply,
  PsMount,
  StatsReply,
} from './daemon/api.js';
export type { BindMount, ImageSettings, RootfsMount, ServedImage } from './daemon/served-images.js';
export { DaemonMetrics, ImageMetrics } from './metrics/daemon-metrics.js';
export type { LayerStats, Series } from './metrics/daemon-metrics.js';
export { findImageIndex } from './registry-index/find-index.js';
export type { FindIndexOptions, FindIndexProgress, FoundIndex, FoundIndexSource } from './registry-index/find-index.js';
export { pushIndex } from './registry-index/push-index.js';
export type { PushIndexOptions, PushedIndex } from './registry-index/push-index.js';
export { defaultDataDir, findLocalIndex, localIndexPath, storeIndexFile } from './registry-index/local-store.js';
export { CLIP_ARTIFACT_TYPE } from './registry-index/artifact.js';
export type { Subject } from './registry-index/artifact.js';
