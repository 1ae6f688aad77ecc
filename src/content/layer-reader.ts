// Reads uncompressed byte ranges of layers on demand. The spans a read needs
// come from memory, else the disk cache, else the registry: missing spans
// that are adjacent go in one Range GET (a small layer is fetched whole),
// each span is checked against its sha256 from the index and inflated from
// its checkpoint. A span that does not verify is fetched once more, then the
// read fails: never a wrong byte. Readers of one span share one fetch; the
// memory cache is keyed by span identity, so readers of several images can
// share one (a ReadPool's) and a layer they describe alike is fetched once.

import { totalmem } from 'node:os';
import { ClipError } from '../errors.js';
import { inflateSpans, needsWindow, spanAt, spanOutputRange, spanRange } from '../gzip/span-reader.js';
import type { LayerRecord } from '../index/types.js';
import type { BlobSource } from '../oci/types.js';
import { defaultMemoryBound } from './memory-bound.js';
import { NO_EVENTS, type ReadEvents } from './read-events.js';
import { sha256 } from './sha256-async.js';
import type { SpanCache, SpanKey } from './span-cache.js';
import { SpanIdentities } from './span-identity.js';
import { SpanMemory } from './span-memory.js';

/** Bound on the inflated spans in memory unless told otherwise (memory-bound.ts says why). */
export const DEFAULT_MEMORY_CACHE = defaultMemoryBound(totalmem());
/**
 * Layers at most this big (compressed) are fetched whole on their first miss:
 * one request beats several. `npm run bench:small-layers` chose it: up to
 * 1 MiB whole costs no more than by span on 50 MB/s + 20 ms and 200 MB/s + 5 ms
 * links (about one bandwidth-delay product); at 2 MiB it is 1.2-1.4x slower.
 */
export const SMALL_LAYER = 1024 * 1024;

export interface LayerReaderOptions {
  disk?: SpanCache;
  events?: ReadEvents;
  /** Spans in memory, shared with other readers (a ReadPool's); default: a private cache of `memoryBytes`. */
  memory?: SpanMemory;
  memoryBytes?: number;
  smallLayer?: number;
  /** Told of the spans every read needs (start-up profile recording). */
  onRead?: (layer: number, first: number, last: number) => void;
}

export class LayerReader {
  private readonly memory: SpanMemory;
  private readonly events: ReadEvents;
  /** On-demand reads in progress (prefetch yields to them). */
  active = 0;
  /** The disk writes queued so far (see store()). */
  private storing: Promise<void> = Promise.resolve();
  /**
   * Spans queued for the disk cache and not written yet, by identity: the
   * memory cache may have let them go already (a start-up profile loads more
   * than it holds), and without this a read would fetch them again.
   */
  private readonly unstored = new Map<string, Buffer>();
  /** Per layer, the identities its spans are cached under (computed when first needed). */
  private readonly identities = new Map<LayerRecord, SpanIdentities>();

  constructor(
    private readonly layers: LayerRecord[],
    private readonly blobs: BlobSource,
    private readonly opts: LayerReaderOptions = {},
  ) {
    this.events = opts.events ?? NO_EVENTS;
    this.memory = opts.memory ?? new SpanMemory(opts.memoryBytes ?? DEFAULT_MEMORY_CACHE);
  }

  async read(layerIndex: number, offset: number, length: number): Promise<Buffer> {
    const layer = this.layers[layerIndex];
    if (!layer) throw new ClipError('BAD_INDEX', `no layer ${layerIndex} in the index`);
    const table = layer.spans;
    const end = Math.min(offset + length, table.uncompressedSize);
    if (offset >= end) return Buffer.alloc(0);
    const first = spanAt(table, offset);
    const last = spanAt(table, end - 1);
    this.opts.onRead?.(layerIndex, first, last);
    this.active++;
    let spans: Buffer[];
    try {
      spans = await Promise.all(this.spanRun(layerIndex, first, last));
    } finally {
      this.active--;
    }
    const parts: Buffer[] = [];
    for (let i = first; i <= last; i++) {
      const range = spanOutputRange(table, i);
      parts.push(spans[i - first]!.subarray(Math.max(offset, range.start) - range.start, Math.min(end, range.end) - range.start));
    }
    return parts.length === 1 ? parts[0]! : Buffer.concat(parts);
  }

