// Turns the compressed bytes of consecutive spans back into their output:
// inflate from the first span's checkpoint with its window as dictionary
// (native zlib), crossing into following gzip members when a member ends.
// Never more output than the index declares is inflated (or held): a hostile
// index whose verified bytes inflate to more fails after one chunk too many.

import zlib from 'node:zlib';
import { ClipError } from '../errors.js';
import { MAX_SPAN_OUTPUT, type Checkpoint, type SpanTable } from './types.js';
import { resumeInput } from './unaligned-resume.js';

/**
 * Compressed byte range of span i. Span 0 also holds the first gzip header.
 * When the next checkpoint starts mid-byte, span i's last block ends in that
 * byte, so the range includes it: its high bits (the next block's header) can
 * decode no output, as no deflate symbol is shorter than 7 bits after a 3-bit
 * header, nor is a stored block's length field.
 */
export function spanRange(table: SpanTable, i: number): { start: number; end: number } {
  const cps = table.checkpoints;
  const next = cps[i + 1];
  return {
    start: i === 0 ? 0 : cps[i]!.in,
    end: next ? next.in + ((next.bits ?? 0) > 0 ? 1 : 0) : table.compressedSize,
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

/**
 * Inflates `input`; fails as soon as the output exceeds `limit` bytes (then
 * at most one chunk more is held). `enough`: a prefix is wanted, so stop once
 * `limit` bytes came out and keep exactly those.
 */
function run(stream: zlib.Inflate | zlib.InflateRaw | zlib.Gunzip, input: Buffer, limit: number, enough = false): Promise<InflateResult> {
  return new Promise((resolve, reject) => {
    const parts: Buffer[] = [];
    let produced = 0;
    stream.on('data', (b: Buffer) => {
      if (enough && produced + b.length >= limit) {
        parts.push(b.subarray(0, limit - produced));
        produced = limit;
        stream.destroy();
        resolve({ output: Buffer.concat(parts, produced), consumed: input.length });
        return;
      }
      produced += b.length;
      if (produced > limit) {
        stream.destroy();
        reject(new Error(`inflates to more than the ${limit} bytes expected`));
        return;
      }
      parts.push(b);
    });
    stream.on('error', reject);
    // One part when the output fit the stream's chunk (see chunkFor): returned as it is, not copied.
    stream.on('end', () =>
      resolve({ output: parts.length === 1 ? parts[0]! : Buffer.concat(parts, produced), consumed: stream.bytesWritten }),
    );
    stream.end(input);
  });
}

/**
 * A checkpoint's stored window, inflated: exactly the min(32 KiB, out) bytes
 * before it. Inflated at each use, not at load: ~50 us against milliseconds
 * for the span, where inflating all at load doubled the load of an index with
 * 3,276 windows (+155 ms on 137 ms) and would hold 32 KiB per checkpoint.
 */
function inflateWindow(cp: Checkpoint, i: number): Buffer {
  let window: Buffer;
  try {
    window = zlib.inflateRawSync(cp.window, { maxOutputLength: WINDOW_BYTES });
  } catch (e) {
    throw new ClipError(
      'BAD_INDEX',
      `the window of checkpoint ${i} does not inflate to at most ${WINDOW_BYTES} bytes: ${(e as Error).message}`,
    );
  }
  // Any other length is not the output before `out`: a corrupt or hostile index.
  const expected = Math.min(WINDOW_BYTES, cp.out);
  if (window.length !== expected) {
    throw new ClipError('BAD_INDEX', `the window of checkpoint ${i} inflates to ${window.length} bytes, not the ${expected} before it`);
  }
  return window;
}

/**
 * Output buffer of an inflate of `limit` bytes: one byte more than that (up
 * to one span's most), so a span's output is one buffer, never 16 pieces of
 * 256 KiB copied into a 17th: those copies, ~3x the bytes served, kept the
 * daemon's garbage collector busy (bench:ml).
 */
const chunkFor = (limit: number): number => Math.max(64 * 1024, Math.min(limit, MAX_SPAN_OUTPUT) + 1);
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
  return inflate(table, first, last, compressed, before);
}

/**
 * Inflates the first `length` output bytes of span i from a prefix of its
 * compressed bytes (from spanRange(i).start, far enough to produce them: up
 * to a mark). Stops inflating once they are out; fails if the bytes give fewer.
 */
export async function inflatePrefix(table: SpanTable, i: number, compressed: Buffer, length: number, before?: Buffer): Promise<Buffer> {
  const o = spanOutputRange(table, i);
  if (!(length > 0 && length <= o.end - o.start)) {
    throw new ClipError('BAD_INDEX', `a prefix of ${length} bytes of span ${i}, which covers ${o.end - o.start}`);
  }
  return inflate(table, i, i, compressed, before, length);
}

async function inflate(
  table: SpanTable,
  first: number,
  last: number,
  compressed: Buffer,
  before?: Buffer,
  prefix?: number,
): Promise<Buffer> {
  const expected = prefix ?? spanOutputRange(table, last).end - spanOutputRange(table, first).start;
  const enough = prefix !== undefined;
  for (let i = first; i <= last; i++) {
    const o = spanOutputRange(table, i);
    if (!(o.end - o.start <= MAX_SPAN_OUTPUT)) {
      throw new ClipError(
        'BAD_INDEX',
        `span ${i} claims ${o.end - o.start} bytes of output, more than one span may cover (${MAX_SPAN_OUTPUT})`,
      );
    }
  }
  if (table.compression === 'none') return compressed;
  const cp = table.checkpoints[first]!;
  const skip = cp.in - spanRange(table, first).start;
  let window: Buffer | undefined;
  if (needsWindow(table, first)) {
    if (!before) throw new ClipError('BAD_INDEX', `span ${first} has no window in the index and the output before it was not given`);
    window = before.subarray(Math.max(0, before.length - WINDOW_BYTES));
  } else if (cp.window.length > 0) window = inflateWindow(cp, first);
  const parts: Buffer[] = [];
  let produced = 0;
  try {
    // A block that starts mid-byte is resumed behind empty blocks (unaligned-resume.ts).
    const { input } = resumeInput(compressed.subarray(skip), cp.bits ?? 0);
    let raw = await run(
      zlib.createInflateRaw({
        chunkSize: chunkFor(expected),
        finishFlush: zlib.constants.Z_SYNC_FLUSH,
        ...(window ? { dictionary: window } : {}),
      }),
      input,
      expected,
      enough,
    );
    parts.push(raw.output);
    produced += raw.output.length;
    // A member ended inside the range: skip its 8-byte trailer and continue
    // with the members that follow (Node's gunzip handles several in a row).
    const rest = input.subarray(raw.consumed + 8);
    if (produced < expected && raw.consumed < input.length && rest.some((b) => b !== 0)) {
      raw = await run(
        zlib.createGunzip({ chunkSize: chunkFor(expected - produced), finishFlush: zlib.constants.Z_SYNC_FLUSH }),
        rest,
        expected - produced,
        enough,
      );
      parts.push(raw.output);
      produced += raw.output.length;
    }
  } catch (e) {
    throw new ClipError('BAD_GZIP', `cannot inflate spans ${first}-${last}: ${(e as Error).message}`);
  }
  if (produced !== expected) {
    throw new ClipError(
      'BAD_GZIP',
      `spans ${first}-${last} inflated to ${produced} bytes, expected ${expected}${enough ? ' (a prefix: the index marks it wrongly)' : ''}`,
    );
  }
  return parts.length === 1 ? parts[0]! : Buffer.concat(parts, produced);
}
