// Registry host names as docker spells them: which are loopback (where clip
// may fall back to plain HTTP), and when an index's record alone decides.

import type { RegistryOptions } from './types.js';

/** True for localhost, 127.0.0.0/8 and ::1, with or without a port. */
export function isLocalRegistry(registry: string): boolean {
  let host = registry.toLowerCase();
  if (host.startsWith('[')) host = host.slice(1, host.indexOf(']'));
  else if (host.split(':').length === 2) host = host.slice(0, host.indexOf(':'));
  return host === 'localhost' || host === '::1' || /^127\.\d{1,3}\.\d{1,3}\.\d{1,3}$/.test(host);
}

/** Whether plain HTTP comes only from what an index recorded: not asked for, not a loopback registry. */
export function plainOnRecordOnly(registry: string, opts: RegistryOptions): boolean {
  return opts.plainHttp === undefined && opts.recordedPlainHttp === true && !isLocalRegistry(registry);
}
