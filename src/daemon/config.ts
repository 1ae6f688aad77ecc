// The settings of `clip daemon`: a TOML file (default /etc/clip/config.toml),
// then the environment (CLIP_STATE_DIR, CLIP_DATA_DIR, CLIP_HOSTS_DIR), then flags, each
// overriding the one before, over the defaults of today's `clip mount`. One
// table of keys drives parsing, validation, flags and the printed settings.

import { open } from 'node:fs/promises';
import path from 'node:path';
import { DEFAULT_MEMORY_CACHE } from '../content/layer-reader.js';
import { DEFAULT_MEMORY_BOUND_TEXT } from '../content/memory-bound.js';
import { ClipError } from '../errors.js';
import { parseToml } from '../util/toml.js';
import { DEFAULT_HOSTS_DIR } from '../oci/hosts-config.js';
import { pathProblem } from '../util/path-errors.js';
import { DEFAULT_CACHE_BYTES, DEFAULT_PREFETCH_RATE, LOG_LEVELS, type MountLogLevel } from '../mount/settings.js';
import { parseByteSize, SIZE_SYNTAX } from '../util/size.js';

export const DEFAULT_CONFIG_PATH = '/etc/clip/config.toml';
/** The kernel's readahead on the FUSE mount: one READ of max_pages (bench:fuse chose it; fuse/read-ahead-kb.ts). */
export const DEFAULT_KERNEL_READAHEAD = 1024 * 1024;
export const LOG_FORMATS = ['json', 'text'] as const;
export type LogFormat = (typeof LOG_FORMATS)[number];

/** A config file bigger than this is refused: it is a few lines, and `--config /dev/zero` must not hang. */
const MAX_CONFIG_BYTES = 1024 * 1024;

export interface DaemonConfig {
  /** Sockets, mount records, locks (absolute; gone at reboot like the mounts). */
  stateDir: string;
  /** Persistent data: span cache and overlay upper dirs by default (absolute). */
  dataDir: string;
  /** Where inflated spans are cached on disk (absolute), and at most how many bytes. */
  cacheDir: string;
  cacheBytes: number;
  /** Bound on the inflated spans kept in memory. */
  memoryCacheBytes: number;
  logLevel: MountLogLevel;
  logFormat: LogFormat;
  /** HOST:PORT of the Prometheus endpoint; undefined: none. */
  metricsAddr?: string;
  /** Fetch the rest of every image in the background, at prefetchRate compressed bytes per second. */
  prefetch: boolean;
  prefetchRate: number;
  /** After a read misses, fetch the rest of its file in the background (content/read-ahead.ts). */
  readAhead: boolean;
  /** The kernel's readahead window on the FUSE mount, in bytes (fuse/read-ahead-kb.ts). */
  kernelReadahead: number;
  /** Registry host settings (hosts.toml / certs.d) for mounts that name none. */
  hostsDir: string;
  /** Where containerd's snapshots API is served (containerd's [proxy_plugins.clip] address; absolute). */
  snapshotterSocket: string;
}

/** The daemon's flags as commander hands them over: raw strings (checked here, like file values); undefined: not given. */
export interface DaemonFlags {
  config?: string;
  stateDir?: string;
  dataDir?: string;
  cacheDir?: string;
  cacheSize?: string;
  memoryCacheSize?: string;
  logLevel?: string;
  logFormat?: string;
  metricsAddr?: string;
  prefetch?: boolean;
  prefetchRate?: string;
  readAhead?: boolean;
  kernelReadahead?: string;
  hostsDir?: string;
  snapshotSocket?: string;
}

type Kind = 'path' | 'size' | 'level' | 'format' | 'addr' | 'bool';

interface KeySpec {
  /** The name in the TOML file. */
  key: string;
  field: keyof DaemonConfig;
  flag: string;
  flagField: Exclude<keyof DaemonFlags, 'config'>;
  kind: Kind;
  /** The default, as the README lists it. */
  defaultText: string;
  help: string;
}

