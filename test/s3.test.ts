// S3 archives against an S3-compatible server (s3rver) on 127.0.0.1, behind a
// proxy that drops connections: upload (multipart), a small local index,
// mount and read everything; a connection dropped during an upload or a read
// is retried; an upload that keeps failing stops with a resume hint and the
// same command then sends only the missing parts; credentials come from the
// environment or a shared credentials file; signing matches AWS's vectors.

import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdir, open, readFile, rm, stat, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { isMounted } from '../src/fuse/index.js';
import { loadIndex } from '../src/index/load.js';
import { defaultRegion } from '../src/s3/credentials.js';
import { formatS3Location, parseS3Location, parseS3Url } from '../src/s3/location.js';
import { signRequest } from '../src/s3/sign.js';
import { S3Client } from '../src/s3/client.js';
import { newUploadState, uploadFile } from '../src/s3/multipart-upload.js';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { runClip } from './helpers/cli.js';
import { startDropProxy, type DropProxy } from './helpers/drop-proxy.js';
import { clipWorkspace, mountRecords, sweepClipMounts, type ClipWorkspace } from './helpers/mounts.js';
import { createPrng } from './helpers/prng.js';
import { S3_KEY, startS3Server, type S3Server } from './helpers/s3-server.js';
import { buildSourceTree, SOCKET, type SourceTree } from './helpers/source-tree.js';
import { compareTrees, walkTree } from './helpers/tree-walk.js';

/** Three 8 MiB parts (the last one short), incompressible. */
const HUGE = 'data/huge.bin';
const HUGE_SIZE = 20 * 1024 * 1024 + 777;
/** Fail fast: stalls after 1 s, retries stop after 3 s. */
const LIMITS = { CLIP_STALL_TIMEOUT_MS: '1000', CLIP_REQUEST_DEADLINE_MS: '3000' };

const sha256 = (b: Buffer): string => `sha256:${createHash('sha256').update(b).digest('hex')}`;

