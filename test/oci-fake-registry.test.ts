// The registry client against a scripted registry (node:http on 127.0.0.1):
// Bearer tokens (fetched, cached, refreshed when refused), blob redirects to a
// storage host that must never see the Authorization header, servers that
// ignore or botch Range, and manifests that must be refused.

import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, beforeEach, test } from 'node:test';
import { isClipError } from '../src/errors.js';
import { openImage, type BlobSource } from '../src/oci/index.js';
import * as mt from '../src/oci/media-types.js';

const sha256 = (b: Buffer) => `sha256:${createHash('sha256').update(b).digest('hex')}`;
const json = (v: unknown) => Buffer.from(JSON.stringify(v));

// ---- content ----
const layer = Buffer.from(Array.from({ length: 100_000 }, (_, i) => (i * 7) % 251));
const layerDigest = sha256(layer);
const config = json({ architecture: 'arm', variant: 'v7', os: 'linux', rootfs: { type: 'layers', diff_ids: [sha256(Buffer.from('x'))] } });
const configDigest = sha256(config);
const manifestOf = (cfg: Buffer, cfgDigest = sha256(cfg), mediaType = mt.DOCKER_MANIFEST, configType = mt.DOCKER_CONFIG) =>
  json({
    schemaVersion: 2,
    mediaType,
    config: { mediaType: configType, digest: cfgDigest, size: cfg.length },
    layers: [{ mediaType: 'application/vnd.docker.image.rootfs.diff.tar.gzip', digest: layerDigest, size: layer.length }],
  });
const manifest = manifestOf(config);
const manifestDigest = sha256(manifest);
const list = json({
  schemaVersion: 2,
  mediaType: mt.DOCKER_LIST,
  manifests: [
    { mediaType: mt.DOCKER_MANIFEST, digest: sha256(Buffer.from('other')), size: 5, platform: { os: 'linux', architecture: 'amd64' } },
    {
      mediaType: mt.DOCKER_MANIFEST,
      digest: manifestDigest,
      size: manifest.length,
      platform: { os: 'linux', architecture: 'arm', variant: 'v7' },
    },
  ],
});
const twoDiffIds = json({
  architecture: 'amd64',
  os: 'linux',
  rootfs: { type: 'layers', diff_ids: [sha256(Buffer.from('a')), sha256(Buffer.from('b'))] },
});
const helmConfig = json({ name: 'chart' });
const badConfigDigest = sha256(Buffer.from('not the config'));

const blobs = new Map<string, Buffer>([
  [layerDigest, layer],
  [configDigest, config],
  [sha256(twoDiffIds), twoDiffIds],
  [sha256(helmConfig), helmConfig],
  [badConfigDigest, config], // served under the wrong digest
]);
const manifests = new Map<string, { body: Buffer; type: string }>([
  ['v1', { body: manifest, type: mt.DOCKER_MANIFEST }],
  [manifestDigest, { body: manifest, type: mt.DOCKER_MANIFEST }],
  ['list', { body: list, type: mt.DOCKER_LIST }],
  ['schema1', { body: json({ schemaVersion: 1, name: 'x', fsLayers: [] }), type: mt.DOCKER_SCHEMA1_SIGNED }],
  ['counts', { body: manifestOf(twoDiffIds), type: mt.DOCKER_MANIFEST }],
  ['helm', { body: manifestOf(helmConfig, undefined, mt.OCI_MANIFEST, 'application/vnd.cncf.helm.config.v1+json'), type: mt.OCI_MANIFEST }],
  ['badconfig', { body: manifestOf(config, badConfigDigest), type: mt.DOCKER_MANIFEST }],
  // Served when asked by a digest it does not hash to.
  [`sha256:${'e'.repeat(64)}`, { body: manifest, type: mt.DOCKER_MANIFEST }],
]);

// ---- servers ----
let registry: Server;
let storage: Server;
let registryHost: string;
let storageHost: string;
let tmp: string;

const state = {
  issued: 0,
  valid: new Set<string>(),
  tokenRequests: [] as { scope: string | null; service: string | null; authorization: string | undefined }[],
  requests: [] as { url: string; headers: IncomingMessage['headers'] }[],
  storageAuthorization: [] as (string | undefined)[],
  /** 'honor' | 'ignore' (200 with everything) | 'wrong' (206 for another range) */
  rangeMode: 'honor',
  /** Credentials the token server insists on (undefined: anonymous allowed). */
  requiredBasic: undefined as string | undefined,
  /** Repositories a token does not open. */
  forbidden: new Set<string>(['secret/app']),
};

function send(res: ServerResponse, status: number, body: Buffer | string = '', headers: Record<string, string> = {}) {
  res.writeHead(status, { 'content-length': String(Buffer.byteLength(body)), ...headers });
  res.end(body);
}

