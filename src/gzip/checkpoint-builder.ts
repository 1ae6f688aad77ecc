// Streams a gzip layer once and builds its seek table: checkpoints at
// byte-aligned deflate block boundaries at least `spanSize` output bytes
// apart, and the sha256 of every span. Only checkpoints at least
// `windowEvery` apart keep their 32 KiB window (the bulk of an index); the
// others are resumed from the output of the span before them, which a reader
// has cached or fetches along (from the last checkpoint with a window). So
// reads fetch small spans while the index stays small. Where a start-up
// profile says reads begin (block boundaries it names), checkpoints go there
// too, with their window, so that those reads fetch from where they begin.
//
// Native zlib does the inflating at full speed but cannot tell whether a block
// boundary falls on a byte boundary (zlib's data_type is not exposed). So each
// candidate boundary is proven instead: the compressed bytes after it are
// inflated on their own, from that byte, with the window as dictionary, and
// must reproduce the output native zlib produced. Misaligned candidates fail
// that test and the next boundary is tried.
//
// Long runs of highly compressible data (zeros) may have no byte-aligned
// boundary at all, so once 2 x spanSize of output passed without one, the next
// boundary is taken wherever it falls: zlib stopped inside the last byte it
// consumed, with 0-7 bits of it unused, and each of those 8 positions is
// proven the same way (resumed with empty blocks in front, unaligned-resume.ts);
// it is kept only if exactly one of them reproduces the output. A span thus
// covers at most 2 x spanSize + one block of output; a block longer than
// MAX_SPAN_OUTPUT (only crafted gzip has them) fails the layer.
//
// zlib is fed in slices that end at fixed compressed offsets: where it stops,
// and so where checkpoints go, depends on the bytes only, not on how they arrive.
// (A block that ends exactly where its input ends is not seen as a boundary:
// zlib stopping there looks like zlib running out of input. Fed the network's
// chunks, such a boundary was missed or not depending on the chunking, and all
// later checkpoints were numbered otherwise; test/checkpoint-placement.test.ts.)
//
// A kept window is sparse: once 32 KiB of output followed its checkpoint,
// the compressed bytes that made them are scanned for back-references
// (backref-scan.ts) and every window byte none of them reaches is zeroed
// before the window is deflated. Resuming needs only the bytes referenced.
//
// Inside each span it also records marks (block boundaries zlib reported, at
// least MARK_SPACING output bytes apart: how far a read must fetch) and the
// sha256 of every CHUNK_SIZE chunk of the span's compressed bytes (what a read
// of a prefix verifies), so a read need not fetch the whole span.

import zlib from 'node:zlib';
import { ClipError } from '../errors.js';
import { parseMemberHeader } from './member-header.js';
import { BlockInflater } from './native-inflate.js';
import { MARK_SPACING, MAX_SPAN_OUTPUT, type Checkpoint, type FineSpan, type Mark, type SpanTable } from './types.js';
import { SpanHasher } from './span-hasher.js';
import { sparseWindow, windowReferences } from './backref-scan.js';
import { resumeInput } from './unaligned-resume.js';
import { OutputRing, WINDOW_SIZE } from './window-ring.js';

const OUTPUT_BUFFER = 1 << 20;
const NO_WINDOW = Buffer.alloc(0);
/** Output a candidate must reproduce before it is trusted. */
const PROBE_BYTES = 16 * 1024;
/** zlib gets the input in slices ending at multiples of this compressed offset. */
const SLICE = 64 * 1024;
/**
 * Most compressed bytes held to scan one window's references. Real deflate
 * needs well under 64 KiB for 32 KiB of output; only crafted streams (runs of
 * empty blocks) take more, and their window is then kept whole.
 */
const SCAN_INPUT_LIMIT = 1024 * 1024;

interface Candidate {
  /** Compressed bytes consumed when zlib stopped at the boundary. */
  in: number;
  /** Whether the block may start inside byte in - 1 (no aligned boundary came for too long). */
  anyBit: boolean;
  /** Byte in - 1, where an unaligned block starts. */
  lastByte: number;
  out: number;
  window: Buffer;
  /** Compressed bytes from `in` onward, as consumed by the native inflater. */
  compressed: Buffer[];
  /** Output from `out` onward (copied), at least PROBE_BYTES before probing. */
  output: Buffer[];
  outputLength: number;
}

/** A checkpoint whose window is kept, waiting for the 32 KiB of output after it to be scanned. */
interface PendingWindow {
  checkpoint: Checkpoint;
  /** The whole window (a copy). */
  window: Buffer;
  /** Compressed bytes from the checkpoint's first byte on (the block starts at checkpoint.bits). */
  compressed: Buffer[];
  compressedLength: number;
}

