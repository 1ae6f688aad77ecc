// Per-registry host settings in containerd's layout: `<configPath>/<host>/hosts.toml`
// (mirrors as `[host."URL"]` tables, tried in file order, then `server`), or,
// without a hosts.toml, docker's certs.d files in that directory (*.crt: CAs,
// *.cert + *.key: client pairs). The file is operator input read by a root
// daemon: every key is type-checked and errors name the file and the key.

import { readdir, readFile } from 'node:fs/promises';
import path from 'node:path';
import { ClipError } from '../errors.js';
import { parseToml } from '../util/toml.js';
import { DOCKER_HUB } from './reference.js';

export const DEFAULT_HOSTS_DIR = '/etc/clip/certs.d';
export const CAPABILITIES = ['pull', 'resolve', 'push'] as const;
export type Capability = (typeof CAPABILITIES)[number];

/** One place to reach a registry: a mirror or the upstream server. */
export interface HostEntry {
  /** The API root ("https://mirror.example:5000/v2"): requests go to `<root>/<repository>/...`. */
  root: URL;
  capabilities: ReadonlySet<Capability>;
  /** CA certificate files (absolute), trusted on top of the system's. */
  ca: string[];
  /** Client certificate and key files (absolute; the key may sit in the certificate's file). */
  client: { cert: string; key: string }[];
  /** undefined: not set (verify). */
  skipVerify?: boolean;
  /** Extra request headers. */
  headers: Record<string, string>;
}

export interface HostsConfig {
  /** The file or directory these settings came from, for messages; undefined: none (defaults). */
  source?: string;
  /** Tried in order before `server`. */
  mirrors: HostEntry[];
  server: HostEntry;
  /** True when the server's scheme was written (an http:// or https:// URL), not defaulted. */
  serverSchemeGiven: boolean;
}