  /** Brings spans [first, last] of a layer into memory (fetching what no cache has), as a read would, without copying them out. */
  async load(layerIndex: number, first: number, last: number): Promise<void> {
    if (!this.layers[layerIndex]) throw new ClipError('BAD_INDEX', `no layer ${layerIndex} in the index`);
    this.active++;
    try {
      await Promise.all(this.spanRun(layerIndex, first, last));
    } finally {
      this.active--;
    }
  }

  /**
   * Prefetch: puts spans [first, last] of a layer in the disk cache (not in
   * memory, where they would push out what readers use). Returns the
   * compressed bytes fetched (0 when all were cached already).
   */
  async prefetch(layerIndex: number, first: number, last: number): Promise<number> {
    const disk = this.opts.disk;
    const layer = this.layers[layerIndex]!;
    if (!disk) return 0;
    let i = first;
    let fetched = 0;
    while (i <= last) {
      if (this.held(layer, i) || (await disk.has(this.diskKey(layer, i)))) {
        i++;
        continue;
      }
      let j = i;
      while (j < last && !this.held(layer, j + 1) && !(await disk.has(this.diskKey(layer, j + 1)))) j++;
      const data = await this.fetchRemote(layer, i, j);
      fetched += spanRange(layer.spans, j).end - spanRange(layer.spans, i).start;
      for (let k = i; k <= j; k++) {
        if (await disk.put(this.diskKey(layer, k), data[k - i]!, this.onEvict)) this.events.cacheStored(layer.digest, data[k - i]!.length);
      }
      i = j + 1;
    }
    return fetched;
  }

  /** Promises for spans [first, last]: cached ones as they are, missing runs fetched together. */
  private spanRun(layerIndex: number, first: number, last: number): Promise<Buffer>[] {
    const layer = this.layers[layerIndex]!;
    const result = new Map<number, Promise<Buffer>>();
    let missing: number[] = [];
    const flush = (): void => {
      if (missing.length > 0) this.startFetch(layerIndex, missing).forEach((p, k) => result.set(missing[k]!, p));
      missing = [];
    };
    const small = layer.spans.compressedSize <= (this.opts.smallLayer ?? SMALL_LAYER);
    for (let i = first; i <= last; i++) {
      const hit = this.memory.get(this.identity(layer, i));
      if (hit) {
        this.events.cacheHit(layer.digest, 'memory');
        // A fetch that another reader (of another image, from another source) started may fail where ours would not.
        result.set(
          i,
          hit.fetcher === undefined || hit.fetcher === this ? hit.data : hit.data.catch(() => this.startFetch(layerIndex, [i])[0]!),
        );
        continue;
      }
      missing.push(i);
    }
    if (small && missing.length > 0) {
      // Fetch every span of a small layer not cached or in flight yet.
      missing = [];
      for (let i = 0; i < layer.spans.checkpoints.length; i++) if (!this.memory.has(this.identity(layer, i))) missing.push(i);
    }
    // Split the missing spans into runs of consecutive indices: one request each.
    const all = missing;
    missing = [];
    for (const i of all) {
      if (missing.length > 0 && missing[missing.length - 1] !== i - 1) flush();
      missing.push(i);
    }
    flush();
    const out: Promise<Buffer>[] = [];
    for (let i = first; i <= last; i++) out.push(result.get(i)!);
    return out;
  }

