// S3 credentials from the AWS default chain, against s3rver on 127.0.0.1
// behind a gate that logs which key and session token signed each request
// (s3rver checks only that the key exists) and refuses expired tokens: a
// named profile in a shared credentials file, credential_process, ECS
// container credentials (refreshed before they expire, under a live mount),
// anonymous access, and a clear error when no source gives credentials. No
// test reaches the network: instance metadata is disabled everywhere.

import assert from 'node:assert/strict';
import { chmod, mkdir, open, readFile, rm, writeFile } from 'node:fs/promises';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { isMounted } from '../src/fuse/index.js';
import { CredentialCache, refreshTime } from '../src/s3/credential-cache.js';
import type { AwsCredentials } from '../src/s3/credentials.js';
import { runClip } from './helpers/cli.js';
import { clipWorkspace, sweepClipMounts, type ClipWorkspace } from './helpers/mounts.js';
import { createPrng } from './helpers/prng.js';
import { startS3AuthGate, type S3AuthGate } from './helpers/s3-auth-gate.js';
import { S3_KEY, startS3Server, type S3Server } from './helpers/s3-server.js';

const BIG_SIZE = 12 * 1024 * 1024;
/** Read after the first credentials expired: in the last 4 MiB span, far from what read-ahead fetched after a.txt. */
const LATE_OFFSET = 10 * 1024 * 1024;

