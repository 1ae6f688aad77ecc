// The disk span cache on its own: its bound holds for a directory that two
// processes write at once, paths are built from checked parts only, and span
// identities change with everything that determines a span's bytes.

import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdtemp, readdir, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { ClipError } from '../src/errors.js';
import { SpanCache } from '../src/content/span-cache.js';
import { SpanIdentities } from '../src/content/span-identity.js';
import type { LayerRecord } from '../src/index/types.js';
import { withFileLock } from '../src/util/file-lock.js';

const hex = (s: string): string => createHash('sha256').update(s).digest('hex');

/** Bytes of every file in the cache directory but the lock (span and temp files). */
async function cacheBytes(dir: string): Promise<{ bytes: number; files: string[] }> {
  const files: string[] = [];
  let bytes = 0;
  for (const name of await readdir(dir, { recursive: true })) {
    const st = await stat(path.join(dir, name)).catch(() => undefined);
    if (!st?.isFile() || path.basename(name).startsWith('.lock')) continue;
    bytes += st.size;
    files.push(name);
  }
  return { bytes, files };
}

// A writer process (once both are ready): puts `count` spans of 8-48 KiB under layer digests of its own.
const WRITER = `
const [moduleUrl, dir, bound, seed, count] = process.argv.slice(1);
const { createHash } = await import('node:crypto');
const { SpanCache } = await import(moduleUrl);
const hex = (s) => createHash('sha256').update(s).digest('hex');
const cache = new SpanCache(dir, Number(bound));
// Start together: say ready, then wait for the other writer (process start-up times differ).
const { existsSync, writeFileSync } = await import('node:fs');
writeFileSync(dir + '.ready-' + seed, '');
while (!['1', '2'].every((s) => existsSync(dir + '.ready-' + s))) await new Promise((r) => setTimeout(r, 2));
const start = Date.now();
for (let k = 0; k < Number(count); k++) {
  const size = 8192 + ((k * 7919 + Number(seed) * 104729) % 40960);
  await cache.put({ layer: 'sha256:' + hex(seed + '/' + (k % 3)), span: k, identity: hex(seed + ':' + k) }, Buffer.alloc(size, k));
}
process.stdout.write(JSON.stringify({ start, end: Date.now() }));
`;

/** Runs a writer; resolves with when its writes began and ended (ms since the epoch). */
function runWriter(dir: string, bound: number, seed: number, count: number): Promise<{ start: number; end: number }> {
  const moduleUrl = new URL('../src/content/span-cache.js', import.meta.url).href;
  return new Promise((resolve, reject) => {
    const child = spawn(
      process.execPath,
      ['--input-type=module', '-e', WRITER, moduleUrl, dir, String(bound), String(seed), String(count)],
      { stdio: ['ignore', 'pipe', 'pipe'] },
    );
    let out = '';
    child.stdout.on('data', (b: Buffer) => (out += b.toString()));
    let err = '';
    child.stderr.on('data', (b: Buffer) => (err += b.toString()));
    child.on('error', reject);
    child.on('close', (code) =>
      code === 0 ? resolve(JSON.parse(out) as { start: number; end: number }) : reject(new Error(`writer ${seed} exited ${code}: ${err}`)),
    );
  });
}

