// Read-ahead without a profile. A process starting up reads one file at a
// time, so its misses come one round trip after another; most of them land in
// the file it is already reading (the kernel faults an executable or a
// library in 128 KiB at a time: python3 reads 4.8 of its 6.7 MB that way, libc
// 1.7 of 1.9 MB) or just after it in the tar (the next module of a package).
// So after a read misses, the rest of the span it takes a prefix of, the rest
// of that file and the span after it are fetched in the background, a few
// requests at once, while the demand read is served first.
//
// Bounded by what it proved worth: spans fetched ahead and not read yet may
// total at most max(floor, ratio x the bytes reads missed on). Spans that a
// read then takes give their share back; a random workload, whose spans ahead
// are never read, stops reading ahead once the bound is reached, so it pays
// at most that bound (10% of what it reads, or the floor) in extra bytes.

import type { LayerRecord } from '../index/types.js';
import { spanAt, spanRange } from '../gzip/span-reader.js';
import type { LayerReader } from './layer-reader.js';
import { planPrefix } from './prefix-plan.js';

export interface ReadAheadOptions {
  /** Compressed bytes that may be ahead unread whatever was read so far (default 4 MiB). */
  floor?: number;
  /** Share of the compressed bytes reads missed on that may be ahead unread (default 0.1). */
  ratio?: number;
  /** Read-ahead requests in flight at once (default 4). */
  maxInFlight?: number;
  /** Compressed bytes per read-ahead request, at most (default 1 MiB; always at least one span). */
  requestBytes?: number;
}

export const DEFAULT_READ_AHEAD_FLOOR = 4 * 1024 * 1024;
export const DEFAULT_READ_AHEAD_RATIO = 0.1;

/** Compressed bytes fetched ahead and then read, ahead and not read yet, and of the spans reads missed on. */
export interface ReadAheadStats {
  used: number;
  unread: number;
  missed: number;
}

/** Spans [first, last] of one layer, to fetch in one request. */
interface Run {
  layer: number;
  first: number;
  last: number;
}

/** The spans a read missed on and the read-ahead it starts, worked out before the read registers its own fetches. */
export interface ReadAheadPlan {
  runs: Run[];
  /** The read's last span is read as a prefix: the read is to fetch the rest of that span alongside (LayerReader.read). */
  continueSpan: boolean;
}

export class ReadAhead {
  /** Spans fetched ahead and not read yet ("layer:span"), with their compressed size. */
  private readonly ahead = new Map<string, number>();
  private aheadBytes = 0;
  /** Compressed bytes of the spans reads missed on. */
  private missedBytes = 0;
  /** Compressed bytes fetched ahead that a read then took. */
  private usedBytes = 0;
  private readonly queue: Run[] = [];
  private inFlight = 0;
  private idleWaiters: (() => void)[] = [];
  private readonly floor: number;
  private readonly ratio: number;
  private readonly maxInFlight: number;
  private readonly requestBytes: number;

  constructor(
    private readonly layers: readonly LayerRecord[],
    private readonly reader: LayerReader,
    opts: ReadAheadOptions = {},
  ) {
    this.floor = opts.floor ?? DEFAULT_READ_AHEAD_FLOOR;
    this.ratio = opts.ratio ?? DEFAULT_READ_AHEAD_RATIO;
    this.maxInFlight = opts.maxInFlight ?? 4;
    this.requestBytes = opts.requestBytes ?? 1024 * 1024;
  }

  /** What was fetched ahead, then read, and what is ahead unread now (compressed bytes). */
  get stats(): ReadAheadStats {
    return { used: this.usedBytes, unread: this.aheadBytes, missed: this.missedBytes };
  }

