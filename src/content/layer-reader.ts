// Reads uncompressed byte ranges of layers on demand. The spans a read needs
// come from memory, else the disk cache, else the registry: missing spans
// that are adjacent go in one Range GET (a small layer is fetched whole),
// each span is checked against its sha256 from the index and inflated from
// its checkpoint. A span that does not verify is fetched once more, then the
// read fails: never a wrong byte. Readers of one span share one fetch; the
// memory cache is keyed by span identity, so readers of several images can
// share one (a ReadPool's) and a layer they describe alike is fetched once.
//
// When the index has marks and chunk digests (format v6), a read that ends
// inside a span not cached whole fetches only the span's first chunks, as far
// as its last byte needs (prefix-plan.ts), verifies each chunk and inflates
// only that far. Such a prefix is cached in memory under its own key (the
// span's identity, the chunk count, the output length and the chunk digests),
// never taken for the whole span. The verified compressed bytes of the
// longest prefix fetched are kept too (bounded), so a later read that needs
// more fetches only the chunks after them (and inflates again from the
// checkpoint): a span read piece by piece costs its bytes once. Those
// compressed bytes also go to the disk cache, named by the prefix identity
// (span identity, chunk count and length, the digests of its chunks), so a
// new daemon serves reads inside them and continues from them; what comes
// back from disk is checked against the chunk digests before it is used.

import { createHash } from 'node:crypto';
import { totalmem } from 'node:os';
import { ClipError } from '../errors.js';
import { inflatePrefix, inflateSpans, needsWindow, spanAt, spanOutputRange, spanRange } from '../gzip/span-reader.js';
import { CHUNK_SIZE } from '../gzip/types.js';
import type { LayerRecord } from '../index/types.js';
import type { BlobSource } from '../oci/types.js';
import { defaultMemoryBound } from './memory-bound.js';
import { planPrefix, wholeAsPrefix, type PrefixPlan } from './prefix-plan.js';
import { NO_EVENTS, type ReadEvents } from './read-events.js';
import { sha256 } from './sha256-async.js';
import type { SpanCache, SpanKey } from './span-cache.js';
import { prefixIdentity, SpanIdentities } from './span-identity.js';
import { SpanMemory } from './span-memory.js';
import type { SharedBlocks } from './shared-blocks.js';

/** Bound on the inflated spans in memory unless told otherwise (memory-bound.ts says why). */
export const DEFAULT_MEMORY_CACHE = defaultMemoryBound(totalmem());
/**
 * Layers at most this big (compressed) are fetched whole on their first miss:
 * one request beats several. `npm run bench:small-layers` chose it: up to
 * 1 MiB whole costs no more than by span on 50 MB/s + 20 ms and 200 MB/s + 5 ms
 * links (about one bandwidth-delay product); at 2 MiB it is 1.2-1.4x slower.
 */
export const SMALL_LAYER = 1024 * 1024;

/** Most verified compressed prefix bytes a reader keeps to continue from. */
const PREFIX_BYTES = 32 * 1024 * 1024;

export interface LayerReaderOptions {
  disk?: SpanCache;
  events?: ReadEvents;
  /** Spans in memory, shared with other readers (a ReadPool's); default: a private cache of `memoryBytes`. */
  memory?: SpanMemory;
  memoryBytes?: number;
  /** Where the spans reads use are copied for the FUSE reader threads to serve from (a ReadPool's). */
  blocks?: SharedBlocks;
  smallLayer?: number;
  /** Told of the spans every read needs, where it ends when inside the last and begins when inside the first (start-up profile recording). */
  onRead?: (layer: number, first: number, last: number, until?: number, from?: number) => void;
}

