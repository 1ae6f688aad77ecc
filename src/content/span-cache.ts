// Inflated spans on local disk, so mounts of images that share layers share
// the cache, also across daemon restarts. A span file is named by the layer
// digest, the span index and the span's identity (span-identity.ts: a hash of
// how the reading index describes the span), so an index that describes a
// span differently, a hostile one included, never reads another's file.
// Files of the earlier naming ("N.span", keyed by digest and index only) are
// no longer read; they still count towards the bound and age out by LRU.
//
// A span file appears only once completely written (temp file + rename) and
// carries the sha256 of its bytes, checked on every read: a torn or rotted
// file is dropped and fetched again, never served.
//
// Verified prefixes of spans (format v6 fine reads) are kept here too: their
// compressed bytes, in files of their own naming and magic, keyed by a prefix
// identity (span-identity.ts prefixIdentity), so one is never read as a span.
//
// The bound: every write to a bounded cache happens under a lock on the
// directory. Under it, a small ledger file holds the bytes of the directory's
// span and temp files as the last writer left them; a write that fits under
// the bound by the ledger just adds to it. Only when it does not fit (or the
// ledger is missing, or a second has passed) is the directory scanned afresh
// and least recently used spans (whoever wrote them) evicted to make room: a
// full walk per write would cost O(files) on every fetch. So the directory
// never exceeds `maxBytes`, however many daemons share it, as long as they
// all bound it by the same number (a span bigger than the bound is not
// cached). An unbounded cache (maxBytes Infinity) takes no lock.

import { mkdir, readdir, readFile, rm, stat, utimes } from 'node:fs/promises';
import path from 'node:path';
import { ClipError } from '../errors.js';
import { checkDigest } from '../util/digest.js';
import { writeFileAtomic } from '../util/atomic-write.js';
import { withFileLock } from '../util/file-lock.js';
import { sha256 } from './sha256-async.js';

const MAGIC = Buffer.from('CLIPSPN1');
/** A prefix file's: other bytes (compressed, a part of a span) under another magic. */
const PREFIX_MAGIC = Buffer.from('CLIPPFX1');
const HEADER = MAGIC.length + 32;
/** A temp file this old was left by a writer that died (a live one renames within seconds). */
const STALE_TEMP_MS = 10 * 60 * 1000;
const LOCK = '.lock';
/** Bytes in the directory as the last writer counted them (read and written under the lock). */
const LEDGER = '.usage';
/** The ledger is checked against a scan of the directory at least this often (ms) while writing. */
const RESCAN_MS = 1000;

/** Which cached span: the layer, the span's index and its identity (SpanIdentities.of). */
export interface SpanKey {
  layer: string;
  span: number;
  identity: string;
  /** A verified compressed prefix of the span, `identity` its prefix identity (prefixIdentity). */
  prefix?: boolean;
}

interface Entry {
  size: number;
  /** Last use (ms since the epoch); the file's mtime says the same to other daemons. */
  used: number;
  /** The layer, for spans written by this process (only those are reported to onEvict). */
  layer?: string;
  /** Also told when this span is evicted: the writer's own listener (a reader sharing the cache reports to its own metrics). */
  onEvict?: (layerDigest: string, bytes: number) => void;
}

export interface SpanCacheOptions {
  /** A directory lock held longer than this (ms) is taken to be abandoned by a dead writer. Default 30 s. */
  lockStaleMs?: number;
}

export class SpanCache {
  /** file -> entry; Map order is recency (first = least recently used). */
  private files = new Map<string, Entry>();
  private usedBytes = 0;
  private loaded: Promise<void> | undefined;
  /** This instance's writes, one at a time (the directory lock orders them against other processes). */
  private writes: Promise<unknown> = Promise.resolve();
  /** When this instance last scanned the directory (ms since the epoch). */
  private lastScan = 0;

