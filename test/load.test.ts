// Load: 64 concurrent readers doing random reads across a multi-layer image
// through the mount for a bounded time: no errors, every byte verified
// against the fixture, and the daemon's memory stays bounded.

import assert from 'node:assert/strict';
import { open, readFile, rm, mkdir } from 'node:fs/promises';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { isMounted } from '../src/fuse/index.js';
import { indexImage } from '../src/indexer/index-image.js';
import { runClip } from './helpers/cli.js';
import { buildFixture } from './helpers/fixtures.js';
import type { BuiltImage } from './helpers/image-builder.js';
import { clipWorkspace, mountRecords, sweepClipMounts, type ClipWorkspace } from './helpers/mounts.js';
import { createPrng } from './helpers/prng.js';
import { pushImage, startRegistry, type RegistryHandle } from './helpers/registry.js';

const READERS = 64;
const SECONDS = 8;
const RSS_BOUND_MB = 400;

describe('load', () => {
  let registry: RegistryHandle;
  let image: BuiltImage;
  let ws: ClipWorkspace;
  before(async () => {
    sweepClipMounts();
    registry = await startRegistry();
    image = await buildFixture('large');
    await pushImage(image.dir, image.tag, registry.host, 'load/large');
    ws = await clipWorkspace('load');
  });
  after(async () => {
    sweepClipMounts();
    await registry?.stop();
    if (image) await rm(image.dir, { recursive: true, force: true });
    if (ws) await rm(ws.dir, { recursive: true, force: true });
  });

  it(`${READERS} concurrent random readers for ${SECONDS} s: all bytes verified, memory bounded`, async () => {
    const index = path.join(ws.dir, 'large.clip');
    await indexImage(`${registry.host}/load/large:${image.tag}`, { output: index, spanSize: 128 * 1024 });
    const mp = path.join(ws.dir, 'mnt');
    await mkdir(mp);
    const m = await runClip(['mount', index, mp, '--cache-dir', path.join(ws.dir, 'cache'), '--cache-size', '4M'], { env: ws.env });
    assert.equal(m.code, 0, m.stderr);
    try {
      // The expected bytes of every file, from the fixture's tars (upper layers win).
      const files = new Map<string, Buffer>();
      for (const layer of image.layers) {
        for (const e of layer.tarLayout) {
          if (e.size > 0) files.set(e.path.replace(/^\.\//, ''), layer.tar.subarray(e.dataOffset, e.dataOffset + e.size));
        }
      }
      const names = [...files.keys()];
      const deadline = Date.now() + SECONDS * 1000;
      let reads = 0;
      const reader = async (id: number): Promise<void> => {
        const prng = createPrng(id + 1);
        const buf = Buffer.alloc(256 * 1024);
        while (Date.now() < deadline) {
          const name = names[prng.int(names.length)]!;
          const want = files.get(name)!;
          const offset = prng.int(want.length);
          const length = Math.min(want.length - offset, 1 + prng.int(buf.length));
          const fh = await open(path.join(mp, name), 'r');
          try {
            const { bytesRead } = await fh.read(buf, 0, length, offset);
            assert.equal(bytesRead, length, `${name} [${offset}, +${length})`);
            assert.ok(buf.subarray(0, length).equals(want.subarray(offset, offset + length)), `${name} [${offset}, +${length})`);
          } finally {
            await fh.close();
          }
          reads++;
        }
      };
      await Promise.all(Array.from({ length: READERS }, (_, i) => reader(i)));
      assert.ok(reads > READERS, `${reads} reads`);
      const [rec] = await mountRecords(ws);
      assert.ok(rec);
      const rss = Number(/VmRSS:\s+(\d+)/.exec(await readFile(`/proc/${rec.pid}/status`, 'utf8'))![1]) / 1024;
      assert.ok(rss < RSS_BOUND_MB, `daemon RSS ${rss.toFixed(0)} MB`);
    } finally {
      await runClip(['umount', mp], { env: ws.env });
      assert.ok(!isMounted(mp));
    }
  });
});
