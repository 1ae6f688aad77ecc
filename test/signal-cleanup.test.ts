// SIGINT/SIGTERM in the middle of `clip archive` and `clip extract`: the
// temp file (or temp directory) is removed, nothing but what was there
// before remains, and clip exits 130 / 143 as shells expect. "In the
// middle" is observed, not timed: the signal goes once the temp file exists.

import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { mkdir, readdir, rm } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { after, before, describe, it } from 'node:test';
import { runClip } from './helpers/cli.js';
import { run } from './helpers/exec.js';
import { clipWorkspace, type ClipWorkspace } from './helpers/mounts.js';

const BIN = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../bin/clip.js');

/** Starts clip, waits until `started()` sees its temp file, signals it, and returns its exit code. */
async function interrupt(
  args: string[],
  started: () => Promise<boolean>,
  signal: 'SIGINT' | 'SIGTERM',
): Promise<{ code: number | null; stderr: string; signalled: boolean }> {
  const child = spawn(process.execPath, [BIN, ...args], { stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  child.stderr.on('data', (b: Buffer) => (stderr += b.toString()));
  const exited = once(child, 'exit') as Promise<[number | null, NodeJS.Signals | null]>;
  let done = false;
  void exited.then(() => (done = true));
  let signalled = false;
  while (!done) {
    if (await started()) {
      child.kill(signal);
      signalled = true;
      break;
    }
    await new Promise((r) => setTimeout(r, 5));
  }
  const [code] = await exited;
  return { code, stderr, signalled };
}

describe('signals during clip archive and clip extract', () => {
  let ws: ClipWorkspace;
  let src: string;
  let archive: string;

  before(async () => {
    ws = await clipWorkspace('signals');
    src = path.join(ws.dir, 'src');
    await mkdir(src);
    // 128 MiB of incompressible data: seconds of gzip at level 9, long enough to be caught in the middle.
    for (const name of ['a.bin', 'b.bin']) await run('sh', ['-c', `head -c ${64 << 20} /dev/urandom > '${path.join(src, name)}'`]);
    archive = path.join(ws.dir, 'tree.clip');
    const r = await runClip(['archive', src, '-o', archive, '--no-xattrs', '--level', '1']);
    assert.equal(r.code, 0, r.stderr);
  });
  after(async () => {
    if (ws) await rm(ws.dir, { recursive: true, force: true });
  });

  for (const [signal, code] of [
    ['SIGINT', 130],
    ['SIGTERM', 143],
  ] as const) {
    it(`${signal} during clip archive: the temp file is removed, exit ${code}`, async () => {
      const outDir = path.join(ws.dir, `archive-${signal}`);
      await mkdir(outDir);
      const before = ['keep.txt'];
      await run('sh', ['-c', `echo keep > '${path.join(outDir, 'keep.txt')}'`]);
      const r = await interrupt(
        ['archive', src, '-o', path.join(outDir, 'out.clip'), '--no-xattrs', '--level', '9'],
        async () => (await readdir(outDir)).some((f) => f.startsWith('.out.clip.tmp-')),
        signal,
      );
      assert.ok(r.signalled, `clip finished before it could be interrupted: ${r.stderr}`);
      assert.equal(r.code, code, r.stderr);
      assert.match(r.stderr, new RegExp(`^clip: interrupted by ${signal}`, 'm'));
      assert.deepEqual(await readdir(outDir), before, 'nothing but what was there before');
    });

    it(`${signal} during clip extract: the temp directory is removed, exit ${code}`, async () => {
      const parent = path.join(ws.dir, `extract-${signal}`);
      await mkdir(parent);
      await run('sh', ['-c', `echo keep > '${path.join(parent, 'keep.txt')}'`]);
      const r = await interrupt(
        ['extract', archive, path.join(parent, 'tree')],
        async () => (await readdir(parent)).some((f) => f.startsWith('.tree.tmp-extract-')),
        signal,
      );
      assert.ok(r.signalled, `clip finished before it could be interrupted: ${r.stderr}`);
      assert.equal(r.code, code, r.stderr);
      assert.deepEqual(await readdir(parent), ['keep.txt'], 'nothing but what was there before');
    });
  }
});