function registryHandler(req: IncomingMessage, res: ServerResponse) {
  const url = new URL(req.url!, `http://${registryHost}`);
  if (url.pathname === '/token') {
    state.tokenRequests.push({
      scope: url.searchParams.get('scope'),
      service: url.searchParams.get('service'),
      authorization: req.headers.authorization,
    });
    if (state.requiredBasic !== undefined && req.headers.authorization !== state.requiredBasic) return send(res, 401, 'bad credentials');
    const token = `tok-${++state.issued}`;
    state.valid.add(token);
    return send(res, 200, json({ access_token: token, expires_in: 300 }), { 'content-type': 'application/json' });
  }
  state.requests.push({ url: url.pathname, headers: req.headers });
  const m = /^\/v2\/(.+)\/(manifests|blobs)\/([^/]+)$/.exec(url.pathname);
  if (!m) return send(res, 404);
  const [, repo, kind, ref] = m as unknown as [string, string, string, string];
  const token = req.headers.authorization?.replace(/^Bearer /, '');
  if (!token || !state.valid.has(token) || state.forbidden.has(repo)) {
    return send(res, 401, json({ errors: [{ code: 'UNAUTHORIZED', message: 'authentication required' }] }), {
      'www-authenticate': `Bearer realm="http://${registryHost}/token",service="fake-registry",scope="repository:${repo}:pull"`,
      'content-type': 'application/json',
    });
  }
  if (repo === 'missing/app')
    return send(res, 404, json({ errors: [{ code: 'NAME_UNKNOWN', message: 'repository name not known to registry' }] }));
  if (kind === 'manifests') {
    const hit = manifests.get(decodeURIComponent(ref));
    if (!hit) return send(res, 404, json({ errors: [{ code: 'MANIFEST_UNKNOWN', message: 'manifest unknown' }] }));
    return send(res, 200, hit.body, { 'content-type': hit.type });
  }
  if (!blobs.has(ref)) return send(res, 404, json({ errors: [{ code: 'BLOB_UNKNOWN', message: 'blob unknown' }] }));
  // Blobs live elsewhere: redirect, as registries backed by object storage do.
  return send(res, 307, '', { location: `http://${storageHost}/store/${ref}?signature=abc` });
}

function storageHandler(req: IncomingMessage, res: ServerResponse) {
  state.storageAuthorization.push(req.headers.authorization);
  const digest = /^\/store\/([^?]+)/.exec(req.url!)?.[1];
  const blob = digest ? blobs.get(digest) : undefined;
  if (!blob) return send(res, 404);
  const range = /^bytes=(\d+)-(\d+)$/.exec(req.headers.range ?? '');
  if (!range || state.rangeMode === 'ignore') return send(res, 200, blob);
  let start = Number(range[1]);
  let end = Math.min(Number(range[2]), blob.length - 1);
  if (start >= blob.length) return send(res, 416, '', { 'content-range': `bytes */${blob.length}` });
  if (state.rangeMode === 'wrong') {
    start += 1;
    end += 1;
  }
  return send(res, 206, blob.subarray(start, end + 1), { 'content-range': `bytes ${start}-${end}/${blob.length}` });
}

async function listen(server: Server): Promise<string> {
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return `127.0.0.1:${(server.address() as AddressInfo).port}`;
}

before(async () => {
  tmp = await mkdtemp(join(tmpdir(), 'clip-fake-registry-'));
  process.env['DOCKER_CONFIG'] = join(tmp, 'none');
  process.env['REGISTRY_AUTH_FILE'] = join(tmp, 'none.json');
  delete process.env['CLIP_USERNAME'];
  delete process.env['CLIP_PASSWORD'];
  registry = createServer(registryHandler);
  storage = createServer(storageHandler);
  registryHost = await listen(registry);
  storageHost = await listen(storage);
});

after(async () => {
  registry.closeAllConnections();
  storage.closeAllConnections();
  await new Promise((r) => registry.close(r));
  await new Promise((r) => storage.close(r));
  await rm(tmp, { recursive: true, force: true });
});

beforeEach(() => {
  state.tokenRequests = [];
  state.requests = [];
  state.storageAuthorization = [];
  state.rangeMode = 'honor';
  state.requiredBasic = undefined;
});

const arm = { platform: { os: 'linux', architecture: 'arm', variant: 'v7' } };

const fails = (code: string, pattern?: RegExp) => (e: unknown) => {
  assert.ok(isClipError(e), `expected a ClipError, got ${String(e)}`);
  assert.equal(e.code, code, e.message);
  if (pattern) assert.match(e.message, pattern);
  return true;
};

async function withImage(ref: string, fn: (b: BlobSource) => Promise<void>, opts = {}) {
  const { blobs } = await openImage(ref, { ...arm, ...opts });
  try {
    await fn(blobs);
  } finally {
    await blobs.close();
  }
}

