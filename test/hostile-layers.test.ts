// Crafted layers through `clip index` (a child process, default heap) and
// what reads the index after it (`clip ls`, a mount): issue 10's tar cases.
// Each builds its layer bytes itself; see tar-hostile.test.ts and
// merge.test.ts for the same rules checked on the scanner and the merge.

import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdir, mkdtemp, readFile, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { gzipSync } from 'node:zlib';
import { isMounted } from '../src/fuse/index.js';
import { runClip } from './helpers/cli.js';
import { run } from './helpers/exec.js';
import { clipWorkspace, sweepClipMounts, type ClipWorkspace } from './helpers/mounts.js';
import { gzipLayer, writeRawLayerImage } from './helpers/raw-layer-image.js';
import { buildTar } from './helpers/tar-writer.js';
import { canRunUmoci, umociUnpack } from './helpers/umoci.js';

const BIN = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../bin/clip.js');

/** The 512-byte header block at `off` with another size field, checksum fixed. */
function resize(tar: Buffer, off: number, size: number): void {
  tar.write(size.toString(8).padStart(11, '0') + '\0', off + 124, 12, 'latin1');
  tar.fill(0x20, off + 148, off + 156);
  let sum = 0;
  for (let i = off; i < off + 512; i++) sum += tar[i]!;
  tar.write(sum.toString(8).padStart(6, '0') + '\0 ', off + 148, 8, 'latin1');
}

/** Runs clip, counting stdout's lines without keeping them (a deep `ls -R` prints hundreds of MB). */
function countLines(args: string[], env: NodeJS.ProcessEnv): Promise<{ code: number; lines: number; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [BIN, ...args], { env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
    let lines = 0;
    let stderr = '';
    child.stdout.on('data', (b: Buffer) => {
      for (let i = b.indexOf(10); i >= 0; i = b.indexOf(10, i + 1)) lines++;
    });
    child.stderr.on('data', (b: Buffer) => (stderr += b.toString()));
    child.on('error', reject);
    child.on('close', (code) => resolve({ code: code ?? -1, lines, stderr }));
  });
}

describe('crafted layers through clip index', () => {
  let ws: ClipWorkspace;
  let n = 0;
  before(async () => {
    ws = await clipWorkspace('hostile-layers');
  });
  after(async () => {
    if (ws) await rm(ws.dir, { recursive: true, force: true });
  });

  async function image(tars: Buffer[]): Promise<{ ref: string; dir: string; out: string }> {
    const dir = path.join(ws.dir, `img${++n}`);
    const ref = await writeRawLayerImage(
      dir,
      tars.map((t) => gzipLayer(t)),
    );
    return { ref, dir, out: path.join(ws.dir, `img${n}.clip`) };
  }

  it('lists a file hidden in the "data" of a directory header, as Go (containerd, umoci) does', async () => {
    const tar = buildTar([
      { type: 'dir', path: 'd' },
      { type: 'file', path: 'd/hidden', data: 'boo\n' },
      { type: 'file', path: 'after', data: 'x' },
    ]);
    // The directory's header now claims the next 1024 bytes (hidden's header and data) as its data.
    resize(tar, 0, 1024);
    const img = await image([tar]);
    const r = await runClip(['index', img.ref, '-o', img.out]);
    assert.equal(r.code, 0, r.stderr);
    const ls = await runClip(['ls', '-R', img.out]);
    assert.deepEqual(ls.stdout.toString().trim().split('\n'), ['after', 'd', 'd/hidden']);
    if (canRunUmoci()) {
      const u = await umociUnpack(img.dir, 'latest');
      try {
        const { stdout } = await run('find', [u.rootfs, '-mindepth', '1', '-printf', '%P\\n']);
        assert.deepEqual(stdout.toString().trim().split('\n').sort(), ['after', 'd', 'd/hidden']);
      } finally {
        await u.cleanup();
      }
    }
  });

  it('indexes a PAX mtime of 2^53-1 as the last second of year 9999', async () => {
    const img = await image([buildTar([{ type: 'file', path: 'f', data: 'x', mtime: { sec: Number.MAX_SAFE_INTEGER, nsec: 0 } }])]);
    const r = await runClip(['index', img.ref, '-o', img.out]);
    assert.equal(r.code, 0, r.stderr);
    const ls = await runClip(['ls', '--json', img.out]);
    const [entry] = JSON.parse(ls.stdout.toString()) as { path: string; mtime: unknown }[];
    assert.equal(entry!.path, 'f');
    assert.match(JSON.stringify(entry!.mtime), /253402300799|9999-12-31T23:59:59/);
  });

  it('refuses a layer with a name that is not UTF-8, naming its offset and bytes', async () => {
    const tar = buildTar([
      { type: 'file', path: 'ok', data: 'x' },
      { type: 'file', path: 'n?', data: 'y' },
    ]);
    tar[1024 + 1] = 0xff; // "n\xff": the name field holds raw bytes
    resize(tar, 1024, 1); // recompute the checksum
    const img = await image([tar]);
    const r = await runClip(['index', img.ref, '-o', img.out]);
    assert.equal(r.code, 1);
    assert.equal(r.stderr.trim(), 'clip: name "n\\xff" of the entry at offset 1024 is not UTF-8 (clip keeps names as text)');
  });

  it('a mount answers a name that is not UTF-8 with ENOENT, not with the file whose name has a real U+FFFD', async () => {
    const img = await image([buildTar([{ type: 'file', path: 'n\uFFFD', data: 'replacement\n' }])]);
    const r = await runClip(['index', img.ref, '-o', img.out]);
    assert.equal(r.code, 0, r.stderr);
    sweepClipMounts();
    const mp = path.join(ws.dir, 'mnt-names');
    await mkdir(mp);
    const m = await runClip(['mount', img.out, mp], { env: ws.env });
    assert.equal(m.code, 0, m.stderr);
    try {
      assert.equal(await readFile(path.join(mp, 'n\uFFFD'), 'utf8'), 'replacement\n');
      // "n\xff" and a truncated 4-byte sequence (as long as U+FFFD's encoding) both decode to "n\uFFFD".
      for (const bad of [[0xff], [0xf0, 0x90, 0x80]]) {
        const name = Buffer.concat([Buffer.from(`${mp}/n`), Buffer.from(bad)]);
        await assert.rejects(stat(name), { code: 'ENOENT' }, `n + ${Buffer.from(bad).toString('hex')}`);
      }
    } finally {
      if (isMounted(mp)) await runClip(['umount', mp], { env: ws.env });
    }
    assert.ok(!isMounted(mp));
  });

  it('indexes 20,000 levels of nesting; clip ls -R and a mount walk list every level', async () => {
    const depth = 20_000;
    const deep = Array.from({ length: depth }, () => 'd').join('/');
    const img = await image([buildTar([{ type: 'file', path: `${deep}/f`, data: 'bottom\n' }])]);
    const r = await runClip(['index', img.ref, '-o', img.out]);
    assert.equal(r.code, 0, r.stderr);
    const ls = await countLines(['ls', '-R', img.out], {});
    assert.equal(ls.code, 0, ls.stderr);
    assert.equal(ls.lines, depth + 1);

    sweepClipMounts();
    const mp = path.join(ws.dir, 'mnt');
    await mkdir(mp);
    const m = await runClip(['mount', img.out, mp], { env: ws.env });
    assert.equal(m.code, 0, m.stderr);
    try {
      // find walks with openat, so no path it passes the kernel gets long; -printf keeps the output small.
      const { stdout } = await run('find', [mp, '-mindepth', '1', '-printf', '%y']);
      assert.equal(stdout.toString(), 'd'.repeat(depth) + 'f');
    } finally {
      if (isMounted(mp)) await runClip(['umount', mp], { env: ws.env });
    }
    assert.ok(!isMounted(mp));
  });
});

