// S3 keys become URL paths, and URL parsers resolve "." and ".." segments
// (also spelled %2e): such keys are refused, from the command line and from
// an index, before any request; every other key reaches S3 as itself, checked
// against the fake S3 (s3rver) on 127.0.0.1.

import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { mkdir, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { encodeIndex, loadIndex } from '../src/clip.js';
import { ClipError } from '../src/errors.js';
import { readBody } from '../src/http/client.js';
import { S3Client } from '../src/s3/client.js';
import { parseS3Location, parseS3Url } from '../src/s3/location.js';
import { runClip } from './helpers/cli.js';
import { clipWorkspace, sweepClipMounts, type ClipWorkspace } from './helpers/mounts.js';
import { S3_KEY, startS3Server, type S3Server } from './helpers/s3-server.js';

describe('S3 keys', () => {
  let ws: ClipWorkspace;
  let s3: S3Server;
  let env: NodeJS.ProcessEnv;
  const saved: Record<string, string | undefined> = {};
  before(async () => {
    sweepClipMounts();
    ws = await clipWorkspace('s3keys');
    s3 = await startS3Server();
    env = {
      ...ws.env,
      ...S3_KEY,
      AWS_REGION: 'us-east-1',
      AWS_ENDPOINT_URL: '',
      AWS_ENDPOINT_URL_S3: '',
      AWS_PROFILE: '',
      AWS_SHARED_CREDENTIALS_FILE: path.join(ws.dir, 'none'),
      AWS_CONFIG_FILE: path.join(ws.dir, 'none'),
    };
    // This process talks to S3 too (S3Client): the same credentials.
    for (const [k, v] of Object.entries(env)) {
      if (k.startsWith('AWS_')) {
        saved[k] = process.env[k];
        process.env[k] = v;
      }
    }
  });
  after(async () => {
    for (const [k, v] of Object.entries(saved)) {
      if (v === undefined) delete process.env[k];
      else process.env[k] = v;
    }
    sweepClipMounts();
    await s3?.stop();
    if (ws) await rm(ws.dir, { recursive: true, force: true });
  });

  async function put(key: string, body: string): Promise<void> {
    const client = await S3Client.open({ bucket: s3.bucket, key, endpoint: `http://${s3.host}` });
    try {
      const res = await client.request('PUT', { body });
      assert.equal(res.status, 200, `PUT ${key}`);
      await readBody(res, 1 << 20, 'PUT answer');
    } finally {
      await client.close();
    }
  }

  async function get(key: string): Promise<string | undefined> {
    const client = await S3Client.open({ bucket: s3.bucket, key, endpoint: `http://${s3.host}` });
    try {
      const res = await client.request('GET');
      const body = (await readBody(res, 1 << 20, 'GET answer')).toString();
      return res.status === 200 ? body : undefined;
    } finally {
      await client.close();
    }
  }

  it('refuses "." and ".." key segments in s3:// URLs, also spelled %2e in an index, and bad buckets and regions', () => {
    for (const url of ['s3://b-1/a/../x', 's3://b-1/../x', 's3://b-1/./x', 's3://b-1/a/..', 's3://b-1/a/./b']) {
      assert.throws(
        () => parseS3Url(url),
        (e: unknown) => e instanceof ClipError && /segment, which URLs resolve to another key/.test(e.message),
        url,
      );
    }
    // Dots inside a segment, and a literal "%2e%2e" typed by a user (it is the key's text), are ordinary keys.
    assert.deepEqual(parseS3Url('s3://b-1/a..b/.x/%2e%2e'), { bucket: 'b-1', key: 'a..b/.x/%2e%2e' });
    for (const loc of [
      's3://b-1/a/%2e%2e/x',
      's3://b-1/%2E./x',
      's3://b-1/.%2e/x',
      's3://b-1/%2e/x',
      's3://b-1/a/../x',
      's3://../x',
      's3://b#1/x',
      's3://b-1/x?region=evil.example%2Fx',
    ]) {
      assert.throws(
        () => parseS3Location(loc),
        (e: unknown) => e instanceof ClipError && e.code === 'BAD_INDEX',
        loc,
      );
    }
  });

  it('every other key reaches S3 as itself: no normalisation, no other key touched', async () => {
    await put('victim', 'theirs');
    const odd = 'dir/%2e%2e/a b+c?d#é/..x/victim';
    await put(odd, 'mine');
    assert.equal(await get(odd), 'mine');
    assert.equal(await get('victim'), 'theirs', 'the key next to it is untouched');
    const client = await S3Client.open({ bucket: s3.bucket, key: odd, endpoint: `http://${s3.host}` });
    assert.equal(client.objectUrl().pathname, `/${s3.bucket}/dir/%252e%252e/a%20b%2Bc%3Fd%23%C3%A9/..x/victim`);
    await client.close();
    await assert.rejects(S3Client.open({ bucket: s3.bucket, key: 'a/../victim', endpoint: `http://${s3.host}` }), ClipError);
  });

  it('clip archive --s3 with a ".." key is refused before anything is uploaded', async () => {
    const src = path.join(ws.dir, 'tree');
    await mkdir(src, { recursive: true });
    await writeFile(path.join(src, 'f.txt'), 'x');
    await put('victim', 'theirs');
    const out = path.join(ws.dir, 'dots.clip');
    const r = await runClip(
      ['archive', src, '-o', out, '--no-xattrs', '--s3', `s3://${s3.bucket}/images/../victim`, '--endpoint', `http://${s3.host}`],
      { env },
    );
    assert.equal(r.code, 1, r.stderr);
    assert.match(r.stderr, /^clip: bad S3 URL "s3:\/\/[^"]+\/images\/\.\.\/victim": its key has a "\.\." segment/);
    assert.equal(await get('victim'), 'theirs', 'the object ".." would have reached is untouched');
    assert.ok(!existsSync(out), 'no index written');
  });

  it('an index whose recorded S3 location has a %2e%2e segment is refused at mount, with no request', async () => {
    const src = path.join(ws.dir, 'tree2');
    await mkdir(src, { recursive: true });
    await writeFile(path.join(src, 'f.txt'), 'hello');
    const good = path.join(ws.dir, 'good.clip');
    const a = await runClip(
      ['archive', src, '-o', good, '--no-xattrs', '--s3', `s3://${s3.bucket}/images/good`, '--endpoint', `http://${s3.host}`],
      { env },
    );
    assert.equal(a.code, 0, a.stderr);
    const index = await loadIndex(good);
    const location = index.image.location;
    assert.match(location, /\/images\/good\?/);
    const hostile = path.join(ws.dir, 'hostile.clip');
    await writeFile(
      hostile,
      encodeIndex({ ...index, image: { ...index.image, location: location.replace('/images/good', '/images/%2e%2e/victim') } }),
    );
    const mp = path.join(ws.dir, 'mnt');
    await mkdir(mp, { recursive: true });
    const m = await runClip(['mount', hostile, mp], { env });
    // Mounted means the bug: unmount before failing.
    if (m.code === 0) await runClip(['umount', mp], { env });
    assert.equal(m.code, 1, m.stderr);
    assert.match(m.stderr, /bad S3 location .*its key has a "\.\." segment/);
  });
});
