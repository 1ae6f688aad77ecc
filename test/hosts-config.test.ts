// hosts.toml and certs.d parsing (containerd's and docker's layouts), the
// endpoints made from them (order, capabilities, plain HTTP fallback, TLS
// settings) and the skipping of failed mirrors. Files only: no server.

import assert from 'node:assert/strict';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { ClipError } from '../src/errors.js';
import { loadTlsOptions } from '../src/http/tls-options.js';
import { candidates, isSkipped, markFailed, markHealthy, onMirrorFailure, registryEndpoints } from '../src/oci/endpoints.js';
import { hostDirs, loadHostsConfig, parseHostsToml } from '../src/oci/hosts-config.js';

let dir: string;
before(async () => {
  dir = await mkdtemp(path.join(tmpdir(), 'clip-hosts-'));
});
after(async () => {
  await rm(dir, { recursive: true, force: true });
});

async function hostsFile(host: string, text: string): Promise<string> {
  const d = path.join(dir, host);
  await mkdir(d, { recursive: true });
  await writeFile(path.join(d, 'hosts.toml'), text);
  return path.join(d, 'hosts.toml');
}

function parseError(text: string): string {
  try {
    parseHostsToml(text, '/etc/clip/certs.d/r.example/hosts.toml', 'r.example');
  } catch (e) {
    assert.ok(e instanceof ClipError, String(e));
    return e.message;
  }
  assert.fail('parsed');
}

describe('hosts.toml', () => {
  it('lists mirrors in file order, then the server, with capabilities, TLS files and headers', () => {
    const file = '/etc/clip/certs.d/r.example/hosts.toml';
    const c = parseHostsToml(
      [
        'server = "https://upstream.example:5000"',
        'ca = "upstream-ca.pem"',
        '[host."https://z-mirror.example"]',
        '  capabilities = ["pull"]',
        '  ca = ["/abs/ca.pem", "rel/ca.pem"]',
        '  client = [["c.pem", "k.pem"], "both.pem"]',
        '  skip_verify = true',
        '  header = { "X-Tenant" = "a", "X-Many" = ["1", "2"] }',
        '[host."http://a-mirror.example:8080/prefix"]',
        '  capabilities = ["pull", "resolve"]',
        '[host."https://raw.example/custom/root"]',
        '  override_path = true',
      ].join('\n'),
      file,
      'r.example',
    );
    assert.deepEqual(
      c.mirrors.map((m) => m.root.href),
      ['https://z-mirror.example/v2', 'http://a-mirror.example:8080/prefix/v2', 'https://raw.example/custom/root'],
      'file order, not sorted; /v2 appended unless override_path',
    );
    assert.equal(c.server.root.href, 'https://upstream.example:5000/v2');
    assert.equal(c.serverSchemeGiven, true);
    assert.deepEqual(c.server.ca, ['/etc/clip/certs.d/r.example/upstream-ca.pem'], 'relative to the file');
    const z = c.mirrors[0]!;
    assert.deepEqual([...z.capabilities], ['pull']);
    assert.deepEqual(z.ca, ['/abs/ca.pem', '/etc/clip/certs.d/r.example/rel/ca.pem']);
    assert.deepEqual(z.client, [
      { cert: '/etc/clip/certs.d/r.example/c.pem', key: '/etc/clip/certs.d/r.example/k.pem' },
      { cert: '/etc/clip/certs.d/r.example/both.pem', key: '/etc/clip/certs.d/r.example/both.pem' },
    ]);
    assert.equal(z.skipVerify, true);
    assert.deepEqual(z.headers, { 'x-tenant': 'a', 'x-many': '1, 2' });
    assert.deepEqual([...c.mirrors[2]!.capabilities].sort(), ['pull', 'push', 'resolve'], 'default: every capability');
  });

  it('defaults the server to https://HOST (docker.io: registry-1.docker.io) with its scheme not given', () => {
    const c = parseHostsToml('[host."https://m.example"]\n', '/x/hosts.toml', 'docker.io');
    assert.equal(c.server.root.href, 'https://registry-1.docker.io/v2');
    assert.equal(c.serverSchemeGiven, false);
    const bare = parseHostsToml('server = "up.example:444"\n', '/x/hosts.toml', 'r.example');
    assert.equal(bare.server.root.href, 'https://up.example:444/v2');
    assert.equal(bare.serverSchemeGiven, false, 'a bare host is https by default, not by choice');
  });

  it('names the file and the key of every bad value', () => {
    const f = '/etc/clip/certs.d/r.example/hosts.toml';
    assert.match(parseError('server = 5'), new RegExp(`^${f}: server: expected a non-empty string, got 5$`));
    assert.match(parseError('server = "ftp://x"'), /: server: unsupported scheme ftp: \(http or https\)$/);
    assert.match(parseError('server = "https://u:p@x"'), /: server: credentials do not belong in a URL/);
    assert.match(parseError('[host."https://m"]\ncapabilities = ["pul"]'), /: host\."https:\/\/m"\.capabilities: unknown capability "pul"/);
    assert.match(parseError('[host."https://m"]\ncapabilities = "pull"'), /\.capabilities: expected a list of strings, got "pull"$/);
    assert.match(parseError('skip_verify = "yes"'), /: skip_verify: expected true or false, got "yes"$/);
    assert.match(
      parseError('[host."https://m"]\nclient = [["a"]]'),
      /\.client: expected a file or a \[cert, key\] pair of files, got an array$/,
    );
    assert.match(parseError('ca = 3'), /: ca: expected a list of strings, got 3$/);
    assert.match(
      parseError('[host."https://m"]\nheader = { "X-A" = "a\\r\\nInjected: 1" }'),
      /header\."X-A": a header value cannot contain CR, LF or NUL$/,
    );
    assert.match(parseError('header = { "Authorization" = "x" }'), /header\."Authorization": not a header clip may set$/);
    assert.match(parseError('host = 1'), /: host: expected tables/);
    assert.match(parseError('[[['), new RegExp(`^${f}:1:\\d+: not valid TOML: `));
  });

  it('looks in HOST, HOST_PORT_ and _default, and refuses a host that would leave the directory', async () => {
    assert.deepEqual(hostDirs('/c', 'Reg.example:5000'), ['/c/reg.example:5000', '/c/reg.example_5000_', '/c/_default']);
    assert.deepEqual(hostDirs('/c', 'docker.io'), ['/c/docker.io', '/c/_default']);
    assert.throws(() => hostDirs('/c', '../etc'), /cannot name a hosts directory/);
    await hostsFile('port.example_5000_', 'server = "http://port.example:5000"\n');
    assert.equal((await loadHostsConfig(dir, 'port.example:5000')).server.root.href, 'http://port.example:5000/v2');
    await hostsFile('_default', '[host."https://everyone.example"]\n');
    assert.equal((await loadHostsConfig(dir, 'other.example')).mirrors[0]!.root.host, 'everyone.example');
  });

  it("reads docker's certs.d files where there is no hosts.toml, and wants a key for every certificate", async () => {
    const d = path.join(dir, 'docker.example');
    await mkdir(d);
    for (const f of ['ca.crt', 'more.crt', 'client.cert', 'client.key']) await writeFile(path.join(d, f), '');
    const c = await loadHostsConfig(dir, 'docker.example');
    assert.deepEqual(c.server.ca, [path.join(d, 'ca.crt'), path.join(d, 'more.crt')]);
    assert.deepEqual(c.server.client, [{ cert: path.join(d, 'client.cert'), key: path.join(d, 'client.key') }]);
    assert.equal(c.server.root.href, 'https://docker.example/v2');
    const lone = path.join(dir, 'lone.example');
    await mkdir(lone);
    await writeFile(path.join(lone, 'client.cert'), '');
    await assert.rejects(
      loadHostsConfig(dir, 'lone.example'),
      /lone\.example\/client\.cert: client certificate without its key client\.key/,
    );
  });

  it('names a certificate file that is missing or holds no certificate', async () => {
    await assert.rejects(
      loadTlsOptions({ ca: ['/nonexistent/ca.pem'], client: [] }),
      /cannot read CA certificate \/nonexistent\/ca\.pem: no such file/,
    );
    const junk = path.join(dir, 'junk.pem');
    await writeFile(junk, 'not a certificate');
    await assert.rejects(loadTlsOptions({ ca: [junk], client: [] }), new RegExp(`CA certificate ${junk} holds no PEM certificate`));
    const broken = path.join(dir, 'broken.pem');
    await writeFile(broken, '-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n');
    await assert.rejects(loadTlsOptions({ ca: [broken], client: [] }), /holds a certificate that does not parse/);
    assert.equal((await loadTlsOptions({ ca: [], client: [] })).options, undefined, 'nothing set: default TLS');
    assert.equal((await loadTlsOptions({ ca: [], client: [], skipVerify: true })).options?.rejectUnauthorized, false);
  });
});

