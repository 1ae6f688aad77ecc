// The request loop: requests arrive from a reader thread (device-reader.ts)
// blocking on /dev/fuse, are decoded through the opcode table and handed to the
// filesystem without waiting for earlier ones (a slow READ never holds up a
// LOOKUP); each reply is one write from this thread. INIT is answered first;
// the loop ends when the device reports ENODEV (unmounted).
//
// Why a worker thread and not fs.read: fs.read waits on a libuv threadpool
// thread, and after each request the next read queues behind whatever fs work
// is pending; if that work is this process's own access to its mount, every
// pool thread ends up waiting on the kernel, which waits on a read nobody
// issues. The reader thread keeps the pool (UV_THREADPOOL_SIZE, default 4; set
// 16+ before node starts for heavy fs/zlib/crypto work) free for the filesystem.
// A process must unmount before it exits: a thread blocked in read keeps exit
// waiting until the device reports ENODEV.

import { EventEmitter } from 'node:events';
import * as fs from 'node:fs';
import { MessageChannel, type MessagePort, Worker } from 'node:worker_threads';
import type { ReaderData, ReaderEnd } from './device-reader.js';
import { type ReaderLink, READER_CONNECTED, READER_STATE_WORDS, READER_UPDATES } from './reader-responder.js';
import { type Handler, type Handlers, bridgeHandlers, isPromiseLike } from './bridge.js';
import { errno } from './constants.js';
import { FuseError, errnoName, errnoOf, sanitizeErrno } from './errors.js';
import type { FileSystem } from './filesystem.js';
import { formatReply, formatRequest, formatValue } from './print.js';
import { type InitOptions, DEFAULT_MAX_WRITE, negotiateInit } from './init.js';
import { UNIQUE_RESEND, canResend, encodeNotifyResend } from './takeover.js';
import { type OpIn, type OpName, type OpcodeInfo, OPCODES, OPS } from './opcodes.js';
import type { ConnectionInfo, RequestContext } from './types.js';
import { RequestSignal } from './request-signal.js';
import { type InHeader, BodyReader, IN_HEADER_SIZE, OUT_HEADER_SIZE, WireError, decodeInHeader, encodeOutHeader } from './wire.js';

export type LogLevel = 'debug' | 'info' | 'warn' | 'error';
/** Where the session's log lines go (e.g. `(level, msg) => pino[level](msg)`). */
export type Logger = (level: LogLevel, message: string) => void;

/** The session's link to the kernel; DeviceChannel over /dev/fuse, or a fake in tests. */
export interface Channel {
  /**
   * Starts delivering requests, one Buffer each (the session may keep it),
   * until the connection ends: onEnd() after unmount, onEnd(error) otherwise.
   */
  start(onRequest: (req: Buffer) => void, onEnd: (error?: Error) => void): void;
  /**
   * Writes one reply, all chunks in one system call. Throws (with a `code`)
   * when the kernel refuses it. The chunks are the caller's again on return (copy to keep them).
   */
  write(chunks: Buffer[]): void;
  close(): void;
  /** INIT is done (a channel whose readers answer requests may let them now). */
  connected?(): void;
  /** An update for the readers' responders (SessionOptions.responder). */
  tell?(message: unknown): void;
}

/** A module the reader threads load to answer requests themselves (see reader-responder.ts). */
export interface ResponderSpec {
  /** URL of a module exporting `createResponder(init)`. */
  module: string;
  /** Handed to createResponder in every thread (structured clone: SharedArrayBuffers stay shared). */
  init: unknown;
}

/** What the reader threads report besides requests. */
export interface ReaderEvents {
  /** Requests a thread answered itself: (opcode, seconds, errno, bytes) each. */
  onAnswered?: (batch: Float64Array) => void;
  onLog?: (message: string) => void;
}

/** A Channel over an open /dev/fuse descriptor: reader threads with blocking reads, writev for replies. */
export class DeviceChannel implements Channel {
  private readonly state = new SharedArrayBuffer(READER_STATE_WORDS * 4);
  private readonly ports: MessagePort[] = [];

  constructor(
    readonly fd: number,
    private readonly opts: { readers: number; bufferSize: number; responder?: ResponderSpec; observe?: boolean; events?: ReaderEvents },
  ) {}