  /** Registers in-flight entries for `indices` (consecutive), fetches them, returns their promises. */
  private startFetch(layerIndex: number, indices: number[]): Promise<Buffer>[] {
    const layer = this.layers[layerIndex]!;
    const resolvers = new Map<number, { resolve: (b: Buffer) => void; reject: (e: unknown) => void }>();
    const promises: Promise<Buffer>[] = [];
    const keep = new Set(indices.map((i) => this.identity(layer, i)));
    for (const i of indices) {
      const range = spanOutputRange(layer.spans, i);
      let resolve!: (b: Buffer) => void;
      let reject!: (e: unknown) => void;
      const data = new Promise<Buffer>((res, rej) => {
        resolve = res;
        reject = rej;
      });
      // In memory while in flight, so other reads (of any reader sharing the cache) wait for this fetch.
      this.memory.add(this.identity(layer, i), data, range.end - range.start, keep, this);
      resolvers.set(i, { resolve, reject });
      promises.push(data);
    }
    this.fetchRun(layer, indices).then(
      (buffers) => indices.forEach((i, k) => resolvers.get(i)!.resolve(buffers[k]!)),
      (e: unknown) => indices.forEach((i) => resolvers.get(i)!.reject(e)),
    );
    return promises;
  }

  /** Spans from the disk cache where present; the rest from the registry in as few requests as possible. */
  private async fetchRun(layer: LayerRecord, indices: number[]): Promise<Buffer[]> {
    const out: (Buffer | undefined)[] = await Promise.all(
      indices.map(async (i) => {
        const hit = await this.fromDisk(layer, i);
        if (hit) this.events.cacheHit(layer.digest, 'disk');
        return hit;
      }),
    );
    let run: number[] = [];
    const runs: number[][] = [];
    indices.forEach((i, k) => {
      if (out[k]) {
        if (run.length) runs.push(run);
        run = [];
      } else run.push(i);
    });
    if (run.length) runs.push(run);
    await Promise.all(
      runs.map(async (r) => {
        for (const _span of r) this.events.cacheMiss(layer.digest);
        // The span before the run, when it is in this batch, came from the disk: it resumes the run.
        const k = indices.indexOf(r[0]!);
        const fetched = await this.fetchRemote(layer, r[0]!, r[r.length - 1]!, k > 0 ? out[k - 1] : undefined);
        r.forEach((i, k) => {
          out[indices.indexOf(i)] = fetched[k];
          this.store(layer, i, fetched[k]!);
        });
      }),
    );
    return out as Buffer[];
  }

  /**
   * Fetches spans [first, last] in one Range GET, verifies each, inflates
   * each. A span whose checkpoint kept no window resumes from the output
   * before it: `before`, else the previous span from a cache, else the
   * request starts earlier, at the nearest span that can be resumed (those
   * extra spans are cached too).
   */
  private async fetchRemote(layer: LayerRecord, first: number, last: number, before?: Buffer): Promise<Buffer[]> {
    const table = layer.spans;
    let start = first;
    let prior = before;
    while (!prior && needsWindow(table, start)) {
      prior = await this.cachedOutput(layer, start - 1);
      if (!prior) start--;
    }
    const from = spanRange(table, start).start;
    const to = spanRange(table, last).end;
    for (let attempt = 0; ; attempt++) {
      const compressed = await this.blobs.readRange(layer.digest, from, to, {
        onRetry: (reason) => this.events.retried(layer.digest, reason),
      });
      this.events.fetched(layer.digest, compressed.length, last - start + 1);
      const bad = await this.firstBadSpan(layer, start, last, compressed, from);
      if (bad < 0) {
        const out: Buffer[] = [];
        let previous = prior;
        for (let i = start; i <= last; i++) {
          const r = spanRange(table, i);
          const started = performance.now();
          previous = await inflateSpans(table, i, i, compressed.subarray(r.start - from, r.end - from), previous);
          this.events.inflated(layer.digest, (performance.now() - started) / 1000);
          out.push(previous);
        }
        for (let i = start; i < first; i++) this.remember(layer, i, out[i - start]!);
        return out.slice(first - start);
      }
      this.events.verifyFailed(layer.digest, bad);
      if (attempt >= 1) {
        throw new ClipError(
          'DIGEST_MISMATCH',
          `layer ${layer.digest} span ${bad}: fetched bytes do not match the span digest in the index`,
        );
      }
      this.events.retried(layer.digest, 'digest');
    }
  }