export const CONFIG_KEYS: readonly KeySpec[] = [
  {
    key: 'state_dir',
    field: 'stateDir',
    flag: '--state-dir',
    flagField: 'stateDir',
    kind: 'path',
    defaultText: '$CLIP_STATE_DIR, else /run/clip',
    help: 'sockets, mount records and locks',
  },
  {
    key: 'data_dir',
    field: 'dataDir',
    flag: '--data-dir',
    flagField: 'dataDir',
    kind: 'path',
    defaultText: '$CLIP_DATA_DIR, else /var/lib/clip',
    help: 'persistent data (span cache, overlay upper dirs)',
  },
  {
    key: 'cache_dir',
    field: 'cacheDir',
    flag: '--cache-dir',
    flagField: 'cacheDir',
    kind: 'path',
    defaultText: 'DATA_DIR/cache',
    help: 'span cache on disk, shared by every image',
  },
  {
    key: 'cache_size',
    field: 'cacheBytes',
    flag: '--cache-size',
    flagField: 'cacheSize',
    kind: 'size',
    defaultText: '10G',
    help: 'bound on the span cache on disk',
  },
  {
    key: 'memory_cache_size',
    field: 'memoryCacheBytes',
    flag: '--memory-cache-size',
    flagField: 'memoryCacheSize',
    kind: 'size',
    defaultText: DEFAULT_MEMORY_BOUND_TEXT,
    help: 'bound on the file bytes in memory (a quarter, at most 1G, shared with the FUSE reader threads)',
  },
  {
    key: 'log_level',
    field: 'logLevel',
    flag: '--log-level',
    flagField: 'logLevel',
    kind: 'level',
    defaultText: 'info',
    help: LOG_LEVELS.join(', '),
  },
  {
    key: 'log_format',
    field: 'logFormat',
    flag: '--log-format',
    flagField: 'logFormat',
    kind: 'format',
    defaultText: 'json',
    help: 'json (one pino object a line) or text',
  },
  {
    key: 'metrics_addr',
    field: 'metricsAddr',
    flag: '--metrics-addr',
    flagField: 'metricsAddr',
    kind: 'addr',
    defaultText: '"" (none)',
    help: 'HOST:PORT of the Prometheus endpoint; "" for none',
  },
  {
    key: 'prefetch',
    field: 'prefetch',
    flag: '--prefetch',
    flagField: 'prefetch',
    kind: 'bool',
    defaultText: 'false',
    help: 'fetch the rest of every image in the background',
  },
  {
    key: 'prefetch_rate',
    field: 'prefetchRate',
    flag: '--prefetch-rate',
    flagField: 'prefetchRate',
    kind: 'size',
    defaultText: '20M',
    help: 'prefetch bandwidth, compressed bytes per second',
  },
  {
    key: 'read_ahead',
    field: 'readAhead',
    flag: '--read-ahead',
    flagField: 'readAhead',
    kind: 'bool',
    defaultText: 'true',
    help: 'after a read misses, fetch the rest of its file in the background (bounded by what proved useful)',
  },
  {
    key: 'kernel_readahead',
    field: 'kernelReadahead',
    flag: '--kernel-readahead',
    flagField: 'kernelReadahead',
    kind: 'size',
    defaultText: `"${DEFAULT_KERNEL_READAHEAD / (1024 * 1024)}M"`,
    help: "the kernel's readahead window on clip's FUSE mount (larger: faster sequential reads of cached files, more fetched per page fault)",
  },
  {
    key: 'hosts_dir',
    field: 'hostsDir',
    flag: '--hosts-dir',
    flagField: 'hostsDir',
    kind: 'path',
    defaultText: '$CLIP_HOSTS_DIR, else /etc/clip/certs.d',
    help: "registry host settings (containerd's DIR/HOST/hosts.toml, docker's certs.d) for mounts that name none",
  },
  {
    key: 'snapshot_socket',
    field: 'snapshotterSocket',
    flag: '--snapshot-socket',
    flagField: 'snapshotSocket',
    kind: 'path',
    defaultText: 'STATE_DIR/snapshotter.sock',
    help: "containerd's snapshots API (the address of [proxy_plugins.clip] in containerd's config)",
  },
];

/** Where a value came from, for error messages: a key of a file, or a flag. */
type Origin = { file: string; key: string; line?: number } | { flag: string };

function bad(o: Origin, problem: string): ClipError {
  // An unknown key is the file's text: quoted unless plain, so no control character reaches the terminal.
  const key = 'flag' in o ? '' : /^[A-Za-z0-9_-]+$/.test(o.key) ? o.key : JSON.stringify(o.key);
  const where = 'flag' in o ? o.flag : `config ${o.file}${o.line !== undefined ? `:${o.line}` : ''}: ${key}`;
  return new ClipError('BAD_ARGUMENT', `${where}: ${problem}`);
}

function show(v: unknown): string {
  if (typeof v === 'string') return JSON.stringify(v);
  if (v instanceof Date) return 'a date';
  if (Array.isArray(v)) return 'an array';
  if (typeof v === 'number' || typeof v === 'boolean' || typeof v === 'bigint') return String(v);
  return 'a table';
}

