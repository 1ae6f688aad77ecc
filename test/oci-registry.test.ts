// End to end against the real distribution registry (Debian docker-registry)
// on 127.0.0.1: a hand-made OCI image is pushed with skopeo, then resolved and
// read back by range and whole; also a Basic-auth (htpasswd) registry and the
// OCI layout directory the image was pushed from.

import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Readable } from 'node:stream';
import { promisify } from 'node:util';
import { gzipSync } from 'node:zlib';
import { after, before, describe, test } from 'node:test';
import { isClipError } from '../src/errors.js';
import { openBlobSource } from '../src/content/sources/open.js';
import { openImage } from '../src/oci/index.js';
import * as mt from '../src/oci/media-types.js';
import { freePort, startRegistry, type RegistryHandle } from './helpers/registry.js';

const run = promisify(execFile);
const sha256 = (b: Buffer) => `sha256:${createHash('sha256').update(b).digest('hex')}`;

let work: string;

before(async () => {
  work = await mkdtemp(join(tmpdir(), 'clip-oci-registry-'));
  // Keep the machine's own credentials out of these tests.
  process.env['DOCKER_CONFIG'] = join(work, 'no-docker-config');
  process.env['REGISTRY_AUTH_FILE'] = join(work, 'no-auth.json');
  delete process.env['CLIP_USERNAME'];
  delete process.env['CLIP_PASSWORD'];
});

after(async () => {
  await rm(work, { recursive: true, force: true });
});

// ---- a small hand-made image in an OCI layout directory ----

interface Fixture {
  dir: string;
  /** Layer blobs by digest. */
  blobs: Map<string, Buffer>;
  layers: { digest: string; mediaType: string; size: number; diffId: string }[];
  configs: Record<string, string>; // architecture -> config digest
  manifests: Record<string, string>; // architecture -> manifest digest
}

async function tarOf(files: Record<string, Buffer | string>): Promise<Buffer> {
  const src = await mkdtemp(join(work, 'tar-'));
  for (const [name, content] of Object.entries(files)) await writeFile(join(src, name), content);
  const { stdout } = await run('tar', ['--sort=name', '--mtime=@0', '--owner=0', '--group=0', '-cf', '-', '-C', src, '.'], {
    encoding: 'buffer',
    maxBuffer: 64 << 20,
  });
  return stdout;
}

async function buildFixture(): Promise<Fixture> {
  const dir = join(work, 'layout');
  await mkdir(join(dir, 'blobs', 'sha256'), { recursive: true });
  const blobs = new Map<string, Buffer>();
  const put = async (b: Buffer) => {
    const digest = sha256(b);
    blobs.set(digest, b);
    await writeFile(join(dir, 'blobs', 'sha256', digest.slice(7)), b);
    return { digest, size: b.length };
  };

  const tar1 = await tarOf({ 'hello.txt': 'hello from clip\n', 'data.bin': randomBytes(300_000) });
  const tar2 = await tarOf({ 'second.txt': 'layer two\n'.repeat(100) });
  const gz1 = gzipSync(tar1);
  const l1 = await put(gz1);
  const l2 = await put(gzipSync(tar2)); // (skopeo would compress an uncompressed layer on push)
  const layers = [
    { ...l1, mediaType: 'application/vnd.oci.image.layer.v1.tar+gzip', diffId: sha256(tar1) },
    { ...l2, mediaType: 'application/vnd.oci.image.layer.v1.tar+gzip', diffId: sha256(tar2) },
  ];

  const configs: Record<string, string> = {};
  const manifests: Record<string, string> = {};
  const manifestDescs = [];
  for (const [architecture, variant] of [
    ['amd64', undefined],
    ['arm64', 'v8'],
  ] as const) {
    const config = {
      architecture,
      os: 'linux',
      ...(variant ? { variant } : {}),
      config: { Env: ['PATH=/usr/bin:/bin'], Cmd: ['/bin/sh'], Labels: { arch: architecture } },
      rootfs: { type: 'layers', diff_ids: layers.map((l) => l.diffId) },
    };
    const c = await put(Buffer.from(JSON.stringify(config)));
    configs[architecture] = c.digest;
    const manifest = {
      schemaVersion: 2,
      mediaType: mt.OCI_MANIFEST,
      config: { mediaType: mt.OCI_CONFIG, ...c },
      layers: layers.map((l) => ({ mediaType: l.mediaType, digest: l.digest, size: l.size })),
    };
    const m = await put(Buffer.from(JSON.stringify(manifest)));
    manifests[architecture] = m.digest;
    manifestDescs.push({ mediaType: mt.OCI_MANIFEST, ...m, platform: { os: 'linux', architecture, ...(variant ? { variant } : {}) } });
  }
  const imageIndex = await put(Buffer.from(JSON.stringify({ schemaVersion: 2, mediaType: mt.OCI_INDEX, manifests: manifestDescs })));
  const refName = 'org.opencontainers.image.ref.name';
  const index = {
    schemaVersion: 2,
    mediaType: mt.OCI_INDEX,
    manifests: [
      {
        mediaType: mt.OCI_MANIFEST,
        digest: manifests['amd64'],
        size: blobs.get(manifests['amd64']!)!.length,
        annotations: { [refName]: 'v1' },
      },
      { mediaType: mt.OCI_INDEX, ...imageIndex, annotations: { [refName]: 'multi' } },
    ],
  };
  await writeFile(join(dir, 'index.json'), JSON.stringify(index));
  await writeFile(join(dir, 'oci-layout'), JSON.stringify({ imageLayoutVersion: '1.0.0' }));
  return { dir, blobs, layers, configs, manifests };
}