  start(onRequest: (req: Buffer) => void, onEnd: (error?: Error) => void): void {
    let running = this.opts.readers;
    let failure: Error | undefined;
    const stopped = (error?: Error) => {
      failure ??= error;
      if (--running === 0) onEnd(failure);
    };
    const events = this.opts.events ?? {};
    for (let i = 0; i < this.opts.readers; i++) {
      const data: ReaderData = { fd: this.fd, size: this.opts.bufferSize };
      const transfer: MessagePort[] = [];
      if (this.opts.responder) {
        const { port1, port2 } = new MessageChannel();
        this.ports.push(port1);
        transfer.push(port2);
        const link: ReaderLink = { ...this.opts.responder, control: port2, state: this.state, observe: this.opts.observe ?? false };
        data.link = link;
      }
      const w = new Worker(new URL('./device-reader.js', import.meta.url), {
        workerData: data,
        transferList: transfer,
        execArgv: [], // the host's flags (--input-type, loaders) are not for this plain module
      });
      let ended = false;
      const end = (error?: Error) => {
        if (!ended) {
          ended = true;
          stopped(error);
        }
      };
      w.on('message', (m: ArrayBuffer | Float64Array | ReaderEnd | { log: string }) => {
        if (m instanceof ArrayBuffer) onRequest(Buffer.from(m));
        else if (m instanceof Float64Array) events.onAnswered?.(m);
        else if ('log' in m) events.onLog?.(m.log);
        else end(m.end === 'ENODEV' ? undefined : Object.assign(new Error(`reading /dev/fuse: ${m.message}`), { code: m.end }));
      });
      w.on('error', (e) => end(e));
      w.on('exit', (code) => end(code === 0 ? undefined : new Error(`FUSE reader thread exited with ${code}`)));
    }
  }

  /** INIT is answered: the reader threads may answer requests themselves from now on. */
  connected(): void {
    Atomics.store(new Int32Array(this.state), READER_CONNECTED, 1);
  }

  /** Sends an update to every reader thread's responder; it is in force for every request read afterwards. */
  tell(message: unknown): void {
    for (const p of this.ports) p.postMessage(message);
    Atomics.add(new Int32Array(this.state), READER_UPDATES, 1);
  }

  write(chunks: Buffer[]): void {
    // Writes to /dev/fuse never block: the kernel copies the reply into the waiting request.
    fs.writevSync(this.fd, chunks);
  }

  close(): void {
    for (const p of this.ports) p.close();
    fs.closeSync(this.fd);
  }
}

/** fuse_notify_code FUSE_NOTIFY_INVAL_INODE. */
const NOTIFY_INVAL_INODE = 2;

export interface SessionOptions extends InitOptions {
  /** Observer: each answered request's operation name, seconds taken and errno (0 = success). */
  onOp?: (op: string, seconds: number, errno: number, replyBytes: number) => void;
  /** Log lines: errors from handlers (answered EIO), protocol trouble, and with `debug` every request and reply. */
  log?: Logger;
  /** Log every request and reply at level 'debug', one line each. */
  debug?: boolean;
  /** Reader threads blocking on the device. Default 1 (it reads the next request while the last is handled). */
  readers?: number;
  /** Seconds the kernel may cache a failed LOOKUP (ENOENT) as "no such name". Default 0: not cached. */
  negativeTimeout?: number;
  /**
   * A module the reader threads load to answer requests themselves (metadata
   * from shared memory, say); what it declines comes to the filesystem as
   * usual. Not used with `debug` (every request is logged here then).
   */
  responder?: ResponderSpec;
  /** Close the descriptor when the loop ends. Default true. */
  closeFd?: boolean;
  /**
   * Take over a connection whose INIT was answered earlier (by another process,
   * see takeover.ts): start with these parameters instead of waiting for INIT,
   * and first ask the kernel to resend what a previous server left unanswered.
   */
  resume?: ConnectionInfo;
}

/**
 * Serves one FileSystem on one FUSE connection.
 * Events: 'init' (ConnectionInfo) once INIT is answered; 'close' (error?) when the loop has ended.
 */
export class FuseSession extends EventEmitter {
  /** Resolves when the loop ends after unmount (ENODEV); rejects on any other read failure. */
  readonly closed: Promise<void>;
  /** Resolves with the negotiated parameters once INIT is answered. */
  readonly ready: Promise<ConnectionInfo>;
  connection: ConnectionInfo | undefined;

