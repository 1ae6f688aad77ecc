// Platforms ("linux/arm64/v8"): the host's default, parsing and printing, and
// the matching rules (containerd's normalisation) used to pick from an index.

import { endianness } from 'node:os';
import { ClipError } from '../errors.js';
import type { Platform } from './types.js';

/** linux plus the host's architecture in OCI terms (x64 -> amd64, arm -> arm/v7, ...). */
export function hostPlatform(): Platform {
  switch (process.arch) {
    case 'x64':
      return { os: 'linux', architecture: 'amd64' };
    case 'arm64':
      return { os: 'linux', architecture: 'arm64', variant: 'v8' };
    case 'arm': {
      const armVersion = (process.config.variables as Record<string, unknown>)['arm_version'];
      return { os: 'linux', architecture: 'arm', variant: `v${typeof armVersion === 'string' && armVersion !== '' ? armVersion : '7'}` };
    }
    case 'ia32':
      return { os: 'linux', architecture: '386' };
    case 'ppc64':
      return { os: 'linux', architecture: endianness() === 'LE' ? 'ppc64le' : 'ppc64' };
    case 'mipsel':
      return { os: 'linux', architecture: 'mipsle' };
    default:
      return { os: 'linux', architecture: process.arch };
  }
}

/** Parses "os/arch[/variant]" (or just "arch", meaning linux/arch). */
export function parsePlatform(s: string): Platform {
  const parts = s.split('/');
  if (parts.length === 1 && parts[0] !== '') return normalizePlatform({ os: 'linux', architecture: parts[0]! }, false);
  if (parts.length < 2 || parts.length > 3 || parts.some((p) => p === '' || !/^[A-Za-z0-9_.-]+$/.test(p))) {
    throw new ClipError('BAD_ARGUMENT', `invalid platform ${JSON.stringify(s)}: expected os/arch[/variant], e.g. linux/arm64`);
  }
  const p: Platform = { os: parts[0]!, architecture: parts[1]! };
  if (parts[2] !== undefined) p.variant = parts[2];
  return normalizePlatform(p, false);
}

export function formatPlatform(p: Platform): string {
  return p.variant ? `${p.os}/${p.architecture}/${p.variant}` : `${p.os}/${p.architecture}`;
}

/**
 * Canonical spelling: aarch64 -> arm64, x86_64 -> amd64, armhf -> arm/v7, ...
 * With `forMatching`, implied variants are made explicit-or-empty the way
 * containerd compares them (arm64/v8 == arm64, amd64/v1 == amd64, arm == arm/v7).
 */
export function normalizePlatform(p: Platform, forMatching = true): Platform {
  const os = p.os.toLowerCase();
  let architecture = p.architecture.toLowerCase();
  let variant = p.variant?.toLowerCase() ?? '';
  switch (architecture) {
    case 'i386':
    case 'i686':
    case 'x86':
      architecture = '386';
      break;
    case 'x86_64':
    case 'x86-64':
    case 'amd64':
      architecture = 'amd64';
      if (forMatching && variant === 'v1') variant = '';
      break;
    case 'aarch64':
    case 'arm64':
      architecture = 'arm64';
      if (variant === '8' || variant === 'v8.0') variant = 'v8';
      if (forMatching && variant === 'v8') variant = '';
      break;
    case 'armhf':
      architecture = 'arm';
      variant = 'v7';
      break;
    case 'armel':
      architecture = 'arm';
      variant = 'v6';
      break;
    case 'arm':
      if (/^[5-8]$/.test(variant)) variant = `v${variant}`;
      if (forMatching && variant === '') variant = 'v7';
      break;
  }
  const out: Platform = { os, architecture };
  if (variant !== '') out.variant = variant;
  return out;
}

function variantNumber(v: string | undefined): number | undefined {
  const m = /^v(\d+)$/.exec(v ?? '');
  return m ? Number(m[1]) : undefined;
}

/**
 * How well `candidate` serves `wanted`: undefined when it cannot run there;
 * higher is better (exact variant first, then the closest older variant).
 */
export function platformScore(wanted: Platform, candidate: Platform): number | undefined {
  const w = normalizePlatform(wanted);
  const c = normalizePlatform(candidate);
  if (w.os !== c.os || w.architecture !== c.architecture) return undefined;
  if (w.variant === c.variant) return 1000;
  const cv = variantNumber(c.variant);
  if (w.variant === undefined) {
    // No variant asked for: take any, preferring the oldest (most compatible).
    return c.variant === undefined ? 1000 : 900 - (cv ?? 50);
  }
  const wv = variantNumber(w.variant);
  if (c.variant === undefined) return 500;
  if (wv !== undefined && cv !== undefined && cv < wv) return 900 - (wv - cv);
  return undefined;
}
