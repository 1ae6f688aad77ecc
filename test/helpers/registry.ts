// A throwaway local registry (CNCF distribution, /usr/bin/docker-registry) on a
// free 127.0.0.1 port, optionally with htpasswd Basic auth, TLS (and client
// certificates), another registry's storage, or as a pull-through mirror; byte-identical pushes
// of OCI layouts (skopeo --preserve-digests, or plain HTTP); blob corruption.

import { spawn, type ChildProcess } from 'node:child_process';
import { createHash } from 'node:crypto';
import { openSync, closeSync } from 'node:fs';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { connect, createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { run } from './exec.js';
import { httpGet, type Credentials } from './http.js';
import { findTagDescriptor, httpPushImage } from './http-push.js';

export { basicAuth, httpGet, httpRequest, type Credentials, type HttpResponse } from './http.js';

export interface RegistryHandle {
  /** "127.0.0.1:PORT" */
  host: string;
  /** Temp dir: storage root (docker/registry/v2/...) plus config.yml, htpasswd, registry.log. */
  dir: string;
  pid: number;
  logFile: string;
  stop(): Promise<void>;
}

const REGISTRY_BIN = '/usr/bin/docker-registry';
const live = new Map<number, ChildProcess>();
let exitHookInstalled = false;

function installExitHook(): void {
  if (exitHookInstalled) return;
  exitHookInstalled = true;
  // Safety net only: tests stop their registries themselves.
  process.on('exit', () => {
    for (const pid of live.keys()) {
      try {
        process.kill(pid, 'SIGKILL');
      } catch {
        /* already gone */
      }
    }
  });
}

export function freePort(): Promise<number> {
  return new Promise((res, rej) => {
    const srv = createServer();
    srv.on('error', rej);
    srv.listen(0, '127.0.0.1', () => {
      const addr = srv.address();
      const port = typeof addr === 'object' && addr ? addr.port : 0;
      srv.close(() => res(port));
    });
  });
}

export interface RegistryOptions {
  /** Basic auth with exactly that user. */
  htpasswd?: Credentials;
  /** Serve TLS with this certificate and key (PEM files); `clientCas`: require client certificates signed by these. */
  tls?: { cert: string; key: string; clientCas?: string[] };
  /** Serve another registry's storage root (its `dir`) instead of an empty one of its own. */
  storage?: string;
  /** Pull-through mirror of this registry URL ("http://127.0.0.1:PORT"). */
  proxyRemote?: string;
}

function configYaml(dir: string, port: number, htpasswdFile: string | undefined, opts: RegistryOptions): string {
  const lines = [
    'version: 0.1',
    'log:',
    '  level: error',
    '  accesslog:',
    '    disabled: true',
    'storage:',
    '  filesystem:',
    `    rootdirectory: ${opts.storage ?? dir}`,
    '  delete:',
    '    enabled: true',
    'http:',
    `  addr: 127.0.0.1:${port}`,
  ];
  if (opts.tls) {
    lines.push('  tls:', `    certificate: ${opts.tls.cert}`, `    key: ${opts.tls.key}`);
    if (opts.tls.clientCas) lines.push('    clientcas:', ...opts.tls.clientCas.map((c) => `      - ${c}`));
  }
  if (htpasswdFile) lines.push('auth:', '  htpasswd:', '    realm: clip-test', `    path: ${htpasswdFile}`);
  if (opts.proxyRemote) lines.push('proxy:', `  remoteurl: ${opts.proxyRemote}`);
  return lines.join('\n') + '\n';
}

/** True once something accepts TCP connections at host (a TLS registry may want a client certificate before it answers). */
function listening(host: string): Promise<boolean> {
  const [h, p] = [host.slice(0, host.lastIndexOf(':')), Number(host.slice(host.lastIndexOf(':') + 1))];
  return new Promise((res) => {
    const s = connect(p, h, () => {
      s.destroy();
      res(true);
    });
    s.on('error', () => res(false));
  });
}

async function waitReady(host: string, child: ChildProcess, withAuth: boolean, timeoutMs: number, tls = false): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (child.exitCode !== null || child.signalCode !== null) throw new Error('registry exited during startup');
    if (tls) {
      if (await listening(host)) return;
      await new Promise((r) => setTimeout(r, 50));
      continue;
    }
    try {
      const r = await httpGet(`http://${host}/v2/`);
      if (r.status === 200 || (withAuth && r.status === 401)) return;
    } catch {
      /* not listening yet */
    }
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`registry at ${host} not ready after ${timeoutMs} ms`);
}

function stopChild(child: ChildProcess): Promise<void> {
  return new Promise((res) => {
    if (child.exitCode !== null || child.signalCode !== null || child.pid === undefined) return res();
    child.ref();
    const timer = setTimeout(() => {
      try {
        process.kill(child.pid!, 'SIGKILL');
      } catch {
        /* gone */
      }
    }, 5000);
    child.once('exit', () => {
      clearTimeout(timer);
      res();
    });
    try {
      process.kill(child.pid, 'SIGTERM');
    } catch {
      clearTimeout(timer);
      res();
    }
  });
}

