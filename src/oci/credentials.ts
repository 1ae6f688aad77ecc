// Finds registry credentials the way docker and podman users already store
// them: explicit options, CLIP_USERNAME/CLIP_PASSWORD, containers auth.json,
// docker config.json (inline "auths", per-registry credHelpers, credsStore).

import { spawn } from 'node:child_process';
import { readFile } from 'node:fs/promises';
import { homedir } from 'node:os';
import { join } from 'node:path';
import { ClipError } from '../errors.js';
import { DOCKER_HUB } from './reference.js';

export interface Credentials {
  username: string;
  /** The password, or an identity (refresh) token when username is "<token>". */
  password: string;
  /** Where they came from, for messages: "--username", "CLIP_USERNAME", a file path, a helper. */
  source: string;
}

export interface CredentialLookup {
  username?: string;
  password?: string;
  /** Environment to read (default: process.env). */
  env?: NodeJS.ProcessEnv;
}

const HELPER_TIMEOUT_MS = 60_000;

/** The key docker uses for Docker Hub in config.json and with credential helpers. */
export const DOCKER_HUB_SERVER = 'https://index.docker.io/v1/';

/** Credentials for `registry` (docker's name, e.g. "docker.io") and `repository`, or undefined. */
export async function findCredentials(
  registry: string,
  repository: string | undefined,
  lookup: CredentialLookup = {},
): Promise<Credentials | undefined> {
  const env = lookup.env ?? process.env;
  if (lookup.username !== undefined || lookup.password !== undefined) {
    if (!lookup.username || lookup.password === undefined) {
      throw new ClipError('BAD_ARGUMENT', 'a registry username needs a password too (and the other way round)');
    }
    return { username: lookup.username, password: lookup.password, source: 'command-line options' };
  }
  if (env['CLIP_USERNAME'] || env['CLIP_PASSWORD']) {
    if (!env['CLIP_USERNAME'] || env['CLIP_PASSWORD'] === undefined) {
      throw new ClipError('BAD_ARGUMENT', 'CLIP_USERNAME and CLIP_PASSWORD must be set together');
    }
    return { username: env['CLIP_USERNAME'], password: env['CLIP_PASSWORD'], source: 'CLIP_USERNAME/CLIP_PASSWORD' };
  }
  for (const file of credentialFiles(env)) {
    const found = await fromConfigFile(file, registry, repository, env);
    if (found) return found;
  }
  return undefined;
}

/** The files searched, in order (containers auth.json first, docker config.json last). */
export function credentialFiles(env: NodeJS.ProcessEnv = process.env): string[] {
  const home = env['HOME'] || homedir();
  const files: string[] = [];
  if (env['REGISTRY_AUTH_FILE']) {
    files.push(env['REGISTRY_AUTH_FILE']);
  } else {
    if (env['XDG_RUNTIME_DIR']) files.push(join(env['XDG_RUNTIME_DIR'], 'containers', 'auth.json'));
    files.push(join(env['XDG_CONFIG_HOME'] || join(home, '.config'), 'containers', 'auth.json'));
  }
  files.push(join(env['DOCKER_CONFIG'] || join(home, '.docker'), 'config.json'));
  return files;
}

interface AuthEntry {
  auth?: string;
  username?: string;
  password?: string;
  identitytoken?: string;
}

interface ConfigFile {
  auths?: Record<string, AuthEntry>;
  credHelpers?: Record<string, string>;
  credsStore?: string;
}

async function fromConfigFile(
  file: string,
  registry: string,
  repository: string | undefined,
  env: NodeJS.ProcessEnv,
): Promise<Credentials | undefined> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code === 'ENOENT' || code === 'ENOTDIR') return undefined;
    throw new ClipError('IO', `cannot read credentials file ${file}: ${(e as Error).message}`, { cause: e });
  }
  let config: ConfigFile;
  try {
    config = JSON.parse(text) as ConfigFile;
  } catch (e) {
    throw new ClipError('BAD_ARGUMENT', `credentials file ${file} is not valid JSON: ${(e as Error).message}`, { cause: e });
  }
  if (config === null || typeof config !== 'object') return undefined;

  const helper = lookupHelper(config.credHelpers, registry);
  if (helper) return fromHelper(helper, registry, env, true);
  if (typeof config.credsStore === 'string' && config.credsStore !== '') {
    const found = await fromHelper(config.credsStore, registry, env, false);
    if (found) return found;
  }
  const entry = lookupAuths(config.auths, registry, repository);
  return entry ? decodeEntry(entry.value, `${file} (auths["${entry.key}"])`) : undefined;
}