/** A prefix of a span in flight: its chunk count, and its verified compressed bytes once fetched. */
interface PendingPrefix {
  chunks: number;
  bytes: Promise<Buffer>;
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
  /** Per span identity, the most chunks of a prefix this reader fetched (a hint: memory may have evicted it). */
  private readonly prefixes = new Map<string, number>();
  /** Per span identity, the verified compressed bytes of its longest prefix fetched (oldest first; at most PREFIX_BYTES in all). */
  private readonly prefixBytes = new Map<string, Buffer>();
  private prefixBytesHeld = 0;
  /** Per span identity, the prefix of it being fetched (the most chunks), for reads deeper into the span to wait for. */
  private readonly pendingPrefixes = new Map<string, PendingPrefix>();
  /** Per span identity, the chunks of the longest prefix in the disk cache (0: none; absent: not looked for yet). */
  private readonly diskPrefixes = new Map<string, number>();
  /** Continuations of spans a read took a prefix of (continueSpan), still in flight. */
  private readonly continuing = new Set<Promise<unknown>>();

  constructor(
    private readonly layers: LayerRecord[],
    private readonly blobs: BlobSource,
    private readonly opts: LayerReaderOptions = {},
  ) {
    this.events = opts.events ?? NO_EVENTS;
    this.memory = opts.memory ?? new SpanMemory(opts.memoryBytes ?? DEFAULT_MEMORY_CACHE);
  }

  async read(layerIndex: number, offset: number, length: number, continueSpan = false): Promise<Buffer> {
    const parts = await this.readParts(layerIndex, offset, length, continueSpan);
    return parts.length === 1 ? parts[0]! : Buffer.concat(parts);
  }

  /**
   * As read(), as views of the spans it covers, in order (no copy: a FUSE
   * reply writes them as they are). `continueSpan`: when the last span is
   * read as a prefix, also fetch the rest of it, in a second request
   * alongside (read-ahead: the next read of the file would otherwise wait
   * one more round trip for it).
   */
  async readParts(layerIndex: number, offset: number, length: number, continueSpan = false): Promise<Buffer[]> {
    const layer = this.layers[layerIndex];
    if (!layer) throw new ClipError('BAD_INDEX', `no layer ${layerIndex} in the index`);
    const table = layer.spans;
    const end = Math.min(offset + length, table.uncompressedSize);
    if (offset >= end) return [];
    const first = spanAt(table, offset);
    const last = spanAt(table, end - 1);
    if (this.opts.onRead) {
      const from = offset > spanOutputRange(table, first).start ? offset : undefined;
      this.opts.onRead(layerIndex, first, last, end < spanOutputRange(table, last).end ? end : undefined, from);
    }
    this.active++;
    let spans: Buffer[];
    try {
      // The last span may be needed only up to `end`: then a prefix of it will do.
      const prefix = await this.wantsPrefix(layer, last, end);
      if (!prefix) spans = await Promise.all(this.spanRun(layerIndex, first, last));
      else {
        const run = first < last ? this.spanRun(layerIndex, first, last - 1) : [];
        spans = await Promise.all([...run, this.readPrefix(layerIndex, last, end, continueSpan)]);
      }
    } finally {
      this.active--;
    }
    // The next reads of these spans are answered by the FUSE reader threads: copied
    // there once this read's reply is on its way (a cold read waits for no copy).
    const blocks = this.opts.blocks;
    if (blocks) setImmediate(() => spans.forEach((data, j) => blocks.publish(layer, first + j, data)));
    const parts: Buffer[] = [];
    for (let i = first; i <= last; i++) {
      const range = spanOutputRange(table, i);
      parts.push(spans[i - first]!.subarray(Math.max(offset, range.start) - range.start, Math.min(end, range.end) - range.start));
    }
    return parts;
  }

  /**
   * Whether span i is to be read as a prefix up to `end`: the index allows
   * it, memory holds no whole copy, and a prefix will do or chunks of the span
   * are held (in memory or on disk) to continue from.
   */
  private async wantsPrefix(layer: LayerRecord, i: number, end: number): Promise<boolean> {
    if (!layer.spans.fine || layer.spans.compressedSize <= (this.opts.smallLayer ?? SMALL_LAYER)) return false;
    const id = this.identity(layer, i);
    if (this.memory.has(id)) return false;
    if (this.prefixes.has(id) || planPrefix(layer.spans, i, end) !== undefined) return true;
    return (await this.diskPrefix(layer, i, id)) > 0;
  }

