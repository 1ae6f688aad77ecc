// The node daemon's metrics: one prom-client registry for every image it
// serves (series labelled `image`, and `layer` where a layer is known), the
// process metrics, clip_build_info and the one FUSE session's operations; and
// per image the layer summary `clip stats` and `clip ps` show.

import { collectDefaultMetrics, Counter, Gauge, Histogram, Registry } from 'prom-client';
import type { ReadEvents } from '../content/read-events.js';
import { VERSION } from '../version.js';

/** Per layer, what `clip stats` shows of an image. */
export interface LayerStats {
  layer: string;
  fetchedBytes: number;
  requests: number;
  cacheHits: number;
  cacheMisses: number;
  /** Inflated span bytes this image's reads wrote to the disk cache, less what was evicted. */
  cachedBytes: number;
}

const CACHES = ['memory', 'disk'] as const;

/** The shared series; ImageMetrics fills its image's share of them. */
function sharedSeries(registry: Registry) {
  const registers = [registry];
  return {
    fetchedBytes: new Counter({
      name: 'clip_fetched_bytes_total',
      help: 'Compressed bytes fetched from the registry',
      labelNames: ['image', 'layer'],
      registers,
    }),
    fetchRequests: new Counter({
      name: 'clip_fetch_requests_total',
      help: 'Range requests to the registry',
      labelNames: ['image', 'layer'],
      registers,
    }),
    hits: new Counter({
      name: 'clip_span_cache_hits_total',
      help: 'Spans served from a cache',
      labelNames: ['image', 'cache'],
      registers,
    }),
    misses: new Counter({
      name: 'clip_span_cache_misses_total',
      help: 'Spans that had to be fetched',
      labelNames: ['image'],
      registers,
    }),
    evictions: new Counter({
      name: 'clip_span_cache_evictions_total',
      help: 'Spans evicted from the disk cache',
      labelNames: ['image'],
      registers,
    }),
    cachedBytes: new Gauge({
      name: 'clip_cached_bytes',
      help: 'Inflated span bytes this daemon wrote to the disk cache, less what was evicted',
      labelNames: ['image'],
      registers,
    }),
    verifyFailures: new Counter({
      name: 'clip_verify_failures_total',
      help: 'Fetched spans that did not match their digest',
      labelNames: ['image'],
      registers,
    }),
    retries: new Counter({
      name: 'clip_retries_total',
      help: 'Requests retried',
      labelNames: ['image', 'reason'],
      registers,
    }),
    inflateSeconds: new Histogram({
      name: 'clip_inflate_seconds',
      help: 'Time to inflate one span',
      labelNames: ['image'],
      buckets: [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25],
      registers,
    }),
    firstReadSeconds: new Gauge({
      name: 'clip_first_read_seconds',
      help: 'Seconds from mount to the first READ answered',
      labelNames: ['image'],
      registers,
    }),
  };
}

export type Series = ReturnType<typeof sharedSeries>;

/** One image's read events, as series labelled with its reference, and its per-layer summary. */
export class ImageMetrics implements ReadEvents {
  private readonly layers = new Map<string, LayerStats>();
  /** Retry reasons seen: a series can only be removed by its full label set. */
  private readonly reasons = new Set<string>();
  private readonly mountedAt = performance.now();
  private sawFirstRead = false;
  private dropped = false;

  constructor(
    readonly image: string,
    private readonly s: Series,
  ) {}

  private stats(layer: string): LayerStats {
    let s = this.layers.get(layer);
    if (!s) {
      s = { layer, fetchedBytes: 0, requests: 0, cacheHits: 0, cacheMisses: 0, cachedBytes: 0 };
      this.layers.set(layer, s);
    }
    return s;
  }

  summary(): LayerStats[] {
    return [...this.layers.values()].map((s) => ({ ...s }));
  }
  fetchedBytes(): number {
    return this.sum('fetchedBytes');
  }
  cachedBytes(): number {
    return this.sum('cachedBytes');
  }
  private sum(field: 'fetchedBytes' | 'cachedBytes'): number {
    let n = 0;
    for (const s of this.layers.values()) n += s[field];
    return n;
  }

  /** The first READ of this image was answered: records the time since it was mounted, once. */
  firstRead(): void {
    if (this.sawFirstRead || this.dropped) return;
    this.sawFirstRead = true;
    this.s.firstReadSeconds.set({ image: this.image }, (performance.now() - this.mountedAt) / 1000);
  }

