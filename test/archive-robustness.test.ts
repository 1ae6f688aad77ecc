// clip archive of trees that fight back: files that answer EIO when read
// (from the first byte, or half-way through) and names that are not UTF-8
// are reported on stderr and left out of the archive; the rest archives and
// extracts exactly. The EIO files live on a FUSE mount served by the test.

import assert from 'node:assert/strict';
import { mkdir, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { isMounted } from '../src/fuse/index.js';
import { runClip } from './helpers/cli.js';
import { mountEioFs } from './helpers/eio-fs.js';
import { clipWorkspace, type ClipWorkspace } from './helpers/mounts.js';
import { createPrng } from './helpers/prng.js';

describe('clip archive of unreadable files and non-UTF-8 names', () => {
  let ws: ClipWorkspace;
  before(async () => {
    ws = await clipWorkspace('archive-robust');
  });
  after(async () => {
    if (ws) await rm(ws.dir, { recursive: true, force: true });
  });

  it('files that give EIO (at once, or after 1 MiB) are reported and skipped; the rest extracts exactly', async () => {
    const mnt = path.join(ws.dir, 'eio');
    const prng = createPrng(7);
    const good = prng.bytes(200_000);
    const server = await mountEioFs(mnt, [
      { name: 'a-good.bin', data: good, failFrom: Infinity },
      { name: 'b-bad.bin', data: Buffer.alloc(256 * 1024, 1), failFrom: 0 },
      { name: 'c-late.bin', data: prng.bytes(3 << 20), failFrom: 1.5 * (1 << 20) },
      { name: 'd-after.txt', data: Buffer.from('still here\n'), failFrom: Infinity },
    ]);
    const out = path.join(ws.dir, 'eio.clip');
    try {
      const r = await runClip(['archive', mnt, '-o', out, '--no-xattrs', '--span-size', '64K']);
      assert.equal(r.code, 0, r.stderr);
      assert.doesNotMatch(r.stderr, /unexpected error|\n\s+at /);
      assert.match(r.stderr, /^clip: skipped b-bad\.bin: cannot read it \(EIO\)$/m);
      assert.match(r.stderr, /^clip: skipped c-late\.bin: cannot read it \(EIO after 1048576 of 3145728 bytes\)$/m);
    } finally {
      await server.close();
      assert.ok(!isMounted(mnt));
    }
    const ls = await runClip(['ls', out, '/']);
    assert.equal(ls.code, 0, ls.stderr);
    assert.doesNotMatch(ls.stdout.toString(), /b-bad|c-late/, 'the skipped files are not in the archive');
    const dir = path.join(ws.dir, 'eio-extracted');
    const x = await runClip(['extract', out, dir]);
    assert.equal(x.code, 0, x.stderr);
    assert.deepEqual((await readdir(dir)).sort(), ['a-good.bin', 'd-after.txt']);
    assert.ok((await readFile(path.join(dir, 'a-good.bin'))).equals(good));
    assert.equal(await readFile(path.join(dir, 'd-after.txt'), 'utf8'), 'still here\n');
  });

  it('names that are not UTF-8 are reported as such (bytes shown) and skipped, not "cannot stat it (ENOENT)"', async () => {
    const src = path.join(ws.dir, 'names');
    await mkdir(src);
    const bytes = (s: string): Buffer => Buffer.from(s, 'latin1');
    await writeFile(path.join(src, 'good.txt'), 'good\n');
    await writeFile(Buffer.concat([Buffer.from(src + '/'), bytes('n\xff')]), 'one\n');
    await writeFile(Buffer.concat([Buffer.from(src + '/'), bytes('n\xfe')]), 'two\n');
    const badDir = Buffer.concat([Buffer.from(src + '/'), bytes('d\xff')]);
    await mkdir(badDir);
    await writeFile(Buffer.concat([badDir, Buffer.from('/inside.txt')]), 'in\n');
    const out = path.join(ws.dir, 'names.clip');
    const r = await runClip(['archive', src, '-o', out, '--span-size', '64K']);
    assert.equal(r.code, 0, r.stderr);
    assert.doesNotMatch(r.stderr, /ENOENT|unexpected error/);
    for (const shown of ['n\\\\xff', 'n\\\\xfe', 'd\\\\xff']) {
      assert.match(r.stderr, new RegExp(`^clip: skipped ${shown}: its name is not valid UTF-8`, 'm'));
    }
    const dir = path.join(ws.dir, 'names-extracted');
    const x = await runClip(['extract', out, dir]);
    assert.equal(x.code, 0, x.stderr);
    assert.deepEqual(await readdir(dir), ['good.txt']);
  });
});
