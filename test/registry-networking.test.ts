// Registry networking with real registries on 127.0.0.1 (Debian's
// docker-registry): TLS with a CA from openssl (refused without it, accepted
// with `ca` in hosts.toml, docker's certs.d or --tls-verify=false), client
// certificates, TLS/HTTP mismatches named, an HTTP proxy that sees clip's
// requests unless NO_PROXY names the host, and mirrors from hosts.toml: a
// dead one falls back to the origin (logged, counted), a pull-through one
// (docker-registry in proxy mode) serves a mount after the origin stopped.

import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { copyFile, mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { runClip } from './helpers/cli.js';
import { startTestProxy, type TestProxy } from './helpers/http-proxy.js';
import { buildImage, type BuiltImage } from './helpers/image-builder.js';
import { clipWorkspace, daemonLog, sweepClipMounts, testMounts } from './helpers/mounts.js';
import { metric, scrape } from './helpers/prometheus.js';
import { createPrng } from './helpers/prng.js';
import { freePort, pushImage, registryBlobPath, startRegistry, type RegistryHandle } from './helpers/registry.js';
import { makeTestCerts, type TestCerts } from './helpers/tls-certs.js';

const HELLO = 'hello through the network\n';
const CLIP_BIN = path.resolve(import.meta.dirname, '../../bin/clip.js');
const REPO = 'net/app';
/** No proxy from the test's own environment: each test sets what it wants (lowercase names win in undici). */
const NO_PROXY_ENV = { HTTP_PROXY: '', http_proxy: '', HTTPS_PROXY: '', https_proxy: '', NO_PROXY: '', no_proxy: '' };

let work: string;
let certs: TestCerts;
let image: BuiltImage;
let blob: Buffer;
/** Where the image was pushed (plain HTTP); the TLS registries serve its storage. */
let plain: RegistryHandle;
let tlsReg: RegistryHandle;
let mtlsReg: RegistryHandle;
/** An empty hosts dir: no settings for any host. */
let noHosts: string;

async function hostsDir(name: string, host: string, files: Record<string, string>): Promise<string> {
  const d = path.join(work, name);
  await mkdir(path.join(d, host), { recursive: true });
  for (const [f, text] of Object.entries(files)) await writeFile(path.join(d, host, f), text);
  return d;
}

/** Proxy variables in both spellings (undici reads the lowercase one first). */
function proxyEnv(vars: { HTTP_PROXY?: string; HTTPS_PROXY?: string; NO_PROXY?: string }): NodeJS.ProcessEnv {
  const out: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(vars)) out[k] = out[k.toLowerCase()] = v;
  return out;
}

async function clip(args: string[], env: NodeJS.ProcessEnv = {}) {
  return runClip(args, { env: { ...NO_PROXY_ENV, CLIP_HOSTS_DIR: noHosts, ...env } });
}

/** `clip index` of the image at `host`, then `clip cat` of a file through the index; returns the index path. */
async function indexAndCat(host: string, name: string, args: string[], env: NodeJS.ProcessEnv = {}): Promise<string> {
  const out = path.join(work, `${name}.clip`);
  const r = await clip(['index', `${host}/${REPO}:${image.tag}`, '-o', out, ...args], env);
  assert.equal(r.code, 0, r.stderr);
  const cat = await clip(['cat', out, 'etc/hello', ...args], env);
  assert.equal(cat.code, 0, cat.stderr);
  assert.equal(cat.stdout.toString(), HELLO);
  return out;
}

before(async () => {
  sweepClipMounts();
  work = await mkdtemp(path.join(tmpdir(), 'clip-net-'));
  noHosts = path.join(work, 'no-hosts');
  await mkdir(noHosts);
  certs = await makeTestCerts(work);
  const t = { sec: 1_700_000_000, nsec: 0 };
  blob = createPrng(7).bytes(600 * 1024);
  image = await buildImage({
    tag: 'net',
    layers: [
      {
        entries: [
          { type: 'dir', path: 'etc', mode: 0o755, mtime: t },
          { type: 'file', path: 'etc/hello', mode: 0o644, data: HELLO, mtime: t },
          { type: 'file', path: 'etc/blob.bin', mode: 0o644, data: blob, mtime: t },
        ],
      },
    ],
  });
  plain = await startRegistry();
  await pushImage(image.dir, image.tag, plain.host, REPO);
  tlsReg = await startRegistry({ storage: plain.dir, tls: { cert: certs.serverCert, key: certs.serverKey } });
  mtlsReg = await startRegistry({ storage: plain.dir, tls: { cert: certs.serverCert, key: certs.serverKey, clientCas: [certs.ca] } });
});

