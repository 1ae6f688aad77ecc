// One-line renderings of requests and replies for `--log-level debug`, built
// from the opcode table's names and the decoded arguments / plain replies, so
// every opcode prints without code of its own.

import { initFlagNames } from './constants.js';
import { errnoName } from './errors.js';
import { opcodeName } from './opcodes.js';
import type { InHeader } from './wire.js';

const MAX_ITEMS = 8;
const MAX_STRING = 80;

/** `<- 12 LOOKUP n1 {name:"etc"} uid=0 gid=0 pid=4242` */
export function formatRequest(h: Pick<InHeader, 'unique' | 'opcode' | 'nodeid' | 'uid' | 'gid' | 'pid'>, args: unknown): string {
  const body = formatValue(args);
  return `<- ${h.unique} ${opcodeName(h.opcode)} n${h.nodeid}${body === '{}' ? '' : ` ${body}`} uid=${h.uid} gid=${h.gid} pid=${h.pid}`;
}

/** `-> 12 LOOKUP OK {attr:{ino:2,mode:0o40755,...},...}` or `-> 12 LOOKUP ENOENT` */
export function formatReply(h: Pick<InHeader, 'unique' | 'opcode'>, error: number, out?: unknown): string {
  const head = `-> ${h.unique} ${opcodeName(h.opcode)}`;
  if (error) return `${head} ${errnoName(error)}`;
  return out === undefined ? `${head} OK` : `${head} OK ${formatValue(out)}`;
}

/** Compact rendering of decoded arguments and plain replies (Buffers summarized, modes in octal). */
export function formatValue(v: unknown, key = ''): string {
  if (v === undefined) return 'undefined';
  if (v === null) return 'null';
  if (typeof v === 'bigint') return key === 'flags' || key === 'kernelFlags' ? initFlagNames(v) : v.toString();
  if (typeof v === 'number') return key === 'mode' || key === 'umask' ? `0o${v.toString(8)}` : String(v);
  if (typeof v === 'string') return JSON.stringify(v.length > MAX_STRING ? `${v.slice(0, MAX_STRING)}…` : v);
  // eslint-disable-next-line @typescript-eslint/no-base-to-string -- only booleans, symbols, functions and undefined are left
  if (typeof v !== 'object') return String(v);
  if (Buffer.isBuffer(v) || v instanceof Uint8Array) return formatBytes(Buffer.from(v.buffer, v.byteOffset, v.byteLength));
  if (Array.isArray(v)) {
    const items = v.slice(0, MAX_ITEMS).map((x) => formatValue(x));
    if (v.length > MAX_ITEMS) items.push(`…+${v.length - MAX_ITEMS}`);
    return `[${items.join(',')}]`;
  }
  const o = v as Record<string, unknown>;
  const keys = Object.keys(o);
  if (keys.length === 2 && typeof o.sec === 'number' && typeof o.nsec === 'number') {
    return `${o.sec}.${String(o.nsec).padStart(9, '0')}`;
  }
  return `{${keys
    .filter((k) => o[k] !== undefined)
    .map((k) => `${k}:${formatValue(o[k], k)}`)
    .join(',')}}`;
}

function formatBytes(b: Buffer): string {
  if (b.length <= MAX_STRING) {
    const s = b.toString('utf8');
    // Printable text (names, link targets) shows as a string; anything else by size.
    if (!/[\x00-\x1f\x7f\ufffd]/.test(s)) return JSON.stringify(s);
  }
  return `<${b.length} bytes>`;
}
