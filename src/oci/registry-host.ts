// Registry host names as docker spells them: which are loopback (where clip
// may fall back to plain HTTP), and the plain base URL of a registry.

import { DOCKER_HUB } from './reference.js';
import type { RegistryOptions } from './types.js';

/** True for localhost, 127.0.0.0/8 and ::1, with or without a port. */
export function isLocalRegistry(registry: string): boolean {
  let host = registry.toLowerCase();
  if (host.startsWith('[')) host = host.slice(1, host.indexOf(']'));
  else if (host.split(':').length === 2) host = host.slice(0, host.indexOf(':'));
  return host === 'localhost' || host === '::1' || /^127\.\d{1,3}\.\d{1,3}\.\d{1,3}$/.test(host);
}

/**
 * A registry's base URL by docker's old rule ("https://registry-1.docker.io";
 * plain HTTP for loopback or `plainHttp`). RegistryClient no longer uses it:
 * it goes through hosts.toml endpoints and tries TLS first (endpoints.ts).
 */
export function registryBaseUrl(registry: string, plainHttp = false): URL {
  const host = registry === DOCKER_HUB ? 'registry-1.docker.io' : registry;
  const scheme = plainHttp || isLocalRegistry(registry) ? 'http' : 'https';
  return new URL(`${scheme}://${host}`);
}

/** Whether plain HTTP comes only from what an index recorded: not asked for, not a loopback registry. */
export function plainOnRecordOnly(registry: string, opts: RegistryOptions): boolean {
  return opts.plainHttp === undefined && opts.recordedPlainHttp === true && !isLocalRegistry(registry);
}