  /** The output of span i from memory (also when in flight) or the disk cache, if there. */
  private async cachedOutput(layer: LayerRecord, i: number): Promise<Buffer | undefined> {
    const entry = this.memory.peek(this.identity(layer, i));
    if (entry) return entry.data.catch(() => undefined);
    return this.fromDisk(layer, i);
  }

  /** Span i from the disk cache, or from the writes still queued for it. */
  private async fromDisk(layer: LayerRecord, i: number): Promise<Buffer | undefined> {
    const queued = this.unstored.get(this.identity(layer, i));
    if (queued) return queued;
    const r = spanOutputRange(layer.spans, i);
    return this.opts.disk?.get(this.diskKey(layer, i), r.end - r.start);
  }

  /** Whether span i is in memory (also in flight) or queued for the disk cache. */
  private held(layer: LayerRecord, i: number): boolean {
    const id = this.identity(layer, i);
    return this.memory.has(id) || this.unstored.has(id);
  }

  /** Caches a span fetched along with others (in memory unless already there, and on disk). */
  private remember(layer: LayerRecord, i: number, data: Buffer): void {
    this.memory.add(this.identity(layer, i), Promise.resolve(data), data.length);
    this.store(layer, i, data);
  }

  /** Resolves once the disk-cache writes queued so far are done (they go on after the reads that queued them return). */
  diskWrites(): Promise<void> {
    return this.storing;
  }

  /**
   * Writes a span to the disk cache, after the writes queued before it: one
   * write at a time keeps the cache within its bound plus one span. A cache
   * that cannot be written only costs a refetch later; the read goes on.
   */
  private store(layer: LayerRecord, i: number, data: Buffer): void {
    const disk = this.opts.disk;
    if (!disk) return;
    const id = this.identity(layer, i);
    this.unstored.set(id, data);
    this.storing = this.storing.then(() =>
      disk
        .put(this.diskKey(layer, i), data, this.onEvict)
        .then(
          (stored) => void (stored && this.events.cacheStored(layer.digest, data.length)),
          () => undefined,
        )
        .finally(() => {
          if (this.unstored.get(id) === data) this.unstored.delete(id);
        }),
    );
  }

  /**
   * Where the disk cache keeps span i: under the span's identity as this
   * index describes it, never under (digest, span) alone, which another
   * index could claim for other bytes.
   */
  private diskKey(layer: LayerRecord, i: number): SpanKey {
    return { layer: layer.digest, span: i, identity: this.identity(layer, i) };
  }

  /** Span i's identity as this index describes it: its key in memory and on disk. */
  private identity(layer: LayerRecord, i: number): string {
    let ids = this.identities.get(layer);
    if (!ids) this.identities.set(layer, (ids = new SpanIdentities(layer)));
    return ids.of(i);
  }

  /** Spans this reader wrote to the disk cache and the cache then evicted are reported to this reader's events. */
  private readonly onEvict = (layer: string, bytes: number): void => this.events.cacheEvicted(layer, bytes);

  /** Index of the first span whose bytes do not hash to the index's digest, or -1 (spans hashed in parallel, in the threadpool). */
  private async firstBadSpan(layer: LayerRecord, first: number, last: number, compressed: Buffer, from: number): Promise<number> {
    const table = layer.spans;
    if (compressed.length !== spanRange(table, last).end - from) return first;
    const hashes = await Promise.all(
      Array.from({ length: last - first + 1 }, (_, k) => {
        const r = spanRange(table, first + k);
        return sha256(compressed.subarray(r.start - from, r.end - from));
      }),
    );
    const bad = hashes.findIndex((h, k) => !h.equals(table.digests[first + k]!));
    return bad < 0 ? -1 : first + bad;
  }
}