  fetched(layer: string, bytes: number, _spans = 1): void {
    if (this.dropped) return;
    this.s.fetchedBytes.inc({ image: this.image, layer }, bytes);
    this.s.fetchRequests.inc({ image: this.image, layer });
    const s = this.stats(layer);
    s.fetchedBytes += bytes;
    s.requests++;
  }
  cacheHit(layer: string, where: 'memory' | 'disk'): void {
    if (this.dropped) return;
    this.s.hits.inc({ image: this.image, cache: where });
    this.stats(layer).cacheHits++;
  }
  cacheMiss(layer: string): void {
    if (this.dropped) return;
    this.s.misses.inc({ image: this.image });
    this.stats(layer).cacheMisses++;
  }
  cacheStored(layer: string, bytes: number): void {
    if (this.dropped) return;
    this.s.cachedBytes.inc({ image: this.image }, bytes);
    this.stats(layer).cachedBytes += bytes;
  }
  cacheEvicted(layer: string, bytes: number): void {
    if (this.dropped) return;
    this.s.evictions.inc({ image: this.image });
    this.s.cachedBytes.dec({ image: this.image }, bytes);
    this.stats(layer).cachedBytes -= bytes;
  }
  verifyFailed(_layer: string, _span: number): void {
    if (this.dropped) return;
    this.s.verifyFailures.inc({ image: this.image });
  }
  retried(_layer: string, reason: string): void {
    if (this.dropped) return;
    this.reasons.add(reason);
    this.s.retries.inc({ image: this.image, reason });
  }
  inflated(_layer: string, seconds: number): void {
    if (this.dropped) return;
    this.s.inflateSeconds.observe({ image: this.image }, seconds);
  }

  /**
   * Removes every series of this image. Later events are ignored: a fetch
   * still in flight at unmount must not bring the series back.
   */
  drop(): void {
    this.dropped = true;
    const image = this.image;
    for (const layer of this.layers.keys()) {
      this.s.fetchedBytes.remove({ image, layer });
      this.s.fetchRequests.remove({ image, layer });
    }
    for (const cache of CACHES) this.s.hits.remove({ image, cache });
    for (const reason of this.reasons) this.s.retries.remove({ image, reason });
    for (const m of [
      this.s.misses,
      this.s.evictions,
      this.s.cachedBytes,
      this.s.verifyFailures,
      this.s.inflateSeconds,
      this.s.firstReadSeconds,
    ])
      m.remove({ image });
  }
}

export class DaemonMetrics {
  readonly registry = new Registry();
  private readonly images = new Map<string, ImageMetrics>();
  private readonly series = sharedSeries(this.registry);

  private readonly fuseOps = new Counter({
    name: 'clip_fuse_operations_total',
    help: 'FUSE requests answered',
    labelNames: ['op', 'errno'],
    registers: [this.registry],
  });
  /** What the image filesystems served: the figure CPU per byte is measured against (bench:ml). */
  private readonly fuseReadBytes = new Counter({
    name: 'clip_fuse_read_bytes_total',
    help: 'File bytes answered to FUSE READ requests',
    registers: [this.registry],
  });
  private readonly fuseSeconds = new Histogram({
    name: 'clip_fuse_operation_seconds',
    help: 'FUSE request latency',
    labelNames: ['op'],
    buckets: [0.0001, 0.0005, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5],
    registers: [this.registry],
  });

  private readonly mirrorFailures = new Counter({
    name: 'clip_mirror_failures_total',
    help: 'Requests a registry mirror failed (it is then skipped for a while)',
    labelNames: ['registry', 'mirror'],
    registers: [this.registry],
  });

  constructor() {
    collectDefaultMetrics({ register: this.registry });
    new Gauge({
      name: 'clip_build_info',
      help: 'The clip version and the Node.js it runs on; always 1',
      labelNames: ['version', 'node'],
      registers: [this.registry],
    }).set({ version: VERSION, node: process.version }, 1);
    const images = this.images;
    new Gauge({
      name: 'clip_mounted_images',
      help: 'Images this daemon serves',
      registers: [this.registry],
      collect() {
        this.set(images.size);
      },
    });
  }

  /** The image's read events, created on first use. */
  image(image: string): ImageMetrics {
    let m = this.images.get(image);
    if (!m) {
      m = new ImageMetrics(image, this.series);
      this.images.set(image, m);
    }
    return m;
  }

  /** The image's metrics if it is served; never creates them (for lookups from the outside, such as /stats). */
  find(image: string): ImageMetrics | undefined {
    return this.images.get(image);
  }

  /** The image was unmounted: its series leave the endpoint. */
  dropImage(image: string): void {
    const m = this.images.get(image);
    if (!m) return;
    this.images.delete(image);
    m.drop();
  }

  /** A mirror of `registry` failed (see oci/endpoints.ts). */
  mirrorFailed(registry: string, mirror: string): void {
    this.mirrorFailures.inc({ registry, mirror });
  }

  /** The FUSE session's observer. */
  readonly onOp = (op: string, seconds: number, errno: number, replyBytes = 0): void => {
    this.fuseOps.inc({ op, errno: String(errno) });
    this.fuseSeconds.observe({ op }, seconds);
    if (op === 'READ') this.fuseReadBytes.inc(replyBytes);
  };
}
