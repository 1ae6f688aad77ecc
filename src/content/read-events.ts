// What the read path reports as it works, for metrics and `clip stats`.
// Content code calls these; the metrics module implements them. The default
// does nothing, so libraries and tests need no metrics.

export interface ReadEvents {
  /** Compressed bytes fetched from the registry for a layer, in one request covering `spans` spans. */
  fetched(layer: string, bytes: number, spans: number): void;
  /** A span was served from the memory or disk cache. */
  cacheHit(layer: string, where: 'memory' | 'disk'): void;
  /** A span had to be fetched. */
  cacheMiss(layer: string): void;
  /** Inflated span bytes written to / evicted from the disk cache: what metrics and `clip stats` call cached bytes. */
  cacheStored(layer: string, bytes: number): void;
  cacheEvicted(layer: string, bytes: number): void;
  /** A fetched span did not match its digest. */
  verifyFailed(layer: string, span: number): void;
  /** A request was retried (connection error, 429, 5xx, bad digest). */
  retried(layer: string, reason: string): void;
  /** Time spent inflating one span. */
  inflated(layer: string, seconds: number): void;
}

export const NO_EVENTS: ReadEvents = {
  fetched() {},
  cacheHit() {},
  cacheMiss() {},
  cacheStored() {},
  cacheEvicted() {},
  verifyFailed() {},
  retried() {},
  inflated() {},
};
