// Inflated file bytes in shared memory, so that the FUSE reader threads answer
// READs of cached data themselves, without the main-thread hop (issue 16's
// warm path; fs/tree-responder.ts reads them). The main thread copies each
// span a read used into an arena of fixed-size blocks; the threads find a
// block through a per-layer table and write the reply straight from the
// arena. Written here, not taken from a library: it is a lock-free protocol
// between threads over SharedArrayBuffers, specific to clip's span tables.
//
// A block is BLOCK bytes of one span's output, from the span's start (the last
// block of a span is shorter), so the bytes of a block are those of its span:
// verified when the span was. A layer's table (one SharedArrayBuffer) holds
// its span output starts, each span's first block number, and per block the
// arena slot holding it (slot + 1; 0: not held). Layers are keyed by digest
// and span starts: two images whose index places spans alike share a table.
//
// Slots are reused (a clock), with no lock: a thread pins a slot, then checks
// that it is still valid and still holds the block it looked for; the main
// thread marks a slot as being taken, then checks that no thread pins it.
// Both use sequentially consistent atomics, so at least one of them sees the
// other: a thread never reads a slot that is being overwritten.

import { createHash } from 'node:crypto';
import type { LayerRecord } from '../index/types.js';
import type { Lease } from '../util/ref-counted.js';

/** Bytes per block: a FUSE READ (128 KiB to 1 MiB) is a few of them. */
export const BLOCK = 128 * 1024;

/** Per slot: state, pins, layer table id, block number, length, recently used. */
const META_WORDS = 6;
const STATE = 0;
const PINS = 1;
const TABLE = 2;
const NUMBER = 3;
const LENGTH = 4;
const USED = 5;

const FREE = 0;
const VALID = 1;
const TAKEN = 2;

/** Layer table header (i32 words): id, spans, blocks, then padding to 8 bytes. */
const TABLE_HEADER_BYTES = 16;

/** What the reader threads are given once: the arena and its slots' metadata. */
export interface SharedBlocksInit {
  arena: SharedArrayBuffer;
  meta: SharedArrayBuffer;
}

interface LayerTable {
  id: number;
  key: string;
  sab: SharedArrayBuffer;
  starts: Float64Array;
  base: Int32Array;
  slots: Int32Array;
  users: number;
}

/** Views of a layer table's three arrays, for either side. */
function tableViews(sab: SharedArrayBuffer): LayerBlocksView {
  const h = new Int32Array(sab, 0, 3);
  const spans = h[1]!;
  const blocks = h[2]!;
  const starts = new Float64Array(sab, TABLE_HEADER_BYTES, spans + 1);
  const base = new Int32Array(sab, TABLE_HEADER_BYTES + (spans + 1) * 8, spans + 1);
  const slots = new Int32Array(sab, TABLE_HEADER_BYTES + (spans + 1) * 12, blocks);
  return { id: h[0]!, starts, base, slots };
}

/** The main thread's side: tables of the layers being served, and the copying of spans into the arena. */
export class SharedBlocks {
  readonly init: SharedBlocksInit;
  private readonly arena: Buffer;
  private readonly meta: Int32Array;
  private readonly slotCount: number;
  private hand = 0;
  private nextId = 1;
  private readonly byKey = new Map<string, LayerTable>();
  private readonly byId = new Map<number, LayerTable>();
  /** Each layer record's table key (computed once: it hashes the span starts). */
  private readonly keys = new WeakMap<LayerRecord, string>();

  /** An arena of `bytes` (rounded down to whole blocks; at least one). */
  constructor(bytes: number) {
    this.slotCount = Math.max(1, Math.floor(bytes / BLOCK));
    const arena = new SharedArrayBuffer(this.slotCount * BLOCK);
    const meta = new SharedArrayBuffer(this.slotCount * META_WORDS * 4);
    this.init = { arena, meta };
    this.arena = Buffer.from(arena);
    this.meta = new Int32Array(meta);
  }

