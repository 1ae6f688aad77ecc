// The start-up profile file format: which spans a workload read, first read
// first, as JSON naming the image and its index's span size. Written by a
// mount recording a profile, read by a mount warming its caches and by the
// indexer placing windows (content/startup-profile.ts records and warms).
//
// Spans are named by where they start in their layer's uncompressed stream
// (and end, so that the indexer sees where runs of read spans begin), not by
// number: an offset can only ever mean the same bytes, while span numbers
// change with every checkpoint placed otherwise (another span size, another
// clip). At load, each entry's range is read from the spans of this index
// that cover it (mapProfile).
//
// Format 1 named spans by number. It is still read where numbering cannot
// differ between two indexes of the image with that span size (uncompressed
// and clip-archive layers: fixed spans); gzip spans by number are refused,
// since the profile does not say which index they were numbered in.
//
// An index may carry a profile of its own (traced at index time, or given to
// `clip index --profile`): the same [digest, start, end] entries in the
// body's JSON metadata, checked against the index's layers when it loads.
//
// An entry may say how far into its span the workload read: `until`, the
// largest offset read there plus one (start < until <= end). A mount of an
// index with marks (format v6) then fetches that span only up to the chunk
// covering `until`. Absent: the whole span (as in profiles written before).
//
// And where the first read there began: `from`, a block boundary of the
// layer (one of the index's marks, start < from < until) at or before it,
// when the read began past the span's first mark. An index made with the
// profile places a checkpoint at `from`, so that a read fetches from where
// it begins, not from up to a span before (an entry then needs `until`:
// the span's end when read to it).

import { readFile } from 'node:fs/promises';
import { ClipError } from '../errors.js';
import { spanAt, spanOutputRange } from '../gzip/span-reader.js';
import { writeFileAtomic } from '../util/atomic-write.js';
import type { ClipIndex, LayerRecord } from './types.js';

/** [layer digest, uncompressed start, uncompressed end, until?, from?] of one span read (see above). */
export type ProfileEntry = [string, number, number] | [string, number, number, number] | [string, number, number, number, number];

/** Most entries an embedded profile may hold (a bound on what a hostile index makes a mount fetch and keep). */
export const MAX_PROFILE_ENTRIES = 1_000_000;

/** Format 2 (written since offsets replaced numbers). */
interface ProfileFile {
  clipStartupProfile: 2;
  /** The image the profile was recorded on, and the span size of its index. */
  manifestDigest: string;
  spanSize: number;
  /** [layer digest, uncompressed start, uncompressed end, until?] of each span read, in first-read order. */
  spans: ProfileEntry[];
}

/** Format 1: spans by number. */
interface ProfileFileV1 {
  clipStartupProfile: 1;
  manifestDigest: string;
  spanSize: number;
  /** [layer digest, span number], in first-read order. */
  spans: [string, number][];
}

export interface ProfiledSpan {
  layer: number;
  span: number;
  /** The largest uncompressed offset read in the span, plus one (absent: all of it). */
  until?: number;
  /** The smallest uncompressed offset read in the span, when past its start (recording only; saved as `from`). */
  lowest?: number;
}

/** A profile mapped onto an index. */
export interface LoadedProfile {
  /** The spans of this index the profile names, first read first. */
  spans: ProfiledSpan[];
  /** Entries skipped: their offset starts no span of this index. */
  skipped: number;
}

/** Writes the profile of `spans` read on `index` to `file` (atomically). */
export async function saveProfile(file: string, index: ClipIndex, spans: readonly ProfiledSpan[]): Promise<void> {
  const body: ProfileFile = {
    clipStartupProfile: 2,
    manifestDigest: index.image.manifestDigest,
    spanSize: index.image.spanSize,
    spans: profileEntries(index, spans),
  };
  await writeFileAtomic(file, Buffer.from(JSON.stringify(body) + '\n'));
}

/** The entries naming `spans` of `index` by offset (with how far each was read, where not to its end). */
export function profileEntries(index: Pick<ClipIndex, 'layers'>, spans: readonly ProfiledSpan[]): ProfileEntry[] {
  return spans.map((s) => {
    const layer = index.layers[s.layer]!;
    const range = spanOutputRange(layer.spans, s.span);
    const until = s.until === undefined || s.until >= range.end ? range.end : Math.max(range.start + 1, s.until);
    const from = s.lowest === undefined ? undefined : boundaryBefore(layer, s.span, s.lowest, until);
    if (from !== undefined) return [layer.digest, range.start, range.end, until, from];
    if (until === range.end) return [layer.digest, range.start, range.end];
    return [layer.digest, range.start, range.end, until];
  });
}