after(async () => {
  await mtlsReg?.stop();
  await tlsReg?.stop();
  await plain?.stop();
  if (image) await rm(image.dir, { recursive: true, force: true });
  await rm(work, { recursive: true, force: true });
});

describe('TLS', () => {
  it('refuses a certificate from an unknown CA, saying how to trust it', async () => {
    const r = await clip(['index', `${tlsReg.host}/${REPO}:${image.tag}`, '-o', path.join(work, 'refused.clip')]);
    assert.equal(r.code, 1);
    assert.match(
      r.stderr,
      /^clip: cannot connect to registry 127\.0\.0\.1:\d+ .*certificate not trusted .*ca in hosts\.toml.*--tls-verify=false/,
    );
    assert.equal(existsSync(path.join(work, 'refused.clip')), false, 'nothing half-written');
  });

  it('accepts it with ca in hosts.toml (a path relative to the file)', async () => {
    const d = await hostsDir('hosts-ca', tlsReg.host, { 'hosts.toml': 'ca = "my-ca.pem"\n' });
    await copyFile(certs.ca, path.join(d, tlsReg.host, 'my-ca.pem'));
    await indexAndCat(tlsReg.host, 'tls-ca', ['--hosts-dir', d]);
  });

  it("accepts it with docker's certs.d ca.crt, from CLIP_HOSTS_DIR", async () => {
    const d = await hostsDir('certs-d', tlsReg.host, { 'ca.crt': await readFile(certs.ca, 'utf8') });
    await indexAndCat(tlsReg.host, 'tls-certsd', [], { CLIP_HOSTS_DIR: d });
  });

  it("a mount that names no hosts dir gets the daemon's hosts_dir: its CA reaches the daemon's registry clients", async () => {
    const d = await hostsDir('daemon-hosts', tlsReg.host, { 'hosts.toml': `ca = "${certs.ca}"\n` });
    const index = await indexAndCat(tlsReg.host, 'daemon-hosts', ['--hosts-dir', d]);
    const ws = await clipWorkspace('daemonhosts');
    // No CLIP_HOSTS_DIR for the mount: the daemon's setting is what applies.
    const env: NodeJS.ProcessEnv = { ...process.env, ...NO_PROXY_ENV, ...ws.env };
    delete env['CLIP_HOSTS_DIR'];
    const daemon = spawn(process.execPath, [CLIP_BIN, 'daemon', '--hosts-dir', d], { env, stdio: ['ignore', 'ignore', 'pipe'] });
    let daemonErr = '';
    daemon.stderr.on('data', (b: Buffer) => (daemonErr += b.toString()));
    const mp = path.join(ws.dir, 'mnt');
    await mkdir(mp);
    try {
      for (let i = 0; (await runClip(['ps'], { env })).code !== 0; i++) {
        assert.ok(i < 200 && daemon.exitCode === null, `the daemon answers: ${daemonErr}`);
        await new Promise((r) => setTimeout(r, 50));
      }
      const r = await runClip(['mount', index, mp], { env });
      assert.equal(r.code, 0, r.stderr);
      assert.deepEqual(await readFile(path.join(mp, 'etc/blob.bin')), blob);
    } finally {
      await runClip(['umount', mp], { env });
      await runClip(['daemon', '--stop'], { env });
      if (daemon.exitCode === null) await new Promise((r) => daemon.once('exit', r));
      assert.deepEqual(testMounts(true), [], 'nothing left mounted');
      await rm(ws.dir, { recursive: true, force: true });
    }
  });

  it('accepts any certificate with --tls-verify=false', async () => {
    await indexAndCat(tlsReg.host, 'tls-noverify', ['--tls-verify=false']);
  });

  it('names a TLS/HTTP mismatch both ways when the scheme was written', async () => {
    const https = await hostsDir('mismatch-https', plain.host, { 'hosts.toml': `server = "https://${plain.host}"\n` });
    const a = await clip(['index', `${plain.host}/${REPO}:${image.tag}`, '-o', path.join(work, 'mm1.clip'), '--hosts-dir', https]);
    assert.equal(a.code, 1);
    assert.match(a.stderr, /^clip: .*server gave HTTP response to HTTPS client: the registry speaks plain HTTP/);
    const http = await hostsDir('mismatch-http', tlsReg.host, { 'hosts.toml': `server = "http://${tlsReg.host}"\n` });
    const b = await clip(['index', `${tlsReg.host}/${REPO}:${image.tag}`, '-o', path.join(work, 'mm2.clip'), '--hosts-dir', http]);
    assert.equal(b.code, 1);
    assert.match(b.stderr, /^clip: 127\.0\.0\.1:\d+ speaks HTTPS but was asked in plain HTTP/);
  });

  it('names a bad hosts.toml with its file and key', async () => {
    const d = await hostsDir('bad-hosts', tlsReg.host, { 'hosts.toml': '[host."https://m.example"]\ncapabilities = ["fetch"]\n' });
    const r = await clip(['index', `${tlsReg.host}/${REPO}:${image.tag}`, '-o', path.join(work, 'bad.clip'), '--hosts-dir', d]);
    assert.equal(r.code, 1);
    assert.equal(
      r.stderr,
      `clip: ${d}/${tlsReg.host}/hosts.toml: host."https://m.example".capabilities: unknown capability "fetch" (known: pull, resolve, push)\n`,
    );
    const flag = await clip(['index', `${tlsReg.host}/${REPO}:${image.tag}`, '-o', path.join(work, 'bad.clip'), '--tls-verify=maybe']);
    assert.equal(flag.code, 1);
    assert.equal(flag.stderr, 'clip: --tls-verify: expected true or false, got "maybe"\n');
  });
});

