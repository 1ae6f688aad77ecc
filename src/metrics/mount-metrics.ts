// The mount daemon's metrics (Prometheus, via prom-client) and a per-layer
// summary for `clip stats`: what was fetched, what the caches served, how
// long FUSE operations took, when the first read came.

import { Counter, Gauge, Histogram, Registry } from 'prom-client';
import type { ReadEvents } from '../content/read-events.js';

export interface LayerStats {
  layer: string;
  fetchedBytes: number;
  requests: number;
  cacheHits: number;
  cacheMisses: number;
  /** Inflated span bytes this daemon wrote to the disk cache, less what was evicted. */
  cachedBytes: number;
}

export class MountMetrics implements ReadEvents {
  readonly registry = new Registry();
  private readonly layers = new Map<string, LayerStats>();
  private readonly mountedAt = performance.now();
  private firstRead = false;

  private readonly fetchedBytes = new Counter({
    name: 'clip_fetched_bytes_total',
    help: 'Compressed bytes fetched from the registry',
    labelNames: ['layer'],
    registers: [this.registry],
  });
  private readonly fetchRequests = new Counter({
    name: 'clip_fetch_requests_total',
    help: 'Range requests to the registry',
    labelNames: ['layer'],
    registers: [this.registry],
  });
  private readonly hits = new Counter({
    name: 'clip_span_cache_hits_total',
    help: 'Spans served from a cache',
    labelNames: ['cache'],
    registers: [this.registry],
  });
  private readonly misses = new Counter({
    name: 'clip_span_cache_misses_total',
    help: 'Spans that had to be fetched',
    registers: [this.registry],
  });
  private readonly evictions = new Counter({
    name: 'clip_span_cache_evictions_total',
    help: 'Spans evicted from the disk cache',
    registers: [this.registry],
  });
  private readonly cachedBytes = new Gauge({
    name: 'clip_cached_bytes',
    help: 'Inflated span bytes this daemon wrote to the disk cache, less what was evicted',
    registers: [this.registry],
  });
  private readonly verifyFailures = new Counter({
    name: 'clip_verify_failures_total',
    help: 'Fetched spans that did not match their digest',
    registers: [this.registry],
  });
  private readonly retries = new Counter({
    name: 'clip_retries_total',
    help: 'Requests retried',
    labelNames: ['reason'],
    registers: [this.registry],
  });
  private readonly inflateSeconds = new Histogram({
    name: 'clip_inflate_seconds',
    help: 'Time to inflate one span',
    buckets: [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25],
    registers: [this.registry],
  });
  private readonly fuseOps = new Counter({
    name: 'clip_fuse_operations_total',
    help: 'FUSE requests answered',
    labelNames: ['op', 'errno'],
    registers: [this.registry],
  });
  private readonly fuseSeconds = new Histogram({
    name: 'clip_fuse_operation_seconds',
    help: 'FUSE request latency',
    labelNames: ['op'],
    buckets: [0.0001, 0.0005, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5],
    registers: [this.registry],
  });
  private readonly firstReadSeconds = new Gauge({
    name: 'clip_first_read_seconds',
    help: 'Seconds from mount to the first READ answered',
    registers: [this.registry],
  });

  private stats(layer: string): LayerStats {
    let s = this.layers.get(layer);
    if (!s) {
      s = { layer, fetchedBytes: 0, requests: 0, cacheHits: 0, cacheMisses: 0, cachedBytes: 0 };
      this.layers.set(layer, s);
    }
    return s;
  }

  summary(): LayerStats[] {
    return [...this.layers.values()];
  }

  /** The FUSE session's observer. */
  readonly onOp = (op: string, seconds: number, errno: number): void => {
    this.fuseOps.inc({ op, errno: String(errno) });
    this.fuseSeconds.observe({ op }, seconds);
    if (op === 'READ' && !this.firstRead) {
      this.firstRead = true;
      this.firstReadSeconds.set((performance.now() - this.mountedAt) / 1000);
    }
  };

  fetched(layer: string, bytes: number): void {
    this.fetchedBytes.inc({ layer }, bytes);
    this.fetchRequests.inc({ layer });
    const s = this.stats(layer);
    s.fetchedBytes += bytes;
    s.requests++;
  }
  cacheHit(layer: string, where: 'memory' | 'disk'): void {
    this.hits.inc({ cache: where });
    this.stats(layer).cacheHits++;
  }
  cacheMiss(layer: string): void {
    this.misses.inc();
    this.stats(layer).cacheMisses++;
  }
  cacheStored(layer: string, bytes: number): void {
    this.cachedBytes.inc(bytes);
    this.stats(layer).cachedBytes += bytes;
  }
  cacheEvicted(layer: string, bytes: number): void {
    this.evictions.inc();
    this.cachedBytes.dec(bytes);
    this.stats(layer).cachedBytes -= bytes;
  }
  verifyFailed(): void {
    this.verifyFailures.inc();
  }
  retried(_layer: string, reason: string): void {
    this.retries.inc({ reason });
  }
  inflated(_layer: string, seconds: number): void {
    this.inflateSeconds.observe(seconds);
  }
}