/** One value, checked and converted; `fromFile` values are TOML-typed, flag values are strings. */
function parseValue(kind: Kind, v: unknown, o: Origin): string | number | boolean | undefined {
  const fromFile = !('flag' in o);
  switch (kind) {
    case 'path': {
      if (typeof v !== 'string' || v === '') return fail(o, 'expected a directory path', v);
      if (v.includes('\0')) throw bad(o, 'a path cannot contain a NUL byte');
      // A file is read by a daemon whose working directory means nothing to its author.
      if (fromFile && !path.isAbsolute(v)) throw bad(o, `expected an absolute path, got ${show(v)}`);
      return path.resolve(v);
    }
    case 'size': {
      let n: number;
      if (typeof v === 'number') n = v;
      else if (typeof v === 'string') {
        const parsed = parseByteSize(v);
        if (parsed === undefined) throw bad(o, `bad size "${v}": ${SIZE_SYNTAX}`);
        n = parsed;
      } else return fail(o, 'expected a size (a number of bytes, or a string like "10G")', v);
      if (!Number.isSafeInteger(n) || n < 1) throw bad(o, `expected a whole number of bytes, at least 1, got ${show(v)}`);
      return n;
    }
    case 'level':
      if (typeof v !== 'string' || !(LOG_LEVELS as readonly string[]).includes(v))
        return fail(o, `expected one of ${LOG_LEVELS.join(', ')}`, v);
      return v;
    case 'format':
      if (typeof v !== 'string' || !(LOG_FORMATS as readonly string[]).includes(v))
        return fail(o, `expected one of ${LOG_FORMATS.join(', ')}`, v);
      return v;
    case 'addr': {
      if (typeof v !== 'string') return fail(o, 'expected "HOST:PORT", e.g. "127.0.0.1:9100", or "" for none', v);
      if (v === '') return undefined;
      const m = /^([^\s:]+|\[[0-9a-fA-F:.]+\]):(\d{1,5})$/.exec(v);
      if (!m || Number(m[2]) < 1 || Number(m[2]) > 65535) return fail(o, 'expected HOST:PORT, e.g. 127.0.0.1:9100, or "" for none', v);
      return v;
    }
    case 'bool':
      if (typeof v !== 'boolean') return fail(o, 'expected true or false', v);
      return v;
  }
}

function fail(o: Origin, expected: string, got: unknown): never {
  throw bad(o, `${expected}, got ${show(got)}`);
}

/**
 * The line a top-level key is set on, best effort (the TOML library gives
 * lines for syntax errors only): `key =` or `key.x =` before the first table
 * header, or a `[key]` / `[key.x]` header anywhere.
 */