  get bytes(): number {
    return this.slotCount * BLOCK;
  }

  /** The tables of an image's layers (in its order), for the reader threads; released when the image goes. */
  acquire(layers: readonly LayerRecord[]): Lease<SharedArrayBuffer[]> {
    const held = layers.map((l) => this.table(l));
    let released = false;
    return {
      value: held.map((t) => t.sab),
      release: async () => {
        if (released) return;
        released = true;
        for (const t of held) if (--t.users === 0) this.drop(t);
      },
    };
  }

  /**
   * Copies the blocks of span i of `layer` that `data` (the span's output
   * from its start: the whole span, or a verified prefix) covers whole, unless
   * held already. Only layers of a served image (acquire) have a table.
   */
  publish(layer: LayerRecord, i: number, data: Buffer): void {
    const t = this.byKey.get(this.keyOf(layer));
    if (!t) return;
    const spanLength = t.starts[i + 1]! - t.starts[i]!;
    const first = t.base[i]!;
    const count = t.base[i + 1]! - first;
    for (let k = 0; k < count; k++) {
      const from = k * BLOCK;
      const to = Math.min(from + BLOCK, spanLength);
      if (data.length < to) return;
      const b = first + k;
      const held = Atomics.load(t.slots, b) - 1;
      if (held >= 0) {
        Atomics.store(this.meta, held * META_WORDS + USED, 1);
        continue;
      }
      const s = this.take();
      if (s < 0) return;
      data.copy(this.arena, s * BLOCK, from, to);
      const m = s * META_WORDS;
      this.meta[m + TABLE] = t.id;
      this.meta[m + NUMBER] = b;
      this.meta[m + LENGTH] = to - from;
      this.meta[m + USED] = 1;
      Atomics.store(this.meta, m + STATE, VALID);
      Atomics.store(t.slots, b, s + 1);
    }
  }

  /** Blocks held now (O(slots): for tests). */
  held(): number {
    let n = 0;
    for (let s = 0; s < this.slotCount; s++) if (Atomics.load(this.meta, s * META_WORDS + STATE) === VALID) n++;
    return n;
  }

  /** A slot no thread reads, taken for new bytes (a clock over recently used bits); -1 when every slot is pinned. */
  private take(): number {
    const meta = this.meta;
    for (let step = 0; step < 2 * this.slotCount + 1; step++) {
      const s = this.hand;
      this.hand = (this.hand + 1) % this.slotCount;
      const m = s * META_WORDS;
      const state = Atomics.load(meta, m + STATE);
      if (state === VALID && Atomics.load(meta, m + USED) !== 0) {
        Atomics.store(meta, m + USED, 0);
        continue;
      }
      if (Atomics.load(meta, m + PINS) !== 0) continue;
      Atomics.store(meta, m + STATE, TAKEN);
      // A thread that pinned it before the store above is seen here; one that pins after sees TAKEN.
      if (Atomics.load(meta, m + PINS) !== 0) {
        Atomics.store(meta, m + STATE, state);
        continue;
      }
      if (state === VALID) {
        const owner = this.byId.get(meta[m + TABLE]!);
        if (owner) Atomics.compareExchange(owner.slots, meta[m + NUMBER]!, s + 1, 0);
      }
      return s;
    }
    return -1;
  }

  private keyOf(layer: LayerRecord): string {
    let key = this.keys.get(layer);
    if (key === undefined) {
      const h = createHash('sha256').update(`${layer.digest}\n`);
      const starts = new Float64Array(layer.spans.checkpoints.map((c) => c.out));
      h.update(new Uint8Array(starts.buffer));
      key = `${layer.digest}\n${layer.spans.uncompressedSize}\n${h.digest('hex')}`;
      this.keys.set(layer, key);
    }
    return key;
  }

