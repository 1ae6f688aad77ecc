// Observability of a mount: Prometheus metrics on --metrics-addr and
// `clip stats` report FUSE operations, fetched bytes per layer and cache
// activity for what was actually read.

import assert from 'node:assert/strict';
import { mkdir, readFile, rm } from 'node:fs/promises';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { indexImage } from '../src/indexer/index-image.js';
import { buildBusyboxImage } from './helpers/busybox-image.js';
import { runClip } from './helpers/cli.js';
import type { BuiltImage } from './helpers/image-builder.js';
import { clipWorkspace, sweepClipMounts, type ClipWorkspace } from './helpers/mounts.js';
import { metric, scrape } from './helpers/prometheus.js';
import { freePort, pushImage, startRegistry, type RegistryHandle } from './helpers/registry.js';

describe('metrics and clip stats', () => {
  let registry: RegistryHandle;
  let image: BuiltImage;
  let ws: ClipWorkspace;
  before(async () => {
    sweepClipMounts();
    registry = await startRegistry();
    image = await buildBusyboxImage();
    await pushImage(image.dir, image.tag, registry.host, 'metrics/busybox');
    ws = await clipWorkspace('metrics');
  });
  after(async () => {
    sweepClipMounts();
    await registry?.stop();
    if (image) await rm(image.dir, { recursive: true, force: true });
    if (ws) await rm(ws.dir, { recursive: true, force: true });
  });

  it('report what a read fetched, per layer, and the FUSE operations', async () => {
    const index = path.join(ws.dir, 'busybox.clip');
    await indexImage(`${registry.host}/metrics/busybox:${image.tag}`, { output: index, spanSize: 256 * 1024 });
    const mp = path.join(ws.dir, 'mnt');
    await mkdir(mp);
    const port = await freePort();
    const m = await runClip(['mount', index, mp, '--cache-dir', path.join(ws.dir, 'cache'), '--metrics-addr', `127.0.0.1:${port}`], {
      env: ws.env,
    });
    assert.equal(m.code, 0, m.stderr);
    try {
      const data = await readFile(path.join(mp, 'usr/share/random.bin'));
      assert.equal(data.length, 2 * 1024 * 1024);
      const text = await scrape(`127.0.0.1:${port}`);
      const [base, top] = [image.layers[0]!.digest, image.layers[1]!.digest];
      assert.ok(metric(text, 'clip_fuse_operations_total', 'op="READ"') > 0, 'READ operations counted');
      assert.ok(metric(text, 'clip_fuse_operations_total', 'op="LOOKUP"') > 0, 'LOOKUP operations counted');
      assert.ok(metric(text, 'clip_fuse_operation_seconds_count', 'op="READ"') > 0, 'READ latency observed');
      assert.ok(metric(text, 'clip_fetched_bytes_total', `layer="${top}"`) > 0, 'bytes fetched for the layer read');
      assert.equal(metric(text, 'clip_fetched_bytes_total', `layer="${base}"`), 0, 'nothing fetched for the layer not read');
      assert.ok(metric(text, 'clip_span_cache_misses_total') > 0);
      assert.ok(metric(text, 'clip_first_read_seconds') > 0);

      const stats = await runClip(['stats', mp, '--json'], { env: ws.env });
      assert.equal(stats.code, 0, stats.stderr);
      const rows = JSON.parse(stats.stdout.toString()) as { layer: string; fetchedBytes: number; compressedSize: number }[];
      assert.deepEqual(
        rows.map((r) => r.layer),
        [base, top],
      );
      assert.equal(rows[0]!.fetchedBytes, 0);
      assert.ok(rows[1]!.fetchedBytes > 0 && rows[1]!.fetchedBytes <= rows[1]!.compressedSize);
      const table = await runClip(['stats', mp], { env: ws.env });
      assert.match(table.stdout.toString(), new RegExp(top.slice(7, 19)));
    } finally {
      await runClip(['umount', mp], { env: ws.env });
    }
  });
});