  /**
   * @param maxBytes bound on the bytes of span files in `dir` (Infinity: unbounded)
   * @param onEvict told of every span this process wrote and then evicted (bytes on disk)
   */
  constructor(
    readonly dir: string,
    readonly maxBytes = Infinity,
    private readonly onEvict?: (layerDigest: string, bytes: number) => void,
    private readonly opts: SpanCacheOptions = {},
  ) {}

  /** Bytes of span files in the directory, as of the last scan plus this process's writes since. */
  get size(): number {
    return this.usedBytes;
  }

  /** The span's file. Every component is checked: index files are untrusted input. */
  private file(key: SpanKey): string {
    const { algorithm, hex } = checkDigest(key.layer, 'layer digest');
    if (!Number.isSafeInteger(key.span) || key.span < 0) throw new ClipError('BAD_INDEX', `invalid span number ${key.span}`);
    if (!/^[0-9a-f]{64}$/.test(key.identity)) throw new ClipError('BAD_INDEX', `invalid span identity ${JSON.stringify(key.identity)}`);
    return path.join(this.dir, algorithm, hex.slice(0, 2), hex, `${key.span}-${key.prefix ? 'prefix-' : ''}${key.identity}.span`);
  }

  /** Learns what an earlier daemon left in the cache (its recency from mtimes), and evicts down to the bound. */
  private load(): Promise<void> {
    this.loaded ??=
      this.maxBytes === Infinity
        ? this.scan()
        : this.locked(async () => {
            await this.scan();
            await this.evict(0);
          });
    return this.loaded;
  }

  private async locked<T>(fn: () => Promise<T>): Promise<T> {
    await mkdir(this.dir, { recursive: true });
    return withFileLock(path.join(this.dir, LOCK), fn, this.opts.lockStaleMs !== undefined ? { staleMs: this.opts.lockStaleMs } : {});
  }