const MAX_HOSTS_FILE = 256 * 1024;
const MAX_MIRRORS = 32;
/** The host header names a file may set: plain tokens, and none that HTTP itself needs. */
const HEADER_NAME = /^[!#$%&'*+.^_`|~0-9A-Za-z-]{1,128}$/;
const RESERVED_HEADERS = new Set(['host', 'authorization', 'content-length', 'range', 'transfer-encoding', 'connection']);

/** The directories containerd would look in for `registry`, most specific first. */
export function hostDirs(configPath: string, registry: string): string[] {
  const host = registry.toLowerCase();
  // A registry name is a host[:port]: nothing in it may walk out of the config path.
  if (!/^[a-z0-9.\-_[\]:]+$/.test(host) || host.includes('..')) {
    throw new ClipError('BAD_REFERENCE', `registry host ${JSON.stringify(registry)} cannot name a hosts directory`);
  }
  const dirs = [path.join(configPath, host)];
  const colon = host.lastIndexOf(':');
  if (colon > 0 && !host.endsWith(']')) dirs.push(path.join(configPath, `${host.slice(0, colon)}_${host.slice(colon + 1)}_`));
  dirs.push(path.join(configPath, '_default'));
  return dirs;
}

/** The upstream of `registry` when no file names one: https, docker.io as registry-1.docker.io. */
export function defaultServer(registry: string): URL {
  const host = registry === DOCKER_HUB ? 'registry-1.docker.io' : registry;
  return new URL(`https://${host}/v2`);
}

function defaults(registry: string): HostsConfig {
  return { mirrors: [], server: entry(defaultServer(registry)), serverSchemeGiven: false };
}

function entry(root: URL): HostEntry {
  return { root, capabilities: new Set(CAPABILITIES), ca: [], client: [], headers: {} };
}

/** The settings for `registry` under `configPath`: the first host directory that exists, else defaults. */
export async function loadHostsConfig(configPath: string, registry: string): Promise<HostsConfig> {
  for (const dir of hostDirs(configPath, registry)) {
    let names: string[];
    try {
      names = await readdir(dir);
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code;
      if (code === 'ENOENT' || code === 'ENOTDIR') continue;
      throw new ClipError('IO', `cannot read hosts directory ${dir}: ${(e as Error).message}`);
    }
    if (names.includes('hosts.toml')) {
      const file = path.join(dir, 'hosts.toml');
      return parseHostsToml(await readHostsFile(file), file, registry);
    }
    const config = defaults(registry);
    Object.assign(config.server, await certDirFiles(dir, names));
    config.source = dir;
    return config;
  }
  return defaults(registry);
}

async function readHostsFile(file: string): Promise<string> {
  let bytes: Buffer;
  try {
    bytes = await readFile(file);
  } catch (e) {
    throw new ClipError('IO', `cannot read ${file}: ${(e as Error).message}`);
  }
  if (bytes.length > MAX_HOSTS_FILE) throw new ClipError('BAD_ARGUMENT', `${file}: more than ${MAX_HOSTS_FILE} bytes: not a hosts.toml`);
  try {
    return new TextDecoder('utf-8', { fatal: true }).decode(bytes);
  } catch {
    throw new ClipError('BAD_ARGUMENT', `${file}: not valid TOML: not UTF-8 text`);
  }
}

/** docker's certs.d files of one directory (also skopeo's --cert-dir): *.crt are CAs, *.cert + *.key client pairs. */
export async function certDirFiles(dir: string, names?: string[]): Promise<Pick<HostEntry, 'ca' | 'client'>> {
  names ??= await readdir(dir).catch((e: unknown) => {
    throw new ClipError('IO', `cannot read certificate directory ${dir}: ${(e as Error).message}`);
  });
  const out: Pick<HostEntry, 'ca' | 'client'> = { ca: [], client: [] };
  const files = names.filter((n) => !n.startsWith('.')).sort();
  for (const n of files) {
    const stem = n.replace(/\.(crt|cert|key)$/, '');
    if (n.endsWith('.crt')) out.ca.push(path.join(dir, n));
    if (n.endsWith('.cert')) {
      if (!files.includes(`${stem}.key`))
        throw new ClipError('BAD_ARGUMENT', `${path.join(dir, n)}: client certificate without its key ${stem}.key`);
      out.client.push({ cert: path.join(dir, n), key: path.join(dir, `${stem}.key`) });
    }
    if (n.endsWith('.key') && !files.includes(`${stem}.cert`)) {
      throw new ClipError('BAD_ARGUMENT', `${path.join(dir, n)}: client key without its certificate ${stem}.cert`);
    }
  }
  return out;
}

/** Parses one hosts.toml; relative certificate paths are taken from its directory. */
export function parseHostsToml(text: string, file: string, registry: string): HostsConfig {
  const doc = parseToml(text, `${file}`);
  const base = path.dirname(file);
  const config: HostsConfig = { source: file, mirrors: [], server: entry(defaultServer(registry)), serverSchemeGiven: false };
  if (doc['server'] !== undefined) {
    const server = str(doc['server'], file, 'server');
    config.server = hostEntry(parseUrl(server, file, 'server', doc['override_path']), doc, file, '', base);
    config.serverSchemeGiven = /^https?:\/\//i.test(server);
  } else {
    config.server = hostEntry(config.server.root, doc, file, '', base);
  }
  const hosts = doc['host'];
  if (hosts !== undefined) {
    if (!isTable(hosts)) throw bad(file, 'host', 'expected tables [host."https://mirror"]');
    const urls = Object.keys(hosts);
    if (urls.length > MAX_MIRRORS) throw bad(file, 'host', `more than ${MAX_MIRRORS} hosts`);
    for (const url of urls) {
      const key = `host.${JSON.stringify(url)}`;
      const t = hosts[url];
      if (!isTable(t)) throw bad(file, key, 'expected a table');
      config.mirrors.push(hostEntry(parseUrl(url, file, key, t['override_path']), t, file, `${key}.`, base));
    }
  }
  return config;
}

function hostEntry(root: URL, t: Record<string, unknown>, file: string, prefix: string, base: string): HostEntry {
  const e = entry(root);
  const caps = t['capabilities'];
  if (caps !== undefined) {
    const list = strList(caps, file, `${prefix}capabilities`);
    for (const c of list) {
      if (!(CAPABILITIES as readonly string[]).includes(c.toLowerCase())) {
        throw bad(file, `${prefix}capabilities`, `unknown capability ${JSON.stringify(c)} (known: ${CAPABILITIES.join(', ')})`);
      }
    }
    e.capabilities = new Set(list.map((c) => c.toLowerCase() as Capability));
  }
  if (t['skip_verify'] !== undefined) {
    if (typeof t['skip_verify'] !== 'boolean')
      throw bad(file, `${prefix}skip_verify`, `expected true or false, got ${show(t['skip_verify'])}`);
    e.skipVerify = t['skip_verify'];
  }
  if (t['override_path'] !== undefined && typeof t['override_path'] !== 'boolean') {
    throw bad(file, `${prefix}override_path`, `expected true or false, got ${show(t['override_path'])}`);
  }
  if (t['ca'] !== undefined) {
    const ca = t['ca'];
    e.ca = (typeof ca === 'string' ? [ca] : strList(ca, file, `${prefix}ca`)).map((p) => filePath(p, base, file, `${prefix}ca`));
  }
  if (t['client'] !== undefined) e.client = clientPairs(t['client'], file, `${prefix}client`, base);
  if (t['header'] !== undefined) e.headers = headers(t['header'], file, `${prefix}header`);
  return e;
}

/** `client`: "both.pem", ["a.pem", ...] or [["cert", "key"], ...]. */
function clientPairs(v: unknown, file: string, key: string, base: string): { cert: string; key: string }[] {
  const items = typeof v === 'string' ? [v] : Array.isArray(v) ? v : undefined;
  if (!items) throw bad(file, key, `expected a file, a list of files or a list of [cert, key] pairs, got ${show(v)}`);
  return items.map((item) => {
    if (typeof item === 'string') {
      const p = filePath(item, base, file, key);
      return { cert: p, key: p };
    }
    if (Array.isArray(item) && item.length === 2 && item.every((x) => typeof x === 'string')) {
      return { cert: filePath(item[0] as string, base, file, key), key: filePath(item[1] as string, base, file, key) };
    }
    throw bad(file, key, `expected a file or a [cert, key] pair of files, got ${show(item)}`);
  });
}

function headers(v: unknown, file: string, key: string): Record<string, string> {
  if (!isTable(v)) throw bad(file, key, 'expected a table of header names to values');
  const out: Record<string, string> = {};
  for (const [name, value] of Object.entries(v)) {
    const k = `${key}.${JSON.stringify(name)}`;
    if (!HEADER_NAME.test(name) || RESERVED_HEADERS.has(name.toLowerCase())) throw bad(file, k, 'not a header clip may set');
    const values = typeof value === 'string' ? [value] : strList(value, file, k);
    // A CR or LF would let a file split a request.
    if (values.some((s) => /[\r\n\0]/.test(s))) throw bad(file, k, 'a header value cannot contain CR, LF or NUL');
    out[name.toLowerCase()] = values.join(', ');
  }
  return out;
}

/** "https://host[:port][/path]" or a bare "host[:port]" (https): the API root, /v2 appended unless override_path. */
function parseUrl(s: string, file: string, key: string, overridePath: unknown): URL {
  const withScheme = /^[a-z][a-z0-9+.-]*:\/\//i.test(s) ? s : `https://${s}`;
  let u: URL;
  try {
    u = new URL(withScheme);
  } catch {
    throw bad(file, key, `not a URL: ${JSON.stringify(s)}`);
  }
  if (u.protocol !== 'https:' && u.protocol !== 'http:') throw bad(file, key, `unsupported scheme ${u.protocol} (http or https)`);
  if (u.username || u.password)
    throw bad(file, key, 'credentials do not belong in a URL here: use docker login or CLIP_USERNAME/CLIP_PASSWORD');
  if (u.search || u.hash) throw bad(file, key, 'a host URL takes no query or fragment');
  let p = path.posix.normalize(u.pathname).replace(/\/+$/, '');
  if (overridePath !== true && !p.endsWith('/v2')) p = `${p}/v2`;
  u.pathname = p;
  return u;
}

function filePath(p: string, base: string, file: string, key: string): string {
  if (p === '' || p.includes('\0')) throw bad(file, key, `not a file path: ${JSON.stringify(p)}`);
  return path.resolve(base, p);
}

function str(v: unknown, file: string, key: string): string {
  if (typeof v !== 'string' || v === '') throw bad(file, key, `expected a non-empty string, got ${show(v)}`);
  return v;
}

function strList(v: unknown, file: string, key: string): string[] {
  if (!Array.isArray(v) || !v.every((x) => typeof x === 'string')) throw bad(file, key, `expected a list of strings, got ${show(v)}`);
  return v;
}

function isTable(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v) && !(v instanceof Date);
}

function show(v: unknown): string {
  if (typeof v === 'string') return JSON.stringify(v);
  if (Array.isArray(v)) return 'an array';
  if (v instanceof Date) return 'a date';
  if (isTable(v)) return 'a table';
  return String(v);
}

function bad(file: string, key: string, problem: string): ClipError {
  return new ClipError('BAD_ARGUMENT', `${file}: ${key}: ${problem}`);
}