describe('S3 archives', () => {
  let ws: ClipWorkspace;
  let s3: S3Server;
  let proxy: DropProxy;
  let tree: SourceTree;
  let huge: Buffer;
  let env: NodeJS.ProcessEnv;

  before(async () => {
    sweepClipMounts();
    ws = await clipWorkspace('s3');
    s3 = await startS3Server();
    proxy = await startDropProxy(s3.host);
    tree = await buildSourceTree(path.join(ws.dir, 'src'));
    huge = createPrng(7).bytes(HUGE_SIZE);
    await writeFile(path.join(tree.root, HUGE), huge);
    // Credentials from a shared credentials file and a profile (as on a developer's machine); no host config leaks in.
    const creds = path.join(ws.dir, 'aws-credentials');
    await writeFile(
      creds,
      `[default]\naws_access_key_id = nobody\naws_secret_access_key = x\n\n[clip-test]\naws_access_key_id = ${S3_KEY.AWS_ACCESS_KEY_ID}\naws_secret_access_key = ${S3_KEY.AWS_SECRET_ACCESS_KEY}\n`,
    );
    env = {
      ...ws.env,
      ...LIMITS,
      AWS_SHARED_CREDENTIALS_FILE: creds,
      AWS_CONFIG_FILE: path.join(ws.dir, 'no-aws-config'),
      AWS_PROFILE: 'clip-test',
      AWS_ACCESS_KEY_ID: '',
      AWS_SECRET_ACCESS_KEY: '',
      AWS_REGION: '',
      AWS_DEFAULT_REGION: '',
      AWS_ENDPOINT_URL: '',
      AWS_ENDPOINT_URL_S3: '',
      // No test reaches the network: the chain's last source would be 169.254.169.254.
      AWS_EC2_METADATA_DISABLED: 'true',
    };
  });
  after(async () => {
    sweepClipMounts();
    await proxy?.close();
    await s3?.stop();
    await tree?.close();
    if (ws) await rm(ws.dir, { recursive: true, force: true });
  });

  const archive = (key: string, output: string, extra: string[] = []) =>
    runClip(
      ['archive', tree.root, '-o', output, '--s3', `s3://${s3.bucket}/${key}`, '--endpoint', `http://${proxy.host}`, '--json', ...extra],
      { env },
    );

  async function storedObject(key: string): Promise<Buffer> {
    const r = await s3.get(key);
    assert.equal(r.status, 200, `object ${key} is in the bucket`);
    return r.body;
  }

  it('uploads the data, writes a small index that says S3 archive; mount reads everything equal to the source', async () => {
    const out = path.join(ws.dir, 'tree-s3.clip');
    const r = await archive('trees/tree.tar.gz', out);
    assert.equal(r.code, 0, r.stderr);
    const summary = JSON.parse(r.stdout.toString());
    assert.equal(summary.kind, 's3');
    assert.equal(summary.uploadedParts, 3);
    assert.ok(!existsSync(`${out}.s3-upload`), 'staging removed');
    const index = await loadIndex(out);
    assert.equal(index.kind, 's3');
    assert.ok((await stat(out)).size < summary.dataBytes / 100, 'the local index is small');
    assert.equal(sha256(await storedObject('trees/tree.tar.gz')), index.layers[0]!.digest, 'the object is the data part');
    const text = (await runClip(['inspect', out], { env })).stdout.toString();
    assert.match(text, /^kind: +S3 archive$/m);
    assert.match(
      text,
      new RegExp(`^data: +s3://${s3.bucket}/trees/tree\\.tar\\.gz\\?region=us-east-1&endpoint=http%3A%2F%2F127\\.0\\.0\\.1%3A\\d+$`, 'm'),
    );

    const mp = path.join(ws.dir, 'mnt-s3');
    await mkdir(mp);
    const m = await runClip(['mount', out, mp, '--cache-dir', path.join(ws.dir, 'cache-1')], { env });
    assert.equal(m.code, 0, m.stderr);
    try {
      assert.deepEqual(compareTrees(await walkTree(tree.root), await walkTree(mp), { ignore: (p) => p === SOCKET }), []);
    } finally {
      await runClip(['umount', mp], { env });
      assert.ok(!isMounted(mp));
    }
    const cat = await runClip(['cat', out, HUGE], { env });
    assert.equal(cat.code, 0, cat.stderr);
    assert.ok(cat.stdout.equals(huge));
  });

  it('a connection dropped during the upload is retried: the part is sent again, the object is intact', async () => {
    const out = path.join(ws.dir, 'dropped-upload.clip');
    const start = proxy.log.length;
    proxy.drop({ method: 'PUT', url: /partNumber=2&/, times: 1, after: 1024 * 1024 });
    const r = await archive('trees/dropped.tar.gz', out);
    proxy.heal();
    assert.equal(r.code, 0, r.stderr);
    const part2 = proxy.log.slice(start).filter((l) => l.method === 'PUT' && /partNumber=2&/.test(l.url));
    assert.deepEqual(
      part2.map((l) => l.dropped),
      [true, false],
    );
    assert.equal(sha256(await storedObject('trees/dropped.tar.gz')), (await loadIndex(out)).layers[0]!.digest);
  });

  it('an upload that keeps failing stops with a resume hint; the same command resumes and sends only the missing part', async () => {
    const out = path.join(ws.dir, 'resumed.clip');
    const staging = `${out}.s3-upload`;
    proxy.drop({ method: 'PUT', url: /partNumber=3&/, times: Infinity, after: 256 * 1024 });
    const failed = await archive('trees/resumed.tar.gz', out);
    proxy.heal();
    assert.equal(failed.code, 1);
    assert.match(failed.stderr, /upload to s3:\/\/clip-test\/trees\/resumed\.tar\.gz at http:\/\/127\.0\.0\.1:\d+ failed: /);
    assert.match(failed.stderr, /2 of 3 parts are uploaded; run the same command again to resume/);
    assert.ok(!existsSync(out), 'no index until the data is in S3');
    const state = JSON.parse(await readFile(path.join(staging, 'state.json'), 'utf8'));
    assert.deepEqual(Object.keys(state.parts).sort(), ['1', '2']);
    assert.equal((await s3.get('trees/resumed.tar.gz')).status, 404, 'no object yet');

    const start = proxy.log.length;
    const resumed = await archive('trees/resumed.tar.gz', out);
    assert.equal(resumed.code, 0, resumed.stderr);
    assert.match(resumed.stderr, /resuming the interrupted upload/);
    const summary = JSON.parse(resumed.stdout.toString());
    assert.equal(summary.resumedParts, 2);
    assert.equal(summary.uploadedParts, 1);
    const puts = proxy.log
      .slice(start)
      .filter((l) => l.method === 'PUT')
      .map((l) => /partNumber=(\d+)/.exec(l.url)![1]);
    assert.deepEqual(puts, ['3'], 'only the missing part went up again');
    assert.ok(!existsSync(staging));
    const index = await loadIndex(out);
    assert.equal(sha256(await storedObject('trees/resumed.tar.gz')), index.layers[0]!.digest);
    const cat = await runClip(['cat', out, HUGE], { env });
    assert.ok(cat.stdout.equals(huge), cat.stderr);
  });

  it('reads through the mount: a dropped connection is retried; S3 unreachable gives EIO, and reads work again once it is back', async () => {
    const out = path.join(ws.dir, 'tree-s3.clip');
    const mp = path.join(ws.dir, 'mnt-faults');
    await mkdir(mp);
    const m = await runClip(['mount', out, mp, '--cache-dir', path.join(ws.dir, 'cache-2')], { env });
    assert.equal(m.code, 0, m.stderr);
    try {
      const fh = await open(path.join(mp, HUGE), 'r');
      try {
        const buf = Buffer.alloc(64 * 1024);
        const readAt = async (offset: number): Promise<Buffer> => {
          const { bytesRead } = await fh.read(buf, 0, buf.length, offset);
          return Buffer.from(buf.subarray(0, bytesRead));
        };
        const start = proxy.log.length;
        proxy.drop({ method: 'GET', url: /trees\/tree\.tar\.gz/, times: 1, after: 1000 });
        assert.ok((await readAt(1 << 20)).equals(huge.subarray(1 << 20, (1 << 20) + buf.length)), 'right bytes after a dropped read');
        const gets = proxy.log.slice(start).filter((l) => l.method === 'GET');
        assert.ok(gets.length >= 2 && gets[0]!.dropped && !gets[gets.length - 1]!.dropped, JSON.stringify(gets));

        proxy.drop({ method: 'GET', url: /trees\/tree\.tar\.gz/, times: Infinity, after: 0 });
        const far = 16 << 20;
        const t0 = Date.now();
        await assert.rejects(readAt(far), { code: 'EIO' });
        assert.ok(Date.now() - t0 < 20_000, 'the failure is bounded in time');
        proxy.heal();
        assert.ok((await readAt(far)).equals(huge.subarray(far, far + buf.length)), 'reads again once S3 is back');
      } finally {
        await fh.close();
      }
      const [rec] = (await mountRecords(ws)) as unknown as { log: string }[];
      assert.match(await readFile(rec!.log, 'utf8'), /read failed/);
    } finally {
      proxy.heal();
      await runClip(['umount', mp], { env });
      assert.ok(!isMounted(mp));
    }
  });

  it('refused credentials fail before anything is archived, naming where they came from', async () => {
    const out = path.join(ws.dir, 'refused.clip');
    const wrong = await runClip(['archive', tree.root, '-o', out, '--s3', `s3://${s3.bucket}/x`, '--endpoint', `http://${s3.host}`], {
      env: { ...env, AWS_ACCESS_KEY_ID: 'WRONG', AWS_SECRET_ACCESS_KEY: 'WRONG' },
    });
    assert.equal(wrong.code, 1);
    assert.match(wrong.stderr, /^clip: S3 refused access to s3:\/\/clip-test\/x .*credentials from environment/m);
    const noProfile = await runClip(['archive', tree.root, '-o', out, '--s3', `s3://${s3.bucket}/x`, '--endpoint', `http://${s3.host}`], {
      env: { ...env, AWS_PROFILE: 'nope' },
    });
    assert.equal(noProfile.code, 1);
    assert.match(noProfile.stderr, /AWS profile "nope" has no credentials/);
    assert.ok(!existsSync(out) && !existsSync(`${out}.s3-upload`), 'nothing written');
  });
});