  private readonly channel: Channel;
  private readonly log: Logger;
  private readonly opts: SessionOptions;
  private readonly inflight = new Map<bigint, RequestSignal>();
  /** When each request arrived, for the onOp observer. */
  private readonly startTimes = new Map<bigint, number>();
  private readonly handlers: Handlers;
  private readonly replyHeader = Buffer.alloc(OUT_HEADER_SIZE);
  private started = false;
  private ended = false;
  private resolveClosed!: () => void;
  private rejectClosed!: (e: Error) => void;
  private resolveReady!: (c: ConnectionInfo) => void;
  private rejectReady!: (e: Error) => void;

  constructor(
    device: number | Channel,
    readonly filesystem: FileSystem,
    options: SessionOptions = {},
  ) {
    super();
    this.channel =
      typeof device === 'number'
        ? new DeviceChannel(device, {
            readers: Math.max(1, Math.floor(options.readers ?? 1)),
            // The kernel refuses reads into buffers smaller than max_write + headers.
            bufferSize: Math.max(8192, (options.maxWrite ?? DEFAULT_MAX_WRITE) + 4096),
            ...(options.responder && !options.debug ? { responder: options.responder } : {}),
            observe: options.onOp !== undefined,
            events: {
              onAnswered: (batch) => this.answeredInReaders(batch),
              onLog: (message) => this.log('error', message),
            },
          })
        : device;
    this.opts = options;
    this.log = options.log ?? (() => {});
    this.closed = new Promise((res, rej) => {
      this.resolveClosed = res;
      this.rejectClosed = rej;
    });
    this.ready = new Promise((res, rej) => {
      this.resolveReady = res;
      this.rejectReady = rej;
    });
    // Callers need not await these; a failure is still reported to those who do.
    this.closed.catch(() => {});
    this.ready.catch(() => {});
    this.handlers = bridgeHandlers(filesystem, { negativeTimeout: options.negativeTimeout ?? 0 });
  }

  /** Requests being handled right now. */
  get inFlight(): number {
    return this.inflight.size;
  }

  /** Requests the kernel sent again after a takeover (unique with FUSE_UNIQUE_RESEND), so far. */
  resentRequests = 0;

  /** Starts the loop. Call it after the mount succeeded (reading an unmounted device fails). */
  start(): this {
    if (this.started) return this;
    this.started = true;
    if (this.opts.resume) this.resume(this.opts.resume);
    this.channel.start(
      (req) => this.handle(req),
      (error) => this.finish(error),
    );
    return this;
  }

  /**
   * Adopts a connection another process initialised. The resend is asked for
   * before the first read, so the kernel requeues only the dead server's
   * requests, never one this session is already handling.
   */
  private resume(conn: ConnectionInfo): void {
    this.connection = conn;
    try {
      this.filesystem.init?.(conn);
    } catch (e) {
      this.log('error', `filesystem init failed: ${toError(e).stack}`);
    }
    if (canResend(conn)) {
      try {
        this.channel.write([encodeNotifyResend()]);
      } catch (e) {
        this.log('error', `asking the kernel to resend unanswered FUSE requests: ${toError(e).message}`);
      }
    } else {
      this.log(
        'warn',
        'this kernel cannot resend FUSE requests (FUSE_NOTIFY_RESEND, Linux >= 6.9): requests the previous server had read stay unanswered',
      );
    }
    this.resolveReady(conn);
    this.emit('init', conn);
    this.channel.connected?.();
  }

  /**
   * Tells the kernel that what it cached of inode `ino` (attributes, pages,
   * a directory's cached listing) is stale (FUSE_NOTIFY_INVAL_INODE). False
   * when the kernel refused it (an inode it does not know is no error).
   */
  invalidateInode(ino: number): boolean {
    const payload = Buffer.alloc(24);
    payload.writeBigUInt64LE(BigInt(ino), 0);
    payload.writeBigInt64LE(0n, 8); // from offset 0
    payload.writeBigInt64LE(0n, 16); // length 0: to the end
    try {
      this.channel.write([encodeOutHeader(payload.length, -NOTIFY_INVAL_INODE, 0n), payload]);
      return true;
    } catch {
      return false;
    }
  }

  /** Passes a message to the responder of every reader thread (see SessionOptions.responder). */
  tellReaders(message: unknown): void {
    this.channel.tell?.(message);
  }