describe('endpoints', () => {
  it('falls back to plain HTTP only for loopback, --plain-http or --tls-verify=false, never when a scheme was written', async () => {
    const empty = path.join(dir, 'empty');
    await mkdir(empty);
    const fallback = async (registry: string, opts = {}) =>
      (await registryEndpoints(registry, { hostsDir: empty, ...opts })).at(-1)!.httpFallback;
    assert.equal(await fallback('127.0.0.1:5000'), true);
    assert.equal(await fallback('localhost:5000'), true);
    assert.equal(await fallback('registry.example'), false);
    assert.equal(await fallback('registry.example', { plainHttp: true }), true);
    assert.equal(await fallback('registry.example', { tlsVerify: false }), true);
    await hostsFile('127.0.0.2:5000', 'server = "https://127.0.0.2:5000"\n');
    assert.equal((await registryEndpoints('127.0.0.2:5000', { hostsDir: dir })).at(-1)!.httpFallback, false);
    const insecure = await registryEndpoints('registry.example', { hostsDir: empty, tlsVerify: false });
    assert.equal(insecure[0]!.tls?.rejectUnauthorized, false);
  });

  it('offers mirrors with the capability first, skips one that failed, and tells listeners', async () => {
    await hostsFile(
      'mirrored.example',
      [
        '[host."https://pull-only.example"]',
        'capabilities = ["pull"]',
        '[host."https://both.example"]',
        'capabilities = ["pull", "resolve"]',
      ].join('\n'),
    );
    const all = await registryEndpoints('mirrored.example', { hostsDir: dir });
    const hosts = (cap: 'pull' | 'resolve') => candidates(all, cap).map((e) => e.host);
    assert.deepEqual(hosts('pull'), ['pull-only.example', 'both.example', 'mirrored.example']);
    assert.deepEqual(hosts('resolve'), ['both.example', 'mirrored.example']);
    const heard: string[] = [];
    const stop = onMirrorFailure((f) => heard.push(`${f.registry} ${f.mirror} ${f.reason}`));
    try {
      markFailed(all[0]!, 'mirrored.example', 'connection refused');
      assert.equal(isSkipped(all[0]!), true);
      assert.deepEqual(hosts('pull'), ['both.example', 'mirrored.example']);
      assert.deepEqual(heard, ['mirrored.example https://pull-only.example/v2 connection refused']);
      markHealthy(all[0]!);
      assert.deepEqual(hosts('pull'), ['pull-only.example', 'both.example', 'mirrored.example']);
    } finally {
      stop();
    }
  });
});