test('bearer token: fetched once for the repository scope, then reused', async () => {
  const { image, blobs } = await openImage(`${registryHost}/team/app:list`, arm);
  try {
    assert.equal(image.manifestDigest, manifestDigest);
    assert.equal(image.manifestMediaType, mt.DOCKER_MANIFEST);
    assert.equal(image.configDigest, configDigest);
    assert.deepEqual(image.platform, { os: 'linux', architecture: 'arm', variant: 'v7' });
    assert.deepEqual(await blobs.readRange(layerDigest, 10, 20), layer.subarray(10, 20));
  } finally {
    await blobs.close();
  }
  assert.equal(state.tokenRequests.length, 1);
  assert.deepEqual(state.tokenRequests[0], { scope: 'repository:team/app:pull', service: 'fake-registry', authorization: undefined });
  const manifestRequest = state.requests.find((r) => r.url.includes('/manifests/'))!;
  for (const t of [mt.OCI_INDEX, mt.OCI_MANIFEST, mt.DOCKER_LIST, mt.DOCKER_MANIFEST]) {
    assert.ok(String(manifestRequest.headers.accept).includes(t), t);
  }
  const blobRequest = state.requests.find((r) => r.url.includes('/blobs/'))!;
  assert.equal(blobRequest.headers['accept-encoding'], 'identity');
});

test('redirected blob requests never carry the Authorization header', async () => {
  await withImage(`${registryHost}/team/app:v1`, async (b) => {
    assert.deepEqual(await b.readRange(layerDigest, 0, 50_000), layer.subarray(0, 50_000));
    const chunks: Buffer[] = [];
    for await (const c of await b.openBlob(layerDigest)) chunks.push(c as Buffer);
    assert.deepEqual(Buffer.concat(chunks), layer);
  });
  assert.ok(state.storageAuthorization.length >= 3);
  assert.deepEqual(
    state.storageAuthorization,
    state.storageAuthorization.map(() => undefined),
  );
  assert.ok(state.requests.filter((r) => r.url.includes('/blobs/')).every((r) => r.headers.authorization?.startsWith('Bearer ')));
});

test('a refused token (expired, revoked) is replaced once', async () => {
  await withImage(`${registryHost}/team/app:v1`, async (b) => {
    state.valid.clear();
    assert.deepEqual(await b.readRange(layerDigest, 5, 6), layer.subarray(5, 6));
  });
  assert.equal(state.tokenRequests.length, 2);
});

test('a token that does not open the repository is UNAUTHORIZED', async () => {
  await assert.rejects(openImage(`${registryHost}/secret/app:v1`, arm), fails('UNAUTHORIZED', /secret\/app denied without credentials/));
  state.requiredBasic = `Basic ${Buffer.from('u:p').toString('base64')}`;
  await assert.rejects(
    openImage(`${registryHost}/team/app:v1`, { ...arm, username: 'u', password: 'wrong' }),
    fails('UNAUTHORIZED', /rejected the credentials of user "u"/),
  );
  await withImage(
    `${registryHost}/team/app:v1`,
    async (b) => {
      assert.equal((await b.readRange(layerDigest, 0, 3)).length, 3);
    },
    { username: 'u', password: 'p' },
  );
  assert.equal(state.tokenRequests.at(-1)!.authorization, state.requiredBasic);
});

test('a server that ignores Range is sliced; a wrong Content-Range is an error', async () => {
  await withImage(`${registryHost}/team/app:v1`, async (b) => {
    state.rangeMode = 'ignore';
    assert.deepEqual(await b.readRange(layerDigest, 99_000, 99_500), layer.subarray(99_000, 99_500));
    assert.deepEqual(await b.readRange(layerDigest, 0, layer.length), layer);
    await assert.rejects(b.readRange(layerDigest, 99_990, 100_010), fails('BAD_ARGUMENT', /beyond the end .*size 100000/));
    state.rangeMode = 'wrong';
    await assert.rejects(b.readRange(layerDigest, 10, 20), fails('REGISTRY', /answered range 11-20 .* asked for 10-19/));
    state.rangeMode = 'honor';
    await assert.rejects(b.readRange(layerDigest, 99_990, 100_010), fails('BAD_ARGUMENT', /beyond the end .*size 100000/));
    await assert.rejects(b.readRange(layerDigest, 200_000, 200_010), fails('BAD_ARGUMENT', /beyond the end/));
  });
});

test('manifests and configs that must be refused', async () => {
  const base = `${registryHost}/team/app`;
  await assert.rejects(openImage(`${base}:schema1`, arm), fails('UNSUPPORTED', /schema 1/));
  await assert.rejects(openImage(`${base}:counts`, arm), fails('REGISTRY', /2 diff_ids but manifest .* has 1 layers/));
  await assert.rejects(openImage(`${base}:helm`, arm), fails('UNSUPPORTED', /not a container image/));
  await assert.rejects(openImage(`${base}:badconfig`, arm), fails('DIGEST_MISMATCH', /image config/));
  await assert.rejects(openImage(`${base}@sha256:${'e'.repeat(64)}`, arm), fails('DIGEST_MISMATCH', /manifest/));
  await assert.rejects(openImage(`${base}:nope`, arm), fails('NOT_FOUND', /image .*team\/app:nope not found.*MANIFEST_UNKNOWN/));
  await assert.rejects(openImage(`${registryHost}/missing/app:v1`, arm), fails('NOT_FOUND', /missing\/app:v1 not found/));
  await assert.rejects(
    openImage(`${base}:list`, { platform: { os: 'linux', architecture: 'riscv64' } }),
    fails('NOT_FOUND', /no image for platform linux\/riscv64; available: linux\/amd64, linux\/arm\/v7/),
  );
});