  /**
   * Span i's output from its start to at least `end`: a prefix held in
   * memory, else the whole span from the disk cache, else a prefix inflated
   * from chunks held (memory or disk) and fetched now (only those after the
   * held ones). Falls back to the whole span where a prefix cannot be had.
   */
  private async readPrefix(layerIndex: number, i: number, end: number, continueSpan = false): Promise<Buffer> {
    const layer = this.layers[layerIndex]!;
    const table = layer.spans;
    const id = this.identity(layer, i);
    const whole = (): Promise<Buffer> => this.spanRun(layerIndex, i, i)[0]!;
    const needed = planPrefix(table, i, end);
    let held = this.prefixes.get(id) ?? 0;
    if (needed && held >= needed.chunks) {
      const plan = planPrefix(table, i, end, held);
      const hit = plan && this.memory.get(this.prefixKey(layer, i, plan));
      if (hit) {
        this.events.cacheHit(layer.digest, 'memory');
        return hit.data;
      }
    }
    if (await this.opts.disk?.has(this.diskKey(layer, i))) return whole();
    held = Math.max(held, await this.diskPrefix(layer, i, id));
    if (!needed && held === 0) return whole();
    // Inside the chunks held: inflated from them, nothing fetched. Else a
    // second read deeper into a span (sequential, most likely: a library
    // being loaded) takes the rest of it at once: one more request, not one per
    // chunk, and no byte fetched twice (the chunks held are continued from).
    const inside = needed && held >= needed.chunks ? planPrefix(table, i, end, held) : undefined;
    const plan = inside ?? (held > 0 || !needed ? wholeAsPrefix(table, i) : needed);
    const rest = plan.end === spanRange(table, i).end;
    // A checkpoint without a window resumes from the whole span before it (cached, or being fetched).
    let before: Buffer | undefined;
    if (needsWindow(table, i)) {
      before = await this.cachedOutput(layer, i - 1);
      if (!before) return whole();
    }
    // The rest of a span is the whole span: kept under its identity, for the whole-span path.
    const key = rest ? id : this.prefixKey(layer, i, plan);
    const inFlight = this.memory.get(key);
    if (inFlight) return inFlight.data;
    const data = this.fetchPrefix(layer, i, id, plan, before);
    this.memory.add(key, data, plan.length);
    if (!rest && plan.chunks > (this.prefixes.get(id) ?? 0)) this.prefixes.set(id, plan.chunks);
    // Now that this prefix is in flight, the rest continues from its chunks: fetched alongside, none twice.
    // A failure costs nothing but its bytes: the read that needs the rest fetches it again.
    if (continueSpan && !rest) {
      const more = this.readPrefix(layerIndex, i, spanOutputRange(table, i).end).catch(() => undefined);
      this.continuing.add(more);
      void more.finally(() => this.continuing.delete(more));
    }
    return data;
  }

  /**
   * The memory key of a prefix: never a whole span's identity, and naming
   * the chunk digests it was verified against, so an index that describes
   * the chunks otherwise can neither read nor plant it.
   */
  private prefixKey(layer: LayerRecord, i: number, plan: PrefixPlan): string {
    const h = createHash('sha256').update(`clip span prefix v1\n${this.identity(layer, i)}\n${plan.chunks}\n${plan.length}\n`);
    for (const d of layer.spans.fine![i]!.chunks.slice(0, plan.chunks)) h.update(d);
    return h.digest('hex');
  }

  /** Where the disk cache keeps the first `chunks` compressed chunks of span i (see prefixIdentity). */
  private prefixDiskKey(layer: LayerRecord, i: number, chunks: number): SpanKey {
    const identity = prefixIdentity(this.identity(layer, i), layer.spans.fine![i]!.chunks, chunks, chunks * CHUNK_SIZE);
    return { layer: layer.digest, span: i, identity, prefix: true };
  }

  /** The chunks of the longest prefix of span i the disk cache holds (looked for once per span; 0: none). */
  private async diskPrefix(layer: LayerRecord, i: number, id: string): Promise<number> {
    const disk = this.opts.disk;
    const known = this.diskPrefixes.get(id);
    if (!disk || known !== undefined) return known ?? 0;
    // A prefix never holds the span's last chunk (that is the whole span, cached as such).
    let found = 0;
    for (let k = layer.spans.fine![i]!.chunks.length - 1; k >= 1 && found === 0; k--) {
      if (await disk.knows(this.prefixDiskKey(layer, i, k))) found = k;
    }
    if (!this.diskPrefixes.has(id)) this.diskPrefixes.set(id, found);
    return this.diskPrefixes.get(id)!;
  }

