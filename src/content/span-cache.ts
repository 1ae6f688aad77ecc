// Inflated spans on local disk, keyed by layer digest and span index, so
// mounts of images that share layers share the cache, also across daemon
// restarts. A span file appears only once completely written (temp file +
// rename) and carries the sha256 of its bytes, checked on every read: a torn
// or rotted file is dropped and fetched again, never served. The cache is
// bounded: least recently used spans are evicted to stay under `maxBytes`.

import { createHash } from 'node:crypto';
import { mkdir, readdir, readFile, rm, stat } from 'node:fs/promises';
import path from 'node:path';
import { writeFileAtomic } from '../util/atomic-write.js';

const MAGIC = Buffer.from('CLIPSPN1');
const HEADER = MAGIC.length + 32;

export class SpanCache {
  /** file -> size on disk; Map order is recency (first = least recently used). */
  private readonly files = new Map<string, number>();
  private usedBytes = 0;
  private loaded: Promise<void> | undefined;

  /**
   * @param maxBytes bound on the bytes of span files (Infinity: unbounded)
   * @param onEvict told of every span evicted (bytes on disk)
   */
  constructor(
    readonly dir: string,
    readonly maxBytes = Infinity,
    private readonly onEvict?: (layerDigest: string, bytes: number) => void,
  ) {}

  get size(): number {
    return this.usedBytes;
  }

  private file(layerDigest: string, span: number): string {
    const [alg, hex] = layerDigest.split(':') as [string, string];
    return path.join(this.dir, alg, hex.slice(0, 2), hex, `${span}.span`);
  }

  /** Learns what an earlier daemon left in the cache, oldest first (by mtime, which hits refresh). */
  private load(): Promise<void> {
    this.loaded ??= (async () => {
      const found: { file: string; size: number; mtime: number }[] = [];
      const walk = async (dir: string): Promise<void> => {
        let names;
        try {
          names = await readdir(dir, { withFileTypes: true });
        } catch {
          return;
        }
        for (const d of names) {
          const p = path.join(dir, d.name);
          if (d.isDirectory()) await walk(p);
          else if (d.name.endsWith('.span')) {
            const st = await stat(p).catch(() => undefined);
            if (st) found.push({ file: p, size: st.size, mtime: st.mtimeMs });
          } else if (d.name.includes('.tmp-')) await rm(p, { force: true });
        }
      };
      await walk(this.dir);
      found.sort((a, b) => a.mtime - b.mtime);
      for (const f of found) {
        if (this.files.has(f.file)) continue;
        this.files.set(f.file, f.size);
        this.usedBytes += f.size;
      }
      await this.evict();
    })();
    return this.loaded;
  }

  /** Whether a span is in the cache (not checked: get() checks). */
  async has(layerDigest: string, span: number): Promise<boolean> {
    await this.load();
    return this.files.has(this.file(layerDigest, span));
  }

  /** The cached span, or undefined when absent or damaged (then it is removed). */
  async get(layerDigest: string, span: number, expectedSize: number): Promise<Buffer | undefined> {
    await this.load();
    const file = this.file(layerDigest, span);
    const known = this.files.get(file);
    if (known === undefined) return undefined;
    let raw: Buffer;
    try {
      raw = await readFile(file);
    } catch {
      this.forget(file);
      return undefined;
    }
    const data = raw.subarray(HEADER);
    if (
      raw.length === HEADER + expectedSize &&
      raw.subarray(0, MAGIC.length).equals(MAGIC) &&
      createHash('sha256').update(data).digest().equals(raw.subarray(MAGIC.length, HEADER))
    ) {
      this.files.delete(file);
      this.files.set(file, known);
      return data;
    }
    this.forget(file);
    await rm(file, { force: true });
    return undefined;
  }

  async put(layerDigest: string, span: number, data: Buffer): Promise<void> {
    await this.load();
    const size = HEADER + data.length;
    if (size > this.maxBytes) return;
    const file = this.file(layerDigest, span);
    if (this.files.has(file)) return;
    // Reserve first, so concurrent puts never take the cache past its bound.
    this.files.set(file, size);
    this.usedBytes += size;
    await this.evict(file);
    try {
      await mkdir(path.dirname(file), { recursive: true });
      // No fsync: a file torn by a crash fails its checksum and is fetched again.
      await writeFileAtomic(file, [MAGIC, createHash('sha256').update(data).digest(), data], { sync: false, mode: 0o600 });
    } catch (e) {
      this.forget(file);
      throw e;
    }
  }

  private forget(file: string): void {
    const size = this.files.get(file);
    if (size === undefined) return;
    this.files.delete(file);
    this.usedBytes -= size;
  }

  private async evict(keep?: string): Promise<void> {
    const victims: [string, number][] = [];
    for (const [file, size] of this.files) {
      if (this.usedBytes <= this.maxBytes) break;
      if (file === keep) continue;
      this.files.delete(file);
      this.usedBytes -= size;
      victims.push([file, size]);
    }
    await Promise.all(
      victims.map(async ([file, size]) => {
        await rm(file, { force: true });
        this.onEvict?.(`sha256:${path.basename(path.dirname(file))}`, size);
      }),
    );
  }
}
