// The node daemon's one metrics endpoint: every image's read events in one
// registry with image/layer labels, process metrics and clip_build_info,
// /healthz, per-image /stats, and series gone once an image is dropped.

import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { ClipError } from '../src/errors.js';
import { serveDaemonMetrics } from '../src/metrics/daemon-endpoint.js';
import { DaemonMetrics } from '../src/metrics/daemon-metrics.js';
import { VERSION } from '../src/version.js';
import { httpRequest } from './helpers/http.js';
import { scrape } from './helpers/prometheus.js';
import { freePort } from './helpers/registry.js';

/** The samples of `name` whose labels include every pair of `want` (label order in the text does not matter). */
function samples(text: string, name: string, want: Record<string, string> = {}): number[] {
  const out: number[] = [];
  for (const line of text.split('\n')) {
    const m = /^([a-zA-Z_:][\w:]*)(?:\{(.*)\})? (\S+)$/.exec(line);
    if (!m || m[1] !== name) continue;
    const labels = Object.fromEntries([...(m[2] ?? '').matchAll(/(\w+)="((?:[^"\\]|\\.)*)"/g)].map((p) => [p[1], p[2]]));
    if (Object.entries(want).every(([k, v]) => labels[k] === v)) out.push(Number(m[3]));
  }
  return out;
}

const A = '127.0.0.1:5000/team/app@sha256:' + 'a'.repeat(64);
const B = '/srv/images/tool.tar';
const L1 = 'sha256:' + '1'.repeat(64);
const L2 = 'sha256:' + '2'.repeat(64);

async function getJson(url: string): Promise<{ status: number; type: unknown; body: unknown }> {
  const res = await httpRequest('GET', url);
  return { status: res.status, type: res.headers['content-type'], body: JSON.parse(res.body.toString()) };
}