export class CheckpointBuilder {
  private readonly inflater = new BlockInflater();
  private readonly ring = new OutputRing(OUTPUT_BUFFER + WINDOW_SIZE);
  private readonly checkpoints: Checkpoint[] = [];
  private readonly digests: Buffer[] = [];
  private readonly chunks: Buffer[][] = [];
  private spanHash = new SpanHasher();
  /** Block boundaries at least MARK_SPACING apart, over the whole layer (split into spans at the end). */
  private readonly marks: Mark[] = [];
  private candidate: Candidate | undefined;
  private readonly pending: PendingWindow[] = [];
  private inPos = 0;
  private outPos = 0;
  private ended = false;
  /** The first compressed bytes, until the first gzip header is complete. */
  private head = Buffer.alloc(0);
  /** Output offset of the last checkpoint that kept its window. */
  private lastWindow = 0;
  /** Input after the last whole slice (it starts at a multiple of SLICE): carry[0, carried). */
  private readonly carry = Buffer.allocUnsafe(SLICE);
  private carried = 0;
  private lastByte = 0;

  /**
   * @param spanSize minimum uncompressed distance between checkpoints
   * @param onData receives every uncompressed chunk, in order; the chunk is
   *   only valid during the call
   * @param windowEvery minimum uncompressed distance between checkpoints that
   *   keep their window (default: every checkpoint keeps it)
   * @param windowAt uncompressed offsets where reads are known to begin (a
   *   start-up profile): where a block boundary falls at one, a checkpoint is
   *   placed there whatever the distance to the last (proven as any other,
   *   at any bit), and keeps its window. Offsets, not checkpoint numbers:
   *   they mean the same bytes in any index of the layer.
   * @param sparse zero the window bytes nothing references (false: keep
   *   whole windows, as clip did before format version 5)
   */
  constructor(
    private readonly spanSize: number,
    private readonly onData: (chunk: Buffer) => void,
    private readonly windowEvery = spanSize,
    private readonly windowAt: ReadonlySet<number> = new Set(),
    private readonly sparse = true,
  ) {}

  push(chunk: Buffer): void {
    let off = 0;
    if (this.carried > 0) {
      off = chunk.copy(this.carry, this.carried, 0, Math.min(chunk.length, SLICE - this.carried));
      this.carried += off;
      if (this.carried < SLICE) return;
      this.carried = 0;
      this.feed(this.carry);
    }
    for (; chunk.length - off >= SLICE; off += SLICE) this.feed(chunk.subarray(off, off + SLICE));
    if (off < chunk.length) this.carried = chunk.copy(this.carry, 0, off);
  }

  private feed(chunk: Buffer): void {
    let off = 0;
    while (off < chunk.length) {
      if (this.ended) {
        this.checkTrailing(chunk.subarray(off));
        return;
      }
      this.ring.reserve(64 * 1024);
      let step;
      try {
        step = this.inflater.step(chunk, off, chunk.length - off, this.ring.buf, this.ring.pos, this.ring.buf.length - this.ring.pos);
      } catch (e) {
        throw new ClipError('BAD_GZIP', `corrupt gzip data near compressed offset ${this.inPos}: ${(e as Error).message}`);
      }
      if (step.consumed === 0 && step.produced === 0) {
        // The last member ended and what follows is not another member.
        this.ended = true;
        continue;
      }
      this.consumed(chunk.subarray(off, off + step.consumed));
      off += step.consumed;
      if (step.produced > 0) {
        const data = this.ring.buf.subarray(this.ring.pos, this.ring.pos + step.produced);
        this.ring.pos += step.produced;
        this.produced(data);
      }
      if (step.boundary) this.atBoundary();
    }
  }

  /** Ends the stream; throws if the gzip data was truncated. Returns the seek table. */
  finish(): SpanTable {
    if (this.carried > 0) {
      const rest = this.carry.subarray(0, this.carried);
      this.carried = 0;
      this.feed(rest);
    }
    if (!this.ended) {
      // Z_FINISH with no input makes zlib report a stream that stopped early.
      try {
        this.inflater.step(Buffer.alloc(0), 0, 0, this.ring.buf, 0, 1, zlib.constants.Z_FINISH);
      } catch {
        throw new ClipError('BAD_GZIP', `gzip data is truncated (ended after ${this.inPos} compressed bytes)`);
      }
    }
    this.inflater.close();
    if (this.candidate) this.reject();
    // The stream ended: what was collected is all that follows these checkpoints.
    while (this.pending.length > 0) this.storeWindow(this.pending.shift()!);
    if (this.checkpoints.length === 0) {
      throw new ClipError('BAD_GZIP', 'gzip data holds no deflate stream');
    }
    this.closeSpan();
    return {
      compression: 'gzip',
      compressedSize: this.inPos,
      uncompressedSize: this.outPos,
      checkpoints: this.checkpoints,
      digests: this.digests,
      fine: this.fineSpans(),
    };
  }

