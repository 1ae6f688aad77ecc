// Reads the files of an indexed image: opens the image's blob source from the
// location in the index and serves byte ranges of any file, lazily. Readers
// given one ReadPool share their caches and connections (read-pool.ts).

import { Readable } from 'node:stream';
import { ClipError } from '../errors.js';
import type { Node } from '../image/types.js';
import type { ClipIndex } from '../index/types.js';
import { openBlobSource } from './sources/open.js';
import type { BlobSource, RegistryOptions } from '../oci/types.js';
import { LayerReader, type LayerReaderOptions } from './layer-reader.js';
import { NO_EVENTS, type ReadEvents } from './read-events.js';
import { ReadAhead, type ReadAheadOptions, type ReadAheadStats } from './read-ahead.js';
import type { ReadPool } from './read-pool.js';
import { SpanCache } from './span-cache.js';

export interface ReaderOptions extends RegistryOptions {
  cacheDir?: string;
  cacheBytes?: number;
  events?: ReadEvents;
  /** Told of the spans every read needs (start-up profile recording). */
  onRead?: LayerReaderOptions['onRead'];
  /** Share the memory cache, the disk cache of `cacheDir` and the blob source with the pool's other readers. */
  pool?: ReadPool;
  /** After a read misses, fetch the rest of its file in the background (read-ahead.ts); false: only what reads need. Default on. */
  readAhead?: ReadAheadOptions | false;
}

/** Bytes per read when streaming a whole file (matches the span cache's reuse). */
const STREAM_CHUNK = 1024 * 1024;

export class FileReader {
  private readonly layers: LayerReader;
  private readonly ahead: ReadAhead | undefined;
  private closed: Promise<void> | undefined;

  private constructor(
    readonly index: ClipIndex,
    private readonly blobs: BlobSource,
    /** Closes the blob source, or gives it back to the pool. */
    private readonly release: () => Promise<void>,
    opts: LayerReaderOptions,
    readAhead: ReadAheadOptions | false,
  ) {
    this.layers = new LayerReader(index.layers, blobs, opts);
    this.ahead = readAhead === false ? undefined : new ReadAhead(index.layers, this.layers, readAhead);
  }

  /**
   * `cacheDir`: keep inflated spans on disk there (shared by every index whose
   * layers are the same), at most `cacheBytes`; `events`: what reads report
   * (metrics; per reader, also in a pool); `pool`: share with other readers.
   */
  static async open(index: ClipIndex, opts: ReaderOptions = {}): Promise<FileReader> {
    const { pool } = opts;
    const layerOpts: LayerReaderOptions = { events: opts.events ?? NO_EVENTS };
    if (opts.onRead) layerOpts.onRead = opts.onRead;
    if (pool) layerOpts.memory = pool.memory;
    if (pool?.blocks) layerOpts.blocks = pool.blocks;
    if (opts.cacheDir !== undefined) {
      const bound = opts.cacheBytes ?? Infinity;
      layerOpts.disk = pool ? pool.diskCache(opts.cacheDir, bound) : new SpanCache(opts.cacheDir, bound);
    }
    // How the index says its registry was reached is the default; flags (opts.plainHttp) win.
    const registry = index.registry ? { ...opts, recordedPlainHttp: index.registry.plainHttp } : opts;
    if (pool) {
      const lease = await pool.source(index.image.location, registry);
      return new FileReader(index, lease.value, lease.release, layerOpts, opts.readAhead ?? {});
    }
    const blobs = await openBlobSource(index.image.location, registry);
    return new FileReader(index, blobs, () => blobs.close(), layerOpts, opts.readAhead ?? {});
  }

  /** The layer reader underneath (prefetch drives it directly). */
  get layerReader(): LayerReader {
    return this.layers;
  }

  /** Read-ahead so far (compressed bytes), or undefined when it is off. */
  get readAhead(): ReadAheadStats | undefined {
    return this.ahead?.stats;
  }

  /** Resolves once the read-ahead started so far is done, the rest of spans reads took a prefix of included. */
  async readAheadIdle(): Promise<void> {
    await this.ahead?.idle();
    await this.layers.continuations();
  }

  /** Reads up to `length` bytes of a regular file from `offset` (short at end of file). */
  async read(node: Node, offset: number, length: number): Promise<Buffer> {
    const parts = await this.readParts(node, offset, length);
    return parts.length === 1 ? parts[0]! : Buffer.concat(parts);
  }

  /** As read(), as views of the cached spans it covers (no copy; empty at end of file). */
  async readParts(node: Node, offset: number, length: number): Promise<Buffer[]> {
    if (node.type !== 'file') throw new ClipError('BAD_ARGUMENT', `inode ${node.ino} is a ${node.type}, not a regular file`);
    const end = Math.min(node.size, offset + length);
    if (node.layer < 0 || offset >= end) return [];
    const at = node.offset + offset;
    // Planned before the read registers its fetch (which it then does first), started after.
    const ahead = this.ahead?.plan(node.layer, at, node.offset + end, node.offset + node.size);
    const data = this.layers.readParts(node.layer, at, end - offset, ahead?.continueSpan ?? false);
    this.ahead?.start(ahead);
    return data;
  }

  /** Streams a whole file, one chunk at a time (memory stays bounded). */
  stream(node: Node): Readable {
    const self = this;
    return Readable.from(
      (async function* () {
        for (let offset = 0; offset < node.size;) {
          const chunk = await self.read(node, offset, STREAM_CHUNK);
          if (chunk.length === 0) throw new ClipError('IO', `inode ${node.ino}: unexpected end of data at ${offset}`);
          offset += chunk.length;
          yield chunk;
        }
      })(),
      { objectMode: false },
    );
  }

  /** Checks that the image's blobs can be read (one byte of the first layer), so a mount fails early. */
  async probe(): Promise<void> {
    const layer = this.index.layers[0];
    if (!layer) return;
    try {
      await this.blobs.readRange(layer.digest, 0, 1);
    } catch (e) {
      throw new ClipError('REGISTRY', `cannot read the image's layers from ${this.index.image.location}: ${(e as Error).message}`);
    }
  }

  /** Closes the blob source, or gives it back to the pool (once: a second close does nothing). */
  close(): Promise<void> {
    return (this.closed ??= this.release());
  }
}
