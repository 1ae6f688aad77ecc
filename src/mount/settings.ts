// How a mount is served (log level, span cache, prefetch, metrics, start-up
// profiles): the flags of `clip mount` checked into one type, and the check
// that an image already served does what a new mount of it asks for.

import path from 'node:path';
import { ClipError } from '../errors.js';

export const LOG_LEVELS = ['trace', 'debug', 'info', 'warn', 'error'] as const;
export type MountLogLevel = (typeof LOG_LEVELS)[number];

export const DEFAULT_CACHE_BYTES = 10 * 1024 ** 3;
export const DEFAULT_PREFETCH_RATE = 20 * 1024 ** 2;

export interface MountSettings {
  logLevel: MountLogLevel;
  /** Where inflated spans are cached on disk (absolute), and at most how many bytes. */
  cacheDir: string;
  cacheBytes: number;
  /** Fetch the rest of the image in the background at this many compressed bytes per second. */
  prefetchRate?: number;
  /** Also serve Prometheus metrics on this HOST:PORT. */
  metricsAddr?: string;
  /** Fetch the spans of this start-up profile (absolute path) right after mounting, all together. */
  profile?: string;
  /** Record which spans are read, in order, into this start-up profile (absolute path) at unmount. */
  recordProfile?: string;
}

/** The flags as commander hands them over (sizes already parsed); undefined: not given. */
export interface MountFlags {
  logLevel?: string;
  cacheDir?: string;
  cacheSize?: number;
  prefetch?: boolean;
  prefetchRate?: number;
  metricsAddr?: string;
  profile?: string;
  recordProfile?: string;
}

function bad(message: string): ClipError {
  return new ClipError('BAD_ARGUMENT', message);
}

/** Only the settings the flags give, validated and resolved: checked in the CLI before any daemon starts. */
export function askedSettings(f: MountFlags): Partial<MountSettings> {
  const s: Partial<MountSettings> = {};
  if (f.logLevel !== undefined) {
    if (!(LOG_LEVELS as readonly string[]).includes(f.logLevel))
      throw bad(`bad --log-level ${f.logLevel}: expected one of ${LOG_LEVELS.join(', ')}`);
    s.logLevel = f.logLevel as MountLogLevel;
  }
  if (f.cacheDir !== undefined) s.cacheDir = path.resolve(f.cacheDir);
  if (f.cacheSize !== undefined) {
    if (!Number.isSafeInteger(f.cacheSize) || f.cacheSize < 1) throw bad(`bad --cache-size ${f.cacheSize}: give at least 1 byte`);
    s.cacheBytes = f.cacheSize;
  }
  if (f.prefetchRate !== undefined && (!Number.isSafeInteger(f.prefetchRate) || f.prefetchRate < 1)) {
    throw bad(`bad --prefetch-rate ${f.prefetchRate}: give at least 1 byte per second (without --prefetch nothing is prefetched)`);
  }
  if (f.prefetch) s.prefetchRate = f.prefetchRate ?? DEFAULT_PREFETCH_RATE;
  if (f.metricsAddr !== undefined) {
    const m = /^(.+):(\d+)$/.exec(f.metricsAddr);
    if (!m || Number(m[2]) < 1 || Number(m[2]) > 65535)
      throw bad(`bad --metrics-addr ${f.metricsAddr}: expected HOST:PORT, e.g. 127.0.0.1:9100`);
    s.metricsAddr = f.metricsAddr;
  }
  if (f.profile !== undefined) s.profile = path.resolve(f.profile);
  if (f.recordProfile !== undefined) s.recordProfile = path.resolve(f.recordProfile);
  return s;
}

/**
 * What a running mount does not do of what was asked, one phrase per
 * setting ("--cache-dir /a (it uses /b)"); empty when it serves all of it.
 * Only settings asked for count: leaving a flag out asks for nothing.
 */
export function settingsConflicts(asked: Partial<MountSettings>, running: MountSettings): string[] {
  const out: string[] = [];
  const differs = (flag: string, want: string | number | undefined, has: string | number | undefined, none: string): void => {
    if (want !== undefined && want !== has) out.push(`${flag} ${want} (it ${has === undefined ? none : `has ${has}`})`);
  };
  differs('--log-level', asked.logLevel, running.logLevel, '');
  differs('--cache-dir', asked.cacheDir, running.cacheDir, '');
  differs('--cache-size', asked.cacheBytes, running.cacheBytes, '');
  differs('--prefetch --prefetch-rate', asked.prefetchRate, running.prefetchRate, 'does not prefetch');
  differs('--metrics-addr', asked.metricsAddr, running.metricsAddr, 'serves no metrics');
  differs('--profile', asked.profile, running.profile, 'was started without one');
  differs('--record-profile', asked.recordProfile, running.recordProfile, 'records none');
  return out;
}
