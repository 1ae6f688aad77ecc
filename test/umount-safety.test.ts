// clip mount and umount touch only what is theirs: umount refuses mounts it
// did not make (also one put where a clip mount was), reports a busy mount
// instead of breaking its users (--lazy detaches it and the daemon keeps
// serving), concurrent rootfs mounts of one image share one served image, and
// path errors name the real problem. (No process is signalled by umount any
// more: the node daemon serves every mount.)

import assert from 'node:assert/strict';
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import { mkdir, readFile, rm } from 'node:fs/promises';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { isMounted, readMounts } from '../src/fuse/index.js';
import { buildBusyboxImage, HELLO } from './helpers/busybox-image.js';
import { runClip } from './helpers/cli.js';
import type { BuiltImage } from './helpers/image-builder.js';
import { alive, clipWorkspace, mountRecords, sweepClipMounts, testMounts, type ClipWorkspace } from './helpers/mounts.js';
import { pushImage, startRegistry, type RegistryHandle } from './helpers/registry.js';

async function waitFor(cond: () => boolean | Promise<boolean>, what: string, ms = 15_000): Promise<void> {
  const until = Date.now() + ms;
  while (!(await cond())) {
    if (Date.now() > until) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** Processes whose command line mentions `dir` (clip daemons of a workspace name its state and cache dirs). */
function processesMentioning(dir: string): number[] {
  const out: number[] = [];
  for (const name of readdirSync('/proc')) {
    if (!/^\d+$/.test(name) || Number(name) === process.pid) continue;
    try {
      if (readFileSync(`/proc/${name}/cmdline`, 'utf8').includes(dir) && alive(Number(name))) out.push(Number(name));
    } catch {
      // exited meanwhile
    }
  }
  return out;
}

/** A process that opens `file` (cwd `cwd`), says "open", and prints the file once it reads a line on stdin. */
function holdOpen(cwd: string, file: string): Promise<{ child: ChildProcess; output: Promise<{ code: number | null; out: string }> }> {
  const child = spawn('sh', ['-c', `exec 3<"${file}"; echo open; read x; cat <&3`], { cwd, stdio: ['pipe', 'pipe', 'pipe'] });
  let out = '';
  const output = new Promise<{ code: number | null; out: string }>((resolve) => child.on('close', (code) => resolve({ code, out })));
  return new Promise((resolve, reject) => {
    child.stdout.setEncoding('utf8').on('data', (d: string) => {
      out += d;
      if (out === 'open\n') {
        out = '';
        resolve({ child, output });
      }
    });
    child.on('error', reject);
    child.on('close', (code) => reject(new Error(`holder exited (${code}) before opening ${file}`)));
  });
}

function sh(cmd: string, args: string[]): void {
  const r = spawnSync(cmd, args, { encoding: 'utf8' });
  assert.equal(r.status, 0, `${cmd} ${args.join(' ')}: ${r.stderr}`);
}

describe('clip umount touches only what is its own', { timeout: 300_000 }, () => {
  let registry: RegistryHandle;
  let ws: ClipWorkspace;
  let image: BuiltImage;
  let index = '';

  before(async () => {
    sweepClipMounts();
    registry = await startRegistry();
    ws = await clipWorkspace('usafety');
    image = await buildBusyboxImage();
    await pushImage(image.dir, image.tag, registry.host, 'safety/busybox');
    index = path.join(ws.dir, 'busybox.clip');
    const r = await runClip(['index', `${registry.host}/safety/busybox:${image.tag}`, '-o', index]);
    assert.equal(r.code, 0, r.stderr);
  });

  after(async () => {
    for (const mp of testMounts(true).sort((a, b) => b.length - a.length)) spawnSync('umount', ['-l', mp]);
    sweepClipMounts();
    await registry?.stop();
    if (image) await rm(image.dir, { recursive: true, force: true });
    if (ws) spawnSync('rm', ['-rf', ws.dir]);
  });

  async function mountImage(mp: string): Promise<{ pid: number; mountpoint: string }> {
    await mkdir(mp, { recursive: true });
    const r = await runClip(['mount', index, mp], { env: ws.env });
    assert.equal(r.code, 0, r.stderr);
    return (await mountRecords(ws)).find((x) => x.mountpoint === mp)!;
  }

  it('refuses a tmpfs, a bind mount and another FUSE filesystem that clip never made, and leaves them mounted', async () => {
    const src = path.join(ws.dir, 'foreign-src');
    await mkdir(path.join(src, 'lower'), { recursive: true });
    await mkdir(path.join(src, 'upper'));
    await mkdir(path.join(src, 'work'));
    const kinds: [string, string, string[]][] = [
      ['tmpfs', 'mount', ['-t', 'tmpfs', 'tmpfs']],
      ['bind', 'mount', ['--bind', src]],
      ['fuse', 'fuse-overlayfs', ['-o', `lowerdir=${src}/lower,upperdir=${src}/upper,workdir=${src}/work`]],
    ];
    for (const [kind, cmd, args] of kinds) {
      const mp = path.join(ws.dir, `foreign-${kind}`);
      await mkdir(mp);
      sh(cmd, [...args, mp]);
      try {
        const r = await runClip(['umount', mp], { env: ws.env });
        assert.equal(r.code, 1, `${kind}: ${r.stderr}`);
        assert.match(r.stderr, /^clip: .* is not a clip mount/, kind);
        assert.doesNotMatch(r.stderr, /unexpected error/);
        assert.ok(isMounted(mp), `${kind} stays mounted`);
      } finally {
        spawnSync('umount', ['-l', mp]);
      }
    }
  });

  it('refuses a foreign mount that now sits where a clip mount was (unmounted behind its back), and drops the stale entry', async () => {
    const mp = path.join(ws.dir, 'stale');
    const keep = path.join(ws.dir, 'stale-keep');
    await mountImage(keep); // the daemon stays up meanwhile
    await mountImage(mp);
    sh('umount', ['-l', mp]);
    sh('mount', ['-t', 'tmpfs', 'tmpfs', mp]);
    try {
      const r = await runClip(['umount', mp], { env: ws.env });
      assert.equal(r.code, 1, r.stderr);
      assert.match(r.stderr, /is not a clip mount \(a tmpfs mount clip did not make; left alone\)/);
      assert.ok(isMounted(mp), 'the tmpfs stays mounted');
    } finally {
      spawnSync('umount', ['-l', mp]);
    }
    assert.ok(!(await mountRecords(ws)).some((r) => r.mountpoint === mp), 'the stale entry is dropped');
    const r = await runClip(['umount', keep], { env: ws.env });
    assert.equal(r.code, 0, r.stderr);
  });

  it('a busy mount is reported and stays served; --lazy detaches it and the daemon serves the open file until it closes', async () => {
    const mp = path.join(ws.dir, 'busy');
    const rec = await mountImage(mp);
    const holder = await holdOpen(mp, 'etc/hello');
    try {
      const r = await runClip(['umount', mp], { env: ws.env });
      assert.equal(r.code, 1, r.stderr);
      assert.equal(r.stderr, `clip: ${mp} is busy (in use by a process); close it or use --lazy\n`);
      assert.ok(isMounted(mp), 'still mounted');
      assert.equal(await readFile(path.join(mp, 'etc/hello'), 'utf8'), HELLO, 'still served');
      assert.ok(alive(rec.pid));

      const lazy = await runClip(['umount', '--lazy', mp], { env: ws.env });
      assert.equal(lazy.code, 0, lazy.stderr);
      assert.ok(!isMounted(mp), 'detached');
      assert.deepEqual(
        (await mountRecords(ws)).map((x) => x.mountpoint.includes('/state/fs/')),
        [true],
        'only the image is left: it serves the detached mount',
      );
      assert.ok(alive(rec.pid), 'the daemon is not killed while a file is open');
      holder.child.stdin!.end('go\n');
      const { code, out } = await holder.output;
      assert.equal(code, 0);
      assert.equal(out, HELLO, 'the open file is still served after the lazy unmount');
      // The image stays served while a detached mount may use it; the daemon ends when told.
      const stop = await runClip(['daemon', '--stop'], { env: ws.env });
      assert.equal(stop.code, 0, stop.stderr);
      await waitFor(() => !alive(rec.pid), 'the daemon to exit');
    } finally {
      holder.child.kill('SIGKILL');
    }
  });

  it('a busy rootfs is reported and stays served; --lazy detaches it and the shared daemon serves on', async () => {
    const rootfs = path.join(ws.dir, 'busy-rootfs');
    await mkdir(rootfs);
    const m = await runClip(['mount', index, '--rootfs', rootfs], { env: ws.env });
    assert.equal(m.code, 0, m.stderr);
    const lower = (await mountRecords(ws)).find((x) => x.mountpoint.includes('/state/fs/'))!;
    const holder = await holdOpen(rootfs, 'etc/hello');
    try {
      const r = await runClip(['umount', rootfs], { env: ws.env });
      assert.equal(r.code, 1, r.stderr);
      assert.equal(r.stderr, `clip: ${rootfs} is busy (in use by a process); close it or use --lazy\n`);
      assert.ok(isMounted(rootfs), 'still mounted');
      assert.equal((await mountRecords(ws)).length, 2, 'the image and its rootfs are still listed');
      assert.equal(await readFile(path.join(rootfs, 'etc/hello'), 'utf8'), HELLO);

      const lazy = await runClip(['umount', '--lazy', rootfs], { env: ws.env });
      assert.equal(lazy.code, 0, lazy.stderr);
      assert.ok(!isMounted(rootfs), 'detached');
      assert.deepEqual(
        (await mountRecords(ws)).map((x) => x.mountpoint),
        [lower.mountpoint],
        'only the image is left: it serves the detached rootfs',
      );
      holder.child.stdin!.end('go\n');
      const { code, out } = await holder.output;
      assert.equal(code, 0);
      assert.equal(out, HELLO);
      const stop = await runClip(['daemon', '--stop'], { env: ws.env });
      assert.equal(stop.code, 0, stop.stderr);
      await waitFor(() => !alive(lower.pid), 'the daemon to exit');
    } finally {
      holder.child.kill('SIGKILL');
    }
  });

  it('four concurrent rootfs mounts of one index share one read-only mount; four concurrent umounts leave nothing', async () => {
    const dirs = [0, 1, 2, 3].map((i) => path.join(ws.dir, `concurrent-${i}`));
    for (const d of dirs) await mkdir(d);
    const mounts = await Promise.all(dirs.map((d) => runClip(['mount', index, '--rootfs', d], { env: ws.env })));
    try {
      for (const r of mounts) assert.equal(r.code, 0, r.stderr);
      const images = (await mountRecords(ws)).filter((x) => x.mountpoint.includes('/state/fs/'));
      assert.equal(images.length, 1, 'one served image');
      const lowers = readMounts()
        .filter((m) => dirs.includes(m.mountPoint))
        .map((m) => /lowerdir=([^,]+)/.exec(m.superOptions)?.[1]);
      assert.deepEqual(
        lowers,
        dirs.map(() => images[0]!.mountpoint),
        'all four overlays stack on the one image',
      );
      for (const d of dirs) assert.equal(await readFile(path.join(d, 'etc/hello'), 'utf8'), HELLO);
    } finally {
      const umounts = await Promise.all(dirs.map((d) => runClip(['umount', d], { env: ws.env })));
      for (const r of umounts) assert.equal(r.code, 0, r.stderr);
    }
    assert.deepEqual(testMounts(true), [], 'nothing mounted');
    assert.deepEqual(await mountRecords(ws), []);
    await waitFor(() => processesMentioning(ws.dir).length === 0, 'no daemon left');
  });

  it('two concurrent mounts on one mountpoint: one mounts, the other is refused, nothing stacks', async () => {
    const mp = path.join(ws.dir, 'twice');
    await mkdir(mp);
    const results = await Promise.all([0, 1].map(() => runClip(['mount', index, mp], { env: ws.env })));
    try {
      assert.deepEqual(results.map((r) => r.code).sort(), [0, 1], results.map((r) => r.stderr).join(''));
      assert.match(results.find((r) => r.code === 1)!.stderr, /already a mount point/);
      assert.equal(readMounts().filter((m) => m.mountPoint === mp).length, 1, 'exactly one mount');
      assert.equal(await readFile(path.join(mp, 'etc/hello'), 'utf8'), HELLO);
    } finally {
      const r = await runClip(['umount', mp], { env: ws.env });
      assert.equal(r.code, 0, r.stderr);
    }
    assert.ok(!isMounted(mp));
    await waitFor(() => processesMentioning(mp).length === 0, 'no daemon left');
  });

  it('a mountpoint, rootfs or index path too long for the kernel is named as such, not "does not exist"', async () => {
    // Built by a process that descends with relative mkdir and chdir: the whole path is longer than PATH_MAX (4096).
    const base = path.join(ws.dir, 'long');
    const part = 'd'.repeat(200);
    const depth = Math.ceil((4453 - base.length) / (part.length + 1));
    const script = `const fs = require('fs'); fs.mkdirSync(${JSON.stringify(base)}); process.chdir(${JSON.stringify(base)});
      for (let i = 0; i < ${depth}; i++) { fs.mkdirSync('${part}'); process.chdir('${part}'); }
      fs.copyFileSync(${JSON.stringify(index)}, 'i.clip');`;
    sh(process.execPath, ['-e', script]);
    const long = base + `/${part}`.repeat(depth);
    assert.ok(long.length > 4096);
    const mp = path.join(ws.dir, 'long-mp');
    await mkdir(mp);
    const cases: [string, string[]][] = [
      ['mountpoint', ['mount', index, long]],
      ['rootfs', ['mount', index, '--rootfs', long]],
      ['index', ['mount', path.join(long, 'i.clip'), mp]],
    ];
    for (const [what, args] of cases) {
      const r = await runClip(args, { env: ws.env });
      assert.equal(r.code, 1, `${what}: ${r.stderr}`);
      assert.doesNotMatch(r.stderr, /does not exist|no such file|unexpected error/, what);
      assert.match(r.stderr, /path is too long \(ENAMETOOLONG/, what);
    }
  });

  it('leaves no clip mount behind', () => {
    assert.deepEqual(testMounts(true), []);
  });
});
