// Answering requests in the reader threads: a filesystem whose metadata can
// live in shared memory names a module (a "responder") that each reader
// thread loads; the thread hands it every request it reads, and the responder
// either writes the reply itself (through a ReplyWriter: one preallocated
// buffer, one write) or declines, and the request goes to the session on the
// main thread as before. A request answered here costs one read and one
// write, no thread hop. Declining is always correct; answering must give what
// the session would.
//
// The session tells the threads two things through a small shared Int32Array:
// that INIT is done (before that every request goes to the main thread), and
// that update messages wait on their control port (drained before the next
// request is looked at, so an update is in force before any request read
// after it was sent).

import * as fs from 'node:fs';
import type { MessagePort } from 'node:worker_threads';
import { OUT_HEADER_SIZE } from './wire.js';

/** Index in the shared state: nonzero once INIT is answered. */
export const READER_CONNECTED = 0;
/** Index in the shared state: bumped after each update posted on the control port. */
export const READER_UPDATES = 1;
export const READER_STATE_WORDS = 2;

/** What a session hands each reader thread. */
export interface ReaderLink {
  /** URL of the module whose `createResponder(init)` makes the thread's responder. */
  module: string;
  init: unknown;
  control: MessagePort;
  state: SharedArrayBuffer;
  /** Report every answered request (opcode, seconds, errno, bytes) to the session's onOp. */
  observe: boolean;
}

export interface ReaderResponder {
  /**
   * The request of `n` bytes in `req` (header included, length checked by
   * the kernel): answer it through `out` and return true, or return false to
   * pass it on untouched. May also return true without a reply, for requests
   * the kernel expects none to (FORGET).
   */
  respond(req: Buffer, n: number, out: ReplyWriter): boolean;
  /** A message the session sent with tellReaders(). */
  update?(message: unknown): void;
}

export type ResponderFactory = (init: unknown) => ReaderResponder;

/** One reply buffer per thread: payloads are written in place after the header, then sent with one write. */
export class ReplyWriter {
  /** The reply buffer; payloads go at OUT_HEADER_SIZE. */
  readonly buf: Buffer;
  /** errno and payload bytes of the last reply (for the onOp observer). */
  lastError = 0;
  lastLength = 0;

  constructor(
    private readonly fd: number,
    size: number,
  ) {
    this.buf = Buffer.alloc(size);
  }

  /** Room for a payload. */
  get capacity(): number {
    return this.buf.length - OUT_HEADER_SIZE;
  }

  /** Sends the reply of `payloadLength` bytes already written at OUT_HEADER_SIZE. */
  ok(req: Buffer, payloadLength: number): void {
    this.write(req, 0, payloadLength);
  }

  /** Sends a reply whose payload is `parts` (views of shared memory, written as they are: no copy here). */
  okParts(req: Buffer, parts: Buffer[]): void {
    let length = 0;
    for (const p of parts) length += p.length;
    parts.unshift(this.header(req, 0, length).subarray(0, OUT_HEADER_SIZE));
    this.send(() => fs.writevSync(this.fd, parts));
  }

  /** Sends an error reply (a positive errno). */
  error(req: Buffer, errno: number): void {
    this.write(req, errno, 0);
  }

  private write(req: Buffer, errno: number, payloadLength: number): void {
    const b = this.header(req, errno, payloadLength);
    this.send(() => fs.writeSync(this.fd, b, 0, OUT_HEADER_SIZE + payloadLength));
  }

  /** The out-header of a reply to `req`, in the reply buffer. */
  private header(req: Buffer, errno: number, payloadLength: number): Buffer {
    const b = this.buf;
    b.writeUInt32LE(OUT_HEADER_SIZE + payloadLength, 0);
    b.writeInt32LE(-errno, 4);
    // unique, copied as it came (8 bytes at 8 in both headers)
    req.copy(b, 8, 8, 16);
    this.lastError = errno;
    this.lastLength = payloadLength;
    return b;
  }

  private send(write: () => void): void {
    try {
      write();
    } catch {
      // ENOENT: the kernel gave up on the request (interrupted); ENODEV: unmounted, the next read says so.
    }
  }
}

/** How many answered requests a thread reports at once, and how long it holds them at most. */
const TALLY_BATCH = 512;
const TALLY_MS = 250;

/** Answered requests, batched for the session's onOp observer: 4 numbers each (opcode, seconds, errno, bytes). */
export class OpTally {
  private batch = new Float64Array(TALLY_BATCH * 4);
  private used = 0;
  private since = 0;

  constructor(private readonly post: (batch: Float64Array) => void) {}

  add(opcode: number, seconds: number, errno: number, bytes: number): void {
    if (this.used === 0) this.since = performance.now();
    const b = this.batch;
    const i = this.used * 4;
    b[i] = opcode;
    b[i + 1] = seconds;
    b[i + 2] = errno;
    b[i + 3] = bytes;
    this.used++;
    if (this.used === TALLY_BATCH || performance.now() - this.since > TALLY_MS) this.flush();
  }

  flush(): void {
    if (this.used === 0) return;
    const full = this.batch;
    const out = this.used === TALLY_BATCH ? full : full.slice(0, this.used * 4);
    if (out === full) this.batch = new Float64Array(TALLY_BATCH * 4);
    this.used = 0;
    this.post(out);
  }
}