  private consumed(bytes: Buffer): void {
    if (this.checkpoints.length === 0) this.firstCheckpoint(bytes);
    this.inPos += bytes.length;
    if (bytes.length > 0) this.lastByte = bytes[bytes.length - 1]!;
    // One copy serves the candidate and every window still to be scanned (nobody changes it).
    const copy = this.candidate || this.pending.length > 0 ? Buffer.from(bytes) : bytes;
    if (this.candidate) this.candidate.compressed.push(copy);
    else this.spanHash.update(bytes);
    if (bytes.length > 0) this.collect(copy);
  }

  /** Keeps compressed bytes for the windows still to be scanned; a window past SCAN_INPUT_LIMIT is kept whole. */
  private collect(copy: Buffer): void {
    for (const p of this.pending) {
      p.compressed.push(copy);
      p.compressedLength += copy.length;
    }
    while (this.pending.length > 0 && this.pending[0]!.compressedLength > SCAN_INPUT_LIMIT) this.storeWindow(this.pending.shift()!, false);
  }

  /** Scans and stores the windows whose checkpoint is now 32 KiB of output behind. */
  private scanDue(): void {
    while (this.pending.length > 0 && this.outPos - this.pending[0]!.checkpoint.out >= WINDOW_SIZE) {
      this.storeWindow(this.pending.shift()!);
    }
  }

  /** Deflates the window with only its referenced bytes (`scan` false, or the scan failed: the whole window). */
  private storeWindow(p: PendingWindow, scan = true): void {
    let window: Buffer | undefined;
    if (scan) {
      try {
        const input = Buffer.concat(p.compressed, p.compressedLength);
        window = sparseWindow(p.window, windowReferences(input, p.checkpoint.bits ?? 0, p.window.length));
      } catch {
        // zlib inflated these bytes, so they are valid deflate: a scan that
        // refuses them is a scanner fault, and the whole window is always right.
      }
    }
    if (!window) delete p.checkpoint.sparse;
    // Level 6: a third of level 9's time on a window (0.2 against 0.64 ms), 1% bigger.
    p.checkpoint.window = zlib.deflateRawSync(window ?? p.window, { level: 6 });
  }

  private produced(data: Buffer): void {
    this.outPos += data.length;
    const span = this.candidate ?? this.checkpoints[this.checkpoints.length - 1]!;
    if (this.outPos - span.out > MAX_SPAN_OUTPUT) {
      throw new ClipError(
        'BAD_GZIP',
        `gzip data: no deflate block boundary to resume at within ${MAX_SPAN_OUTPUT} bytes of output after compressed offset ${span.in} ` +
          '(one deflate block this long is only made by crafted gzip; real compressors end blocks within about 8.5 MB)',
      );
    }
    const c = this.candidate;
    if (c && c.outputLength < PROBE_BYTES) {
      c.output.push(Buffer.from(data));
      c.outputLength += data.length;
    }
    this.onData(data);
    if (c && c.outputLength >= PROBE_BYTES) this.probe(c);
    this.scanDue();
  }

  /** Ends the current span's digests. */
  private closeSpan(): void {
    const { digest, chunks } = this.spanHash.finish();
    this.digests.push(digest);
    this.chunks.push(chunks);
    this.spanHash = new SpanHasher();
  }

  /** The marks of each span: those strictly inside it, MARK_SPACING apart from its checkpoint and each other. */
  private fineSpans(): FineSpan[] {
    const cps = this.checkpoints;
    const out: FineSpan[] = cps.map((_, i) => ({ marks: [], chunks: this.chunks[i]! }));
    let span = 0;
    let prev = 0;
    for (const m of this.marks) {
      while (span + 1 < cps.length && m.out >= cps[span + 1]!.out) {
        span++;
        prev = cps[span]!.out;
      }
      // A mark at the stream's end says nothing the span's end does not.
      if (m.out - prev < MARK_SPACING || m.in <= cps[span]!.in || m.out >= this.outPos) continue;
      out[span]!.marks.push(m);
      prev = m.out;
    }
    return out;
  }

  /** Records a mark at this boundary when MARK_SPACING output passed since the last mark or checkpoint (or candidate). */
  private mark(): void {
    if (this.checkpoints.length === 0) return;
    let ref = this.checkpoints[this.checkpoints.length - 1]!.out;
    if (this.candidate) ref = Math.max(ref, this.candidate.out);
    const last = this.marks[this.marks.length - 1];
    if (last) ref = Math.max(ref, last.out);
    if (this.outPos - ref >= MARK_SPACING) this.marks.push({ in: this.inPos, out: this.outPos });
  }

