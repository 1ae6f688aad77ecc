// FUSE_INIT negotiation as a pure function: from what the kernel offers and
// what the server wants, the reply to send and the connection parameters in
// force afterwards (version min(kernel, ours), flags offered AND wanted).

import { InitFlag, KERNEL_VERSION, MAX_MINOR, MIN_KERNEL_MINOR, WANTED_INIT_FLAGS, errno } from './constants.js';
import type { ConnectionInfo } from './types.js';
import type { InitIn, InitOut } from './wire.js';

export interface InitOptions {
  /** Largest WRITE (and with it the read buffer: maxWrite + 4096). Default 1 MiB. */
  maxWrite?: number;
  /** Largest request in pages (FUSE_MAX_PAGES); 256 pages = 1 MiB reads. Default 256. */
  maxPages?: number;
  /** Cap on readahead; default: as much as the kernel offers. */
  maxReadahead?: number;
  /** Background requests (readahead, async reads) the kernel keeps in flight. Default 64. */
  maxBackground?: number;
  /** Background requests at which the kernel reports congestion. Default 48. */
  congestionThreshold?: number;
  /** Override the wanted INIT flags (default WANTED_INIT_FLAGS). */
  wantFlags?: bigint;
}

export const DEFAULT_MAX_WRITE = 1024 * 1024;
export const DEFAULT_MAX_PAGES = 256;

export type InitDecision =
  /** Send `out`; the connection is up with `conn`. */
  | { kind: 'ready'; out: InitOut; conn: ConnectionInfo }
  /** The kernel's major is newer: send our version and wait for another INIT. */
  | { kind: 'retry'; out: InitOut }
  /** Refuse with errno (the kernel then fails the mount's first access). */
  | { kind: 'refuse'; errno: number; message: string };

export function negotiateInit(k: InitIn, o: InitOptions = {}): InitDecision {
  if (k.major > KERNEL_VERSION) {
    return { kind: 'retry', out: { ...zeroOut(), major: KERNEL_VERSION, minor: MAX_MINOR } };
  }
  if (k.major < KERNEL_VERSION || k.minor < MIN_KERNEL_MINOR) {
    return {
      kind: 'refuse',
      errno: errno.EPROTO,
      message: `kernel FUSE protocol ${k.major}.${k.minor} is older than the ${KERNEL_VERSION}.${MIN_KERNEL_MINOR} this server needs`,
    };
  }
  const minor = Math.min(k.minor, MAX_MINOR);
  let want = o.wantFlags ?? WANTED_INIT_FLAGS;
  // flags2 (bits 32..63) exist from 7.36 on, and only count with INIT_EXT.
  if (minor < 36) want &= 0xffff_ffffn & ~InitFlag.INIT_EXT;
  const flags = k.flags & want;
  const maxWrite = Math.max(4096, Math.floor(o.maxWrite ?? DEFAULT_MAX_WRITE));
  const maxPages = flags & InitFlag.MAX_PAGES ? clamp(o.maxPages ?? DEFAULT_MAX_PAGES, 1, 0xffff) : 0;
  const maxReadahead = o.maxReadahead === undefined ? k.maxReadahead : Math.min(k.maxReadahead, o.maxReadahead);
  const maxBackground = clamp(o.maxBackground ?? 64, 1, 0xffff);
  const congestionThreshold = clamp(o.congestionThreshold ?? Math.floor((maxBackground * 3) / 4), 1, maxBackground);
  const out: InitOut = {
    major: KERNEL_VERSION,
    minor,
    maxReadahead,
    flags,
    maxBackground,
    congestionThreshold,
    maxWrite,
    timeGran: 1,
    maxPages,
  };
  const conn: ConnectionInfo = {
    kernelMajor: k.major,
    kernelMinor: k.minor,
    minor,
    kernelFlags: k.flags,
    flags,
    maxReadahead,
    maxWrite,
    maxPages,
    maxBackground,
    congestionThreshold,
    timeGran: 1,
  };
  return { kind: 'ready', out, conn };
}

function zeroOut(): InitOut {
  return {
    major: 0,
    minor: 0,
    maxReadahead: 0,
    flags: 0n,
    maxBackground: 0,
    congestionThreshold: 0,
    maxWrite: 0,
    timeGran: 0,
    maxPages: 0,
  };
}

function clamp(n: number, lo: number, hi: number): number {
  return Math.min(hi, Math.max(lo, Math.floor(n)));
}