  /** Requests the reader threads answered, for the onOp observer. */
  private answeredInReaders(batch: Float64Array): void {
    const onOp = this.opts.onOp;
    if (!onOp) return;
    for (let i = 0; i + 3 < batch.length; i += 4) {
      onOp(OPCODES.get(batch[i]!)?.name ?? String(batch[i]), batch[i + 1]!, batch[i + 2]!, batch[i + 3]!);
    }
  }

  private finish(error?: Error): void {
    if (this.ended) return;
    this.ended = true;
    for (const ac of this.inflight.values()) ac.abort(new FuseError('ENOTCONN', 'FUSE session closed'));
    if (this.opts.closeFd ?? true) {
      try {
        this.channel.close();
      } catch (e) {
        this.log('warn', `closing the FUSE device: ${toError(e).message}`);
      }
    }
    if (!this.connection) this.rejectReady(error ?? new Error('FUSE session ended before INIT'));
    if (error) {
      this.log('error', `FUSE session ended: ${error.message}`);
      this.rejectClosed(error);
    } else {
      this.resolveClosed();
    }
    this.emit('close', error);
  }

  /** Decodes one request and starts handling it; never throws. */
  private handle(buf: Buffer): void {
    let h: InHeader;
    try {
      h = decodeInHeader(buf, buf.length);
    } catch (e) {
      this.log('error', `dropping malformed FUSE request: ${toError(e).message}`);
      return;
    }
    const info = OPCODES.get(h.opcode);
    if (!info) {
      if (this.opts.debug) this.log('debug', formatRequest(h, {}));
      this.send(h, errno.ENOSYS);
      return;
    }
    let args: unknown;
    try {
      const bodyEnd = h.len - h.totalExtlen * 8;
      if (bodyEnd < IN_HEADER_SIZE) throw new WireError(`extension length ${h.totalExtlen * 8} exceeds request of ${h.len} bytes`);
      args = info.spec.decode(new BodyReader(buf, IN_HEADER_SIZE, bodyEnd));
    } catch (e) {
      this.log('warn', `${info.name}: undecodable request: ${toError(e).message}`);
      if (!info.spec.noReply) this.send(h, errno.EIO);
      return;
    }
    if (this.opts.debug) this.log('debug', formatRequest(h, args));
    if ((h.unique & UNIQUE_RESEND) !== 0n) this.resentRequests++;

    if (info.name === 'INIT') return this.init(h, args as OpIn<'INIT'>);
    if (!this.connection) {
      this.log('warn', `${info.name} before INIT`);
      if (!info.spec.noReply) this.send(h, errno.EIO);
      return;
    }
    if (info.spec.noReply) return this.noReply(h, info.name, args);
    if (this.opts.onOp) this.startTimes.set(h.unique, performance.now());
    this.dispatch(h, info, args);
  }

  private init(h: InHeader, args: OpIn<'INIT'>): void {
    if (this.connection) {
      this.log('warn', 'second INIT ignored');
      this.send(h, errno.EIO);
      return;
    }
    const d = negotiateInit(args, this.opts);
    if (d.kind === 'refuse') {
      this.log('error', d.message);
      this.send(h, d.errno);
      this.rejectReady(new FuseError(d.errno, d.message));
      return;
    }
    this.send(h, 0, OPS.INIT.encode!(d.out), d.out);
    if (d.kind === 'retry') return;
    this.connection = d.conn;
    try {
      this.filesystem.init?.(d.conn);
    } catch (e) {
      this.log('error', `filesystem init failed: ${toError(e).stack}`);
    }
    this.resolveReady(d.conn);
    this.emit('init', d.conn);
    this.channel.connected?.();
  }

  /** FORGET, BATCH_FORGET, INTERRUPT, NOTIFY_REPLY: the kernel waits for no answer. */
  private noReply(h: InHeader, name: OpName, args: unknown): void {
    try {
      if (name === 'FORGET') {
        this.filesystem.forget?.(h.nodeid, (args as OpIn<'FORGET'>).nlookup);
      } else if (name === 'BATCH_FORGET') {
        for (const it of (args as OpIn<'BATCH_FORGET'>).items) this.filesystem.forget?.(it.nodeid, it.nlookup);
      } else if (name === 'INTERRUPT') {
        const target = (args as OpIn<'INTERRUPT'>).unique;
        const ac = this.inflight.get(target);
        if (ac) ac.abort(new FuseError('EINTR', 'interrupted by the kernel'));
        // Not seen yet (its read may still be on its way to us) or already answered:
        // EAGAIN makes the kernel queue the interrupt again while the request is pending,
        // and fails harmlessly (ENOENT) when it is not.
        else this.send(h, errno.EAGAIN);
      }
    } catch (e) {
      this.log('error', `${name}: ${toError(e).stack}`);
    }
  }

