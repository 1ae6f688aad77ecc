// WWW-Authenticate parsing (RFC 7235 challenges as registries send them) and
// the platform matching used to pick a manifest from an index.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { isClipError } from '../src/errors.js';
import { normalizePlatform, parsePlatform, parseWwwAuthenticate } from '../src/oci/index.js';
import { isLocalRegistry } from '../src/oci/registry.js';
import { defaultServer } from '../src/oci/hosts-config.js';
import { selectPlatform, type Descriptor } from '../src/oci/resolve.js';

test('parses a Docker Hub bearer challenge', () => {
  const c = parseWwwAuthenticate(
    'Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/alpine:pull"',
  );
  assert.deepEqual(c, [
    {
      scheme: 'bearer',
      params: { realm: 'https://auth.docker.io/token', service: 'registry.docker.io', scope: 'repository:library/alpine:pull' },
    },
  ]);
});

test('parses basic, unquoted values, spaces, escapes and several challenges', () => {
  assert.deepEqual(parseWwwAuthenticate('Basic realm="Registry Realm"'), [{ scheme: 'basic', params: { realm: 'Registry Realm' } }]);
  assert.deepEqual(parseWwwAuthenticate('BEARER  Realm = https://x/token , service=reg,error="insufficient_scope"'), [
    { scheme: 'bearer', params: { realm: 'https://x/token', service: 'reg', error: 'insufficient_scope' } },
  ]);
  assert.deepEqual(parseWwwAuthenticate('Basic realm="a\\"b", Bearer realm="https://t/", service="s"'), [
    { scheme: 'basic', params: { realm: 'a"b' } },
    { scheme: 'bearer', params: { realm: 'https://t/', service: 's' } },
  ]);
  assert.deepEqual(parseWwwAuthenticate(['Negotiate abc==', 'Basic']), [
    { scheme: 'negotiate', params: {}, token68: 'abc==' },
    { scheme: 'basic', params: {} },
  ]);
  assert.deepEqual(parseWwwAuthenticate('Basic, Bearer realm="r"'), [
    { scheme: 'basic', params: {} },
    { scheme: 'bearer', params: { realm: 'r' } },
  ]);
  assert.deepEqual(parseWwwAuthenticate('Bearer realm="unterminated'), [{ scheme: 'bearer', params: { realm: 'unterminated' } }]);
  assert.deepEqual(parseWwwAuthenticate(''), []);
  assert.deepEqual(parseWwwAuthenticate(undefined), []);
});

test('loopback registries (plain HTTP may follow TLS there), docker.io mapped to registry-1, TLS first everywhere', () => {
  for (const r of ['localhost', 'localhost:5000', '127.0.0.1', '127.1.2.3:80', '[::1]', '[::1]:5000']) {
    assert.equal(isLocalRegistry(r), true, r);
  }
  for (const r of ['example.com', 'localhost.example.com', '128.0.0.1:5000', '10.0.0.1']) assert.equal(isLocalRegistry(r), false, r);
  assert.equal(defaultServer('docker.io').href, 'https://registry-1.docker.io/v2');
  assert.equal(defaultServer('localhost:5000').href, 'https://localhost:5000/v2');
  assert.equal(defaultServer('[::1]:5000').href, 'https://[::1]:5000/v2');
  assert.equal(defaultServer('ghcr.io').href, 'https://ghcr.io/v2');
});

test('platforms: parsing, normalisation and selection from an index', () => {
  assert.deepEqual(parsePlatform('linux/arm64/v8'), { os: 'linux', architecture: 'arm64', variant: 'v8' });
  assert.deepEqual(parsePlatform('linux/x86_64'), { os: 'linux', architecture: 'amd64' });
  assert.deepEqual(normalizePlatform({ os: 'linux', architecture: 'aarch64' }), { os: 'linux', architecture: 'arm64' });
  assert.throws(
    () => parsePlatform('linux/'),
    (e: unknown) => isClipError(e) && e.code === 'BAD_ARGUMENT',
  );

  const d = (architecture: string, variant?: string, os = 'linux'): Descriptor => ({
    mediaType: 'application/vnd.oci.image.manifest.v1+json',
    digest: `sha256:${architecture.padEnd(8, '0')}`,
    size: 1,
    platform: variant ? { os, architecture, variant } : { os, architecture },
  });
  const list = [d('amd64'), d('arm', 'v6'), d('arm', 'v7'), d('arm64', 'v8'), d('unknown', undefined, 'unknown')];
  assert.equal(selectPlatform('x', list, { os: 'linux', architecture: 'amd64' }), list[0]);
  assert.equal(selectPlatform('x', list, { os: 'linux', architecture: 'arm64' }), list[3]);
  assert.equal(selectPlatform('x', list, { os: 'linux', architecture: 'arm64', variant: 'v8' }), list[3]);
  assert.equal(selectPlatform('x', list, { os: 'linux', architecture: 'arm', variant: 'v7' }), list[2]);
  assert.equal(selectPlatform('x', list, { os: 'linux', architecture: 'arm' }), list[2]);
  assert.equal(selectPlatform('x', [list[1]!], { os: 'linux', architecture: 'arm', variant: 'v7' }), list[1]);
  assert.throws(
    () => selectPlatform('reg/app', list, { os: 'linux', architecture: 's390x' }),
    (e: unknown) =>
      isClipError(e) &&
      e.code === 'NOT_FOUND' &&
      e.message === 'reg/app has no image for platform linux/s390x; available: linux/amd64, linux/arm/v6, linux/arm/v7, linux/arm64/v8',
  );
  // A single entry without a platform is taken as is.
  const bare = { mediaType: 'application/vnd.oci.image.manifest.v1+json', digest: 'sha256:0', size: 1 };
  assert.equal(selectPlatform('x', [bare], { os: 'linux', architecture: 'amd64' }), bare);
});
