// Turns the compressed bytes of consecutive spans back into their output:
// inflate from the first span's checkpoint with its window as dictionary
// (native zlib), crossing into following gzip members when a member ends.

import zlib from 'node:zlib';
import { ClipError } from '../errors.js';
import type { SpanTable } from './types.js';

/** Compressed byte range of span i. Span 0 also holds the first gzip header. */
export function spanRange(table: SpanTable, i: number): { start: number; end: number } {
  const cps = table.checkpoints;
  return {
    start: i === 0 ? 0 : cps[i]!.in,
    end: i + 1 < cps.length ? cps[i + 1]!.in : table.compressedSize,
  };
}

/** Uncompressed byte range of span i. */
export function spanOutputRange(table: SpanTable, i: number): { start: number; end: number } {
  const cps = table.checkpoints;
  return { start: cps[i]!.out, end: i + 1 < cps.length ? cps[i + 1]!.out : table.uncompressedSize };
}

/**
 * Whether inflating from checkpoint i needs the output before it (its window
 * was not kept in the index): the last 32 KiB of span i - 1.
 */
export function needsWindow(table: SpanTable, i: number): boolean {
  return table.compression === 'gzip' && i > 0 && table.checkpoints[i]!.window.length === 0;
}

/** The span holding uncompressed offset `offset` (binary search). */
export function spanAt(table: SpanTable, offset: number): number {
  const cps = table.checkpoints;
  let lo = 0;
  let hi = cps.length - 1;
  while (lo < hi) {
    const mid = (lo + hi + 1) >> 1;
    if (cps[mid]!.out <= offset) lo = mid;
    else hi = mid - 1;
  }
  return lo;
}

interface InflateResult {
  output: Buffer;
  consumed: number;
}

function run(stream: zlib.Inflate | zlib.InflateRaw | zlib.Gunzip, input: Buffer): Promise<InflateResult> {
  return new Promise((resolve, reject) => {
    const parts: Buffer[] = [];
    stream.on('data', (b: Buffer) => parts.push(b));
    stream.on('error', reject);
    stream.on('end', () => resolve({ output: Buffer.concat(parts), consumed: stream.bytesWritten }));
    stream.end(input);
  });
}

const CHUNK = 256 * 1024;
/** Deflate looks back at most this far. */
const WINDOW_BYTES = 32 * 1024;

/**
 * Inflates spans [first, last] from their compressed bytes (exactly
 * spanRange(first).start .. spanRange(last).end) and returns their whole
 * output, checked against the expected length. `before`: output that ends
 * where span `first` starts (at least its last 32 KiB), needed when the
 * index kept no window for that checkpoint.
 */
export async function inflateSpans(table: SpanTable, first: number, last: number, compressed: Buffer, before?: Buffer): Promise<Buffer> {
  const expected = spanOutputRange(table, last).end - spanOutputRange(table, first).start;
  if (table.compression === 'none') return compressed;
  const cp = table.checkpoints[first]!;
  const skip = cp.in - spanRange(table, first).start;
  let window: Buffer | undefined;
  if (needsWindow(table, first)) {
    if (!before) throw new ClipError('BAD_INDEX', `span ${first} has no window in the index and the output before it was not given`);
    window = before.subarray(Math.max(0, before.length - WINDOW_BYTES));
  } else if (cp.window.length > 0) window = zlib.inflateRawSync(cp.window);
  const parts: Buffer[] = [];
  let produced = 0;
  try {
    let rest = compressed.subarray(skip);
    let raw = await run(
      zlib.createInflateRaw({ chunkSize: CHUNK, finishFlush: zlib.constants.Z_SYNC_FLUSH, ...(window ? { dictionary: window } : {}) }),
      rest,
    );
    parts.push(raw.output);
    produced += raw.output.length;
    // A member ended inside the range: skip its 8-byte trailer and continue
    // with the members that follow (Node's gunzip handles several in a row).
    rest = rest.subarray(raw.consumed + 8);
    if (raw.consumed < compressed.length - skip && rest.some((b) => b !== 0)) {
      raw = await run(zlib.createGunzip({ chunkSize: CHUNK, finishFlush: zlib.constants.Z_SYNC_FLUSH }), rest);
      parts.push(raw.output);
      produced += raw.output.length;
    }
  } catch (e) {
    throw new ClipError('BAD_GZIP', `cannot inflate spans ${first}-${last}: ${(e as Error).message}`);
  }
  if (produced !== expected) {
    throw new ClipError('BAD_GZIP', `spans ${first}-${last} inflated to ${produced} bytes, expected ${expected}`);
  }
  return parts.length === 1 ? parts[0]! : Buffer.concat(parts, produced);
}
