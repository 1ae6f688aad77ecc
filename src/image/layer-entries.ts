// Collects one layer's tar entries for the merge while bounding memory: an
// entry that a later entry of the same path makes unobservable is dropped
// (a hostile layer can repeat one header millions of times), and all layers
// together may keep at most so many entries and so many name characters.

import { ClipError } from '../errors.js';
import type { TarEntry } from '../tar/types.js';

/** Far above real images (the largest have about a million files); about 0.5 KB of memory each while indexing. */
export const DEFAULT_MAX_ENTRIES = 4_000_000;
/** Characters of paths and link targets kept, all layers together. */
export const MAX_NAME_CHARS = 1 << 29;

/** What all layers of one image may keep, shared by the layers' collectors. */
export class EntryBudget {
  private entries = 0;
  private chars = 0;
  constructor(readonly maxEntries: number = DEFAULT_MAX_ENTRIES) {
    if (!Number.isSafeInteger(maxEntries) || maxEntries < 1) {
      throw new ClipError('BAD_ARGUMENT', `maximum number of entries ${maxEntries} is not a positive integer`);
    }
  }

  take(e: TarEntry): void {
    this.entries++;
    this.chars += cost(e);
    if (this.entries > this.maxEntries) {
      throw new ClipError(
        'UNSUPPORTED',
        `the image has more than ${this.maxEntries} tar entries (after dropping ones a later entry replaces); raise the limit with --max-entries if it is genuine`,
      );
    }
    if (this.chars > MAX_NAME_CHARS) {
      throw new ClipError('UNSUPPORTED', `the image's paths and link targets add up to more than ${MAX_NAME_CHARS} characters`);
    }
  }

  release(e: TarEntry): void {
    this.entries--;
    this.chars -= cost(e);
  }
}

function cost(e: TarEntry): number {
  return e.path.length + (e.linkname?.length ?? 0);
}

/** One layer's entries in tar order, minus those nothing can observe. */
export class LayerEntries implements Iterable<TarEntry> {
  private list: (TarEntry | null)[] = [];
  private holes = 0;
  /** Latest entry of each path since the last entry that looks at what exists (hardlink, whiteout). */
  private latest = new Map<string, number>();

  constructor(private readonly budget: EntryBudget) {}

  add(e: TarEntry): void {
    if (e.type === 'hardlink' || isWhiteout(e.path)) {
      // These look at what exists now (a link's target, what a whiteout or an
      // opaque marker removes or keeps): no earlier entry may be dropped.
      this.latest.clear();
    } else {
      const i = this.latest.get(e.path);
      const prev = i === undefined ? null : this.list[i]!;
      // A later entry replaces an earlier one of the same path, except that a
      // directory over a non-directory keeps what was put inside it in between.
      // Hardlinks stay: one whose target is missing fails the layer.
      if (prev !== null && prev.type !== 'hardlink' && (e.type !== 'dir' || prev.type === 'dir')) {
        this.list[i!] = null;
        this.holes++;
        this.budget.release(prev);
      }
    }
    this.budget.take(e);
    this.latest.set(e.path, this.list.length);
    this.list.push(e);
    if (this.holes > 4096 && this.holes * 2 > this.list.length) this.compact();
  }

  get size(): number {
    return this.list.length - this.holes;
  }

  *[Symbol.iterator](): Iterator<TarEntry> {
    for (const e of this.list) if (e !== null) yield e;
  }

  private compact(): void {
    const kept: TarEntry[] = [];
    const moved = new Map<number, number>();
    this.list.forEach((e, i) => {
      if (e === null) return;
      moved.set(i, kept.length);
      kept.push(e);
    });
    for (const [path, i] of this.latest) this.latest.set(path, moved.get(i)!);
    this.list = kept;
    this.holes = 0;
  }
}

function isWhiteout(path: string): boolean {
  return path.startsWith('.wh.') || path.includes('/.wh.');
}