/** The last mark of span i at or before `offset` and before `until` (a block boundary to resume at), if past the span's start. */
function boundaryBefore(layer: LayerRecord, i: number, offset: number, until: number): number | undefined {
  let from: number | undefined;
  for (const m of layer.spans.fine?.[i]?.marks ?? []) {
    if (m.out > offset || m.out >= until) break;
    from = m.out;
  }
  return from;
}

/** Whether `e` is [digest-like string, start, end, until?, from?] with start < until <= end and start < from < until. */
function isEntry(e: unknown): e is ProfileEntry {
  if (!Array.isArray(e) || e.length < 3 || e.length > 5 || typeof e[0] !== 'string') return false;
  const [, start, end, until, from] = e as unknown[];
  if (!isOffset(start) || !isOffset(end) || start >= end) return false;
  if (e.length === 3) return true;
  if (!(isOffset(until) && until > start && until <= end)) return false;
  return e.length === 4 || (isOffset(from) && from > start && from < until);
}

/** Reads a profile file: its JSON, checked for shape and image. */
async function readProfile(file: string, manifestDigest: string): Promise<ProfileFile | ProfileFileV1> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (e) {
    throw new ClipError(
      'BAD_ARGUMENT',
      `cannot read start-up profile ${file}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`,
    );
  }
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch {
    // The parser's message quotes the bytes: useless (and binary) for a file that is something else.
    throw new ClipError('BAD_ARGUMENT', `${file} is not a clip start-up profile (not valid JSON)`);
  }
  return checkShape(file, parsed, manifestDigest);
}

const DIGEST = /^sha256:[0-9a-f]{64}$/;

const isOffset = (v: unknown): v is number => typeof v === 'number' && Number.isSafeInteger(v) && v >= 0;

/** Checks every field of a parsed profile, naming the first one that is wrong; the image first (the likeliest mistake). */
function checkShape(file: string, v: unknown, manifestDigest: string): ProfileFile | ProfileFileV1 {
  const bad = (field: string, problem: string): ClipError => new ClipError('BAD_ARGUMENT', `start-up profile ${file}: ${field} ${problem}`);
  if (!v || typeof v !== 'object' || Array.isArray(v))
    throw new ClipError('BAD_ARGUMENT', `${file} is not a clip start-up profile (expected a JSON object)`);
  const o = v as Record<string, unknown>;
  const version = o['clipStartupProfile'];
  if (version !== 1 && version !== 2)
    throw new ClipError('BAD_ARGUMENT', `${file} is not a clip start-up profile (no "clipStartupProfile": 2)`);
  if (typeof o['manifestDigest'] !== 'string' || !DIGEST.test(o['manifestDigest'])) throw bad('"manifestDigest"', 'is not a sha256 digest');
  if (o['manifestDigest'] !== manifestDigest) {
    throw new ClipError('BAD_ARGUMENT', `start-up profile ${file} was recorded on image ${o['manifestDigest']}, not ${manifestDigest}`);
  }
  const spanSize = o['spanSize'];
  if (typeof spanSize !== 'number' || !Number.isSafeInteger(spanSize) || spanSize <= 0)
    throw bad('"spanSize"', 'is not a positive whole number of bytes');
  const spans = o['spans'];
  if (!Array.isArray(spans)) throw bad('"spans"', 'is not a list');
  spans.forEach((entry: unknown, k) => {
    const named = Array.isArray(entry) && typeof entry[0] === 'string' && DIGEST.test(entry[0]);
    const ok = version === 2 ? named && isEntry(entry) : named && entry.length === 2 && isOffset(entry[1]);
    const shape = version === 2 ? '[layer digest, start offset, end offset, until?, from?]' : '[layer digest, span number]';
    if (!ok) throw bad(`"spans"[${k}]`, `is ${JSON.stringify(entry) ?? String(entry)}, not ${shape}`);
  });
  return o as unknown as ProfileFile | ProfileFileV1;
}

/** The layer an entry names; a digest not in the index means the profile is not of this image's index. */
function layerOf(file: string, index: ClipIndex, layers: Map<string, number>, digest: string, k: number): number {
  const layer = layers.get(digest);
  if (layer === undefined)
    throw new ClipError('BAD_ARGUMENT', `start-up profile ${file}: entry ${k} names layer ${digest}, not in the index`);
  return layer;
}