  private atBoundary(): void {
    this.mark();
    // A candidate that produced nothing before this boundary is superseded:
    // typically the end of a member's last block, where a checkpoint cannot
    // be (the trailer follows), just before the next member's first block.
    if (this.candidate && this.candidate.outputLength === 0) this.reject();
    if (this.candidate || this.checkpoints.length === 0) return;
    const last = this.checkpoints[this.checkpoints.length - 1]!;
    // A read known to begin here (a profile's) fetches from here, not from up to a span before.
    const wanted = this.outPos > last.out && this.windowAt.has(this.outPos);
    if (this.outPos - last.out < this.spanSize && !wanted) return;
    this.candidate = {
      in: this.inPos,
      anyBit: wanted || this.outPos - last.out >= 2 * this.spanSize,
      lastByte: this.lastByte,
      out: this.outPos,
      window: Buffer.from(this.ring.window()),
      compressed: [],
      output: [],
      outputLength: 0,
    };
  }

  /** Checkpoint 0 sits right after the first gzip header. */
  private firstCheckpoint(bytes: Buffer): void {
    this.head = this.head.length === 0 ? Buffer.from(bytes) : Buffer.concat([this.head, bytes]);
    const headerLength = parseMemberHeader(this.head, 0);
    if (headerLength === undefined) return;
    this.checkpoints.push({ in: headerLength, out: 0, window: Buffer.alloc(0) });
    this.head = Buffer.alloc(0);
  }

  private probe(c: Candidate): void {
    const after = Buffer.concat(c.compressed);
    const expected = Buffer.concat(c.output).subarray(0, PROBE_BYTES);
    // Bit 0 of byte `in`, or (when allowed) bits 1-7 of the byte before it.
    const fits: number[] = [];
    for (let bits = 0; bits < (c.anyBit ? 8 : 1); bits++) {
      const input = bits === 0 ? after : resumeInput(Buffer.concat([Buffer.of(c.lastByte), after]), bits).input;
      if (reproduces(input, c.window, expected)) fits.push(bits);
    }
    // Two positions that both fit would leave the real one unknown: take neither.
    if (fits.length !== 1) {
      this.reject();
      return;
    }
    const bits = fits[0]!;
    this.closeSpan();
    if (bits > 0) this.spanHash.update(Buffer.of(c.lastByte));
    for (const b of c.compressed) this.spanHash.update(b);
    const keepWindow = c.out - this.lastWindow >= this.windowEvery || this.windowAt.has(c.out);
    if (keepWindow) this.lastWindow = c.out;
    const window = keepWindow && !this.sparse ? zlib.deflateRawSync(c.window, { level: 9 }) : NO_WINDOW;
    const cp: Checkpoint = bits > 0 ? { in: c.in - 1, bits, out: c.out, window } : { in: c.in, out: c.out, window };
    this.checkpoints.push(cp);
    this.candidate = undefined;
    if (keepWindow && this.sparse) {
      // Its window is stored once the output after it has been scanned (scanDue, finish).
      cp.sparse = true;
      const compressed = bits > 0 ? [Buffer.of(c.lastByte), ...c.compressed] : c.compressed;
      this.pending.push({ checkpoint: cp, window: c.window, compressed, compressedLength: compressed.reduce((a, b) => a + b.length, 0) });
      this.scanDue();
    }
  }

  private reject(): void {
    const c = this.candidate!;
    for (const b of c.compressed) this.spanHash.update(b);
    this.candidate = undefined;
  }

  private checkTrailing(rest: Buffer): void {
    for (const b of rest) {
      if (b !== 0) throw new ClipError('BAD_GZIP', `unexpected data after the end of the gzip stream at compressed offset ${this.inPos}`);
    }
    this.inPos += rest.length;
    if (this.candidate) this.candidate.compressed.push(Buffer.from(rest));
    else this.spanHash.update(rest);
  }
}

/** Whether raw inflate of `input` with `window` as dictionary reproduces `expected` (PROBE_BYTES long). */
function reproduces(input: Buffer, window: Buffer, expected: Buffer): boolean {
  try {
    const r = zlib.inflateRawSync(input, {
      dictionary: window,
      finishFlush: zlib.constants.Z_SYNC_FLUSH,
      info: true,
    }) as unknown as { buffer: Buffer; engine: { bytesWritten: number } };
    // The probe must not hit a stream end before its input ends (that would be
    // a misread final block: from a wrong bit, a stored block can pass for a
    // final one) and must reproduce the output.
    return r.engine.bytesWritten === input.length && r.buffer.length >= PROBE_BYTES && r.buffer.subarray(0, PROBE_BYTES).equals(expected);
  } catch {
    return false;
  }
}