  /**
   * Call before a read of [start, end) in a layer's output, within a file that
   * ends at `fileEnd` there: notes which spans the read takes from those
   * fetched ahead, and whether it misses; returns the read-ahead to start once
   * the read itself has started (start()), so that its fetch goes first.
   */
  plan(layerIndex: number, start: number, end: number, fileEnd: number): ReadAheadPlan | undefined {
    const layer = this.layers[layerIndex];
    if (!layer || start >= end) return undefined;
    const table = layer.spans;
    const first = spanAt(table, start);
    const last = spanAt(table, end - 1);
    let missed = false;
    for (let i = first; i <= last; i++) {
      const key = `${layerIndex}:${i}`;
      const bytes = this.ahead.get(key);
      // The last span is needed only as far as the read goes (a prefix of it may be held).
      const held = this.reader.holds(layerIndex, i, i === last ? end : undefined);
      if (bytes !== undefined) {
        this.ahead.delete(key);
        this.aheadBytes -= bytes;
        // Fetched ahead but gone again (failed, or pushed out of memory): the read fetches it after all.
        if (held) this.usedBytes += bytes;
      }
      if (!held) {
        missed = true;
        this.missedBytes += compressedSize(layer, i);
      }
    }
    if (!missed) return undefined;
    const budget = Math.max(this.floor, this.ratio * this.missedBytes);
    // First the rest of the read's last span, when the read takes only a prefix of it: the next read of the
    // file (or of the file after it) would otherwise wait a round trip for the bytes between.
    let continueSpan = false;
    const prefix = this.reader.holds(layerIndex, last, end) ? undefined : planPrefix(table, last, end);
    const restKey = `${layerIndex}:${last}`;
    if (prefix && !this.ahead.has(restKey)) {
      const bytes = spanRange(table, last).end - prefix.end;
      if (this.aheadBytes + bytes <= budget) {
        this.ahead.set(restKey, bytes);
        this.aheadBytes += bytes;
        continueSpan = true;
      }
    }
    // The rest of the file, then the span after it (what follows in the tar), nearest first.
    const count = table.checkpoints.length;
    const until = Math.min(count - 1, spanAt(table, Math.max(start, fileEnd - 1)) + 1);
    const runs: Run[] = [];
    this.collect(layerIndex, last + 1, until, runs, budget);
    return runs.length > 0 || continueSpan ? { runs, continueSpan } : undefined;
  }

  /** Adds spans [from, until] that are neither held nor ahead already to `runs`, adjacent ones in one request, within the budget. */
  private collect(layerIndex: number, from: number, until: number, runs: Run[], budget: number): void {
    const layer = this.layers[layerIndex]!;
    let run: Run | undefined;
    let runBytes = 0;
    for (let i = from; i <= until; i++) {
      const key = `${layerIndex}:${i}`;
      if (this.ahead.has(key) || this.reader.holds(layerIndex, i)) {
        run = undefined;
        continue;
      }
      const bytes = compressedSize(layer, i);
      if (this.aheadBytes + bytes > budget) return;
      this.ahead.set(key, bytes);
      this.aheadBytes += bytes;
      if (run && runBytes + bytes <= this.requestBytes) {
        run.last = i;
        runBytes += bytes;
      } else {
        run = { layer: layerIndex, first: i, last: i };
        runBytes = bytes;
        runs.push(run);
      }
    }
  }

  /** Starts the plan's fetches (a few at once; the rest wait their turn). */
  start(plan: ReadAheadPlan | undefined): void {
    if (!plan) return;
    this.queue.push(...plan.runs);
    this.pump();
  }

  /** Resolves once no read-ahead is queued or in flight. */
  idle(): Promise<void> {
    if (this.inFlight === 0 && this.queue.length === 0) return Promise.resolve();
    return new Promise((resolve) => this.idleWaiters.push(resolve));
  }

  private pump(): void {
    if (this.inFlight === 0 && this.queue.length === 0) {
      const waiters = this.idleWaiters;
      this.idleWaiters = [];
      for (const w of waiters) w();
      return;
    }
    while (this.inFlight < this.maxInFlight && this.queue.length > 0) {
      const run = this.queue.shift()!;
      this.inFlight++;
      // A failed read-ahead costs nothing but its bytes: the read that needs the span fetches it again.
      this.reader
        .warm(run.layer, run.first, run.last)
        .catch(() => undefined)
        .finally(() => {
          this.inFlight--;
          this.pump();
        });
    }
  }
}

function compressedSize(layer: LayerRecord, i: number): number {
  const r = spanRange(layer.spans, i);
  return r.end - r.start;
}