/** Whether span numbers of this layer are the same in every index of it with the same span size. */
function fixedNumbering(layer: LayerRecord): boolean {
  return layer.spans.compression !== 'gzip' || layer.spans.checkpoints.length === 1;
}

function refuseNumbers(file: string, why: string): ClipError {
  return new ClipError(
    'BAD_ARGUMENT',
    `start-up profile ${file} names spans by number (format 1): ${why}; record it again with this clip (clip mount --record-profile), which names them by offset`,
  );
}

/** Reads a profile and maps it onto this index's spans (see LoadedProfile). */
export async function loadProfile(file: string, index: ClipIndex): Promise<LoadedProfile> {
  const body = await readProfile(file, index.image.manifestDigest);
  const layers = new Map(index.layers.map((l, i) => [l.digest, i]));
  if (body.clipStartupProfile === 1) return numberedSpans(file, index, layers, body);
  body.spans.forEach(([digest], k) => layerOf(file, index, layers, digest, k));
  return mapProfile(index, body.spans);
}

/**
 * Maps entries onto this index's spans, first read first, once each: the
 * range an entry says was read (from its `from`, else its start, to its
 * `until`, else its end) is read from the spans here that cover it, the last
 * of them only up to where the range ends inside it. So a profile recorded
 * on an index placed otherwise (another span size, checkpoints where a
 * profile's reads began) brings what was read all the same, and never makes
 * a mount fetch more than the spans covering the ranges it names. Entries of
 * layers not in the index (the callers refuse them first) or past a layer's
 * end are skipped (counted), as are those beyond a bound on the work (a few
 * visits per span of the index: a hostile list of huge ranges costs no more).
 */
export function mapProfile(index: Pick<ClipIndex, 'layers'>, entries: readonly ProfileEntry[]): LoadedProfile {
  const layers = new Map(index.layers.map((l, i) => [l.digest, i]));
  const seen = new Map<string, ProfiledSpan>();
  const spans: ProfiledSpan[] = [];
  let skipped = 0;
  let budget = entries.length + 4 * index.layers.reduce((n, l) => n + l.spans.checkpoints.length, 0);
  for (const e of entries) {
    const [digest, start, end] = e;
    const layer = layers.get(digest);
    const table = layer === undefined ? undefined : index.layers[layer]!.spans;
    const lo = e.length === 5 ? e[4] : start;
    const hi = Math.min(e.length === 3 ? end : e[3], table?.uncompressedSize ?? 0);
    if (layer === undefined || table === undefined || lo >= hi) {
      skipped++;
      continue;
    }
    for (let i = spanAt(table, lo), last = spanAt(table, hi - 1); i <= last; i++) {
      if (budget-- <= 0) {
        skipped++;
        break;
      }
      const reach = i === last && hi < spanOutputRange(table, i).end ? hi : undefined;
      const key = `${layer}:${i}`;
      const known = seen.get(key);
      if (known) {
        if (known.until !== undefined && (reach === undefined || reach > known.until)) {
          if (reach === undefined) delete known.until;
          else known.until = reach;
        }
        continue;
      }
      const s: ProfiledSpan = reach === undefined ? { layer, span: i } : { layer, span: i, until: reach };
      seen.set(key, s);
      spans.push(s);
    }
  }
  return { spans, skipped };
}

/** Format 1, read only where the numbers cannot mean other bytes than in the index it was recorded on. */
function numberedSpans(file: string, index: ClipIndex, layers: Map<string, number>, body: ProfileFileV1): LoadedProfile {
  if (body.spanSize !== index.image.spanSize) {
    throw refuseNumbers(file, `they were numbered in an index with span size ${body.spanSize}, this one has ${index.image.spanSize}`);
  }
  const spans = body.spans.map(([digest, span], k) => {
    const layer = layerOf(file, index, layers, digest, k);
    const record = index.layers[layer]!;
    if (!fixedNumbering(record)) {
      throw refuseNumbers(
        file,
        `gzip layer ${digest} may be numbered differently in another index of the image, so they may name other bytes`,
      );
    }
    if (span >= record.spans.checkpoints.length) {
      throw new ClipError('BAD_ARGUMENT', `start-up profile ${file}: entry ${k} (${digest} span ${span}) is not in the index`);
    }
    return { layer, span };
  });
  return { spans, skipped: 0 };
}