describe('S3 credentials from the AWS default chain', () => {
  let ws: ClipWorkspace;
  let s3: S3Server;
  let gate: S3AuthGate;
  let archive: string;
  let big: Buffer;
  /** Session token -> when it expires (ms), as the container credentials server handed them out. */
  const expiries = new Map<string, number>();
  /** Every AWS variable that could bring in this machine's credentials, cleared; instance metadata off. */
  let bare: NodeJS.ProcessEnv;

  before(async () => {
    sweepClipMounts();
    ws = await clipWorkspace('s3creds');
    s3 = await startS3Server();
    gate = await startS3AuthGate(s3.host, (token) => (expiries.get(token) ?? Infinity) <= Date.now());
    const home = path.join(ws.dir, 'home');
    await mkdir(home);
    bare = {
      ...ws.env,
      HOME: home,
      AWS_EC2_METADATA_DISABLED: 'true',
      AWS_ACCESS_KEY_ID: '',
      AWS_SECRET_ACCESS_KEY: '',
      AWS_SESSION_TOKEN: '',
      AWS_PROFILE: '',
      AWS_DEFAULT_PROFILE: '',
      AWS_SHARED_CREDENTIALS_FILE: path.join(ws.dir, 'no-credentials'),
      AWS_CONFIG_FILE: path.join(ws.dir, 'no-config'),
      AWS_CONTAINER_CREDENTIALS_FULL_URI: '',
      AWS_CONTAINER_CREDENTIALS_RELATIVE_URI: '',
      AWS_CONTAINER_AUTHORIZATION_TOKEN: '',
      AWS_WEB_IDENTITY_TOKEN_FILE: '',
      AWS_ROLE_ARN: '',
      AWS_NO_SIGN_REQUEST: '',
      AWS_REGION: 'us-east-1',
      AWS_ENDPOINT_URL: '',
      AWS_ENDPOINT_URL_S3: '',
    };
    const src = path.join(ws.dir, 'src');
    await mkdir(src);
    await writeFile(path.join(src, 'a.txt'), 'hello from S3\n');
    big = createPrng(11).bytes(BIG_SIZE);
    await writeFile(path.join(src, 'big.bin'), big);
    archive = path.join(ws.dir, 'tree.clip');
    const r = await runClip(['archive', src, '-o', archive, '--s3', `s3://${s3.bucket}/tree.tar.gz`, '--endpoint', `http://${gate.host}`], {
      env: { ...bare, ...S3_KEY },
    });
    assert.equal(r.code, 0, r.stderr);
  });
  after(async () => {
    sweepClipMounts();
    await gate?.close();
    await s3?.stop();
    if (ws) await rm(ws.dir, { recursive: true, force: true });
  });

  /** The gate's log from here on. */
  const since = (): (() => S3AuthGate['log']) => {
    const start = gate.log.length;
    return () => gate.log.slice(start);
  };

  it('a named profile in a shared credentials file (AWS_PROFILE), not the default one', async () => {
    const file = path.join(ws.dir, 'credentials');
    await writeFile(
      file,
      '[default]\naws_access_key_id = NOBODY\naws_secret_access_key = x\n\n' +
        `[clip-test]\naws_access_key_id = ${S3_KEY.AWS_ACCESS_KEY_ID}\naws_secret_access_key = ${S3_KEY.AWS_SECRET_ACCESS_KEY}\naws_session_token = profile-token\n`,
    );
    const log = since();
    const ok = await runClip(['cat', archive, 'a.txt'], { env: { ...bare, AWS_SHARED_CREDENTIALS_FILE: file, AWS_PROFILE: 'clip-test' } });
    assert.equal(ok.code, 0, ok.stderr);
    assert.equal(ok.stdout.toString(), 'hello from S3\n');
    assert.ok(log().length > 0);
    assert.deepEqual(new Set(log().map((l) => `${l.accessKeyId} ${l.token}`)), new Set(['S3RVER profile-token']));

    const byDefault = await runClip(['cat', archive, 'a.txt'], { env: { ...bare, AWS_SHARED_CREDENTIALS_FILE: file } });
    assert.equal(byDefault.code, 1);
    assert.match(byDefault.stderr, /^clip: S3 refused .*InvalidAccessKeyId.*credentials from profile default in the shared AWS files/m);
  });

  it('credential_process: the profile runs a program and signs with what it prints', async () => {
    const calls = path.join(ws.dir, 'process-calls');
    const script = path.join(ws.dir, 'creds.sh');
    const expiration = new Date(Date.now() + 3600_000).toISOString();
    await writeFile(
      script,
      `#!/bin/sh\necho call >> ${calls}\n` +
        `printf '{"Version":1,"AccessKeyId":"${S3_KEY.AWS_ACCESS_KEY_ID}","SecretAccessKey":"${S3_KEY.AWS_SECRET_ACCESS_KEY}","SessionToken":"process-token","Expiration":"${expiration}"}'\n`,
    );
    await chmod(script, 0o755);
    const config = path.join(ws.dir, 'config-process');
    await writeFile(config, `[profile proc]\ncredential_process = ${script}\n`);
    const log = since();
    const r = await runClip(['cat', archive, 'a.txt'], { env: { ...bare, AWS_CONFIG_FILE: config, AWS_PROFILE: 'proc' } });
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout.toString(), 'hello from S3\n');
    assert.deepEqual(new Set(log().map((l) => `${l.accessKeyId} ${l.token}`)), new Set(['S3RVER process-token']));
    assert.equal((await readFile(calls, 'utf8')).trim().split('\n').length, 1, 'run once: its credentials are good for an hour');

    await writeFile(script, '#!/bin/sh\necho "no session here" >&2\nexit 3\n');
    const failed = await runClip(['cat', archive, 'a.txt'], { env: { ...bare, AWS_CONFIG_FILE: config, AWS_PROFILE: 'proc' } });
    assert.equal(failed.code, 1);
    assert.match(
      failed.stderr,
      /^clip: AWS profile "proc" has no credentials in .*config-process \(Command failed: .*creds\.sh no session here\)$/m,
    );
  });

  it('ECS container credentials: a live mount fetches a second set before the first expires, and S3 never sees an expired token', async () => {
    const requests: { auth: string | undefined; token: string }[] = [];
    let firstExpires = 0;
    const server = http.createServer((req, res) => {
      const n = requests.length + 1;
      const token = `ecs-${n}`;
      // The first set lives 3 s, the next ones an hour: how many sets there are no longer depends on how long the test takes.
      const expires = Date.now() + (n === 1 ? 3000 : 3600_000);
      if (n === 1) firstExpires = expires;
      expiries.set(token, expires);
      requests.push({ auth: req.headers['authorization'], token });
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(
        JSON.stringify({
          AccessKeyId: S3_KEY.AWS_ACCESS_KEY_ID,
          SecretAccessKey: S3_KEY.AWS_SECRET_ACCESS_KEY,
          Token: token,
          Expiration: new Date(expires).toISOString(),
        }),
      );
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    const ecs = {
      ...bare,
      ...ws.env,
      AWS_CONTAINER_CREDENTIALS_FULL_URI: `http://127.0.0.1:${(server.address() as AddressInfo).port}/v2/credentials/clip`,
      AWS_CONTAINER_AUTHORIZATION_TOKEN: 'ecs-auth',
    };
    const mp = path.join(ws.dir, 'mnt');
    await mkdir(mp);
    const log = since();
    try {
      const m = await runClip(['mount', archive, mp, '--cache-dir', path.join(ws.dir, 'cache')], { env: ecs });
      assert.equal(m.code, 0, m.stderr);
      try {
        assert.equal(await readFile(path.join(mp, 'a.txt'), 'utf8'), 'hello from S3\n');
        const daemonSets = requests.length;
        // Wait out the first set (not a timing assertion: what follows must work however late it runs).
        while (Date.now() <= firstExpires + 200) await new Promise((r) => setTimeout(r, 100));
        const fh = await open(path.join(mp, 'big.bin'), 'r');
        try {
          const buf = Buffer.alloc(64 * 1024);
          const { bytesRead } = await fh.read(buf, 0, buf.length, LATE_OFFSET);
          assert.ok(
            buf.subarray(0, bytesRead).equals(big.subarray(LATE_OFFSET, LATE_OFFSET + buf.length)),
            'right bytes after the first set expired',
          );
        } finally {
          await fh.close();
        }
        assert.ok(daemonSets >= 1);
        assert.equal(requests.length, daemonSets + 1, 'one more set was fetched');
        assert.ok(
          requests.every((r) => r.auth === 'ecs-auth'),
          'AWS_CONTAINER_AUTHORIZATION_TOKEN sent',
        );
        const entries = log();
        assert.deepEqual(
          entries.filter((l) => l.refused),
          [],
          'no request was signed with an expired token',
        );
        const last = entries.filter((l) => l.method === 'GET').at(-1)!;
        assert.equal(last.token, `ecs-${requests.length}`, 'the late read was signed with the new set');
      } finally {
        await runClip(['umount', mp], { env: ecs });
        assert.ok(!isMounted(mp));
      }
    } finally {
      await new Promise((r) => server.close(r));
    }
  });

  it('anonymous with AWS_NO_SIGN_REQUEST=true; otherwise no credential source is a clear error naming what was tried', async () => {
    const log = since();
    const anonymous = await runClip(['cat', archive, 'a.txt'], { env: { ...bare, AWS_NO_SIGN_REQUEST: 'true' } });
    assert.equal(anonymous.code, 0, anonymous.stderr);
    assert.ok(log().length > 0 && log().every((l) => l.accessKeyId === undefined), 'unsigned requests');

    const none = await runClip(['cat', archive, 'a.txt'], { env: bare });
    assert.equal(none.code, 1);
    const line = none.stderr.split('\n').find((l) => l.startsWith('clip: '));
    assert.ok(line, none.stderr);
    assert.match(line, /^clip: no AWS credentials found; looked at the environment \(AWS_ACCESS_KEY_ID/);
    assert.match(line, /profile "default" in .*no-credentials and .*no-config/);
    assert.match(line, /container credentials/);
    assert.match(line, /not EC2 instance metadata \(AWS_EC2_METADATA_DISABLED\)/);
    assert.match(line, /AWS_NO_SIGN_REQUEST=true/);
    assert.doesNotMatch(none.stderr, /^\s+at /m, 'a message, not a stack trace');
  });
});

describe('credential cache', () => {
  const creds = (token: string, expiresAt?: number): AwsCredentials => ({
    accessKeyId: 'K',
    secretAccessKey: 'S',
    sessionToken: token,
    source: 'test',
    ...(expiresAt !== undefined ? { expiration: new Date(expiresAt) } : {}),
  });

  it('refreshes 5 minutes before expiry, or at half the lifetime of short-lived credentials; long-term keys never', () => {
    assert.equal(refreshTime(creds('a', 3600_000), 0), 3300_000);
    assert.equal(refreshTime(creds('a', 4000), 0), 2000);
    assert.equal(refreshTime(creds('a'), 0), Infinity);
  });

  it('keeps credentials until due, looks once for concurrent callers, and keeps good ones when an early refresh fails', async () => {
    let now = 0;
    let calls = 0;
    let fail = false;
    const cache = new CredentialCache(
      async () => {
        calls++;
        if (fail) throw new Error('endpoint down');
        return creds(`t${calls}`, now + 1000);
      },
      () => now,
    );
    const [a, b] = await Promise.all([cache.get(), cache.get()]);
    assert.equal(calls, 1);
    assert.equal(a.sessionToken, 't1');
    assert.equal(b.sessionToken, 't1');
    now = 400;
    assert.equal((await cache.get()).sessionToken, 't1', 'not due yet');
    now = 600;
    assert.equal((await cache.get()).sessionToken, 't2', 'due: looked up again before expiry');
    fail = true;
    now = 1200;
    assert.equal((await cache.get()).sessionToken, 't2', 'refresh failed, t2 still good until 1600');
    now = 1700;
    await assert.rejects(cache.get(), /endpoint down/, 'expired and no fresh ones: the error');
  });
});