  private dispatch(h: InHeader, info: OpcodeInfo, args: unknown): void {
    const handler = this.handlers[info.name] as Handler<OpName> | undefined;
    if (!handler) {
      // The default answers: a read-only filesystem refuses changes, and implements nothing else.
      this.send(h, info.spec.mutates ? errno.EROFS : errno.ENOSYS);
      return;
    }
    const ac = new RequestSignal();
    const ctx: RequestContext = {
      unique: h.unique,
      uid: h.uid,
      gid: h.gid,
      pid: h.pid,
      get signal() {
        return ac.signal;
      },
    };
    this.inflight.set(h.unique, ac);
    let result: unknown;
    try {
      result = handler(h.nodeid, args as never, ctx);
    } catch (e) {
      this.inflight.delete(h.unique);
      this.fail(h, info, args, e);
      return;
    }
    if (isPromiseLike(result)) {
      result.then(
        (out) => {
          this.inflight.delete(h.unique);
          this.succeed(h, info, out);
        },
        (e) => {
          this.inflight.delete(h.unique);
          this.fail(h, info, args, e);
        },
      );
    } else {
      this.inflight.delete(h.unique);
      this.succeed(h, info, result);
    }
  }

  private succeed(h: InHeader, info: OpcodeInfo, out: unknown): void {
    let payload: Buffer | Buffer[];
    try {
      payload = info.spec.encode ? info.spec.encode(out) : [];
    } catch (e) {
      this.log('error', `${info.name}: cannot encode reply: ${toError(e).stack}`);
      this.send(h, errno.EIO);
      return;
    }
    this.send(h, 0, payload, out);
  }

  private fail(h: InHeader, info: OpcodeInfo, args: unknown, e: unknown): void {
    let n = errnoOf(e);
    if (n === undefined) {
      this.log('error', `${info.name} n${h.nodeid} ${formatValue(args)} failed (answered EIO): ${toError(e).stack}`);
      n = errno.EIO;
    }
    this.send(h, sanitizeErrno(n));
  }

  /** One reply, one write. Replies after the end, or to requests the kernel gave up on, are dropped. */
  private send(h: Pick<InHeader, 'unique' | 'opcode'>, error: number, payload: Buffer | Buffer[] = [], out?: unknown): void {
    if (this.ended) return; // the descriptor is closed (and its number may be reused)
    const chunks = Buffer.isBuffer(payload) ? [payload] : payload;
    let len = 0;
    for (const c of chunks) len += c.length;
    const started = this.startTimes.get(h.unique);
    if (started !== undefined) {
      this.startTimes.delete(h.unique);
      this.opts.onOp?.(OPCODES.get(h.opcode)?.name ?? String(h.opcode), (performance.now() - started) / 1000, error, error ? 0 : len);
    }
    if (this.opts.debug) this.log('debug', formatReply(h, error, out));
    try {
      // One header buffer for every reply: the write is synchronous, so it is free again when write() returns.
      const head = this.replyHeader;
      head.writeUInt32LE(OUT_HEADER_SIZE + (error ? 0 : len), 0);
      head.writeInt32LE(-error, 4);
      head.writeBigUInt64LE(h.unique, 8);
      this.channel.write(error || chunks.length === 0 ? [head] : chunks.length === 1 ? [head, chunks[0]!] : [head, ...chunks]);
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code;
      if (code === 'ENOENT') {
        // The kernel no longer waits for this request (interrupted, or its caller was killed).
        if (this.opts.debug) this.log('debug', `reply to ${h.unique} dropped: request no longer pending`);
      } else if (code === 'ENODEV' || code === 'ECONNABORTED' || code === 'ENOTCONN') {
        if (this.opts.debug) this.log('debug', `reply to ${h.unique} dropped: connection gone`);
      } else {
        this.log('error', `writing reply to ${h.unique} (${error ? errnoName(error) : 'OK'}): ${toError(e).message}`);
      }
    }
  }
}

function toError(e: unknown): Error {
  return e instanceof Error ? e : new Error(String(e));
}