/** Normalises an auths/credHelpers key to "host[/path]": scheme and API paths dropped, Hub aliases folded. */
export function normalizeRegistryKey(key: string): string {
  let k = key.trim();
  const scheme = /^[a-z][a-z0-9+.-]*:\/\//i.exec(k);
  if (scheme) {
    k = k.slice(scheme[0].length).split('/')[0]!;
  } else {
    k = k.replace(/\/+$/, '');
  }
  const slash = k.indexOf('/');
  const host = (slash < 0 ? k : k.slice(0, slash)).toLowerCase();
  const path = slash < 0 ? '' : k.slice(slash);
  const folded = host === 'index.docker.io' || host === 'registry-1.docker.io' || host === 'registry.hub.docker.com' ? DOCKER_HUB : host;
  return folded + path;
}

function lookupHelper(helpers: Record<string, string> | undefined, registry: string): string | undefined {
  if (!helpers || typeof helpers !== 'object') return undefined;
  for (const [key, helper] of Object.entries(helpers)) {
    if (typeof helper === 'string' && helper !== '' && normalizeRegistryKey(key) === registry) return helper;
  }
  return undefined;
}

/** The most specific auths entry: "host/ns/repo", then "host/ns", then "host". */
function lookupAuths(
  auths: Record<string, AuthEntry> | undefined,
  registry: string,
  repository: string | undefined,
): { key: string; value: AuthEntry } | undefined {
  if (!auths || typeof auths !== 'object') return undefined;
  const wanted: string[] = [];
  if (repository) {
    const parts = repository.split('/');
    for (let n = parts.length; n > 0; n--) wanted.push(`${registry}/${parts.slice(0, n).join('/')}`);
  }
  wanted.push(registry);
  const byKey = new Map<string, { key: string; value: AuthEntry }>();
  for (const [key, value] of Object.entries(auths)) {
    if (!value || typeof value !== 'object') continue;
    const norm = normalizeRegistryKey(key);
    if (!byKey.has(norm) && hasSecret(value)) byKey.set(norm, { key, value });
  }
  for (const w of wanted) {
    const hit = byKey.get(w);
    if (hit) return hit;
  }
  return undefined;
}

function hasSecret(e: AuthEntry): boolean {
  return Boolean(e.auth || e.identitytoken || (e.username && e.password !== undefined));
}

function decodeEntry(e: AuthEntry, source: string): Credentials | undefined {
  if (e.identitytoken) return { username: '<token>', password: e.identitytoken, source };
  if (e.auth) {
    const decoded = Buffer.from(e.auth, 'base64').toString('utf8');
    const colon = decoded.indexOf(':');
    if (colon <= 0) throw new ClipError('BAD_ARGUMENT', `${source}: "auth" is not base64 of "username:password"`);
    return { username: decoded.slice(0, colon), password: decoded.slice(colon + 1), source };
  }
  if (e.username && e.password !== undefined) return { username: e.username, password: e.password, source };
  return undefined;
}

/** Runs `docker-credential-<name> get`; undefined when the helper holds nothing for the registry. */
async function fromHelper(name: string, registry: string, env: NodeJS.ProcessEnv, required: boolean): Promise<Credentials | undefined> {
  const program = `docker-credential-${name}`;
  const servers = registry === DOCKER_HUB ? [DOCKER_HUB_SERVER, DOCKER_HUB] : [registry];
  for (const server of servers) {
    let result: { code: number | null; stdout: string; stderr: string };
    try {
      result = await runHelper(program, server, env);
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT' && !required) return undefined;
      throw new ClipError('UNAUTHORIZED', `cannot run credential helper ${program} for ${registry}: ${(e as Error).message}`, { cause: e });
    }
    if (result.code !== 0) {
      const out = (result.stdout + result.stderr).trim();
      if (/not found|no credentials/i.test(out)) continue;
      throw new ClipError('UNAUTHORIZED', `credential helper ${program} failed for ${registry}: ${out || `exit code ${result.code}`}`);
    }
    let parsed: { Username?: unknown; Secret?: unknown };
    try {
      parsed = JSON.parse(result.stdout) as typeof parsed;
    } catch {
      throw new ClipError('UNAUTHORIZED', `credential helper ${program} printed something that is not JSON`);
    }
    if (typeof parsed.Username === 'string' && typeof parsed.Secret === 'string' && parsed.Secret !== '') {
      return { username: parsed.Username, password: parsed.Secret, source: `credential helper ${program}` };
    }
  }
  return undefined;
}

function runHelper(
  program: string,
  server: string,
  env: NodeJS.ProcessEnv,
): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(program, ['get'], { env, stdio: ['pipe', 'pipe', 'pipe'] });
    // (spawn's own `timeout` leaves its timer running when the program does not exist)
    const timer = setTimeout(() => child.kill('SIGKILL'), HELPER_TIMEOUT_MS).unref();
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (d: string) => (stdout += d));
    child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
    child.on('error', (e) => {
      clearTimeout(timer);
      reject(e);
    });
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      resolve({ code: signal ? -1 : code, stdout, stderr: signal ? `${stderr}killed by ${signal}` : stderr });
    });
    child.stdin.on('error', () => {}); // a helper that exits without reading stdin
    child.stdin.end(server);
  });
}