  /**
   * The verified compressed bytes of span i held to continue from (the
   * longer of this reader's and the disk cache's), at most `size`: whole
   * chunks from the span's start, never the whole span.
   */
  private async heldChunks(layer: LayerRecord, i: number, id: string, size: number): Promise<Buffer> {
    let kept = this.prefixBytes.get(id);
    const onDisk = this.diskPrefixes.get(id) ?? 0;
    if (onDisk * CHUNK_SIZE > (kept?.length ?? 0)) {
      const key = this.prefixDiskKey(layer, i, onDisk);
      const data = await this.opts.disk!.get(key, onDisk * CHUNK_SIZE);
      // Checked as a fetch is: each chunk against this index's digest (the file's own checksum only says it is whole).
      if (data && (await this.firstBadChunk(layer, i, data, 0)) < 0) {
        this.events.cacheHit(layer.digest, 'disk');
        this.keepPrefixBytes(id, data);
        kept = data;
      } else {
        if (data) await this.opts.disk!.drop(key);
        this.diskPrefixes.set(id, 0);
      }
    }
    const span = spanRange(layer.spans, i);
    if (!kept || kept.length >= span.end - span.start) return Buffer.alloc(0);
    return kept.subarray(0, Math.min(kept.length, size));
  }

  /**
   * Index of the first chunk of span i (counting from `first`) in `bytes` that
   * does not match its digest, or -1 (chunks hashed in parallel, in the
   * threadpool, as whole spans are: see firstBadSpan).
   */
  private async firstBadChunk(layer: LayerRecord, i: number, bytes: Buffer, first: number): Promise<number> {
    const digests = layer.spans.fine![i]!.chunks;
    const count = Math.ceil(bytes.length / CHUNK_SIZE);
    if (first + count > digests.length) return Math.max(first, digests.length);
    const hashes = await Promise.all(Array.from({ length: count }, (_, k) => sha256(bytes.subarray(k * CHUNK_SIZE, (k + 1) * CHUNK_SIZE))));
    const bad = hashes.findIndex((h, k) => !h.equals(digests[first + k]!));
    return bad < 0 ? -1 : first + bad;
  }

  /**
   * A prefix: from the chunks held, and those of a prefix of this span in
   * flight, fetching only the chunks after them (one Range GET), verifying
   * every chunk fetched (once more on a mismatch, then fails); inflated from
   * the checkpoint. Prefixes fetched go to the disk cache (their compressed
   * bytes), the rest of a span as the whole span.
   */
  private async fetchPrefix(layer: LayerRecord, i: number, id: string, plan: PrefixPlan, before?: Buffer): Promise<Buffer> {
    const table = layer.spans;
    const whole = plan.end === spanRange(table, i).end;
    const pending = this.pendingPrefixes.get(id);
    // In flight from now on: a deeper read of the span waits for these chunks instead of fetching them again.
    let settle: ((bytes: Promise<Buffer>) => void) | undefined;
    if (!whole && (pending?.chunks ?? 0) < plan.chunks) {
      const mine = { chunks: plan.chunks, bytes: new Promise<Buffer>((resolve) => (settle = resolve)) };
      this.pendingPrefixes.set(id, mine);
      const forget = (): void => void (this.pendingPrefixes.get(id) === mine && this.pendingPrefixes.delete(id));
      mine.bytes.then(forget, forget);
    }
    const gathering = this.gather(layer, i, id, plan.end - plan.start, pending);
    settle?.(gathering.then((g) => g.bytes));
    const { bytes, fetched } = await gathering;
    // All of the span: its own digest must match too, as for a span fetched whole (it is kept under the span's
    // identity, which names the span digest, not the chunk digests an index states).
    if (whole && !(await sha256(bytes)).equals(table.digests[i]!)) {
      this.events.verifyFailed(layer.digest, i);
      throw new ClipError('DIGEST_MISMATCH', `layer ${layer.digest} span ${i}: its chunks match the index, the whole span does not`);
    }
    if (!whole) this.keepPrefixBytes(id, bytes);
    const started = performance.now();
    const out = await inflatePrefix(table, i, bytes, plan.length, before);
    this.events.inflated(layer.digest, (performance.now() - started) / 1000);
    if (fetched) {
      if (whole) this.storeRest(layer, i, id, out);
      else this.storePrefix(layer, i, id, bytes);
    }
    return out;
  }

