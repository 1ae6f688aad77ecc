// What the readers of many images in one process share (the node daemon):
// one memory span cache with one byte bound, one disk SpanCache per cache
// directory, and blob sources: one registry client per repository and
// credentials, over one AgentPool (connections by TLS settings) per registry and
// credentials. Sources and agents are counted by user; the last reader to
// close one closes it. Caches are keyed by span identity, so only indexes
// that describe a span alike share it (see span-memory.ts).

import { createHash } from 'node:crypto';
import path from 'node:path';
import { ClipError } from '../errors.js';
import { AgentPool } from '../http/agent-pool.js';
import { parseReference } from '../oci/reference.js';
import type { BlobSource, RegistryOptions } from '../oci/types.js';
import { RefCounted, type Lease } from '../util/ref-counted.js';
import { DEFAULT_MEMORY_CACHE } from './layer-reader.js';
import { openBlobSource } from './sources/open.js';
import { openRegistrySource } from './sources/registry.js';
import { SpanCache } from './span-cache.js';
import { BLOCK, SharedBlocks } from './shared-blocks.js';
import { SpanMemory } from './span-memory.js';

export interface ReadPoolOptions {
  /** Bound on the inflated span bytes in memory, across every reader (default DEFAULT_MEMORY_CACHE). */
  memoryBytes?: number;
  /**
   * Of memoryBytes, how much is shared with FUSE reader threads
   * (shared-blocks.ts): spans reads used, copied for the threads to answer
   * the next reads of them. Default 0: none (the daemon asks for a share).
   */
  sharedBytes?: number;
}

interface SharedSource {
  source: BlobSource;
  agent?: Lease<AgentPool>;
}

export class ReadPool {
  readonly memory: SpanMemory;
  readonly blocks: SharedBlocks | undefined;
  private readonly disks = new Map<string, SpanCache>();
  private readonly agents = new RefCounted<AgentPool>((a) => a.close());
  private readonly sources = new RefCounted<SharedSource>(async ({ source, agent }) => {
    await source.close();
    await agent?.release();
  });

  constructor(opts: ReadPoolOptions = {}) {
    const memoryBytes = opts.memoryBytes ?? DEFAULT_MEMORY_CACHE;
    if (!Number.isSafeInteger(memoryBytes) || memoryBytes < 0) {
      throw new ClipError('BAD_ARGUMENT', `memory cache size ${memoryBytes} is not a byte count`);
    }
    const sharedBytes = Math.min(memoryBytes, opts.sharedBytes ?? 0);
    if (!Number.isSafeInteger(sharedBytes) || sharedBytes < 0) {
      throw new ClipError('BAD_ARGUMENT', `shared memory size ${sharedBytes} is not a byte count`);
    }
    this.blocks = sharedBytes >= BLOCK ? new SharedBlocks(sharedBytes) : undefined;
    this.memory = new SpanMemory(memoryBytes - (this.blocks?.bytes ?? 0));
  }

  /** The disk cache in `dir`: one per directory, so its bound is kept by one accountant. */
  diskCache(dir: string, maxBytes = Infinity): SpanCache {
    const key = path.resolve(dir);
    const known = this.disks.get(key);
    if (known && known.maxBytes !== maxBytes) {
      throw new ClipError(
        'BAD_ARGUMENT',
        `cache dir ${key} is already in use with a bound of ${known.maxBytes} bytes; every image read through one pool shares it with one bound (asked for ${maxBytes})`,
      );
    }
    if (known) return known;
    const cache = new SpanCache(key, maxBytes);
    this.disks.set(key, cache);
    return cache;
  }

  /**
   * The blob source of an image location, shared with every reader of the
   * same location and credentials when it holds connections (registry, S3);
   * local files (OCI layouts, archives) are opened per reader.
   */
  async source(location: string, opts: RegistryOptions = {}): Promise<Lease<BlobSource>> {
    if (!location.startsWith('docker://') && !location.startsWith('s3://')) {
      const source = await openBlobSource(location, opts);
      return { value: source, release: once(() => source.close()) };
    }
    const auth = authKey(opts);
    const lease = await this.sources.acquire(`${location}\n${auth}`, async () => {
      if (!location.startsWith('docker://')) return { source: await openBlobSource(location, opts) };
      const registry = parseReference(location.slice('docker://'.length)).registry;
      const agent = await this.agents.acquire(`${registry}\n${auth}`, async () => new AgentPool());
      try {
        return { source: await openRegistrySource(location, opts, agent.value), agent };
      } catch (e) {
        await agent.release();
        throw e;
      }
    });
    return { value: lease.value.source, release: lease.release };
  }

  /** What the pool holds now (for tests and `clip stats`). */
  stats(): { sources: number; connectionPools: number; diskCaches: number; memoryBytes: number } {
    return { sources: this.sources.size, connectionPools: this.agents.size, diskCaches: this.disks.size, memoryBytes: this.memory.size };
  }

  /** Closes every shared source and connection pool, also those readers still hold (shutting down). */
  async close(): Promise<void> {
    await this.sources.closeAll();
    await this.agents.closeAll();
  }
}

/**
 * Readers share a source only with the same credentials and settings: a
 * hash, so the key holds no password.
 */
function authKey(opts: RegistryOptions): string {
  const settings = [
    opts.plainHttp ?? null,
    opts.recordedPlainHttp ?? null,
    opts.username ?? null,
    opts.password ?? null,
    opts.deadline ?? null,
    opts.hostsDir ?? null,
    opts.certDir ?? null,
    opts.tlsVerify ?? true,
  ];
  return createHash('sha256').update(JSON.stringify(settings)).digest('hex');
}

function once(fn: () => Promise<void>): () => Promise<void> {
  let done: Promise<void> | undefined;
  return () => (done ??= fn());
}