  private table(layer: LayerRecord): LayerTable {
    const key = this.keyOf(layer);
    const known = this.byKey.get(key);
    if (known) {
      known.users++;
      return known;
    }
    const cps = layer.spans.checkpoints;
    const spans = cps.length;
    const starts = [...cps.map((c) => c.out), layer.spans.uncompressedSize];
    const base = [0];
    for (let i = 0; i < spans; i++) base.push(base[i]! + Math.ceil((starts[i + 1]! - starts[i]!) / BLOCK));
    const blocks = base[spans]!;
    const sab = new SharedArrayBuffer(TABLE_HEADER_BYTES + (spans + 1) * 12 + blocks * 4);
    const id = this.nextId++;
    new Int32Array(sab, 0, 3).set([id, spans, blocks]);
    const v = tableViews(sab);
    v.starts.set(starts);
    v.base.set(base);
    const t: LayerTable = { id, key, sab, starts: v.starts, base: v.base, slots: v.slots, users: 1 };
    this.byKey.set(key, t);
    this.byId.set(id, t);
    return t;
  }

  /** A layer no served image has: its slots are free (a thread still reading one keeps its pin; take() waits for it). */
  private drop(t: LayerTable): void {
    this.byKey.delete(t.key);
    this.byId.delete(t.id);
    for (let b = 0; b < t.slots.length; b++) {
      const s = Atomics.exchange(t.slots, b, 0) - 1;
      if (s >= 0 && this.meta[s * META_WORDS + TABLE] === t.id) Atomics.store(this.meta, s * META_WORDS + STATE, FREE);
    }
  }
}

/** A reader thread's side: finds the blocks of a layer range, pinned while the reply is written. */
export class SharedBlocksView {
  private readonly arena: Buffer;
  private readonly meta: Int32Array;

  constructor(init: SharedBlocksInit) {
    this.arena = Buffer.from(init.arena);
    this.meta = new Int32Array(init.meta);
  }

  /** A layer table (SharedBlocks.acquire) to look up blocks in. */
  static layer(sab: SharedArrayBuffer): LayerBlocksView {
    return tableViews(sab);
  }

  /**
   * Views of layer bytes [from, to) in `parts`, each block's slot in
   * `pinned` (unpin them once the reply is written, also when this fails).
   * False when a block is not held: the main thread serves the read.
   */
  collect(layer: LayerBlocksView, from: number, to: number, parts: Buffer[], pinned: number[]): boolean {
    const { starts, base, slots, id } = layer;
    const meta = this.meta;
    // The span of `from`: the last start at or before it.
    let lo = 0;
    let hi = starts.length - 2;
    if (hi < 0 || from < 0 || to > starts[hi + 1]!) return false;
    while (lo < hi) {
      const mid = (lo + hi + 1) >> 1;
      if (starts[mid]! <= from) lo = mid;
      else hi = mid - 1;
    }
    let i = lo;
    let pos = from;
    while (pos < to) {
      while (starts[i + 1]! <= pos) i++;
      const k = Math.floor((pos - starts[i]!) / BLOCK);
      const b = base[i]! + k;
      const s = Atomics.load(slots, b) - 1;
      if (s < 0) return false;
      const m = s * META_WORDS;
      Atomics.add(meta, m + PINS, 1);
      pinned.push(s);
      if (Atomics.load(meta, m + STATE) !== VALID || meta[m + TABLE] !== id || meta[m + NUMBER] !== b) return false;
      const blockStart = starts[i]! + k * BLOCK;
      const a = pos - blockStart;
      const e = Math.min(to - blockStart, meta[m + LENGTH]!);
      if (e <= a) return false;
      parts.push(this.arena.subarray(s * BLOCK + a, s * BLOCK + e));
      Atomics.store(meta, m + USED, 1);
      pos = blockStart + e;
    }
    return true;
  }

  unpin(pinned: number[]): void {
    for (const s of pinned) Atomics.sub(this.meta, s * META_WORDS + PINS, 1);
    pinned.length = 0;
  }
}

export interface LayerBlocksView {
  id: number;
  starts: Float64Array;
  base: Int32Array;
  slots: Int32Array;
}