describe('millions of duplicate tar headers through clip index (small heap)', () => {
  let dir: string;
  before(async () => {
    dir = await mkdtemp(path.join(tmpdir(), 'clip-dups-'));
  });
  after(async () => {
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  it('collapses them into one entry instead of running out of memory; --max-entries bounds the rest', async () => {
    // One gzip member of 2,048 identical headers, repeated: 2M headers, 1 GiB of tar, under a MB of gzip.
    // Kept, they need ~600 MB of heap (290 B each): more than the 256 MB the child gets.
    // Owner names as docker writes them: each becomes two more strings per entry kept.
    const header = buildTar(
      [{ type: 'file', path: 'dup', mode: 0o644, uname: 'root', gname: 'root', mtime: { sec: 1_700_000_000, nsec: 0 } }],
      { endBlocks: 0 },
    );
    assert.equal(header.length, 512);
    const chunk = Buffer.concat(Array.from({ length: 2048 }, () => header));
    const member = gzipSync(chunk, { level: 9 });
    const repeats = 1024;
    const end = Buffer.concat([buildTar([{ type: 'file', path: 'last', data: 'end\n' }])]);
    const diff = createHash('sha256');
    for (let i = 0; i < repeats; i++) diff.update(chunk);
    diff.update(end);
    const blob = Buffer.concat([...Array.from({ length: repeats }, () => member), gzipSync(end)]);
    const ref = await writeRawLayerImage(path.join(dir, 'layout'), [{ blob, diffId: `sha256:${diff.digest('hex')}` }]);

    const out = path.join(dir, 'dups.clip');
    // --max-ratio 0: the blob inflates ~1000:1, which the ratio bound alone would refuse.
    const r = await runClip(['index', ref, '-o', out, '--json', '--max-ratio', '0'], { env: { NODE_OPTIONS: '--max-old-space-size=256' } });
    assert.equal(r.code, 0, r.stderr);
    assert.equal((JSON.parse(r.stdout.toString()) as { entries: number }).entries, 3); // root, dup, last
    const ls = await runClip(['ls', out]);
    assert.deepEqual(ls.stdout.toString().trim().split('\n'), ['dup', 'last']);

    // Distinct names are not collapsed: the budget says so clearly.
    const many = buildTar(Array.from({ length: 50 }, (_, i) => ({ type: 'file' as const, path: `f${i}` })));
    const ref2 = await writeRawLayerImage(path.join(dir, 'layout2'), [gzipLayer(many)]);
    const refused = await runClip(['index', ref2, '-o', path.join(dir, 'many.clip'), '--max-entries', '20']);
    assert.equal(refused.code, 1);
    assert.match(refused.stderr, /^clip: the image has more than 20 tar entries .*--max-entries/);
  });
});
