// Start-up profiles: the spans a workload read, in the order it first read
// them, recorded by one mount (`--record-profile`) and fetched all together by
// a later mount of the same image (`--profile`) before the workload asks for
// them. The file names spans by offset (index/startup-profile.ts), so the
// later mount may use another index of the image. A cold start is then bound by the bytes it needs, not by one round
// trip per span read one after another. (Peers do the same with "landmark"
// files or prefetch lists made by a profiling run.)
// Each span remembers how far into it the workload read, so that a mount of
// an index with marks fetches only that prefix of it.

import type { ClipIndex } from '../index/types.js';
import { saveProfile, type ProfiledSpan } from '../index/startup-profile.js';
import type { LayerReader } from './layer-reader.js';

// The mount reads profiles through here too; the file format is index/'s.
export { loadProfile, mapProfile, type LoadedProfile, type ProfiledSpan } from '../index/startup-profile.js';

/** Remembers which spans were read, first read first, and how far into each. */
export class ProfileRecorder {
  private readonly seen = new Map<string, ProfiledSpan>();
  readonly spans: ProfiledSpan[] = [];

  /**
   * Told by the layer reader about every read: spans [first, last] of a
   * layer, the last one read only up to uncompressed offset `until` when
   * given (the others, and the last without it, to their end), the first
   * one from uncompressed offset `from` when given (the others, and the
   * first without it, from their start).
   */
  readonly record = (layer: number, first: number, last: number, until?: number, from?: number): void => {
    for (let span = first; span <= last; span++) {
      const reach = span === last ? until : undefined;
      const begin = span === first ? from : undefined;
      const key = `${layer}:${span}`;
      const known = this.seen.get(key);
      if (!known) {
        const s: ProfiledSpan = { layer, span };
        if (reach !== undefined) s.until = reach;
        if (begin !== undefined) s.lowest = begin;
        this.seen.set(key, s);
        this.spans.push(s);
        continue;
      }
      if (known.until !== undefined) {
        if (reach === undefined) delete known.until;
        else known.until = Math.max(known.until, reach);
      }
      if (known.lowest !== undefined) {
        if (begin === undefined) delete known.lowest;
        else known.lowest = Math.min(known.lowest, begin);
      }
    }
  };

  async save(file: string, index: ClipIndex): Promise<void> {
    await saveProfile(file, index, this.spans);
  }
}

/**
 * Fetches the profiled spans into the reader's caches: adjacent spans of a
 * layer in one request, runs in the order the workload first needed them,
 * `concurrency` requests at a time. A span read only part way (`until`) is
 * a request of its own, for that prefix where the index allows
 * (LayerReader.loadPrefix), unless the next span is profiled and inflates
 * from this one's whole output (its checkpoint kept no window): then the
 * whole span, in the run. Returns the number of spans.
 */
export async function warmFromProfile(reader: LayerReader, spans: ProfiledSpan[], concurrency = 8): Promise<number> {
  const order = new Map(spans.map((s, k) => [`${s.layer}:${s.span}`, k]));
  const sorted = [...spans].sort((a, b) => a.layer - b.layer || a.span - b.span);
  const runs: { layer: number; first: number; last: number; rank: number; until?: number }[] = [];
  for (const s of sorted) {
    const run = runs[runs.length - 1];
    const rank = order.get(`${s.layer}:${s.span}`)!;
    const prefix = s.until !== undefined && !(order.has(`${s.layer}:${s.span + 1}`) && reader.resumesFromPrevious(s.layer, s.span + 1));
    if (prefix) runs.push({ layer: s.layer, first: s.span, last: s.span, rank, until: s.until! });
    else if (run && run.until === undefined && run.layer === s.layer && run.last === s.span - 1) {
      run.last = s.span;
      run.rank = Math.min(run.rank, rank);
    } else runs.push({ layer: s.layer, first: s.span, last: s.span, rank });
  }
  runs.sort((a, b) => a.rank - b.rank);
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < runs.length) {
      const run = runs[next++]!;
      if (run.until !== undefined) await reader.loadPrefix(run.layer, run.first, run.until);
      else await reader.load(run.layer, run.first, run.last);
    }
  };
  await Promise.all(Array.from({ length: Math.min(concurrency, runs.length) }, worker));
  return spans.length;
}