  /**
   * Makes the accounting match the directory: spans another daemon evicted
   * are forgotten, spans it wrote are counted (recency from their mtime), and
   * temp files count as used (stale ones are removed). Entries already known
   * keep this process's recency: only new files are stat'ed.
   */
  private async scan(): Promise<void> {
    this.lastScan = Date.now();
    const merged: [string, Entry][] = [];
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
        else if (!d.isFile()) continue;
        else if (d.name.endsWith('.span')) {
          const known = this.files.get(p);
          if (known) merged.push([p, known]);
          else {
            const st = await stat(p).catch(() => undefined);
            if (st) merged.push([p, { size: st.size, used: st.mtimeMs }]);
          }
        } else if (d.name.includes('.tmp-')) {
          const st = await stat(p).catch(() => undefined);
          if (st && Date.now() - st.mtimeMs > STALE_TEMP_MS) await rm(p, { force: true });
          // Not evictable (a writer without the lock may own it), but on disk: counted, oldest first.
          else if (st) merged.push([p, { size: st.size, used: -Infinity }]);
        }
      }
    };
    await walk(this.dir);
    merged.sort((a, b) => a[1].used - b[1].used);
    this.files = new Map(merged);
    this.usedBytes = merged.reduce((sum, [, e]) => sum + e.size, 0);
  }

  /** The ledger's byte count, or undefined when there is none (or it is not a count). */
  private async readLedger(): Promise<number | undefined> {
    const text = await readFile(path.join(this.dir, LEDGER), 'utf8').catch(() => '');
    const n = Number(text);
    return text !== '' && Number.isSafeInteger(n) && n >= 0 ? n : undefined;
  }

  /** Whether a span is in the cache (not checked: get() checks). */
  async has(key: SpanKey): Promise<boolean> {
    const file = this.file(key);
    await this.load();
    if (this.files.has(file)) return true;
    // Another daemon sharing the directory may have written it since the last scan.
    const st = await stat(file).catch(() => undefined);
    if (st) this.adopt(file, st.size);
    return st !== undefined;
  }

  /** Whether the cache knows of an entry (written by this process, or there at its scan), without touching the disk. */
  async knows(key: SpanKey): Promise<boolean> {
    const file = this.file(key);
    await this.load();
    return this.files.has(file);
  }

  /** Removes an entry (one its reader found not to verify). */
  async drop(key: SpanKey): Promise<void> {
    const file = this.file(key);
    this.forget(file);
    await rm(file, { force: true });
  }

  private adopt(file: string, size: number): Entry {
    const e: Entry = { size, used: Date.now() };
    this.files.set(file, e);
    this.usedBytes += size;
    return e;
  }

  /** The cached span, or undefined when absent or damaged (then it is removed). */
  async get(key: SpanKey, expectedSize: number): Promise<Buffer | undefined> {
    const file = this.file(key);
    await this.load();
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
      raw.subarray(0, MAGIC.length).equals(key.prefix ? PREFIX_MAGIC : MAGIC) &&
      (await sha256(data)).equals(raw.subarray(MAGIC.length, HEADER))
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

  /**
   * Stores a span; resolves once it is on disk, to true, or to false when
   * skipped (already there, or bigger than the bound): a reader sharing the
   * cache counts only what it wrote. `onEvict` is told if this process later evicts it.
   */
  async put(key: SpanKey, data: Buffer, onEvict?: (layerDigest: string, bytes: number) => void): Promise<boolean> {
    const file = this.file(key);
    const write = this.writes.then(() => this.write(key.layer, file, key.prefix ? PREFIX_MAGIC : MAGIC, data, onEvict));
    this.writes = write.catch(() => undefined);
    return write;
  }

  private async write(
    layer: string,
    file: string,
    magic: Buffer,
    data: Buffer,
    onEvict: ((layerDigest: string, bytes: number) => void) | undefined,
  ): Promise<boolean> {
    await this.load();
    const size = HEADER + data.length;
    if (size > this.maxBytes) return false;
    const store = async (): Promise<boolean> => {
      if (this.files.has(file)) return false;
      if (this.maxBytes !== Infinity) await this.evict(size);
      await mkdir(path.dirname(file), { recursive: true });
      // No fsync: a file torn by a crash fails its checksum and is fetched again.
      await writeFileAtomic(file, [magic, await sha256(data), data], { sync: false, mode: 0o600 });
      this.files.set(file, onEvict ? { size, used: Date.now(), layer, onEvict } : { size, used: Date.now(), layer });
      this.usedBytes += size;
      return true;
    };
    if (this.maxBytes === Infinity) return store();
    // Under the lock, what other daemons wrote and evicted counts: by the ledger, or by a fresh scan.
    return this.locked(async () => {
      const ledger = await this.readLedger();
      if (ledger === undefined || ledger + size > this.maxBytes || Date.now() - this.lastScan >= RESCAN_MS) await this.scan();
      else this.usedBytes = ledger;
      const stored = await store();
      await writeFileAtomic(path.join(this.dir, LEDGER), Buffer.from(String(this.usedBytes)), { sync: false, mode: 0o600 });
      return stored;
    });
  }

  private forget(file: string): void {
    const e = this.files.get(file);
    if (e === undefined) return;
    this.files.delete(file);
    this.usedBytes -= e.size;
  }

  /** Evicts least recently used spans until `room` more bytes fit under the bound (call with the lock held). */
  private async evict(room: number): Promise<void> {
    const victims: [string, Entry][] = [];
    for (const [file, e] of this.files) {
      if (this.usedBytes + room <= this.maxBytes) break;
      if (!file.endsWith('.span')) continue;
      this.files.delete(file);
      this.usedBytes -= e.size;
      victims.push([file, e]);
    }
    await Promise.all(
      victims.map(async ([file, e]) => {
        await rm(file, { force: true });
        if (e.layer === undefined) return;
        this.onEvict?.(e.layer, e.size);
        e.onEvict?.(e.layer, e.size);
      }),
    );
  }
}