describe('client certificates', () => {
  it('a registry that wants one refuses clip without it, saying so', async () => {
    const d = await hostsDir('mtls-none', mtlsReg.host, { 'hosts.toml': `ca = "${certs.ca}"\n` });
    const r = await clip(['index', `${mtlsReg.host}/${REPO}:${image.tag}`, '-o', path.join(work, 'mtls-none.clip'), '--hosts-dir', d]);
    assert.equal(r.code, 1);
    assert.match(r.stderr, /client certificate/);
  });

  it('accepts client = [[cert, key]] in hosts.toml', async () => {
    const toml = `ca = "${certs.ca}"\nclient = [["${certs.clientCert}", "${certs.clientKey}"]]\n`;
    const d = await hostsDir('mtls-toml', mtlsReg.host, { 'hosts.toml': toml });
    await indexAndCat(mtlsReg.host, 'mtls-toml', ['--hosts-dir', d]);
  });

  it('accepts --cert-dir with ca.crt, client.cert and client.key, as skopeo takes them', async () => {
    const d = path.join(work, 'cert-dir');
    await mkdir(d);
    await copyFile(certs.ca, path.join(d, 'ca.crt'));
    await copyFile(certs.clientCert, path.join(d, 'client.cert'));
    await copyFile(certs.clientKey, path.join(d, 'client.key'));
    await indexAndCat(mtlsReg.host, 'mtls-certdir', ['--cert-dir', d]);
  });
});

describe('HTTP proxy', () => {
  let proxy: TestProxy;
  before(async () => {
    proxy = await startTestProxy();
  });
  after(async () => {
    await proxy?.close();
  });

  it('HTTP_PROXY carries requests to a plain HTTP registry (loopback is not exempt)', async () => {
    proxy.seen.length = 0;
    await indexAndCat(plain.host, 'proxy-http', [], proxyEnv({ HTTP_PROXY: proxy.url }));
    assert.ok(
      proxy.seen.some((s) => s.startsWith(`GET http://${plain.host}/v2/${REPO}/blobs/`)),
      proxy.seen.join('\n'),
    );
  });

  it('HTTPS_PROXY tunnels TLS with CONNECT, the registry still verified through it', async () => {
    proxy.seen.length = 0;
    const d = await hostsDir('proxy-tls', tlsReg.host, { 'hosts.toml': `ca = "${certs.ca}"\n` });
    await indexAndCat(tlsReg.host, 'proxy-https', ['--hosts-dir', d], proxyEnv({ HTTPS_PROXY: proxy.url }));
    assert.ok(proxy.seen.includes(`CONNECT ${tlsReg.host}`), proxy.seen.join('\n'));
    assert.ok(!proxy.seen.some((s) => s.startsWith('GET')), 'https is never forwarded in the clear');
  });

  it('sends nothing to the proxy for hosts in NO_PROXY', async () => {
    proxy.seen.length = 0;
    await indexAndCat(plain.host, 'proxy-none', [], proxyEnv({ HTTP_PROXY: proxy.url, HTTPS_PROXY: proxy.url, NO_PROXY: '127.0.0.1' }));
    assert.deepEqual(proxy.seen, []);
    // The same run without NO_PROXY goes through it: the empty record above is the exemption's doing.
    await indexAndCat(plain.host, 'proxy-back', [], proxyEnv({ HTTP_PROXY: proxy.url, HTTPS_PROXY: proxy.url }));
    assert.notDeepEqual(proxy.seen, []);
  });
});

