// The seek table of one layer blob: where decompression can resume, and the
// sha256 of every span of compressed bytes between two resume points.

/**
 * 'gzip-flushed': gzip written by clip archive with a full flush at every
 * checkpoint, so each span inflates on its own and no window is kept.
 */
export type LayerCompression = 'gzip' | 'gzip-flushed' | 'none';

/** A place where inflate can resume: a deflate block boundary. */
export interface Checkpoint {
  /** Offset in the compressed blob of the byte the next deflate block starts in. */
  in: number;
  /**
   * Bit of byte `in` (0-7, least significant first) where the block starts;
   * absent or 0: at the byte's start. Set only where no byte-aligned boundary
   * came for long (long runs of highly compressible data).
   */
  bits?: number;
  /** Offset in the uncompressed stream that block produces first. */
  out: number;
  /**
   * The output before `out`, min(32 KiB, out) bytes, deflated; empty at a
   * stream start and where no window was kept.
   */
  window: Buffer;
  /**
   * The window keeps only the bytes the deflate data after `out` references
   * (the others are zero): a dictionary to resume with, never output to serve.
   */
  sparse?: boolean;
}

/**
 * Span i covers compressed [checkpoints[i].in, checkpoints[i+1].in) (the last
 * one ends at compressedSize; when checkpoint i+1 starts mid-byte, span i
 * also holds that byte, where its last block ends) and uncompressed
 * [checkpoints[i].out, next.out).
 * For uncompressed layers `in === out` and windows are empty; 'gzip-flushed'
 * layers keep no windows either.
 */
export interface SpanTable {
  compression: LayerCompression;
  compressedSize: number;
  uncompressedSize: number;
  checkpoints: Checkpoint[];
  /** sha256 of each span's compressed bytes, 32 bytes each. */
  digests: Buffer[];
  /**
   * Per span, what lets a read fetch and verify less than the whole span
   * (format v6; gzip layers only; absent in older indexes).
   */
  fine?: FineSpan[];
}

/**
 * A place inside a span where zlib reported a deflate block boundary: the
 * compressed bytes up to `in` (absolute) produce the output up to `out`
 * (absolute). Not a resume point (no window): it says how far a read from the
 * span's checkpoint must fetch. It need not be byte-aligned: zlib produced
 * `out` bytes having consumed `in`, whatever bit the next block starts at.
 */
export interface Mark {
  in: number;
  out: number;
}

export interface FineSpan {
  /** Increasing, strictly inside the span, at least MARK_SPACING output bytes apart. */
  marks: Mark[];
  /**
   * sha256 of each CHUNK_SIZE chunk of the span's compressed bytes, from
   * spanRange(i).start on (the last chunk short): a read verifies exactly the
   * chunks it fetched.
   */
  chunks: Buffer[];
}

/** Compressed bytes per chunk digest: 32 bytes per 64 KiB, ~0.05% of the blob. */
export const CHUNK_SIZE = 64 * 1024;
/** Least output between marks: a mark per 64 KiB keeps the index small and the over-fetch under a chunk or two. */
export const MARK_SPACING = 64 * 1024;

/** Most uncompressed bytes one span may cover: the most one read inflates (a hostile index or gzip bomb must not exhaust memory). */
export const MAX_SPAN_OUTPUT = 64 * 1024 * 1024;