describe('daemon metrics endpoint', () => {
  it('serves every image under its own labels, process metrics, build info, /healthz and /stats; dropImage removes an image', async () => {
    const metrics = new DaemonMetrics();
    const addr = `127.0.0.1:${await freePort()}`;
    const close = await serveDaemonMetrics(metrics, () => ({ pid: process.pid, images: 2 }), addr);
    try {
      // Both images read the same layer digest: the image label keeps them apart.
      const a = metrics.image(A);
      a.fetched(L1, 1000, 2);
      a.cacheMiss(L1);
      a.cacheStored(L1, 4096);
      a.cacheHit(L2, 'memory');
      a.retried(L1, 'status 503');
      a.inflated(L1, 0.002);
      const b = metrics.image(B);
      b.fetched(L1, 7, 1);
      b.cacheStored(L1, 300);
      b.cacheEvicted(L1, 100);
      b.verifyFailed(L1, 0);
      b.firstRead();
      assert.equal(metrics.image(A), a, 'image() creates once');
      metrics.onOp('READ', 0.001, 0, 4096);
      metrics.onOp('LOOKUP', 0.0001, 2);

      let text = await scrape(addr);
      assert.deepEqual(samples(text, 'clip_fetched_bytes_total', { image: A, layer: L1 }), [1000]);
      assert.deepEqual(samples(text, 'clip_fetched_bytes_total', { image: B, layer: L1 }), [7]);
      assert.deepEqual(samples(text, 'clip_fetch_requests_total', { image: A, layer: L1 }), [1]);
      assert.deepEqual(samples(text, 'clip_span_cache_hits_total', { image: A, cache: 'memory' }), [1]);
      assert.deepEqual(samples(text, 'clip_span_cache_misses_total', { image: A }), [1]);
      assert.deepEqual(samples(text, 'clip_cached_bytes', { image: A }), [4096]);
      assert.deepEqual(samples(text, 'clip_cached_bytes', { image: B }), [200]);
      assert.deepEqual(samples(text, 'clip_span_cache_evictions_total', { image: B }), [1]);
      assert.deepEqual(samples(text, 'clip_verify_failures_total', { image: B }), [1]);
      assert.deepEqual(samples(text, 'clip_retries_total', { image: A, reason: 'status 503' }), [1]);
      assert.deepEqual(samples(text, 'clip_inflate_seconds_count', { image: A }), [1]);
      assert.equal(samples(text, 'clip_first_read_seconds', { image: B }).length, 1, 'first read of B recorded');
      assert.equal(samples(text, 'clip_first_read_seconds', { image: A }).length, 0, 'A has had no READ');
      assert.deepEqual(samples(text, 'clip_fuse_operations_total', { op: 'READ', errno: '0' }), [1]);
      assert.deepEqual(samples(text, 'clip_fuse_operations_total', { op: 'LOOKUP', errno: '2' }), [1]);
      assert.deepEqual(samples(text, 'clip_fuse_operation_seconds_count', { op: 'READ' }), [1]);
      assert.deepEqual(samples(text, 'clip_fuse_read_bytes_total'), [4096], 'the bytes READ replies carried (LOOKUP replies not counted)');
      assert.deepEqual(samples(text, 'clip_mounted_images'), [2]);
      assert.deepEqual(samples(text, 'clip_build_info', { version: VERSION, node: process.version }), [1]);
      assert.equal(samples(text, 'process_cpu_user_seconds_total').length, 1, 'default process metrics, unprefixed');
      assert.equal(samples(text, 'nodejs_heap_size_used_bytes').length, 1);

      // clip ps totals.
      assert.equal(a.fetchedBytes(), 1000);
      assert.equal(b.cachedBytes(), 200);

      const health = await getJson(`http://${addr}/healthz`);
      assert.equal(health.status, 200);
      assert.equal(health.type, 'application/json');
      assert.deepEqual(health.body, { status: 'ok', pid: process.pid, images: 2 });

      const stats = await getJson(`http://${addr}/stats?image=${encodeURIComponent(A)}`);
      assert.equal(stats.status, 200);
      assert.deepEqual(stats.body, [
        { layer: L1, fetchedBytes: 1000, requests: 1, cacheHits: 0, cacheMisses: 1, cachedBytes: 4096 },
        { layer: L2, fetchedBytes: 0, requests: 0, cacheHits: 1, cacheMisses: 0, cachedBytes: 0 },
      ]);
      const unknown = await getJson(`http://${addr}/stats?image=${encodeURIComponent('nope/x:1')}`);
      assert.equal(unknown.status, 404);
      assert.match((unknown.body as { error: string }).error, /nope\/x:1/);
      assert.equal((await httpRequest('GET', `http://${addr}/stats`)).status, 400);
      assert.equal((await httpRequest('GET', `http://${addr}/other`)).status, 404);
      const post = await httpRequest('POST', `http://${addr}/metrics`);
      assert.equal(post.status, 405);
      assert.equal(post.headers.allow, 'GET');

      metrics.dropImage(A);
      a.fetched(L1, 5, 1); // a fetch that was in flight at unmount must not bring the series back
      a.retried(L1, 'status 503');
      text = await scrape(addr);
      assert.ok(
        !text.includes(`image="${A}"`),
        `no series of a dropped image:\n${text
          .split('\n')
          .filter((l) => l.includes(A))
          .join('\n')}`,
      );
      assert.deepEqual(samples(text, 'clip_fetched_bytes_total', { image: B, layer: L1 }), [7], 'the other image keeps its series');
      assert.deepEqual(samples(text, 'clip_mounted_images'), [1]);
      assert.equal((await getJson(`http://${addr}/stats?image=${encodeURIComponent(A)}`)).status, 404);
      assert.notEqual(metrics.image(A), a, 'a remount starts afresh');
      assert.equal(metrics.image(A).fetchedBytes(), 0);
    } finally {
      await close();
    }
  });

  it('refuses an address in use with a ClipError naming it', async () => {
    const metrics = new DaemonMetrics();
    const addr = `127.0.0.1:${await freePort()}`;
    const close = await serveDaemonMetrics(metrics, () => ({}), addr);
    try {
      await assert.rejects(
        serveDaemonMetrics(metrics, () => ({}), addr),
        (e: unknown) => {
          assert.ok(e instanceof ClipError);
          assert.match(e.message, new RegExp(`${addr.replace(/\./g, '\\.')}: the address is in use`));
          return true;
        },
      );
      await assert.rejects(
        serveDaemonMetrics(metrics, () => ({}), 'localhost'),
        /metrics address "localhost": expected HOST:PORT/,
      );
    } finally {
      await close();
    }
  });
});
