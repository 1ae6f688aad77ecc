// `clip index`: resolve an image, stream each layer once (a few at a time)
// and merge the layers into one tree: a ClipIndex in memory (buildIndex).
// indexImage also writes it to a .clip file (index/write.ts).

import { ClipError } from '../errors.js';
import { EntryBudget } from '../image/layer-entries.js';
import { mergeLayers } from '../image/merge.js';
import { encodeIndex } from '../index/format.js';
import type { ClipIndex, LayerRecord } from '../index/types.js';
import { writeIndex } from '../index/write.js';
import { openImage } from '../oci/index.js';
import type { BlobSource, LayerDescriptor, RegistryOptions, ResolvedImage } from '../oci/types.js';
import { VERSION } from '../version.js';
import type { Readable } from 'node:stream';
import { indexLayer, refuseZstdMediaType, type IndexedLayer } from './index-layer.js';
import { DEFAULT_MAX_RATIO, DEFAULT_SPAN_SIZE, DEFAULT_WINDOW_EVERY } from './span-size.js';
import { mapProfile, mergeProfiles, profileEntries, readProfiles, readStarts, type ProfileEntry } from '../index/startup-profile.js';
import { MAX_SPAN_OUTPUT } from '../gzip/types.js';

export { DEFAULT_MAX_RATIO, DEFAULT_SPAN_SIZE, DEFAULT_WINDOW_EVERY };
const MIN_SPAN_SIZE = 64 * 1024;
/** A span covers up to 2 x spanSize + one deflate block of output: this keeps it within MAX_SPAN_OUTPUT for any real block. */
export const MAX_SPAN_SIZE = MAX_SPAN_OUTPUT / 4;
const LAYER_CONCURRENCY = 3;

/** How to index an image (buildIndex); indexImage also takes where to write it. */
export interface BuildOptions extends RegistryOptions {
  /** Minimum uncompressed distance between checkpoints. */
  spanSize?: number;
  /** Minimum uncompressed distance between checkpoints that keep their 32 KiB window (at least spanSize). */
  windowEvery?: number;
  /** Keep windows whole instead of only the bytes the data after them references (for comparisons; default false). */
  fullWindows?: boolean;
  /** Most tar entries all layers together may keep (default 4,000,000): a bound on memory while indexing. */
  maxEntries?: number;
  /**
   * Start-up profiles recorded on an index of this image with the same span
   * size: windows are also kept where their reads begin, and the profiles,
   * merged, are embedded in the index (a mount fetches them at once).
   */
  profile?: string | readonly string[];
  /** Profile entries already in memory (a trace's), merged with the files' as one more profile. */
  profileEntries?: readonly ProfileEntry[];
  /**
   * Refuse a layer whose uncompressed bytes exceed max(256 MiB, maxRatio x
   * its compressed size): a gzip bomb. 0: no bound. Default DEFAULT_MAX_RATIO.
   */
  maxRatio?: number;
  /** Called as layers are read: bytes read so far and the total compressed size. */
  onProgress?: (read: number, total: number, image: ResolvedImage) => void;
}

export interface IndexOptions extends BuildOptions {
  /** Where to write the .clip file (with `write`: only its name in the summary). */
  output: string;
  /** Writes the index somewhere else than a file at `output` (the CLI's `-o -`: stdout). */
  write?: (data: Buffer) => Promise<void>;
}

export interface IndexSummary {
  output: string;
  reference: string;
  manifestDigest: string;
  layers: number;
  files: number;
  directories: number;
  entries: number;
  compressedBytes: number;
  uncompressedBytes: number;
  checkpoints: number;
  indexBytes: number;
  seconds: number;
}

/**
 * Indexes the layers, a few at a time. The first failure stops the rest: no
 * new layer is opened and the bodies in flight are destroyed, and it is
 * thrown only once every layer has settled, so that no read outlives the call
 * (an open body would keep the registry's connection, and the process, busy).
 */
async function indexLayers(
  layers: readonly LayerDescriptor[],
  blobs: BlobSource,
  indexOne: (layer: LayerDescriptor, blob: Readable, i: number) => Promise<IndexedLayer>,
): Promise<IndexedLayer[]> {
  const results: IndexedLayer[] = new Array(layers.length);
  const inFlight = new Set<Readable>();
  let failure: { error: unknown } | undefined;
  let next = 0;
  const worker = async (): Promise<void> => {
    while (!failure && next < layers.length) {
      const i = next++;
      const layer = layers[i]!;
      let blob: Readable | undefined;
      try {
        blob = await blobs.openBlob(layer.digest, layer.size);
        if (failure) return;
        inFlight.add(blob);
        results[i] = await indexOne(layer, blob, i);
      } catch (e) {
        // Later errors are mostly the cancellation's own (a destroyed body): the first one is the cause.
        if (!failure) {
          failure = { error: e };
          for (const other of inFlight) other.destroy();
        }
      } finally {
        if (blob) {
          inFlight.delete(blob);
          blob.destroy();
        }
      }
    }
  };
  await Promise.all(Array.from({ length: Math.min(LAYER_CONCURRENCY, layers.length) }, worker));
  if (failure) throw failure.error;
  return results;
}

