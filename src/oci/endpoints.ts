// The ordered places to reach one registry: its mirrors from hosts.toml, then
// the upstream, each with its capabilities, TLS settings and whether plain
// HTTP may be tried after TLS. A mirror that fails is skipped by every client
// of this process for a while (and listeners hear of it: the daemon logs and
// counts it); the upstream is never skipped.

import path from 'node:path';
import type { ConnectionOptions } from 'node:tls';
import { loadTlsOptions } from '../http/tls-options.js';
import { certDirFiles, DEFAULT_HOSTS_DIR, loadHostsConfig, type Capability, type HostEntry } from './hosts-config.js';
import { isLocalRegistry } from './registry-host.js';
import type { RegistryOptions } from './types.js';

export type { Capability };

export interface Endpoint {
  /** The API root over TLS or as configured ("https://mirror:5000/v2"). */
  root: URL;
  /** host[:port], for messages and credentials. */
  host: string;
  mirror: boolean;
  capabilities: ReadonlySet<Capability>;
  tls?: ConnectionOptions;
  /** Names the TLS settings: endpoints with the same key can share connections. */
  tlsKey: string;
  /** After a plain HTTP answer to TLS, try plain HTTP (loopback, --plain-http, --tls-verify=false, a plain record). */
  httpFallback: boolean;
  /** Speak plain HTTP from the first request (--plain-http, or the record of the index being read). */
  startPlain?: boolean;
  headers: Record<string, string>;
  /** Where these settings came from ("/etc/clip/certs.d/host/hosts.toml"), for messages. */
  source?: string;
}

/** The hosts directory in effect: the option, else $CLIP_HOSTS_DIR, else /etc/clip/certs.d. */
export function hostsDir(opts: RegistryOptions): string {
  return path.resolve(opts.hostsDir ?? (process.env['CLIP_HOSTS_DIR'] || DEFAULT_HOSTS_DIR));
}

/** The endpoints of `registry`, mirrors first; certificate files are read and checked here. */
export async function registryEndpoints(registry: string, opts: RegistryOptions = {}): Promise<Endpoint[]> {
  const config = await loadHostsConfig(hostsDir(opts), registry);
  if (opts.certDir !== undefined) {
    // skopeo's --cert-dir: these files, not the hosts directory's, for the registry itself.
    Object.assign(config.server, await certDirFiles(path.resolve(opts.certDir)));
  }
  const out: Endpoint[] = [];
  for (const m of config.mirrors) out.push(await endpoint(m, true, opts, false, config.source));
  // An upstream whose scheme nobody wrote: TLS first, plain HTTP only where allowed (never with --no-plain-http);
  // plain HTTP from the start with --plain-http, or where the index being read says it was reached so.
  const plain = opts.plainHttp ?? opts.recordedPlainHttp;
  const fallback =
    !config.serverSchemeGiven && opts.plainHttp !== false && (plain === true || opts.tlsVerify === false || isLocalRegistry(registry));
  const upstream = await endpoint(config.server, false, opts, fallback, config.source);
  if (fallback && plain === true) upstream.startPlain = true;
  out.push(upstream);
  return out;
}

async function endpoint(h: HostEntry, mirror: boolean, opts: RegistryOptions, httpFallback: boolean, source?: string): Promise<Endpoint> {
  const skipVerify = opts.tlsVerify === false ? true : h.skipVerify;
  const tls = await loadTlsOptions({ ca: h.ca, client: h.client, ...(skipVerify !== undefined ? { skipVerify } : {}) });
  const e: Endpoint = {
    root: new URL(h.root),
    host: h.root.host,
    mirror,
    capabilities: h.capabilities,
    tlsKey: tls.key,
    // A mirror is an operator's URL: its scheme is what it says (http:// for plain HTTP).
    httpFallback: httpFallback && h.root.protocol === 'https:',
    headers: h.headers,
  };
  if (tls.options) e.tls = tls.options;
  if (source !== undefined) e.source = source;
  return e;
}

/** Hosts that answered TLS with plain HTTP and may be spoken to in plain HTTP: decided once per process. */
const plainHosts = new Set<string>();

/** The root to send to now: plain HTTP once the endpoint fell back to it. */
export function currentRoot(e: Endpoint): URL {
  if (e.root.protocol !== 'https:' || !e.httpFallback || !(e.startPlain || plainHosts.has(e.root.host))) return e.root;
  const u = new URL(e.root);
  u.protocol = 'http:';
  return u;
}

/** The endpoint answered TLS with plain HTTP; true if it may now be tried over HTTP. */
export function fallBackToHttp(e: Endpoint): boolean {
  if (!e.httpFallback || e.root.protocol !== 'https:') return false;
  plainHosts.add(e.root.host);
  return true;
}

export interface MirrorFailure {
  /** The mirror's API root. */
  mirror: string;
  /** The registry it mirrors. */
  registry: string;
  reason: string;
  /** How long it is skipped now. */
  skipMs: number;
}

const SKIP_BASE_MS = 30_000;
const SKIP_CAP_MS = 10 * 60_000;

/** Per mirror root: skipped until when, and how many failures in a row (the skip doubles). */
const skipped = new Map<string, { until: number; failures: number }>();
const listeners = new Set<(f: MirrorFailure) => void>();

/** Hears of every mirror failure in this process; returns the way to stop. */
export function onMirrorFailure(listener: (f: MirrorFailure) => void): () => void {
  listeners.add(listener);
  return () => listeners.delete(listener);
}

/** How long a failed mirror is skipped first ($CLIP_MIRROR_SKIP_MS, default 30 s; doubling up to 10 min). */
function skipBaseMs(): number {
  const v = Number(process.env['CLIP_MIRROR_SKIP_MS']);
  return Number.isFinite(v) && v >= 0 ? v : SKIP_BASE_MS;
}

export function isSkipped(e: Endpoint, now = Date.now()): boolean {
  const s = skipped.get(e.root.href);
  return s !== undefined && s.until > now;
}

export function markFailed(e: Endpoint, registry: string, reason: string): void {
  const key = e.root.href;
  const failures = (skipped.get(key)?.failures ?? 0) + 1;
  const skipMs = Math.min(SKIP_CAP_MS, skipBaseMs() * 2 ** (failures - 1));
  skipped.set(key, { until: Date.now() + skipMs, failures });
  for (const l of listeners) l({ mirror: key, registry, reason, skipMs });
}

/** A mirror answered: its failures are forgotten. */
export function markHealthy(e: Endpoint): void {
  skipped.delete(e.root.href);
}

/** The endpoints that can do `capability`, those not skipped first; a skipped one is still tried when nothing else can. */
export function candidates(all: Endpoint[], capability: Capability): Endpoint[] {
  const able = all.filter((e) => e.capabilities.has(capability));
  const live = able.filter((e) => !isSkipped(e));
  return live.length > 0 ? live : able;
}
