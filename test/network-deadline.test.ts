// A response that trickles (one byte every few seconds, so the stall timeout
// never fires) is aborted at its overall deadline and retried, the retry
// counted with reason "deadline"; a registry that always trickles fails
// cleanly with a message that says so. Through the fault proxy in front of a
// real registry.

import assert from 'node:assert/strict';
import { mkdir, open } from 'node:fs/promises';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { isMounted } from '../src/fuse/index.js';
import { RegistryClient } from '../src/oci/registry.js';
import { runClip } from './helpers/cli.js';
import type { FaultProxy } from './helpers/fault-proxy.js';
import type { BuiltImage } from './helpers/image-builder.js';
import type { ClipWorkspace } from './helpers/mounts.js';
import { metric, scrape } from './helpers/prometheus.js';
import { FILE, startProxiedBusybox, type ProxiedBusybox } from './helpers/proxied-busybox.js';
import { freePort } from './helpers/registry.js';

/** A response may take 0.5 s plus its bytes at 1 MB/s: far less than one trickled byte every 3 s. */
const DEADLINE = { baseMs: 500, minBytesPerSecond: 1_000_000 };
const DEADLINE_ENV = { CLIP_RESPONSE_DEADLINE_MS: '500', CLIP_MIN_BYTES_PER_SECOND: '1000000', CLIP_REQUEST_DEADLINE_MS: '4000' };
// Without a deadline these tests would hang: fail them instead.
const HANGS = { timeout: 90_000 };

describe('response deadline', () => {
  let proxy: FaultProxy;
  let image: BuiltImage;
  let ws: ClipWorkspace;
  let index: string;
  let want: Buffer;

  let fixture: ProxiedBusybox | undefined;

  before(async () => {
    fixture = await startProxiedBusybox('deadline');
    ({ proxy, image, ws, index, want } = fixture);
  });
  after(async () => {
    await fixture?.close();
  });

  it('a range read that trickles once is aborted at its deadline and retried: right bytes, reason "deadline"', HANGS, async () => {
    const client = new RegistryClient({ registry: proxy.host, repository: 'deadline/busybox' }, { deadline: DEADLINE });
    const layer = image.layers[1]!;
    const reasons: string[] = [];
    try {
      proxy.set('trickle', 1);
      const got = await client.readRange(layer.digest, 1000, 1000 + 64 * 1024, { onRetry: (r) => reasons.push(r) });
      assert.ok(got.equals(layer.blob.subarray(1000, 1000 + 64 * 1024)), 'byte-identical after the retry');
      assert.deepEqual(reasons, ['deadline']);
    } finally {
      proxy.set('pass');
      await client.close();
    }
  });

  it('a whole blob that trickles (its Content-Length sizes the deadline) is resumed, not waited for', HANGS, async () => {
    const client = new RegistryClient({ registry: proxy.host, repository: 'deadline/busybox' }, { deadline: DEADLINE });
    const layer = image.layers[0]!;
    try {
      proxy.set('trickle', 1);
      const chunks: Buffer[] = [];
      for await (const c of await client.openBlob(layer.digest)) chunks.push(c as Buffer);
      assert.ok(Buffer.concat(chunks).equals(layer.blob));
    } finally {
      proxy.set('pass');
      await client.close();
    }
  });

  it('clip cat against a registry that always trickles fails cleanly, naming the deadline', HANGS, async () => {
    proxy.set('trickle');
    try {
      const r = await runClip(['cat', index, FILE], { env: DEADLINE_ENV });
      assert.equal(r.code, 1);
      assert.match(r.stderr, /^clip: .*deadline/m);
      assert.doesNotMatch(r.stderr, /unexpected error|\n\s+at /);
      assert.ok(r.stdout.length < want.length && want.subarray(0, r.stdout.length).equals(r.stdout), 'at most a correct prefix');
    } finally {
      proxy.set('pass');
    }
  });

  it('a mount counts the retry as clip_retries_total{reason="deadline"} and serves the right bytes', HANGS, async () => {
    const mp = path.join(ws.dir, 'mnt');
    await mkdir(mp);
    const addr = `127.0.0.1:${await freePort()}`;
    const m = await runClip(['mount', index, mp, '--cache-dir', path.join(ws.dir, 'cache'), '--metrics-addr', addr], {
      env: { ...ws.env, ...DEADLINE_ENV },
    });
    assert.equal(m.code, 0, m.stderr);
    try {
      proxy.set('trickle', 1);
      const f = await open(path.join(mp, FILE));
      try {
        const head = Buffer.alloc(4096);
        await f.read(head, 0, head.length, 0);
        assert.ok(head.equals(want.subarray(0, 4096)));
      } finally {
        await f.close();
      }
      // The request that trickled may be a read-ahead one, still waiting for its deadline when the read is answered.
      let retries = 0;
      for (let waited = 0; waited < 20_000 && retries < 1; waited += 100) {
        retries = metric(await scrape(addr), 'clip_retries_total', 'reason="deadline"');
        if (retries < 1) await new Promise((r) => setTimeout(r, 100));
      }
      assert.ok(retries >= 1, 'the aborted response is counted');
    } finally {
      proxy.set('pass');
      await runClip(['umount', mp], { env: ws.env });
      assert.ok(!isMounted(mp));
    }
  });
});
