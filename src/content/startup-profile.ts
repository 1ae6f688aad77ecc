// Start-up profiles: the spans a workload read, in the order it first read
// them, recorded by one mount (`--record-profile`) and fetched all together by
// a later mount of the same image (`--profile`) before the workload asks for
// them. The file names spans by offset (index/startup-profile.ts), so the
// later mount may use another index of the image. A cold start is then bound by the bytes it needs, not by one round
// trip per span read one after another. (Peers do the same with "landmark"
// files or prefetch lists made by a profiling run.)

import type { ClipIndex } from '../index/types.js';
import { saveProfile, type ProfiledSpan } from '../index/startup-profile.js';
import type { LayerReader } from './layer-reader.js';

// The mount reads profiles through here too; the file format is index/'s.
export { loadProfile, mapProfile, type LoadedProfile, type ProfiledSpan } from '../index/startup-profile.js';

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
    await saveProfile(file, index, this.spans);
  }
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