  /**
   * Span i's first `size` compressed bytes, verified: those held, then those
   * of `pending` (a prefix of the span in flight; fetched here if that fetch
   * fails), then the chunks after them, fetched now. `fetched`: whether any
   * came from the registry here.
   */
  private async gather(
    layer: LayerRecord,
    i: number,
    id: string,
    size: number,
    pending: PendingPrefix | undefined,
  ): Promise<{ bytes: Buffer; fetched: boolean }> {
    const have = await this.heldChunks(layer, i, id, size);
    if (have.length >= size) return { bytes: have.subarray(0, size), fetched: false };
    const ahead = Math.min((pending?.chunks ?? 0) * CHUNK_SIZE, size);
    if (ahead <= have.length) return { bytes: Buffer.concat([have, await this.fetchChunks(layer, i, have.length, size)]), fetched: true };
    let fetched = ahead < size;
    const [head, tail] = await Promise.all([
      pending!.bytes.then(
        (b) => b.subarray(0, ahead),
        async () => {
          fetched = true;
          return Buffer.concat([have, await this.fetchChunks(layer, i, have.length, ahead)]);
        },
      ),
      ahead < size ? this.fetchChunks(layer, i, ahead, size) : Buffer.alloc(0),
    ]);
    return { bytes: Buffer.concat([head, tail]), fetched };
  }

  /**
   * Fetches span i's compressed bytes [from, to) (relative to the span's
   * start; `from` at a chunk boundary) in one Range GET and verifies each
   * chunk: once more on a mismatch, then fails.
   */
  private async fetchChunks(layer: LayerRecord, i: number, from: number, to: number): Promise<Buffer> {
    const start = spanRange(layer.spans, i).start;
    this.events.cacheMiss(layer.digest);
    for (let attempt = 0; ; attempt++) {
      const fetched = await this.blobs.readRange(layer.digest, start + from, start + to, {
        onRetry: (reason) => this.events.retried(layer.digest, reason),
      });
      this.events.fetched(layer.digest, fetched.length, 1);
      const bad = fetched.length === to - from ? await this.firstBadChunk(layer, i, fetched, from / CHUNK_SIZE) : from / CHUNK_SIZE;
      if (bad < 0) return fetched;
      this.events.verifyFailed(layer.digest, i);
      if (attempt >= 1) {
        throw new ClipError(
          'DIGEST_MISMATCH',
          `layer ${layer.digest} span ${i} chunk ${bad}: fetched bytes do not match the chunk digest in the index`,
        );
      }
      this.events.retried(layer.digest, 'digest');
    }
  }

  /** Writes the whole span a prefix was continued to, then removes the prefix it makes useless from the disk cache. */
  private storeRest(layer: LayerRecord, i: number, id: string, out: Buffer): void {
    this.store(layer, i, out);
    const disk = this.opts.disk;
    const chunks = this.diskPrefixes.get(id) ?? 0;
    if (!disk || chunks === 0) return;
    this.diskPrefixes.set(id, 0);
    const key = this.prefixDiskKey(layer, i, chunks);
    this.storing = this.storing.then(() => disk.drop(key).catch(() => undefined));
  }

  /** Writes a verified prefix's compressed bytes to the disk cache, when longer than the one there. */
  private storePrefix(layer: LayerRecord, i: number, id: string, compressed: Buffer): void {
    const chunks = compressed.length / CHUNK_SIZE;
    if (!this.opts.disk || chunks <= (this.diskPrefixes.get(id) ?? 0)) return;
    this.diskPrefixes.set(id, chunks);
    this.queueWrite(layer.digest, this.prefixDiskKey(layer, i, chunks), compressed);
  }

