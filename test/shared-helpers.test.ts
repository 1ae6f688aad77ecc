// One implementation of each small thing the code used to say twice: the
// CLI's --platform goes through oci/platform.ts, the "must run as root"
// wording, the "sha256:" digest of streamed bytes, S3's own error code, and
// one name (cached bytes) for what the disk cache holds in metrics and stats.

import assert from 'node:assert/strict';
import { execFile, spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { once } from 'node:events';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { describe, it } from 'node:test';
import { promisify } from 'node:util';
import { registryOptions } from '../src/cli/registry-options.js';
import { ClipError } from '../src/errors.js';
import { mustRunAsRoot } from '../src/fuse/index.js';
import { DaemonMetrics } from '../src/metrics/daemon-metrics.js';
import { digestOf } from '../src/util/digest.js';
import { S3Client } from '../src/s3/client.js';
import { metric } from './helpers/prometheus.js';

const run = promisify(execFile);

describe('one helper each', () => {
  it('--platform normalises like the library does (aarch64 is arm64, x86_64 is amd64)', async () => {
    assert.deepEqual((await registryOptions({ platform: 'linux/aarch64' })).platform, { os: 'linux', architecture: 'arm64' });
    assert.deepEqual((await registryOptions({ platform: 'linux/x86_64' })).platform, { os: 'linux', architecture: 'amd64' });
    await assert.rejects(registryOptions({ platform: 'linux/' }), (e: unknown) => e instanceof ClipError && e.code === 'BAD_ARGUMENT');
  });

  it("the CLI refuses a non-root caller with the mount library's wording", async () => {
    // A child process that is told it is not root (the tests run as root).
    const lib = new URL('../src/cli/require-root.js', import.meta.url).href;
    const code = `process.geteuid = () => 1000;
      const { requireRoot } = await import(${JSON.stringify(lib)});
      try { requireRoot('mount'); console.log('no error'); } catch (e) { console.log(e.code + ' ' + e.message); }`;
    const { stdout } = await run(process.execPath, ['--input-type=module', '-e', code]);
    assert.equal(stdout.trim(), `BAD_ARGUMENT ${mustRunAsRoot('clip mount')}`);
    assert.match(mustRunAsRoot('clip mount'), /^clip mount must run as root: mount\(2\) needs CAP_SYS_ADMIN/);
  });

  it('digestOf gives the same "sha256:" digest for whole bytes and for a hash fed in chunks', () => {
    const a = Buffer.from('layer bytes, ');
    const b = Buffer.from('in two chunks');
    const streamed = digestOf(createHash('sha256').update(a).update(b));
    assert.equal(streamed, digestOf(Buffer.concat([a, b])));
    assert.match(streamed, /^sha256:[0-9a-f]{64}$/);
  });

  it("metrics and stats call the disk cache's bytes cachedBytes / clip_cached_bytes", async () => {
    const all = new DaemonMetrics();
    const m = all.image('registry.test/app@sha256:00');
    m.cacheStored('sha256:aa', 100);
    m.cacheStored('sha256:aa', 50);
    m.cacheEvicted('sha256:aa', 40);
    assert.equal(m.summary()[0]!.cachedBytes, 110);
    assert.equal(metric(await all.registry.metrics(), 'clip_cached_bytes', 'image="registry.test/app@sha256:00"'), 110);
  });
});

describe('S3 errors carry the code S3, not REGISTRY', () => {
  const env = { AWS_ACCESS_KEY_ID: 'test', AWS_SECRET_ACCESS_KEY: 'secret' };

  async function withEnv<T>(f: () => Promise<T>): Promise<T> {
    const saved = Object.fromEntries(Object.keys(env).map((k) => [k, process.env[k]]));
    Object.assign(process.env, env);
    try {
      return await f();
    } finally {
      for (const [k, v] of Object.entries(saved)) {
        if (v === undefined) delete process.env[k];
        else process.env[k] = v;
      }
    }
  }

  it('an HTTP 500 from the endpoint', async () => {
    const server: Server = createServer((_req, res) => {
      res.writeHead(500, { 'content-type': 'application/xml' });
      res.end('<Error><Code>InternalError</Code><Message>broken</Message></Error>');
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    try {
      const { port } = server.address() as AddressInfo;
      await withEnv(async () => {
        const client = await S3Client.open({ bucket: 'bucket', key: 'a.clip', region: 'us-east-1', endpoint: `http://127.0.0.1:${port}` });
        try {
          // POST is not retried: one request, one answer.
          const res = await client.request('POST', { query: 'uploads' });
          const e = await client.error(res, 'starting an upload to');
          assert.equal(e.code, 'S3');
          assert.match(e.message, /S3 answered HTTP 500 .*InternalError: broken/);
        } finally {
          await client.close();
        }
      });
    } finally {
      server.close();
    }
  });

  it('a range whose body is cut on every attempt, read through the S3 blob source', async () => {
    const server: Server = createServer((_req, res) => {
      res.writeHead(206, { 'content-range': 'bytes 0-99/1000', 'content-length': '100' });
      res.write(Buffer.alloc(10));
      setTimeout(() => res.destroy(), 10);
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    try {
      const { port } = server.address() as AddressInfo;
      const location = `s3://bucket/a.clip?region=us-east-1&endpoint=${encodeURIComponent(`http://127.0.0.1:${port}`)}`;
      const source = new URL('../src/content/sources/s3.js', import.meta.url).href;
      // A child: the retry budget is read from the environment when the HTTP layer loads.
      const script = `const { S3BlobSource } = await import(${JSON.stringify(source)});
        const s = await S3BlobSource.open(${JSON.stringify(location)});
        try { await s.readRange('sha256:${'0'.repeat(64)}', 0, 100); console.log('read'); } catch (e) { console.log(e.code); } finally { await s.close(); }`;
      const child = spawn(process.execPath, ['--input-type=module', '-e', script], {
        env: { ...process.env, ...env, CLIP_REQUEST_DEADLINE_MS: '300' },
      });
      let out = '';
      child.stdout.on('data', (d: Buffer) => (out += d.toString()));
      const [code] = (await once(child, 'close')) as [number];
      assert.equal(code, 0);
      assert.equal(out.trim(), 'S3');
    } finally {
      server.close();
    }
  });

  it('an endpoint that cannot be reached', async () => {
    // A port that was free a moment ago: nothing listens there.
    const server = createServer();
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    const { port } = server.address() as AddressInfo;
    await new Promise((r) => server.close(r));
    await withEnv(async () => {
      const client = await S3Client.open({ bucket: 'bucket', key: 'a.clip', region: 'us-east-1', endpoint: `http://127.0.0.1:${port}` });
      try {
        await assert.rejects(client.request('POST', { query: 'uploads' }), (e: unknown) => {
          assert.ok(e instanceof ClipError);
          assert.equal(e.code, 'S3');
          assert.match(e.message, new RegExp(`127\\.0\\.0\\.1:${port}`));
          return true;
        });
      } finally {
        await client.close();
      }
    });
  });
});
