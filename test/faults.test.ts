// Reads through a fault-injecting proxy in front of the real registry: every
// read is byte-identical or fails cleanly (never a wrong byte), nothing hangs
// (stall timeouts and a retry deadline bound it), a mount survives a registry
// outage with EIO and reads again once the registry is back.

import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdir, open, readFile } from 'node:fs/promises';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { daemonAnswers } from '../src/daemon/client.js';
import { isMounted } from '../src/fuse/index.js';
import { runClip } from './helpers/cli.js';
import type { FaultMode, FaultProxy } from './helpers/fault-proxy.js';
import { alive, mountRecords, type ClipWorkspace } from './helpers/mounts.js';
import { metric, scrape } from './helpers/prometheus.js';
import { FILE, startProxiedBusybox, type ProxiedBusybox } from './helpers/proxied-busybox.js';
import { freePort } from './helpers/registry.js';

/** Tight limits so failures come fast: stalls detected after 1 s, retries stop after 3 s. */
const LIMITS = { CLIP_STALL_TIMEOUT_MS: '1000', CLIP_REQUEST_DEADLINE_MS: '3000' };

describe('faults between clip and the registry', () => {
  let proxy: FaultProxy;
  let ws: ClipWorkspace;
  let index: string;
  let want: Buffer;
  let cacheCount = 0;

  let fixture: ProxiedBusybox | undefined;

  before(async () => {
    fixture = await startProxiedBusybox('faults');
    ({ proxy, ws, index, want } = fixture);
  });
  after(async () => {
    await fixture?.close();
  });

  const cases: { mode: FaultMode; times?: number; outcome: 'ok' | 'fails' | 'either' }[] = [
    { mode: 'http500', times: 2, outcome: 'ok' },
    { mode: 'http429', times: 3, outcome: 'ok' },
    { mode: 'drop', times: 2, outcome: 'ok' },
    { mode: 'flip', times: 1, outcome: 'ok' },
    { mode: 'flip', outcome: 'fails' },
    { mode: 'truncate', times: 1, outcome: 'ok' },
    { mode: 'truncate', outcome: 'fails' },
    { mode: 'stall', outcome: 'fails' },
    { mode: 'down', outcome: 'fails' },
  ];
  for (const c of cases) {
    it(`${c.mode}${c.times ? ` x${c.times}` : ' (always)'}: ${c.outcome === 'ok' ? 'recovered, byte-identical' : 'fails cleanly, no wrong byte'}`, async () => {
      proxy.set(c.mode, c.times);
      const r = await runClip(['cat', index, FILE], { env: LIMITS });
      proxy.set('pass');
      if (c.outcome === 'ok') {
        assert.equal(r.code, 0, r.stderr);
        assert.ok(r.stdout.equals(want), 'byte-identical');
      } else {
        assert.notEqual(r.code, 0);
        assert.match(r.stderr, /^clip: /);
        assert.ok(want.subarray(0, r.stdout.length).equals(r.stdout), 'whatever was written is a correct prefix');
        assert.ok(r.stdout.length < want.length);
      }
      // And the next read, with the link healthy, works.
      const again = await runClip(['cat', index, FILE], { env: LIMITS });
      assert.equal(again.code, 0, again.stderr);
      assert.ok(again.stdout.equals(want));
    });
  }

  it('a mount answers EIO while the registry is down, survives, and reads again when it is back', async () => {
    const mp = path.join(ws.dir, 'mnt');
    await mkdir(mp);
    const m = await runClip(['mount', index, mp, '--cache-dir', path.join(ws.dir, `cache-${cacheCount++}`)], {
      env: { ...ws.env, ...LIMITS },
    });
    assert.equal(m.code, 0, m.stderr);
    try {
      const [rec] = await mountRecords(ws);
      assert.ok(rec);
      proxy.set('down');
      await assert.rejects(readFile(path.join(mp, FILE)), { code: 'EIO' });
      proxy.set('stall');
      await assert.rejects(readFile(path.join(mp, FILE)), { code: 'EIO' });
      assert.ok(alive(rec.pid), 'the daemon survives');
      proxy.set('pass');
      const got = await readFile(path.join(mp, FILE));
      assert.equal(createHash('sha256').update(got).digest('hex'), createHash('sha256').update(want).digest('hex'));
    } finally {
      proxy.set('pass');
      await runClip(['umount', mp], { env: ws.env });
      assert.ok(!isMounted(mp));
    }
  });

  it('token auth: a mount keeps reading after its tokens expire; retries show in the metrics', async () => {
    proxy.requireTokens(true);
    const mp = path.join(ws.dir, 'mnt-tokens');
    await mkdir(mp);
    const addr = `127.0.0.1:${await freePort()}`;
    const cache = path.join(ws.dir, `cache-${cacheCount++}`);
    // A daemon without read-ahead: what the mount fetches after the tokens expire must not have come ahead already.
    // The one the earlier tests' mounts started ends with their last mount: wait for that first.
    for (let waited = 0; await daemonAnswers(ws.env['CLIP_STATE_DIR']!); waited += 50) {
      assert.ok(waited < 20_000, 'the earlier daemon ended');
      await new Promise((r) => setTimeout(r, 50));
    }
    const daemon = spawn(
      process.execPath,
      [path.resolve('bin/clip.js'), 'daemon', '--no-read-ahead', '--cache-dir', cache, '--metrics-addr', addr],
      { env: { ...process.env, ...ws.env, ...LIMITS }, stdio: ['ignore', 'ignore', 'pipe'] },
    );
    daemon.stderr.resume();
    const exited = new Promise((r) => daemon.once('exit', r));
    try {
      for (let waited = 0; !(await daemonAnswers(ws.env['CLIP_STATE_DIR']!)); waited += 50) {
        assert.ok(waited < 20_000 && daemon.exitCode === null, 'the daemon started');
        await new Promise((r) => setTimeout(r, 50));
      }
      const ps = await runClip(['ps', '--json'], { env: ws.env });
      assert.equal((JSON.parse(ps.stdout.toString()) as { daemon: { supervisor: number } }).daemon.supervisor, daemon.pid);
      const cat = await runClip(['cat', index, FILE], { env: LIMITS });
      assert.equal(cat.code, 0, cat.stderr);
      assert.ok(cat.stdout.equals(want), 'clip cat through token auth');
      const m = await runClip(['mount', index, mp], { env: { ...ws.env, ...LIMITS } });
      assert.equal(m.code, 0, m.stderr);
      // The first 4 KiB, while the registry answers 500 twice: retried, counted.
      proxy.set('http500', 2);
      const f = await open(path.join(mp, FILE));
      try {
        const head = Buffer.alloc(4096);
        await f.read(head, 0, head.length, 0);
        assert.ok(head.equals(want.subarray(0, 4096)));
      } finally {
        await f.close();
      }
      assert.ok(metric(await scrape(addr), 'clip_retries_total', 'reason="server-error"') >= 2, 'HTTP 500s counted as retries');
      // Every token the daemon holds now expires; the rest of the file needs new requests.
      const issued = proxy.tokensIssued;
      const refused = proxy.refused;
      proxy.expireTokens();
      const got = await readFile(path.join(mp, FILE));
      assert.equal(createHash('sha256').update(got).digest('hex'), createHash('sha256').update(want).digest('hex'));
      assert.ok(proxy.refused > refused, 'the expired token was refused');
      assert.ok(proxy.tokensIssued > issued, 'a new token was fetched');
      assert.ok(metric(await scrape(addr), 'clip_retries_total', 'reason="auth"') >= 1, 'the refused token counted as a retry');
    } finally {
      proxy.requireTokens(false);
      proxy.set('pass');
      await runClip(['umount', mp], { env: ws.env });
      daemon.kill('SIGTERM');
      await exited;
      assert.ok(!isMounted(mp));
    }
  });
});