/** Start a registry; `htpasswd` enables Basic auth with exactly that user. */
export async function startRegistry(opts: RegistryOptions = {}): Promise<RegistryHandle> {
  installExitHook();
  let lastErr: unknown;
  for (let attempt = 0; attempt < 3; attempt++) {
    const dir = await mkdtemp(join(tmpdir(), 'clip-registry-'));
    let htpasswdFile: string | undefined;
    if (opts.htpasswd) {
      htpasswdFile = join(dir, 'htpasswd');
      const { stdout } = await run('htpasswd', ['-Bbn', opts.htpasswd.username, opts.htpasswd.password]);
      await writeFile(htpasswdFile, stdout);
    }
    const port = await freePort();
    const host = `127.0.0.1:${port}`;
    const configFile = join(dir, 'config.yml');
    await writeFile(configFile, configYaml(dir, port, htpasswdFile, opts));
    const logFile = join(dir, 'registry.log');
    const logFd = openSync(logFile, 'a');
    // The registry reads every REGISTRY_* variable as configuration (a test's
    // REGISTRY_AUTH_FILE would become auth.file): keep them away from it.
    const env = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('REGISTRY_')));
    const child = spawn(REGISTRY_BIN, ['serve', configFile], { stdio: ['ignore', logFd, logFd], env });
    closeSync(logFd);
    if (child.pid === undefined) {
      await rm(dir, { recursive: true, force: true });
      throw new Error(`cannot start ${REGISTRY_BIN}`);
    }
    const pid = child.pid;
    live.set(pid, child);
    child.unref();
    child.once('exit', () => live.delete(pid));
    try {
      await waitReady(host, child, !!opts.htpasswd, 20_000, opts.tls !== undefined);
    } catch (e) {
      const log = await readFile(logFile, 'utf8').catch(() => '');
      await stopChild(child);
      await rm(dir, { recursive: true, force: true });
      lastErr = new Error(`${(e as Error).message}\n${log}`);
      continue; // e.g. the port was taken between freePort() and listen
    }
    let stopped = false;
    return {
      host,
      dir,
      pid,
      logFile,
      async stop() {
        if (stopped) return;
        stopped = true;
        await stopChild(child);
        await rm(dir, { recursive: true, force: true });
      },
    };
  }
  throw lastErr;
}

function credsArg(flag: string, creds?: Credentials): string[] {
  return creds ? [flag, `${creds.username}:${creds.password}`] : [];
}

/** `skopeo inspect --raw` of HOST/REPO:TAG (or @digest). */
export async function inspectRaw(host: string, repoRef: string, creds?: Credentials): Promise<Buffer> {
  const auth = creds ? credsArg('--creds', creds) : ['--no-creds'];
  const { stdout } = await run('skopeo', ['inspect', '--raw', '--tls-verify=false', ...auth, `docker://${host}/${repoRef}`]);
  return stdout;
}

export interface PushResult {
  /** "HOST/REPO:TAG" */
  reference: string;
  /** Digest of what the tag points to (manifest or index), identical to the layout's. */
  digest: string;
  rawManifest: Buffer;
}

/**
 * Push layout tag `tag` to HOST/REPO:TAG keeping every blob and manifest
 * byte-identical, then verify with `skopeo inspect --raw` (digest of what the
 * tag points to, and the layer digests). Default: `skopeo copy --all
 * --preserve-digests` (without it skopeo gzips uncompressed layers); skopeo
 * cannot read Docker media types from index.json, so those go over plain HTTP.
 */
export async function pushImage(
  layoutDir: string,
  tag: string,
  host: string,
  repo: string,
  creds?: Credentials,
  opts: { via?: 'skopeo' | 'http' } = {},
): Promise<PushResult> {
  const desc = await findTagDescriptor(layoutDir, tag);
  const via = opts.via ?? (desc.mediaType.startsWith('application/vnd.docker.') ? 'http' : 'skopeo');
  if (via === 'http') {
    await httpPushImage(layoutDir, tag, host, repo, creds);
  } else {
    await run('skopeo', [
      'copy',
      '--quiet',
      '--all',
      '--preserve-digests',
      '--dest-tls-verify=false',
      ...credsArg('--dest-creds', creds),
      `oci:${layoutDir}:${tag}`,
      `docker://${host}/${repo}:${tag}`,
    ]);
  }
  const raw = await inspectRaw(host, `${repo}:${tag}`, creds);
  const digest = 'sha256:' + createHash('sha256').update(raw).digest('hex');
  const expected = desc.digest;
  if (digest !== expected) throw new Error(`pushed ${repo}:${tag} has digest ${digest}, built ${expected}`);
  const local = JSON.parse(await readFile(join(layoutDir, 'blobs', 'sha256', expected.slice(7)), 'utf8')) as {
    layers?: Array<{ digest: string }>;
  };
  const pushed = JSON.parse(raw.toString('utf8')) as { layers?: Array<{ digest: string }> };
  const a = (local.layers ?? []).map((l) => l.digest).join(',');
  const b = (pushed.layers ?? []).map((l) => l.digest).join(',');
  if (a !== b) throw new Error(`pushed layers ${b} differ from built layers ${a}`);
  return { reference: `${host}/${repo}:${tag}`, digest, rawManifest: raw };
}

/** Path of a blob's data file in the registry's filesystem storage. */
export function registryBlobPath(registryDir: string, digest: string): string {
  const hex = digest.replace(/^sha256:/, '');
  return join(registryDir, 'docker', 'registry', 'v2', 'blobs', 'sha256', hex.slice(0, 2), hex, 'data');
}

/**
 * Change a stored blob in place so it no longer matches its digest. `mutate`
 * edits the buffer (or returns a replacement); default: flip the middle byte.
 */
export async function corruptBlobInRegistry(
  registryDir: string,
  digest: string,
  mutate: (data: Buffer) => Buffer | void = (d) => {
    const i = d.length >> 1;
    d[i] = d[i]! ^ 0xff;
  },
): Promise<void> {
  const path = registryBlobPath(registryDir, digest);
  const data = await readFile(path);
  const out = mutate(data) ?? data;
  await writeFile(path, out);
}