/** For indexing with profiles: the entries of each file (format 2, recorded on this image with this span size), one list per file. */
export async function readProfiles(files: readonly string[], manifestDigest: string, spanSize: number): Promise<ProfileEntry[][]> {
  const lists: ProfileEntry[][] = [];
  for (const file of files) {
    const body = await readProfile(file, manifestDigest);
    if (body.clipStartupProfile === 1) {
      throw refuseNumbers(file, 'the numbers do not say where the spans were in the index they were recorded on');
    }
    if (body.spanSize !== spanSize) {
      // Offsets of span starts coincide only where checkpoints are placed alike.
      throw new ClipError(
        'BAD_ARGUMENT',
        `start-up profile ${file} was recorded on an index with span size ${body.spanSize}; index with --span-size ${body.spanSize} to use it`,
      );
    }
    lists.push(body.spans);
  }
  return lists;
}

/**
 * Merges profiles into one first-access order by interleaving: every list's
 * first entry, then every list's second, and so on, each [digest, start] once.
 * A span one workload needs early stays early, whichever list names it; it
 * keeps the largest `until` of its entries (one without: the whole span).
 */
export function mergeProfiles(lists: readonly (readonly ProfileEntry[])[]): ProfileEntry[] {
  const seen = new Map<string, number>();
  const out: ProfileEntry[] = [];
  const longest = Math.max(0, ...lists.map((l) => l.length));
  for (let k = 0; k < longest; k++) {
    for (const list of lists) {
      const e = list[k];
      if (!e) continue;
      const key = `${e[0]}:${e[1]}`;
      const at = seen.get(key);
      if (at === undefined) {
        seen.set(key, out.length);
        out.push([...e]);
        continue;
      }
      out[at] = mergeEntry(out[at]!, e);
    }
  }
  return out;
}

/** One span's entries as one: read as far as the furthest (`until`), from where the first began (`from`). */
function mergeEntry(a: ProfileEntry, b: ProfileEntry): ProfileEntry {
  const [digest, start, end] = a;
  const until = a.length === 3 || b.length === 3 ? end : Math.max(a[3], b[3]);
  const from = a.length === 5 && b.length === 5 ? Math.min(a[4], b[4]) : undefined;
  if (from !== undefined && from < until) return [digest, start, end, until, from];
  return until >= end ? [digest, start, end] : [digest, start, end, until];
}

/**
 * Per layer digest, the uncompressed offsets where the profiled reads begin:
 * an entry's `from`, else its start where no profiled span ends (the start
 * of a run). The indexer places checkpoints there, with their window, so a
 * start fetches from there and nothing before.
 */
export function readStarts(entries: readonly ProfileEntry[]): Map<string, Set<number>> {
  const ends = new Set(entries.map(([digest, , end]) => `${digest}:${end}`));
  const out = new Map<string, Set<number>>();
  for (const e of entries) {
    const [digest, start] = e;
    const at = e.length === 5 ? e[4] : start > 0 && !ends.has(`${digest}:${start}`) ? start : undefined;
    if (at === undefined) continue;
    if (!out.has(digest)) out.set(digest, new Set());
    out.get(digest)!.add(at);
  }
  return out;
}

/** readStarts of one profile file. */
export async function profileReadStarts(file: string, manifestDigest: string, spanSize: number): Promise<Map<string, Set<number>>> {
  return readStarts(mergeProfiles(await readProfiles([file], manifestDigest, spanSize)));
}

/**
 * An index's embedded profile as read from its JSON metadata: a bounded list
 * of entries naming layers of the index and spans inside them. Anything else
 * is a corrupt index (the file is untrusted: it decides what a mount fetches).
 */
export function checkEmbeddedProfile(v: unknown, layers: readonly LayerRecord[]): ProfileEntry[] {
  const bad = (what: string): never => {
    throw new ClipError('BAD_INDEX', `index body is corrupt: its start-up profile ${what}`);
  };
  if (!Array.isArray(v)) return bad('is not a list');
  if (v.length > MAX_PROFILE_ENTRIES) bad(`has ${v.length} entries (at most ${MAX_PROFILE_ENTRIES})`);
  const sizes = new Map(layers.map((l) => [l.digest, l.spans.uncompressedSize]));
  v.forEach((e: unknown, k) => {
    if (!isEntry(e))
      return bad(`entry ${k} is not [layer digest, start offset, end offset, until?, from?] (start < until <= end, start < from < until)`);
    const [digest, , end] = e;
    const size = sizes.get(digest);
    if (size === undefined) return bad(`entry ${k} names layer ${JSON.stringify(digest.slice(0, 80))}, not in the index`);
    if (end > size) bad(`entry ${k} ends at ${end}, past the end of its layer (${size} bytes)`);
  });
  return v as ProfileEntry[];
}