// ---- the registry process (test/helpers/registry.ts), and pushes that may convert ----

async function push(fixture: Fixture, tag: string, dest: string, extra: string[] = []): Promise<void> {
  await run('skopeo', ['copy', '--quiet', '--dest-tls-verify=false', ...extra, `oci:${fixture.dir}:${tag}`, `docker://${dest}`], {
    env: { ...process.env, HOME: work },
  });
}

async function readAll(stream: Readable): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const c of stream) chunks.push(c as Buffer);
  return Buffer.concat(chunks);
}

const fails = (code: string, pattern?: RegExp) => (e: unknown) => {
  assert.ok(isClipError(e), `expected a ClipError, got ${String(e)}`);
  assert.equal(e.code, code, e.message);
  if (pattern) assert.match(e.message, pattern);
  return true;
};

describe('anonymous registry', () => {
  let fixture: Fixture;
  let registry: RegistryHandle;

  before(async () => {
    fixture = await buildFixture();
    registry = await startRegistry();
    await push(fixture, 'v1', `${registry.host}/test/app:v1`);
    await push(fixture, 'multi', `${registry.host}/test/app:multi`, ['--all']);
    await push(fixture, 'v1', `${registry.host}/test/app:v2s2`, ['--format', 'v2s2']);
  });

  after(async () => {
    await registry?.stop();
  });

  test('resolves an OCI manifest, with layers, config and diff_ids', async () => {
    const { image, blobs } = await openImage(`${registry.host}/test/app:v1`);
    try {
      assert.equal(image.location, `docker://${registry.host}/test/app`);
      assert.equal(image.reference, `${registry.host}/test/app:v1`);
      assert.equal(image.registry, registry.host);
      assert.equal(image.repository, 'test/app');
      assert.equal(image.manifestMediaType, mt.OCI_MANIFEST);
      assert.equal(image.manifestDigest, fixture.manifests['amd64']);
      assert.equal(image.configDigest, fixture.configs['amd64']);
      assert.deepEqual(image.platform, { os: 'linux', architecture: 'amd64' });
      assert.deepEqual((image.config['config'] as { Cmd: string[] }).Cmd, ['/bin/sh']);
      assert.deepEqual(image.layers, fixture.layers);
    } finally {
      await blobs.close();
    }
  });

  test('reads blobs by range and whole', async () => {
    const { image, blobs } = await openImage(`${registry.host}/test/app:v1`);
    try {
      const layer = image.layers[0]!;
      const blob = fixture.blobs.get(layer.digest)!;
      assert.deepEqual(await blobs.readRange(layer.digest, 1000, 70_000), blob.subarray(1000, 70_000));
      assert.deepEqual(await blobs.readRange(layer.digest, 0, 1), blob.subarray(0, 1));
      assert.deepEqual(await blobs.readRange(layer.digest, blob.length - 10, blob.length), blob.subarray(blob.length - 10));
      assert.deepEqual(await blobs.readRange(layer.digest, 0, blob.length), blob);
      assert.equal((await blobs.readRange(layer.digest, 5, 5)).length, 0);
      await assert.rejects(blobs.readRange(layer.digest, blob.length - 1, blob.length + 1), fails('BAD_ARGUMENT', /beyond the end/));
      await assert.rejects(blobs.readRange(layer.digest, blob.length + 5, blob.length + 10), fails('BAD_ARGUMENT', /beyond the end/));
      await assert.rejects(blobs.readRange(layer.digest, 10, 5), fails('BAD_ARGUMENT'));
      assert.deepEqual(await readAll(await blobs.openBlob(layer.digest)), blob);
      const second = image.layers[1]!;
      assert.deepEqual(await readAll(await blobs.openBlob(second.digest)), fixture.blobs.get(second.digest));
      await assert.rejects(blobs.openBlob(`sha256:${'0'.repeat(64)}`), fails('NOT_FOUND', /blob sha256:0+ of .*test\/app not found/));
      await assert.rejects(blobs.readRange('sha256:../../etc', 0, 1), fails('BAD_ARGUMENT'));
      // Many concurrent range reads share the connection pool.
      const reads = Array.from({ length: 40 }, (_, i) => [i * 7000, i * 7000 + 5000] as const);
      const got = await Promise.all(reads.map(([s, e]) => blobs.readRange(layer.digest, s, e)));
      got.forEach((b, i) => assert.deepEqual(b, blob.subarray(reads[i]![0], reads[i]![1])));
    } finally {
      await blobs.close();
    }
  });

  test('reopens blobs from the recorded location', async () => {
    const { image, blobs } = await openImage(`${registry.host}/test/app:v1`);
    await blobs.close();
    const again = await openBlobSource(image.location);
    try {
      const layer = image.layers[0]!;
      assert.deepEqual(await again.readRange(layer.digest, 10, 20), fixture.blobs.get(layer.digest)!.subarray(10, 20));
    } finally {
      await again.close();
    }
  });

  test('digest-pinned references are fetched by digest and verified', async () => {
    const digest = fixture.manifests['amd64']!;
    const { image, blobs } = await openImage(`docker://${registry.host}/test/app:v1@${digest}`);
    await blobs.close();
    assert.equal(image.manifestDigest, digest);
    assert.equal(image.reference, `${registry.host}/test/app:v1@${digest}`);
    await assert.rejects(openImage(`${registry.host}/test/app@sha256:${'1'.repeat(64)}`), fails('NOT_FOUND', /not found/));
  });

  test('picks the platform from an image index', async () => {
    const arm = await openImage(`${registry.host}/test/app:multi`, { platform: { os: 'linux', architecture: 'arm64' } });
    await arm.blobs.close();
    assert.equal(arm.image.manifestDigest, fixture.manifests['arm64']);
    assert.equal(arm.image.configDigest, fixture.configs['arm64']);
    assert.deepEqual(arm.image.platform, { os: 'linux', architecture: 'arm64', variant: 'v8' });
    assert.deepEqual(arm.image.layers, fixture.layers);
    if (process.arch === 'x64' || process.arch === 'arm64') {
      const host = await openImage(`${registry.host}/test/app:multi`);
      await host.blobs.close();
      assert.equal(host.image.manifestDigest, fixture.manifests[process.arch === 'x64' ? 'amd64' : 'arm64']);
    }
    await assert.rejects(
      openImage(`${registry.host}/test/app:multi`, { platform: { os: 'linux', architecture: 's390x' } }),
      fails('NOT_FOUND', /no image for platform linux\/s390x; available: linux\/amd64, linux\/arm64\/v8/),
    );
  });

  test('resolves Docker schema 2 manifests', async () => {
    const { image, blobs } = await openImage(`${registry.host}/test/app:v2s2`);
    await blobs.close();
    assert.equal(image.manifestMediaType, mt.DOCKER_MANIFEST);
    assert.deepEqual(
      image.layers.map((l) => l.diffId),
      fixture.layers.map((l) => l.diffId),
    );
  });

  test('missing images and unreachable registries', async () => {
    await assert.rejects(openImage(`${registry.host}/test/app:nope`), fails('NOT_FOUND', /image .*test\/app:nope not found/));
    await assert.rejects(openImage(`${registry.host}/no/such:v1`), fails('NOT_FOUND', /image .*no\/such:v1 not found/));
    const port = await freePort();
    await assert.rejects(openImage(`127.0.0.1:${port}/x:1`), fails('REGISTRY', new RegExp(`127\\.0\\.0\\.1:${port}.*connection refused`)));
    await assert.rejects(openImage('Bad/Ref'), fails('BAD_REFERENCE'));
  });

  test('OCI layout directories resolve the same image', async () => {
    const { image, blobs } = await openImage(`oci:${fixture.dir}:v1`);
    try {
      assert.equal(image.location, `oci:${fixture.dir}`);
      assert.equal(image.manifestDigest, fixture.manifests['amd64']);
      assert.deepEqual(image.layers, fixture.layers);
      const layer = image.layers[0]!;
      const blob = fixture.blobs.get(layer.digest)!;
      assert.deepEqual(await blobs.readRange(layer.digest, 123, 45_678), blob.subarray(123, 45_678));
      assert.deepEqual(await readAll(await blobs.openBlob(layer.digest)), blob);
      await assert.rejects(blobs.readRange(layer.digest, 0, blob.length + 1), fails('BAD_ARGUMENT', /beyond the end/));
      await assert.rejects(blobs.openBlob(`sha256:${'0'.repeat(64)}`), fails('NOT_FOUND'));
    } finally {
      await blobs.close();
    }
    const arm = await openImage(`oci:${fixture.dir}:multi`, { platform: { os: 'linux', architecture: 'arm64', variant: 'v8' } });
    assert.equal(arm.image.configDigest, fixture.configs['arm64']);
    const reopened = await openBlobSource(arm.image.location);
    assert.equal((await reopened.readRange(fixture.layers[1]!.digest, 0, 3)).length, 3);
    await assert.rejects(openImage(`oci:${fixture.dir}`), fails('NOT_FOUND', /none is tagged "latest"; pick one of: v1, multi/));
    await assert.rejects(openImage(`oci:${fixture.dir}:zzz`), fails('NOT_FOUND', /tags in the layout: v1, multi/));
    await assert.rejects(openImage(`oci:${join(work, 'missing')}`), fails('NOT_FOUND'));
  });
});

