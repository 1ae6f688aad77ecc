// Inflated spans on local disk, keyed by layer digest and span index, so
// mounts of images that share layers share the cache, also across daemon
// restarts. A span file appears only once completely written (temp file +
// rename) and carries the sha256 of its bytes, checked on every read: a torn
// or rotted file is dropped and fetched again, never served. The cache is
// bounded: least recently used spans are evicted to stay under `maxBytes`,
// counted over the whole directory, also when several daemons share it.

import { createHash } from 'node:crypto';
import { mkdir, readdir, readFile, rm, stat, utimes } from 'node:fs/promises';
import path from 'node:path';
import { writeFileAtomic } from '../util/atomic-write.js';

const MAGIC = Buffer.from('CLIPSPN1');
const HEADER = MAGIC.length + 32;
/** A temp file this old was left by a writer that died (a live one renames within seconds). */
const STALE_TEMP_MS = 10 * 60 * 1000;

interface Entry {
  size: number;
  /** Last use (ms since the epoch); the file's mtime says the same to other daemons. */
  used: number;
  /** Written by this process (only those are reported to onEvict). */
  own: boolean;
}

export interface SpanCacheOptions {
  /**
   * Several daemons may share one cache directory (the default one is shared).
   * While writing, the directory is rescanned at most this often (ms) to count
   * and evict what the others wrote, so the bound holds for the directory as a
   * whole. Default 1000.
   */
  rescanMs?: number;
}

export class SpanCache {
  /** file -> entry; Map order is recency (first = least recently used). */
  private files = new Map<string, Entry>();
  private usedBytes = 0;
  private loaded: Promise<void> | undefined;
  private scanning: Promise<void> | undefined;
  private lastScan = 0;
  private readonly rescanMs: number;
  /** Files being written by this process (reserved, not renamed into place yet). */
  private readonly writing = new Set<string>();

  /**
   * @param maxBytes bound on the bytes of span files in `dir` (Infinity: unbounded)
   * @param onEvict told of every span this process wrote and then evicted (bytes on disk)
   */
  constructor(
    readonly dir: string,
    readonly maxBytes = Infinity,
    private readonly onEvict?: (layerDigest: string, bytes: number) => void,
    opts: SpanCacheOptions = {},
  ) {
    this.rescanMs = opts.rescanMs ?? 1000;
  }

  /** Bytes of span files in the directory, as of the last scan plus this process's writes since. */
  get size(): number {
    return this.usedBytes;
  }

  private file(layerDigest: string, span: number): string {
    const [alg, hex] = layerDigest.split(':') as [string, string];
    return path.join(this.dir, alg, hex.slice(0, 2), hex, `${span}.span`);
  }

  /** Learns what an earlier daemon left in the cache (its recency from mtimes), and evicts down to the bound. */
  private load(): Promise<void> {
    this.loaded ??= this.rescan();
    return this.loaded;
  }

  /** One scan at a time; callers arriving meanwhile share it. */
  private rescan(): Promise<void> {
    this.scanning ??= this.scan().finally(() => (this.scanning = undefined));
    return this.scanning;
  }

  /**
   * Makes the accounting match the directory: spans another daemon evicted are
   * forgotten, spans it wrote are counted (by mtime), then the least recently
   * used spans, whoever wrote them, are evicted down to the bound.
   */
  private async scan(): Promise<void> {
    this.lastScan = Date.now();
    const found = new Map<string, { size: number; mtime: number }>();
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
          if (st) found.set(p, { size: st.size, mtime: st.mtimeMs });
        } else if (d.name.includes('.tmp-')) {
          const st = await stat(p).catch(() => undefined);
          if (st && Date.now() - st.mtimeMs > STALE_TEMP_MS) await rm(p, { force: true });
        }
      }
    };
    await walk(this.dir);
    const merged: [string, Entry][] = [];
    for (const [file, f] of found) {
      const known = this.files.get(file);
      merged.push([file, known ?? { size: f.size, used: f.mtime, own: false }]);
    }
    // Spans being written, or written after the walk passed their directory, are not on the list: keep them.
    for (const [file, e] of this.files) {
      if (!found.has(file) && e.own && (this.writing.has(file) || e.used >= this.lastScan)) merged.push([file, e]);
    }
    merged.sort((a, b) => a[1].used - b[1].used);
    this.files = new Map(merged);
    this.usedBytes = merged.reduce((sum, [, e]) => sum + e.size, 0);
    await this.evict();
  }

  /** Whether a span is in the cache (not checked: get() checks). */
  async has(layerDigest: string, span: number): Promise<boolean> {
    await this.load();
    const file = this.file(layerDigest, span);
    if (this.files.has(file)) return true;
    // Another daemon sharing the directory may have written it since the last scan.
    const st = await stat(file).catch(() => undefined);
    if (st) this.adopt(file, st.size);
    return st !== undefined;
  }

  private adopt(file: string, size: number): Entry {
    const e: Entry = { size, used: Date.now(), own: false };
    this.files.set(file, e);
    this.usedBytes += size;
    return e;
  }

  /** The cached span, or undefined when absent or damaged (then it is removed). */
  async get(layerDigest: string, span: number, expectedSize: number): Promise<Buffer | undefined> {
    await this.load();
    const file = this.file(layerDigest, span);
    let raw: Buffer;
    try {
      // Also when not known: another daemon sharing the directory may have written it.
      raw = await readFile(file);
    } catch {
      this.forget(file);
      return undefined;
    }
    const known = this.files.get(file) ?? this.adopt(file, raw.length);
    const data = raw.subarray(HEADER);
    if (
      raw.length === HEADER + expectedSize &&
      raw.subarray(0, MAGIC.length).equals(MAGIC) &&
      createHash('sha256').update(data).digest().equals(raw.subarray(MAGIC.length, HEADER))
    ) {
      this.files.delete(file);
      known.used = Date.now();
      this.files.set(file, known);
      // The mtime carries recency to other daemons and to the next start; best effort.
      const now = new Date(known.used);
      utimes(file, now, now).catch(() => undefined);
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
    if (this.maxBytes !== Infinity && Date.now() - this.lastScan >= this.rescanMs) await this.rescan();
    const file = this.file(layerDigest, span);
    if (this.files.has(file)) return;
    // Reserve first, so concurrent puts never take the cache past its bound.
    this.files.set(file, { size, used: Date.now(), own: true });
    this.usedBytes += size;
    this.writing.add(file);
    try {
      await this.evict(file);
      await mkdir(path.dirname(file), { recursive: true });
      // No fsync: a file torn by a crash fails its checksum and is fetched again.
      await writeFileAtomic(file, [MAGIC, createHash('sha256').update(data).digest(), data], { sync: false, mode: 0o600 });
    } catch (e) {
      this.forget(file);
      throw e;
    } finally {
      this.writing.delete(file);
    }
  }

  private forget(file: string): void {
    const e = this.files.get(file);
    if (e === undefined) return;
    this.files.delete(file);
    this.usedBytes -= e.size;
  }

  private async evict(keep?: string): Promise<void> {
    const victims: [string, Entry][] = [];
    for (const [file, e] of this.files) {
      if (this.usedBytes <= this.maxBytes) break;
      // Spans being written stay: removing one before its rename would leave it on disk uncounted.
      if (file === keep || this.writing.has(file)) continue;
      this.files.delete(file);
      this.usedBytes -= e.size;
      victims.push([file, e]);
    }
    await Promise.all(
      victims.map(async ([file, e]) => {
        await rm(file, { force: true });
        if (e.own) this.onEvict?.(`sha256:${path.basename(path.dirname(file))}`, e.size);
      }),
    );
  }
}
