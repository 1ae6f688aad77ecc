// Inflated spans in memory, keyed by span identity (span-identity.ts) and
// bounded in bytes (least recently used go first). One instance can serve
// many LayerReaders (a ReadPool's): a span that two indexes describe
// identically is fetched and inflated once, and a fetch in flight is shared.
// An index that describes a span differently has another identity, so it can
// neither read nor replace what another index cached.

export interface MemorySpan {
  /** The span's bytes; pending while the fetch is in flight. */
  data: Promise<Buffer>;
  /** Bytes it holds (known from the index before the fetch ends). */
  size: number;
  /** Who fetches it, while that may still fail (readers of other images fall back to their own source). */
  fetcher?: object;
  /** In flight: not evicted (readers wait on it; dropping it would start a second fetch of the span). */
  pending?: boolean;
}

export class SpanMemory {
  /** Map order is recency order: the first entry is the least recently used. */
  private readonly spans = new Map<string, MemorySpan>();
  private usedBytes = 0;

  constructor(readonly maxBytes: number) {}

  /** Bytes of the spans held (at most maxBytes, plus the spans in flight). */
  get size(): number {
    return this.usedBytes;
  }

  has(identity: string): boolean {
    return this.spans.has(identity);
  }

  /** The span (also when in flight), marked as just used; undefined when not held. */
  get(identity: string): MemorySpan | undefined {
    const hit = this.spans.get(identity);
    if (hit) {
      this.spans.delete(identity);
      this.spans.set(identity, hit);
    }
    return hit;
  }

  /** The span without marking it used (a read of a neighbour's bytes is not a use). */
  peek(identity: string): MemorySpan | undefined {
    return this.spans.get(identity);
  }

  /**
   * Holds `data` under `identity` (not when already held). A promise that
   * rejects is dropped: the next read fetches again. Evicts down to the
   * bound, sparing the identities in `keep` (the spans being fetched now).
   */
  add(identity: string, data: Promise<Buffer>, size: number, keep: ReadonlySet<string> = new Set([identity]), fetcher?: object): void {
    if (this.spans.has(identity)) return;
    const entry: MemorySpan = fetcher ? { data, size, fetcher, pending: true } : { data, size, pending: true };
    // Once fetched, the entry forgets its fetcher (a closed reader is not kept alive by its spans).
    data.then(
      () => {
        delete entry.fetcher;
        delete entry.pending;
        this.evict(new Set());
      },
      () => this.drop(identity, entry),
    );
    this.spans.set(identity, entry);
    this.usedBytes += size;
    this.evict(keep);
  }

  private drop(identity: string, entry: MemorySpan): void {
    if (this.spans.get(identity) !== entry) return;
    this.spans.delete(identity);
    this.usedBytes -= entry.size;
  }

  private evict(keep: ReadonlySet<string>): void {
    for (const [identity, entry] of this.spans) {
      if (this.usedBytes <= this.maxBytes) break;
      if (keep.has(identity) || entry.pending) continue;
      this.drop(identity, entry);
    }
  }
}