describe('span cache', () => {
  let work: string;
  before(async () => {
    work = await mkdtemp(path.join(tmpdir(), 'clip-spancache-'));
  });
  after(async () => {
    if (work) await rm(work, { recursive: true, force: true });
  });

  it('two processes writing one directory at once never take it above the bound', async () => {
    const dir = path.join(work, 'shared');
    const bound = 256 * 1024;
    let done = false;
    const writers = Promise.all([runWriter(dir, bound, 1, 300), runWriter(dir, bound, 2, 300)]).finally(() => (done = true));
    // Measured under the writers' own lock, so no write is half-way through while we count.
    let samples = 0;
    let peak = 0;
    while (!done) {
      await withFileLock(path.join(dir, '.lock'), async () => {
        const { bytes } = await cacheBytes(dir).catch(() => ({ bytes: 0 }));
        peak = Math.max(peak, bytes);
        samples++;
      }).catch((e: NodeJS.ErrnoException) => {
        if (e.code !== 'ENOENT') throw e; // the directory is not there yet
      });
      await new Promise((r) => setTimeout(r, 3));
    }
    const [a, b] = await writers;
    const { bytes, files } = await cacheBytes(dir);
    assert.ok(samples > 0, 'sampled while the writers ran');
    assert.ok(peak <= bound, `peak while writing: ${peak} bytes, bound ${bound}`);
    assert.ok(bytes <= bound, `${bytes} bytes in the directory after both writers, bound ${bound}`);
    assert.ok(bytes > bound / 2, `the cache is used (${bytes} bytes), not emptied`);
    assert.ok(!files.some((f) => f.includes('.tmp-')), 'no temp file is left');
    assert.ok(a.start < b.end && b.start < a.end, `the writers ran at the same time: ${JSON.stringify([a, b])}`);
  });

  it('refuses layer digests, span numbers and identities that are not what they claim, and creates nothing', async () => {
    const dir = path.join(work, 'checked');
    const cache = new SpanCache(dir, 1 << 20);
    const identity = hex('x');
    const good = { layer: `sha256:${hex('layer')}`, span: 0, identity };
    for (const key of [
      { ...good, layer: 'sha256:../../../../tmp/escape' },
      { ...good, layer: `sha256:${hex('a').slice(0, 40)}` },
      { ...good, layer: `SHA256:${hex('a')}` },
      { ...good, layer: `md5:${hex('a').slice(0, 32)}` },
      { ...good, span: -1 },
      { ...good, span: 1.5 },
      { ...good, identity: '../x' },
    ]) {
      await assert.rejects(cache.put(key, Buffer.from('data')), ClipError, JSON.stringify(key));
      await assert.rejects(cache.get(key, 4), ClipError);
      await assert.rejects(cache.has(key), ClipError);
    }
    await assert.rejects(readdir(dir), { code: 'ENOENT' }, 'nothing was created');
    await cache.put(good, Buffer.from('data'));
    assert.deepEqual(await cache.get(good, 4), Buffer.from('data'));
    assert.equal(await cache.get({ ...good, identity: hex('other') }, 4), undefined, 'another identity is another span');
  });

  it('a span identity covers its ranges, window, bits, digest and, without a window, the span before', () => {
    const layer = (): LayerRecord => ({
      digest: `sha256:${hex('layer')}`,
      mediaType: 'application/vnd.oci.image.layer.v1.tar+gzip',
      diffId: `sha256:${hex('diff')}`,
      spans: {
        compression: 'gzip',
        compressedSize: 3000,
        uncompressedSize: 9000,
        checkpoints: [
          { in: 10, out: 0, window: Buffer.alloc(0) },
          { in: 1000, out: 3000, window: Buffer.from('window one') },
          { in: 2000, out: 6000, window: Buffer.alloc(0) },
        ],
        digests: [0, 1, 2].map((i) => createHash('sha256').update(`span ${i}`).digest()),
      },
    });
    const base = new SpanIdentities(layer());
    const ids = [0, 1, 2].map((i) => base.of(i));
    assert.equal(new Set(ids).size, 3);
    const fresh = new SpanIdentities(layer());
    assert.deepEqual([2, 1, 0].map((i) => fresh.of(i)).reverse(), ids, 'the same index gives the same identities, in any order');
    const changed = (edit: (l: LayerRecord) => void): string[] => {
      const l = layer();
      edit(l);
      const s = new SpanIdentities(l);
      return [0, 1, 2].map((i) => s.of(i));
    };
    const spansChanged = (edit: (l: LayerRecord) => void): number[] => changed(edit).flatMap((id, i) => (id === base.of(i) ? [] : [i]));
    assert.deepEqual(
      spansChanged((l) => (l.digest = `sha256:${hex('other')}`)),
      [0, 1, 2],
    );
    assert.deepEqual(
      spansChanged((l) => (l.spans.compression = 'gzip-flushed')),
      [0, 1, 2],
    );
    assert.deepEqual(
      spansChanged((l) => (l.spans.digests[0] = Buffer.alloc(32))),
      [0],
    );
    assert.deepEqual(
      spansChanged((l) => (l.spans.checkpoints[1]!.window = Buffer.from('window two'))),
      [1, 2],
      'span 2 has no window: it inflates from span 1',
    );
    assert.deepEqual(
      spansChanged((l) => ((l.spans.checkpoints[1] as { bits?: number }).bits = 3)),
      [0, 1, 2],
      'span 0 now ends with the byte it shares with span 1, which starts mid-byte; span 2 inflates from span 1',
    );
    assert.deepEqual(
      spansChanged((l) => (l.spans.checkpoints[1]!.out = 3001)),
      [0, 1, 2],
      'the output ranges of spans 0 and 1 moved',
    );
    assert.deepEqual(
      spansChanged((l) => (l.spans.compressedSize = 3001)),
      [2],
    );
    assert.deepEqual(
      spansChanged((l) => (l.spans.checkpoints[0]!.in = 11)),
      [0],
    );
  });
});
