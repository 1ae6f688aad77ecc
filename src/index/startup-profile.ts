// The start-up profile file format: which spans a workload read, first read
// first, as JSON naming the image and its index's span size. Written by a
// mount recording a profile, read by a mount warming its caches and by the
// indexer placing windows (content/startup-profile.ts records and warms).

import { readFile } from 'node:fs/promises';
import { ClipError } from '../errors.js';
import { writeFileAtomic } from '../util/atomic-write.js';
import type { ClipIndex } from './types.js';

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

/** Writes the profile of `spans` read on `index` to `file` (atomically). */
export async function saveProfile(file: string, index: ClipIndex, spans: readonly ProfiledSpan[]): Promise<void> {
  const body: ProfileFile = {
    clipStartupProfile: 1,
    manifestDigest: index.image.manifestDigest,
    spanSize: index.image.spanSize,
    spans: spans.map((s) => [index.layers[s.layer]!.digest, s.span]),
  };
  await writeFileAtomic(file, Buffer.from(JSON.stringify(body) + '\n'));
}

/** Reads a profile file: its JSON, checked for shape and image. */
async function readProfile(file: string, manifestDigest: string): Promise<ProfileFile> {
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

/** Checks every field of a parsed profile, naming the first one that is wrong; the image first (the likeliest mistake). */
function checkShape(file: string, v: unknown, manifestDigest: string): ProfileFile {
  const bad = (field: string, problem: string): ClipError => new ClipError('BAD_ARGUMENT', `start-up profile ${file}: ${field} ${problem}`);
  if (!v || typeof v !== 'object' || Array.isArray(v))
    throw new ClipError('BAD_ARGUMENT', `${file} is not a clip start-up profile (expected a JSON object)`);
  const o = v as Record<string, unknown>;
  if (o['clipStartupProfile'] !== 1)
    throw new ClipError('BAD_ARGUMENT', `${file} is not a clip start-up profile (no "clipStartupProfile": 1)`);
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
    const ok =
      Array.isArray(entry) &&
      entry.length === 2 &&
      typeof entry[0] === 'string' &&
      DIGEST.test(entry[0]) &&
      Number.isSafeInteger(entry[1]) &&
      (entry[1] as number) >= 0;
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
    throw new ClipError(
      'BAD_ARGUMENT',
      `start-up profile ${file} was recorded on an index with span size ${body.spanSize}; index with --span-size ${body.spanSize} to use it`,
    );
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
