// Handing a live FUSE connection from one server process to the next: answer
// INIT once (in the process that keeps the descriptor open), pass on what it
// settled, and let each later server ask the kernel to resend the requests a
// dead one had read but not answered (FUSE_NOTIFY_RESEND).
//
// Kernel facts (fs/fuse/dev.c, checked against kernel 6.18 here):
// - A connection lives while any process holds its /dev/fuse file open; the
//   SIGKILL of one holder aborts nothing. Requests read by the dead holder sit
//   in the file's "processing" queue; new ones wait in "pending" for a read.
// - FUSE_NOTIFY_RESEND (notify code 7, kernels >= 6.9, advertised by INIT flag
//   HAS_RESEND, protocol 7.40) moves every processing request back to the head
//   of pending, oldest first, with bit 63 of `unique` set. It is a write of a
//   bare out-header (len 16, error 7, unique 0). The kernel checks nothing but
//   that the connection is up: no negotiated-minor condition (we speak 7.38).
// - Older kernels answer that write with EINVAL, and the requests the dead
//   server had read stay unanswered: their callers wait (killably) until the
//   connection is aborted or the last holder of the descriptor closes it
//   (then they fail with ECONNABORTED and the mount with ENOTCONN).

import * as fs from 'node:fs';
import { InitFlag } from './constants.js';
import { type InitOptions, negotiateInit } from './init.js';
import { OPS } from './opcodes.js';
import type { ConnectionInfo } from './types.js';
import { BodyReader, IN_HEADER_SIZE, decodeInHeader, decodeInitIn, encodeInitOut, encodeOutHeader } from './wire.js';

/** fuse_notify_code FUSE_NOTIFY_RESEND. */
export const NOTIFY_RESEND = 7;
/** FUSE_UNIQUE_RESEND: set in `unique` of every request the kernel sent again. */
export const UNIQUE_RESEND = 1n << 63n;

/** Whether the kernel of this connection can resend unanswered requests. */
export function canResend(conn: ConnectionInfo): boolean {
  return (conn.kernelFlags & InitFlag.HAS_RESEND) !== 0n;
}

/** The notification asking the kernel to resend every request read but not yet answered. */
export function encodeNotifyResend(): Buffer {
  // A notification is an out-header with unique 0 and the (positive) code in `error`.
  return encodeOutHeader(0, -NOTIFY_RESEND, 0n);
}

/**
 * Reads the INIT request of a freshly mounted connection and answers it, with
 * blocking calls: mount(2) queues INIT before it returns, so the read does not
 * wait. Returns what INIT settled, for every server that will serve `fd`.
 */
export function acceptInit(fd: number, options: InitOptions = {}): ConnectionInfo {
  // INIT is small; the kernel still wants room for a whole request.
  const buf = Buffer.alloc(Math.max(8192, (options.maxWrite ?? 1024 * 1024) + 4096));
  for (;;) {
    const n = fs.readSync(fd, buf, 0, buf.length, null);
    const h = decodeInHeader(buf, n);
    if (h.opcode !== OPS.INIT.code) throw new Error(`expected FUSE INIT first on the new connection, got opcode ${h.opcode}`);
    const d = negotiateInit(decodeInitIn(new BodyReader(buf, IN_HEADER_SIZE, n)), options);
    if (d.kind === 'refuse') {
      fs.writevSync(fd, [encodeOutHeader(0, d.errno, h.unique)]);
      throw new Error(d.message);
    }
    const payload = encodeInitOut(d.out);
    fs.writevSync(fd, [encodeOutHeader(payload.length, 0, h.unique), payload]);
    if (d.kind === 'ready') return d.conn;
  }
}

/** ConnectionInfo as JSON-safe text (its flags are 64-bit), for a child's environment. */
export function connectionToJson(conn: ConnectionInfo): string {
  return JSON.stringify({ ...conn, kernelFlags: conn.kernelFlags.toString(), flags: conn.flags.toString() });
}

const NUMBER_FIELDS = [
  'kernelMajor',
  'kernelMinor',
  'minor',
  'maxReadahead',
  'maxWrite',
  'maxPages',
  'maxBackground',
  'congestionThreshold',
  'timeGran',
] as const;

/** The inverse of connectionToJson; throws naming the first field that is missing or wrong. */
export function connectionFromJson(text: string): ConnectionInfo {
  const o = JSON.parse(text) as Record<string, unknown>;
  const out: Record<string, unknown> = {};
  for (const k of NUMBER_FIELDS) {
    const v = o[k];
    if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < 0) throw new Error(`handed-over FUSE connection: bad ${k}`);
    out[k] = v;
  }
  for (const k of ['kernelFlags', 'flags'] as const) {
    const v = o[k];
    if (typeof v !== 'string' || !/^\d{1,20}$/.test(v)) throw new Error(`handed-over FUSE connection: bad ${k}`);
    out[k] = BigInt(v);
  }
  return out as unknown as ConnectionInfo;
}