/** Indexes `ref` and writes the .clip file to opts.output (atomically). */
export async function indexImage(ref: string, opts: IndexOptions): Promise<IndexSummary> {
  const started = performance.now();
  const index = await buildIndex(ref, opts);
  let indexBytes: number;
  if (opts.write) {
    const encoded = encodeIndex(index);
    await opts.write(encoded);
    indexBytes = encoded.length;
  } else indexBytes = await writeIndex(opts.output, index);
  const nodes = index.nodes;
  return {
    output: opts.output,
    reference: index.image.reference,
    manifestDigest: index.image.manifestDigest,
    layers: index.layers.length,
    files: nodes.filter((n) => n.type === 'file').length,
    directories: nodes.filter((n) => n.type === 'dir').length,
    entries: nodes.length,
    compressedBytes: index.layers.reduce((a, l) => a + l.spans.compressedSize, 0),
    uncompressedBytes: index.layers.reduce((a, l) => a + l.spans.uncompressedSize, 0),
    checkpoints: index.layers.reduce((a, l) => a + l.spans.checkpoints.length, 0),
    indexBytes,
    seconds: (performance.now() - started) / 1000,
  };
}

/**
 * The profile as this index's spans (mapProfile: each entry's read range
 * onto the spans here that cover it, first read first, each span once). The
 * checkpoints here were placed where the ranges begin (readStarts), so a
 * range starts a span. A span keeps its `until` only where the layer has
 * marks (only there does it fetch less; and an index without marks stays
 * readable by readers that know no `until`).
 */
export function profileOnIndex(profile: readonly ProfileEntry[], layers: readonly LayerRecord[]): ProfileEntry[] {
  const onIndex = { layers: [...layers] };
  const spans = mapProfile(onIndex, profile).spans.map((s) => (layers[s.layer]!.spans.fine ? s : { layer: s.layer, span: s.span }));
  return profileEntries(onIndex, spans);
}

/** Indexes `ref` in memory: nothing is written. */
export async function buildIndex(ref: string, opts: BuildOptions = {}): Promise<ClipIndex> {
  const spanSize = opts.spanSize ?? DEFAULT_SPAN_SIZE;
  if (!Number.isSafeInteger(spanSize) || spanSize < MIN_SPAN_SIZE) {
    throw new ClipError('BAD_ARGUMENT', `span size ${spanSize} is too small (minimum ${MIN_SPAN_SIZE} bytes)`);
  }
  if (spanSize > MAX_SPAN_SIZE) {
    throw new ClipError(
      'BAD_ARGUMENT',
      `span size ${spanSize} is too large (maximum ${MAX_SPAN_SIZE} bytes: a read must not inflate more than ${MAX_SPAN_OUTPUT})`,
    );
  }
  const maxRatio = opts.maxRatio ?? DEFAULT_MAX_RATIO;
  if (!Number.isFinite(maxRatio) || maxRatio < 0) {
    throw new ClipError('BAD_ARGUMENT', `max ratio ${maxRatio} is not a number >= 0 (0: no bound)`);
  }
  if (opts.windowEvery !== undefined && (!Number.isSafeInteger(opts.windowEvery) || opts.windowEvery < 0)) {
    throw new ClipError('BAD_ARGUMENT', `window spacing ${opts.windowEvery} is not a byte count`);
  }
  const windowEvery = Math.max(spanSize, opts.windowEvery ?? DEFAULT_WINDOW_EVERY);
  const budget = new EntryBudget(opts.maxEntries);
  const { image, blobs } = await openImage(ref, opts);
  try {
    const files = opts.profile === undefined ? [] : typeof opts.profile === 'string' ? [opts.profile] : opts.profile;
    const lists = files.length > 0 ? await readProfiles(files, image.manifestDigest, spanSize) : [];
    const profile = mergeProfiles([...lists, opts.profileEntries ?? []]);
    const starts = readStarts(profile);
    const total = image.layers.reduce((a, l) => a + l.size, 0);
    const readPerLayer = image.layers.map(() => 0);
    let read = 0;
    // Refused before any blob is fetched: the media type already says it.
    for (const layer of image.layers) refuseZstdMediaType(layer);
    const results = await indexLayers(image.layers, blobs, (layer, blob, i) => {
      const windows = { every: windowEvery, at: starts.get(layer.digest) ?? new Set<number>(), sparse: opts.fullWindows !== true };
      return indexLayer(layer, blob, spanSize, windows, maxRatio, budget, (n) => {
        read += n - readPerLayer[i]!;
        readPerLayer[i] = n;
        opts.onProgress?.(read, total, image);
      });
    });
    const tree = mergeLayers(results.map((r) => r.entries));
    const layers: LayerRecord[] = image.layers.map((l, i) => ({
      digest: l.digest,
      mediaType: l.mediaType,
      diffId: l.diffId,
      spans: results[i]!.spans,
    }));
    return {
      kind: 'oci',
      image: {
        location: image.location,
        reference: image.reference,
        manifestDigest: image.manifestDigest,
        manifestMediaType: image.manifestMediaType,
        configDigest: image.configDigest,
        platform: image.platform,
        config: image.config,
        indexedAt: new Date().toISOString(),
        indexedBy: `clip ${VERSION}`,
        spanSize,
      },
      layers,
      ...tree,
      ...(profile.length > 0 ? { profile: profileOnIndex(profile, layers) } : {}),
      // How the registry was reached: the default for reading the image later.
      ...(image.plainHttp !== undefined ? { registry: { plainHttp: image.plainHttp } } : {}),
    };
  } finally {
    await blobs.close();
  }
}
