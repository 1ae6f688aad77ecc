// parseReference/formatReference against docker's normalisation rules, and
// the BAD_REFERENCE messages for references docker would refuse.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { isClipError } from '../src/errors.js';
import { formatReference, parseReference } from '../src/oci/index.js';
import { parseLayoutReference } from '../src/oci/layout.js';

const HEX = 'a'.repeat(64);

test('parseReference normalises like docker', () => {
  const cases: [string, string, Record<string, string | undefined>][] = [
    ['alpine', 'docker.io/library/alpine:latest', { registry: 'docker.io', repository: 'library/alpine', tag: 'latest' }],
    ['alpine:3.19', 'docker.io/library/alpine:3.19', { tag: '3.19' }],
    ['library/alpine', 'docker.io/library/alpine:latest', {}],
    ['user/repo', 'docker.io/user/repo:latest', { repository: 'user/repo' }],
    ['user/repo/sub:v1', 'docker.io/user/repo/sub:v1', { repository: 'user/repo/sub' }],
    ['docker.io/alpine', 'docker.io/library/alpine:latest', {}],
    ['index.docker.io/alpine', 'docker.io/library/alpine:latest', { registry: 'docker.io' }],
    ['docker.io/user/repo', 'docker.io/user/repo:latest', {}],
    ['ghcr.io/org/app:1.2.3', 'ghcr.io/org/app:1.2.3', { registry: 'ghcr.io', repository: 'org/app' }],
    ['localhost/repo', 'localhost/repo:latest', { registry: 'localhost', repository: 'repo' }],
    ['localhost:5000/repo:tag', 'localhost:5000/repo:tag', { registry: 'localhost:5000', tag: 'tag' }],
    ['127.0.0.1:5000/a/b', '127.0.0.1:5000/a/b:latest', { registry: '127.0.0.1:5000', repository: 'a/b' }],
    ['host:5000/repo', 'host:5000/repo:latest', { registry: 'host:5000' }],
    ['[::1]:5000/repo', '[::1]:5000/repo:latest', { registry: '[::1]:5000' }],
    ['Foo/bar', 'Foo/bar:latest', { registry: 'Foo', repository: 'bar' }],
    ['localhost:5000', 'docker.io/library/localhost:5000', { repository: 'library/localhost', tag: '5000' }],
    ['a.b-c.example.com/x_y/z__w/q-r:T_1.0-x', 'a.b-c.example.com/x_y/z__w/q-r:T_1.0-x', {}],
    [`alpine@sha256:${HEX}`, `docker.io/library/alpine@sha256:${HEX}`, { tag: undefined, digest: `sha256:${HEX}` }],
    [`alpine:3@sha256:${HEX}`, `docker.io/library/alpine:3@sha256:${HEX}`, { tag: '3', digest: `sha256:${HEX}` }],
    [`host:5000/r@sha256:${HEX}`, `host:5000/r@sha256:${HEX}`, { registry: 'host:5000', repository: 'r' }],
  ];
  for (const [input, formatted, fields] of cases) {
    const ref = parseReference(input);
    assert.equal(formatReference(ref), formatted, input);
    for (const [k, v] of Object.entries(fields)) assert.equal(ref[k as keyof typeof ref], v, `${input}: ${k}`);
  }
});

test('parseReference rejects what docker rejects, saying why', () => {
  const cases: [string, RegExp][] = [
    ['', /empty/],
    ['Alpine', /lowercase/],
    ['docker.io/User/repo', /lowercase/],
    ['host:5000/Repo', /lowercase/],
    ['alpine:', /invalid tag/],
    ['alpine:-x', /invalid tag/],
    [`alpine:${'x'.repeat(129)}`, /invalid tag/],
    ['alpine@sha256:abc', /64 lowercase hex/],
    [`alpine@sha256:${'A'.repeat(64)}`, /64 lowercase hex/],
    [`alpine@md5:${HEX}`, /unsupported digest algorithm/],
    ['alpine@', /invalid digest/],
    [HEX, /image ID/],
    ['user//repo', /empty path component/],
    ['user/repo/', /empty path component/],
    ['-host/repo', /invalid repository name component|invalid registry/],
    ['repo-/x', /invalid repository name component/],
    ['a..b/c', /invalid registry host/],
    ['host:port/repo', /invalid registry host/],
    ['ghcr.io/', /missing repository|empty path/],
    ['with space', /whitespace/],
    [`x.io/${'a'.repeat(260)}`, /longer than 255/],
  ];
  for (const [input, message] of cases) {
    assert.throws(
      () => parseReference(input),
      (e: unknown) =>
        isClipError(e) && e.code === 'BAD_REFERENCE' && message.test(e.message) && e.message.includes('invalid image reference'),
      `${JSON.stringify(input)} should fail with ${message}`,
    );
  }
});

test('parseLayoutReference splits oci:DIR[:TAG] at the first colon', () => {
  assert.deepEqual(parseLayoutReference('oci:/tmp/img'), { dir: '/tmp/img' });
  assert.deepEqual(parseLayoutReference('oci:/tmp/img:v1'), { dir: '/tmp/img', tag: 'v1' });
  assert.deepEqual(parseLayoutReference('oci:img:example.com/app:1'), { dir: 'img', tag: 'example.com/app:1' });
  assert.throws(() => parseLayoutReference('oci:'), /missing directory/);
  assert.throws(() => parseLayoutReference('oci:/x:'), /empty tag/);
});
