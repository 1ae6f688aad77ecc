// How a filesystem says "no": throw a FuseError(errno), or any Error carrying
// a Node-style `code` ('ENOENT') or numeric `errno`. This file maps whatever
// was thrown to the positive errno the kernel is sent (unknown -> EIO).

import { errno } from './constants.js';

const NAMES = new Map<number, string>(Object.entries(errno).map(([name, n]) => [n, name]));

export class FuseError extends Error {
  /** Positive errno, e.g. 2 for ENOENT. */
  readonly errno: number;
  readonly code: string;

  constructor(err: number | keyof typeof errno, message?: string) {
    const n = typeof err === 'number' ? Math.abs(err) : errno[err];
    if (!Number.isInteger(n) || n <= 0) throw new TypeError(`not an errno: ${String(err)}`);
    const code = errnoName(n);
    // No stack: a FuseError is an answer (ENOENT, ENODATA), thrown thousands
    // of times a start-up and never logged; capturing one cost ~0.1-0.2 s of
    // the daemon's main thread on the torch start-up (bench:ml).
    const limit = Error.stackTraceLimit;
    Error.stackTraceLimit = 0;
    try {
      super(message ?? code);
    } finally {
      Error.stackTraceLimit = limit;
    }
    this.name = 'FuseError';
    this.errno = n;
    this.code = code;
  }
}

/** "ENOENT" for 2; "E123" for numbers without a name. */
export function errnoName(n: number): string {
  return NAMES.get(n) ?? `E${n}`;
}

/**
 * The errno an exception stands for, or undefined when it carries none (a bug,
 * answered with EIO by the session). AbortError (a request the kernel
 * interrupted, seen through its AbortSignal) is EINTR.
 */
export function errnoOf(err: unknown): number | undefined {
  if (err instanceof FuseError) return err.errno;
  if (typeof err !== 'object' || err === null) return undefined;
  const e = err as { code?: unknown; errno?: unknown; name?: unknown };
  if (typeof e.code === 'string' && Object.hasOwn(errno, e.code)) return errno[e.code as keyof typeof errno];
  if (e.name === 'AbortError') return errno.EINTR;
  // Node's system errors carry negative libuv codes, which on Linux are -errno.
  if (typeof e.errno === 'number' && Number.isInteger(e.errno) && e.errno !== 0) return Math.abs(e.errno);
  return undefined;
}

/** The kernel rejects replies whose error is not in -1..-511; anything else becomes EIO. */
export function sanitizeErrno(n: number): number {
  return Number.isInteger(n) && n > 0 && n < 512 ? n : errno.EIO;
}