describe('registry with Basic authentication', () => {
  let fixture: Fixture;
  let registry: RegistryHandle;

  before(async () => {
    fixture = await buildFixture2();
    registry = await startRegistry({ htpasswd: { username: 'user', password: 'pass' } });
    await push(fixture, 'v1', `${registry.host}/private/app:v1`, ['--dest-creds', 'user:pass']);
  });

  after(async () => {
    await registry?.stop();
  });

  async function buildFixture2(): Promise<Fixture> {
    const saved = work;
    work = await mkdtemp(join(saved, 'basic-'));
    try {
      return await buildFixture();
    } finally {
      work = saved;
    }
  }

  test('the right credentials open the image and its blobs', async () => {
    const { image, blobs } = await openImage(`${registry.host}/private/app:v1`, { username: 'user', password: 'pass' });
    try {
      assert.deepEqual(image.layers, fixture.layers);
      const layer = image.layers[0]!;
      assert.deepEqual(await blobs.readRange(layer.digest, 100, 200), fixture.blobs.get(layer.digest)!.subarray(100, 200));
    } finally {
      await blobs.close();
    }
  });

  test('credentials from CLIP_USERNAME/CLIP_PASSWORD', async () => {
    process.env['CLIP_USERNAME'] = 'user';
    process.env['CLIP_PASSWORD'] = 'pass';
    try {
      const { blobs } = await openImage(`${registry.host}/private/app:v1`);
      await blobs.close();
    } finally {
      delete process.env['CLIP_USERNAME'];
      delete process.env['CLIP_PASSWORD'];
    }
  });

  test('wrong or missing credentials are UNAUTHORIZED, naming the repository', async () => {
    await assert.rejects(
      openImage(`${registry.host}/private/app:v1`, { username: 'user', password: 'wrong' }),
      fails('UNAUTHORIZED', new RegExp(`${registry.host}/private/app denied for user "user"`)),
    );
    await assert.rejects(
      openImage(`${registry.host}/private/app:v1`),
      fails('UNAUTHORIZED', new RegExp(`${registry.host}/private/app denied without credentials`)),
    );
  });
});