describe('mirrors', () => {
  let origin: RegistryHandle;
  let mirror: RegistryHandle;
  let layer: string;
  before(async () => {
    origin = await startRegistry();
    await pushImage(image.dir, image.tag, origin.host, REPO);
    mirror = await startRegistry({ proxyRemote: `http://${origin.host}` });
    layer = image.layers[0]!.digest;
  });
  after(async () => {
    sweepClipMounts();
    await mirror?.stop();
    await origin?.stop();
  });

  /** Mounts `index` in a new workspace with `args`, runs `check` on the mountpoint, unmounts; returns the daemon's log. */
  async function withMount(name: string, index: string, args: string[], check: (mp: string) => Promise<void>): Promise<string> {
    const ws = await clipWorkspace(name);
    const mp = path.join(ws.dir, 'mnt');
    await mkdir(mp);
    try {
      const r = await runClip(['mount', index, mp, ...args], { env: { ...NO_PROXY_ENV, CLIP_HOSTS_DIR: noHosts, ...ws.env } });
      assert.equal(r.code, 0, r.stderr);
      await check(mp);
      return await daemonLog(ws);
    } finally {
      await runClip(['umount', mp], { env: ws.env });
      await runClip(['daemon', '--stop'], { env: ws.env });
      assert.deepEqual(testMounts(true), [], 'nothing left mounted');
      await rm(ws.dir, { recursive: true, force: true });
    }
  }

  it('a dead mirror falls back to the origin: the mount reads, the daemon logs and counts the failure', async () => {
    const dead = `127.0.0.1:${await freePort()}`;
    const d = await hostsDir('mirror-dead', origin.host, { 'hosts.toml': `[host."http://${dead}"]\ncapabilities = ["pull", "resolve"]\n` });
    const index = await indexAndCat(origin.host, 'mirror-dead', ['--hosts-dir', d]);
    const metricsAddr = `127.0.0.1:${await freePort()}`;
    const log = await withMount('mirrordead', index, ['--hosts-dir', d, '--metrics-addr', metricsAddr], async (mp) => {
      assert.deepEqual(await readFile(path.join(mp, 'etc/blob.bin')), blob);
      const text = await scrape(metricsAddr);
      assert.ok(metric(text, 'clip_mirror_failures_total', `registry="${origin.host}",mirror="http://${dead}/v2"`) >= 1, text);
    });
    assert.match(log, /registry mirror failed: skipped for a while/);
  });

  it('a pull-through mirror serves the reads, and a mount from what it holds after the origin stopped', async () => {
    const d = await hostsDir('mirror-live', origin.host, {
      'hosts.toml': `[host."http://${mirror.host}"]\ncapabilities = ["pull", "resolve"]\n`,
    });
    assert.equal(existsSync(registryBlobPath(mirror.dir, layer)), false, 'the mirror starts empty');
    const index = await indexAndCat(origin.host, 'mirror-live', ['--hosts-dir', d]);
    assert.equal(existsSync(registryBlobPath(mirror.dir, layer)), true, 'the layer was read through the mirror');
    await origin.stop();
    await withMount('mirrorlive', index, ['--hosts-dir', d], async (mp) => {
      assert.equal(await readFile(path.join(mp, 'etc/hello'), 'utf8'), HELLO);
      assert.deepEqual(await readFile(path.join(mp, 'etc/blob.bin')), blob);
    });
    // Without the mirror the origin is gone: the mount above could only have read through it.
    const r = await clip(['cat', index, 'etc/hello']);
    assert.equal(r.code, 1);
    assert.match(r.stderr, /connection refused/);
  });
});