  /** Keeps a verified compressed prefix to continue from, the longest per span, within PREFIX_BYTES (oldest dropped first). */
  private keepPrefixBytes(id: string, compressed: Buffer): void {
    const old = this.prefixBytes.get(id);
    if (old && old.length >= compressed.length) return;
    if (old) this.prefixBytesHeld -= old.length;
    this.prefixBytes.delete(id);
    this.prefixBytes.set(id, compressed);
    this.prefixBytesHeld += compressed.length;
    for (const [k, b] of this.prefixBytes) {
      if (this.prefixBytesHeld <= PREFIX_BYTES) break;
      this.prefixBytes.delete(k);
      this.prefixBytesHeld -= b.length;
    }
  }

  /** Brings spans [first, last] of a layer into memory (fetching what no cache has), as a read would, without copying them out. */
  async load(layerIndex: number, first: number, last: number): Promise<void> {
    this.active++;
    try {
      await this.warm(layerIndex, first, last);
    } finally {
      this.active--;
    }
  }

  /**
   * Whether a read of span i of a layer up to uncompressed offset `end`
   * (default: all of it) would not wait for the network: the span is in
   * memory (or being fetched, or queued for the disk), or a prefix held in
   * memory reaches that far.
   */
  holds(layerIndex: number, i: number, end?: number): boolean {
    const layer = this.layers[layerIndex];
    if (!layer || !(i >= 0 && i < layer.spans.checkpoints.length)) return false;
    if (this.held(layer, i)) return true;
    const chunks = this.prefixes.get(this.identity(layer, i));
    const needed = chunks !== undefined && end !== undefined ? planPrefix(layer.spans, i, end) : undefined;
    return needed !== undefined && chunks! >= needed.chunks;
  }

  /** Brings spans [first, last] into memory as load() does, without counting as a read in progress (read-ahead). */
  async warm(layerIndex: number, first: number, last: number): Promise<void> {
    if (!this.layers[layerIndex]) throw new ClipError('BAD_INDEX', `no layer ${layerIndex} in the index`);
    await Promise.all(this.spanRun(layerIndex, first, last));
  }

  /** Whether span i of a layer inflates from the whole output of span i - 1 (its checkpoint kept no window). */
  resumesFromPrevious(layerIndex: number, i: number): boolean {
    const layer = this.layers[layerIndex];
    return layer !== undefined && i < layer.spans.checkpoints.length && needsWindow(layer.spans, i);
  }

  /**
   * Brings span i of a layer into memory up to uncompressed offset `until`
   * (cut to the span): a prefix where the index has marks, else the whole
   * span, as a read would (start-up profile warm-up).
   */
  async loadPrefix(layerIndex: number, i: number, until: number): Promise<void> {
    const layer = this.layers[layerIndex];
    if (!layer || !(i >= 0 && i < layer.spans.checkpoints.length))
      throw new ClipError('BAD_INDEX', `no span ${i} of layer ${layerIndex} in the index`);
    const range = spanOutputRange(layer.spans, i);
    const end = Math.min(range.end, Math.max(range.start + 1, until));
    this.active++;
    try {
      if (await this.wantsPrefix(layer, i, end)) await this.readPrefix(layerIndex, i, end);
      else await Promise.all(this.spanRun(layerIndex, i, i));
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

  /** Resolves once the span continuations started so far have arrived (or failed). */
  async continuations(): Promise<void> {
    while (this.continuing.size > 0) await Promise.all(this.continuing);
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
    if (!this.opts.disk) return;
    // Readable from the queue until written: a span pushed out of memory meanwhile is not fetched again.
    const id = this.identity(layer, i);
    this.unstored.set(id, data);
    this.queueWrite(layer.digest, this.diskKey(layer, i), data, () => {
      if (this.unstored.get(id) === data) this.unstored.delete(id);
    });
  }

  private queueWrite(digest: string, key: SpanKey, data: Buffer, written?: () => void): void {
    const disk = this.opts.disk;
    if (!disk) return;
    this.storing = this.storing.then(() =>
      disk
        .put(key, data, this.onEvict)
        .then(
          (stored) => void (stored && this.events.cacheStored(digest, data.length)),
          () => undefined,
        )
        .finally(written),
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