describe('S3 pieces', () => {
  it('signs requests exactly like AWS SigV4 (AWS S3 documentation examples)', () => {
    const creds = { accessKeyId: 'AKIAIOSFODNN7EXAMPLE', secretAccessKey: 'wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY', source: 'test' };
    const empty = 'e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855';
    const sign = (q: string): string =>
      signRequest(
        {
          method: 'GET',
          url: new URL(`https://examplebucket.s3.amazonaws.com/${q}`),
          region: 'us-east-1',
          date: '20130524T000000Z',
          headers: { 'x-amz-content-sha256': empty },
        },
        creds,
      )['authorization']!;
    assert.match(sign('?lifecycle'), /Signature=fea454ca298b7da1c68078a5d1bdbfbbe0d65c699e0f91ac7a200a0136783543$/);
    assert.match(sign('?max-keys=2&prefix=J'), /Signature=34b48302e7b5fa45bde8084f4b7868a86f0a534bc59db6670ed5711ef69dc6f7$/);
  });

  it('finds the region the AWS way: environment first, then the profile in the config file (credentials: s3-credentials.test.ts)', async () => {
    const dir = path.join(path.dirname(new URL(import.meta.url).pathname), `aws-${process.pid}`);
    await mkdir(dir, { recursive: true });
    try {
      await writeFile(path.join(dir, 'config'), '[default]\nregion = eu-west-1\n[profile dev]\nregion = ap-south-1\n');
      const files = { AWS_CONFIG_FILE: path.join(dir, 'config') };
      assert.equal(await defaultRegion({ ...files }), 'eu-west-1');
      assert.equal(await defaultRegion({ ...files, AWS_PROFILE: 'dev' }), 'ap-south-1');
      assert.equal(await defaultRegion({ ...files, AWS_REGION: 'us-west-2' }), 'us-west-2');
      assert.equal(await defaultRegion({ AWS_CONFIG_FILE: path.join(dir, 'none') }), 'us-east-1');
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  it('resumes with ListParts where the server has it: parts S3 holds are kept even if the state lost them; a vanished upload starts over', async () => {
    const dir = path.join(path.dirname(new URL(import.meta.url).pathname), `listparts-${process.pid}`);
    await mkdir(dir, { recursive: true });
    const file = path.join(dir, 'data');
    const data = createPrng(3).bytes(8 * 1024 * 1024 * 2 + 100);
    await writeFile(file, data);
    const etag = (n: number): string => `"etag-${n}"`;
    const requests: string[] = [];
    let held = [1, 2];
    const server = http.createServer((req, res) => {
      const u = new URL(req.url!, 'http://x');
      requests.push(`${req.method} ${u.searchParams.get('partNumber') ?? ''}${u.searchParams.has('uploads') ? 'uploads' : ''}`);
      req.resume();
      req.on('end', () => {
        if (req.method === 'GET' && u.searchParams.get('uploadId') === 'gone')
          return void res.writeHead(404).end('<Error><Code>NoSuchUpload</Code></Error>');
        if (req.method === 'GET') {
          const parts = held
            .map((n) => `<Part><PartNumber>${n}</PartNumber><ETag>&quot;etag-${n}&quot;</ETag><Size>${8 * 1024 * 1024}</Size></Part>`)
            .join('');
          return void res.writeHead(200).end(`<ListPartsResult><IsTruncated>false</IsTruncated>${parts}</ListPartsResult>`);
        }
        if (req.method === 'POST' && u.searchParams.has('uploads'))
          return void res.writeHead(200).end('<InitiateMultipartUploadResult><UploadId>fresh</UploadId></InitiateMultipartUploadResult>');
        if (req.method === 'PUT') return void res.writeHead(200, { etag: etag(Number(u.searchParams.get('partNumber'))) }).end();
        if (req.method === 'POST') return void res.writeHead(200).end('<CompleteMultipartUploadResult/>');
        res.writeHead(200, { 'content-length': String(data.length) }).end();
      });
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    const endpoint = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
    // This server takes any request: anonymous ones, so that no credential source of this machine is looked at.
    process.env['AWS_NO_SIGN_REQUEST'] = 'true';
    const client = await S3Client.open({ bucket: 'b', key: 'k', region: 'us-east-1', endpoint }).finally(() => {
      delete process.env['AWS_NO_SIGN_REQUEST'];
    });
    try {
      const state = { ...newUploadState('s3://b/k', data.length, 'sha256:x'), uploadId: 'old', parts: {} };
      const r = await uploadFile(client, file, state, async () => undefined);
      assert.deepEqual([r.resumedParts, r.uploadedParts], [2, 1]);
      assert.deepEqual(
        requests.filter((q) => q.startsWith('PUT')),
        ['PUT 3'],
      );
      requests.length = 0;
      held = [];
      const again = await uploadFile(
        client,
        file,
        { ...newUploadState('s3://b/k', data.length, 'sha256:x'), uploadId: 'gone', parts: { 1: '"x"' } },
        async () => undefined,
      );
      assert.deepEqual([again.resumedParts, again.uploadedParts], [0, 3]);
      assert.ok(requests.includes('POST uploads'), 'a new upload was started');
    } finally {
      await client.close();
      await new Promise((r) => server.close(r));
      await rm(dir, { recursive: true, force: true });
    }
  });

  it('S3 locations round-trip keys with odd characters; bad URLs are refused', () => {
    const loc = { bucket: 'b-1', key: 'dir/a b+c?d#é', region: 'eu-west-1', endpoint: 'http://127.0.0.1:9000' };
    assert.deepEqual(parseS3Location(formatS3Location(loc)), loc);
    assert.deepEqual(parseS3Url('s3://bucket/some/key.gz'), { bucket: 'bucket', key: 'some/key.gz' });
    assert.throws(() => parseS3Url('s3://bucket'), /names no object/);
    assert.throws(() => parseS3Url('https://bucket/key'), /expected s3:\/\/BUCKET\/KEY/);
  });
});