function lineOf(text: string, key: string): number | undefined {
  const k = key.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
  const name = `(?:${k}|"${k}"|'${k}')`;
  const assign = new RegExp(`^\\s*${name}\\s*[=.]`);
  const header = new RegExp(`^\\s*\\[\\[?\\s*${name}\\s*[\\].]`);
  const lines = text.split('\n');
  let inTable = false;
  for (let i = 0; i < lines.length; i++) {
    if (header.test(lines[i]!) || (!inTable && assign.test(lines[i]!))) return i + 1;
    if (/^\s*\[/.test(lines[i]!)) inTable = true;
  }
  return undefined;
}

/** The file's text; undefined if it does not exist and `missingOk`. */
async function readConfigText(file: string, missingOk: boolean): Promise<string | undefined> {
  let bytes: Buffer;
  try {
    const fh = await open(file, 'r');
    try {
      const buf = Buffer.alloc(MAX_CONFIG_BYTES + 1);
      let got = 0;
      for (;;) {
        const { bytesRead } = await fh.read(buf, got, buf.length - got, null);
        if (bytesRead === 0) break;
        got += bytesRead;
        if (got > MAX_CONFIG_BYTES)
          throw new ClipError('BAD_ARGUMENT', `config ${file}: more than ${MAX_CONFIG_BYTES} bytes: not a clip config`);
      }
      bytes = buf.subarray(0, got);
    } finally {
      await fh.close();
    }
  } catch (e) {
    if (e instanceof ClipError) throw e;
    const code = (e as NodeJS.ErrnoException).code;
    if (code === 'ENOENT' && missingOk) return undefined;
    throw new ClipError('IO', `cannot read config ${file}: ${code === 'EISDIR' ? 'is a directory' : pathProblem(file, e)}`);
  }
  try {
    return new TextDecoder('utf-8', { fatal: true }).decode(bytes);
  } catch {
    throw new ClipError('BAD_ARGUMENT', `config ${file}: not valid TOML: not UTF-8 text`);
  }
}

/** The values a file sets, checked: unknown keys and bad values name the key (and its line when it can be found). */
export function parseConfigText(text: string, file: string): Partial<DaemonConfig> {
  const doc = parseToml(text, `config ${file}`);
  const out: Partial<Record<keyof DaemonConfig, unknown>> = {};
  for (const [key, value] of Object.entries(doc)) {
    const spec = CONFIG_KEYS.find((k) => k.key === key);
    const line = lineOf(text, key);
    const o: Origin = { file, key, ...(line !== undefined ? { line } : {}) };
    if (!spec) throw bad(o, `unknown key (known keys: ${CONFIG_KEYS.map((k) => k.key).join(', ')})`);
    const v = parseValue(spec.kind, value, o);
    out[spec.field] = v; // undefined for metrics_addr = "": set, so it overrides an earlier source
  }
  return out as Partial<DaemonConfig>;
}

/** The values the flags set, checked; relative paths are taken from the working directory. */
export function parseConfigFlags(f: DaemonFlags): Partial<DaemonConfig> {
  const out: Partial<Record<keyof DaemonConfig, unknown>> = {};
  for (const spec of CONFIG_KEYS) {
    const raw = f[spec.flagField];
    if (raw === undefined) continue;
    out[spec.field] = parseValue(spec.kind, raw, { flag: spec.flag });
  }
  return out as Partial<DaemonConfig>;
}

export interface LoadedConfig {
  config: DaemonConfig;
  /** The file read; undefined when the default file does not exist (defaults, environment and flags only). */
  file?: string;
}

export interface LoadOptions {
  env?: NodeJS.ProcessEnv;
  /** The file read when flags name none (tests point it elsewhere). */
  defaultPath?: string;
}

/**
 * The effective settings: defaults, then the file (`--config`, else the
 * default path if it exists), then $CLIP_STATE_DIR / $CLIP_DATA_DIR, then flags.
 */
export async function loadDaemonConfig(flags: DaemonFlags, opts: LoadOptions = {}): Promise<LoadedConfig> {
  const env = opts.env ?? process.env;
  const fromFlags = parseConfigFlags(flags); // bad flags first: they need no file
  let file: string | undefined;
  let fromFile: Partial<DaemonConfig> = {};
  if (flags.config !== undefined) {
    if (flags.config === '') throw new ClipError('BAD_ARGUMENT', '--config: expected a file path');
    file = path.resolve(flags.config);
    fromFile = parseConfigText((await readConfigText(file, false))!, file);
  } else {
    // No default file means defaults; any other problem with it is still an error.
    const def = opts.defaultPath ?? DEFAULT_CONFIG_PATH;
    const text = await readConfigText(def, true);
    if (text !== undefined) {
      fromFile = parseConfigText(text, def);
      file = def;
    }
  }
  const fromEnv: Partial<DaemonConfig> = {};
  for (const [name, field] of [
    ['CLIP_STATE_DIR', 'stateDir'],
    ['CLIP_DATA_DIR', 'dataDir'],
    ['CLIP_HOSTS_DIR', 'hostsDir'],
  ] as const) {
    const v = env[name];
    if (v !== undefined) fromEnv[field] = parseValue('path', v, { flag: `$${name}` }) as string;
  }
  const merged = { ...fromFile, ...fromEnv, ...fromFlags };
  const dataDir = merged.dataDir ?? '/var/lib/clip';
  const stateDir = merged.stateDir ?? '/run/clip';
  const config: DaemonConfig = {
    stateDir,
    dataDir,
    cacheDir: merged.cacheDir ?? path.join(dataDir, 'cache'),
    cacheBytes: merged.cacheBytes ?? DEFAULT_CACHE_BYTES,
    memoryCacheBytes: merged.memoryCacheBytes ?? DEFAULT_MEMORY_CACHE,
    logLevel: merged.logLevel ?? 'info',
    logFormat: merged.logFormat ?? 'json',
    prefetch: merged.prefetch ?? false,
    prefetchRate: merged.prefetchRate ?? DEFAULT_PREFETCH_RATE,
    readAhead: merged.readAhead ?? true,
    kernelReadahead: merged.kernelReadahead ?? DEFAULT_KERNEL_READAHEAD,
    hostsDir: merged.hostsDir ?? DEFAULT_HOSTS_DIR,
    snapshotterSocket: merged.snapshotterSocket ?? path.join(stateDir, 'snapshotter.sock'),
  };
  if (merged.metricsAddr !== undefined) config.metricsAddr = merged.metricsAddr;
  return { config, ...(file !== undefined ? { file } : {}) };
}
