// Start-up profiles: the spans a workload read, in the order it first read
// them, recorded by one mount (`--record-profile`) and fetched all together by
// a later mount of the same image (`--profile`) before the workload asks for
// them. A cold start is then bound by the bytes it needs, not by one round
// trip per span read one after another. (Peers do the same with "landmark"
// files or prefetch lists made by a profiling run.)

import { readFile } from 'node:fs/promises';
import { ClipError } from '../errors.js';
import type { ClipIndex } from '../index/types.js';
import { writeFileAtomic } from '../util/atomic-write.js';
import type { LayerReader } from './layer-reader.js';

interface ProfileFile {
  clipStartupProfile: 1;
  /** The image the profile was recorded on, and the span size of its index. */
  manifestDigest: string;
  spanSize: number;
  /** [layer digest, span index], in first-read order. */
  spans: [string, number][];
}

export interface ProfiledSpan {
  layer: number;
  span: number;
}

/** Remembers which spans were read, first read first. */
export class ProfileRecorder {
  private readonly seen = new Set<string>();
  readonly spans: ProfiledSpan[] = [];

  /** Told by the layer reader about every read: spans [first, last] of a layer. */
  readonly record = (layer: number, first: number, last: number): void => {
    for (let span = first; span <= last; span++) {
      const key = `${layer}:${span}`;
      if (this.seen.has(key)) continue;
      this.seen.add(key);
      this.spans.push({ layer, span });
    }
  };

  async save(file: string, index: ClipIndex): Promise<void> {
    const body: ProfileFile = {
      clipStartupProfile: 1,
      manifestDigest: index.image.manifestDigest,
      spanSize: index.image.spanSize,
      spans: this.spans.map((s) => [index.layers[s.layer]!.digest, s.span]),
    };
    await writeFileAtomic(file, Buffer.from(JSON.stringify(body) + '\n'));
  }
}

/** Reads a profile file: its JSON, checked for shape and image. */
async function readProfile(file: string, manifestDigest: string): Promise<ProfileFile> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (e) {
    throw new ClipError('BAD_ARGUMENT', `cannot read start-up profile ${file}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`);
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

/** Checks every field of a parsed profile, naming the first one that is wrong; the image first (the likeliest mistake). */
function checkShape(file: string, v: unknown, manifestDigest: string): ProfileFile {
  const bad = (field: string, problem: string): ClipError => new ClipError('BAD_ARGUMENT', `start-up profile ${file}: ${field} ${problem}`);
  if (!v || typeof v !== 'object' || Array.isArray(v)) throw new ClipError('BAD_ARGUMENT', `${file} is not a clip start-up profile (expected a JSON object)`);
  const o = v as Record<string, unknown>;
  if (o['clipStartupProfile'] !== 1) throw new ClipError('BAD_ARGUMENT', `${file} is not a clip start-up profile (no "clipStartupProfile": 1)`);
  if (typeof o['manifestDigest'] !== 'string' || !DIGEST.test(o['manifestDigest'])) throw bad('"manifestDigest"', 'is not a sha256 digest');
  if (o['manifestDigest'] !== manifestDigest) {
    throw new ClipError('BAD_ARGUMENT', `start-up profile ${file} was recorded on image ${o['manifestDigest']}, not ${manifestDigest}`);
  }
  const spanSize = o['spanSize'];
  if (typeof spanSize !== 'number' || !Number.isSafeInteger(spanSize) || spanSize <= 0) throw bad('"spanSize"', 'is not a positive whole number of bytes');
  const spans = o['spans'];
  if (!Array.isArray(spans)) throw bad('"spans"', 'is not a list');
  spans.forEach((entry: unknown, k) => {
    const ok = Array.isArray(entry) && entry.length === 2 && typeof entry[0] === 'string' && DIGEST.test(entry[0]) && Number.isSafeInteger(entry[1]) && (entry[1] as number) >= 0;
    if (!ok) throw bad(`"spans"[${k}]`, `is ${JSON.stringify(entry) ?? String(entry)}, not [layer digest, span number]`);
  });
  return o as unknown as ProfileFile;
}

/** Reads a profile and checks it describes this index's image. */
export async function loadProfile(file: string, index: ClipIndex): Promise<ProfiledSpan[]> {
  const body = await readProfile(file, index.image.manifestDigest);
  const layerOf = new Map(index.layers.map((l, i) => [l.digest, i]));
  return body.spans.map(([digest, span], k) => {
    const layer = layerOf.get(digest);
    if (layer === undefined || !Number.isInteger(span) || span < 0 || span >= index.layers[layer]!.spans.checkpoints.length) {
      throw new ClipError('BAD_ARGUMENT', `start-up profile ${file}: entry ${k} (${digest} span ${span}) is not in the index`);
    }
    return { layer, span };
  });
}

/**
 * For indexing with a profile: per layer digest, the checkpoints where the
 * profiled reads begin (a profiled span whose predecessor is not), which then
 * keep their window, so a start fetches those spans and nothing before them.
 */
export async function profileWindows(file: string, manifestDigest: string, spanSize: number): Promise<Map<string, Set<number>>> {
  const body = await readProfile(file, manifestDigest);
  if (body.spanSize !== spanSize) {
    throw new ClipError('BAD_ARGUMENT', `start-up profile ${file} was recorded on an index with span size ${body.spanSize}; index with --span-size ${body.spanSize} to use it`);
  }
  const profiled = new Set(body.spans.map(([digest, span]) => `${digest}:${span}`));
  const out = new Map<string, Set<number>>();
  for (const [digest, span] of body.spans) {
    if (span > 0 && !profiled.has(`${digest}:${span - 1}`)) {
      if (!out.has(digest)) out.set(digest, new Set());
      out.get(digest)!.add(span);
    }
  }
  return out;
}

/**
 * Fetches the profiled spans into the reader's caches: adjacent spans of a
 * layer in one request, runs in the order the workload first needed them,
 * `concurrency` requests at a time. Returns the number of spans.
 */
export async function warmFromProfile(reader: LayerReader, spans: ProfiledSpan[], concurrency = 8): Promise<number> {
  const order = new Map(spans.map((s, k) => [`${s.layer}:${s.span}`, k]));
  const sorted = [...spans].sort((a, b) => a.layer - b.layer || a.span - b.span);
  const runs: { layer: number; first: number; last: number; rank: number }[] = [];
  for (const s of sorted) {
    const run = runs[runs.length - 1];
    const rank = order.get(`${s.layer}:${s.span}`)!;
    if (run && run.layer === s.layer && run.last === s.span - 1) {
      run.last = s.span;
      run.rank = Math.min(run.rank, rank);
    } else runs.push({ layer: s.layer, first: s.span, last: s.span, rank });
  }
  runs.sort((a, b) => a.rank - b.rank);
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < runs.length) {
      const run = runs[next++]!;
      await reader.load(run.layer, run.first, run.last);
    }
  };
  await Promise.all(Array.from({ length: Math.min(concurrency, runs.length) }, worker));
  return spans.length;
}
