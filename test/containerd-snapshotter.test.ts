// clip as containerd's snapshotter, end to end with Debian's containerd 1.6:
// `clip pull` + `ctr run --snapshotter clip` start an image lazily (its
// index in the node's local store) fetching a fraction of it; images
// sharing base layers share their snapshots; removing images leaves nothing
// mounted; an image without an index unpacks normally through the same
// snapshotter; a container keeps running and reading across restarts of the
// daemon's serving process and of containerd.

import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdir, readFile, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { readMounts } from '../src/fuse/index.js';
import { chainIds } from '../src/containerd/pull.js';
import { buildBusyboxImage, HELLO } from './helpers/busybox-image.js';
import { runClip } from './helpers/cli.js';
import { startClipDaemon, type ClipDaemon } from './helpers/clip-daemon.js';
import { startContainerd, type ContainerdHandle } from './helpers/containerd.js';
import type { BuiltImage } from './helpers/image-builder.js';
import { clipWorkspace, sweepClipMounts, type ClipWorkspace } from './helpers/mounts.js';
import { createPrng } from './helpers/prng.js';
import { pushImage, startRegistry, type RegistryHandle } from './helpers/registry.js';

async function waitFor(cond: () => boolean | Promise<boolean>, what: string, ms = 30_000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!(await cond())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

describe('clip as a containerd snapshotter', () => {
  let registry: RegistryHandle;
  let ws: ClipWorkspace;
  let daemon: ClipDaemon;
  let ctrd: ContainerdHandle;
  const built: BuiltImage[] = [];
  const refs = new Map<string, string>();

  const snapRoot = (): string => path.join(ws.env['CLIP_DATA_DIR']!, 'snapshotter');
  /** Mounts under the snapshotter's directories (the images' clip binds). */
  const snapMounts = (): string[] =>
    readMounts()
      .filter((m) => m.mountPoint.startsWith(`${snapRoot()}/`))
      .map((m) => m.mountPoint);
  const ctr = (args: string[]) => ctrd.ctr(args).then((r) => r.stdout.toString());

  async function image(name: string, extra: string | undefined, indexed: boolean): Promise<BuiltImage> {
    const img = await buildBusyboxImage(extra === undefined ? [] : [{ type: 'file', path: `etc/${name}`, mode: 0o644, data: extra }], name);
    built.push(img);
    const pushed = await pushImage(img.dir, img.tag, registry.host, `ctrd/${name}`);
    refs.set(name, pushed.reference);
    if (indexed) {
      // The node's local store of indexes, named by manifest digest (what the snapshotter looks up).
      const file = path.join(ws.env['CLIP_DATA_DIR']!, 'indexes', 'sha256', `${img.manifestDigest.slice('sha256:'.length)}.clip`);
      await mkdir(path.dirname(file), { recursive: true });
      const r = await runClip(['index', pushed.reference, '-o', file, '--span-size', '256K'], { env: ws.env });
      assert.equal(r.code, 0, r.stderr);
    }
    return img;
  }

  async function pull(name: string): Promise<string> {
    const r = await runClip(['pull', '--address', ctrd.socket, '--namespace', ctrd.namespace, refs.get(name)!], { env: ws.env });
    assert.equal(r.code, 0, r.stderr);
    return r.stdout.toString();
  }

  before(async () => {
    sweepClipMounts();
    registry = await startRegistry();
    ws = await clipWorkspace('ctrd');
    daemon = await startClipDaemon(ws.env);
    ctrd = await startContainerd({ snapshotterSocket: daemon.snapshotterSocket });
  });

  after(async () => {
    await ctrd?.destroy();
    await daemon?.stop();
    sweepClipMounts();
    await registry?.stop();
    for (const img of built) await rm(img.dir, { recursive: true, force: true });
    if (ws) await rm(ws.dir, { recursive: true, force: true });
  });

  it('clip pull + ctr run start an indexed image lazily: its output, a fraction fetched, the data layer untouched', async () => {
    const img = await image('lazy', 'lazy image\n', true);
    const out = await pull('lazy');
    assert.match(out, /lazily \(3 lazy, 0 unpacked, 0 already there\)/);
    const top = chainIds(img.layers.map((l) => l.diffId)).at(-1)!;
    // Committed remotely: marked as the image's merged mount, nothing unpacked into it.
    assert.match(await ctr(['snapshot', '--snapshotter', 'clip', 'info', top]), /"containerd.io\/snapshot\/clip.remote": "image"/);
    const printed = await ctr(['run', '--rm', '--snapshotter', 'clip', refs.get('lazy')!, 'lazy-1', 'cat', '/etc/hello', '/etc/lazy']);
    assert.equal(printed, `${HELLO}lazy image\n`);
    const ps = await daemon.ps();
    const served = ps.mounts.find((m) => m.image.includes('/ctrd/lazy'));
    assert.ok(served, `the image is served: ${JSON.stringify(ps.mounts)}`);
    assert.equal(served.mountpoints.length, 1);
    assert.ok(served.mountpoints[0]!.startsWith(`${snapRoot()}/snapshots/`), served.mountpoints[0]);
    const r = await runClip(['stats', '--json', served.mountpoints[0]!], { env: ws.env });
    assert.equal(r.code, 0, r.stderr);
    const layers = JSON.parse(r.stdout.toString()) as { compressedSize: number; fetchedBytes: number }[];
    const compressed = layers.reduce((n, l) => n + l.compressedSize, 0);
    const fetched = layers.reduce((n, l) => n + l.fetchedBytes, 0);
    assert.ok(fetched > 0 && fetched < compressed / 2, `fetched ${fetched} of ${compressed} compressed bytes`);
    // The 8 MB data layer holds nothing `cat` needs.
    assert.equal(layers[1]!.fetchedBytes, 0, JSON.stringify(layers));
  });

  it('a second image on the same base layers reuses their snapshots and runs from its own merged mount', async () => {
    await image('second', 'second image\n', true);
    const out = await pull('second');
    assert.match(out, /1 lazy, 0 unpacked, 2 already there/);
    assert.equal(
      await ctr(['run', '--rm', '--snapshotter', 'clip', refs.get('second')!, 'second-1', 'cat', '/etc/second']),
      'second image\n',
    );
    assert.equal(await ctr(['run', '--rm', '--snapshotter', 'clip', refs.get('lazy')!, 'lazy-2', 'cat', '/etc/lazy']), 'lazy image\n');
    // The base layers are placeholders: the second image's file is not in the first's rootfs.
    await assert.rejects(ctr(['run', '--rm', '--snapshotter', 'clip', refs.get('lazy')!, 'lazy-3', 'cat', '/etc/second']));
    const images = (await daemon.ps()).mounts.filter((m) => m.image.includes('/ctrd/'));
    assert.equal(images.length, 2, JSON.stringify(images));
  });

  it('ctr image rm + garbage collection remove the snapshots and leave nothing mounted', async () => {
    await ctr(['image', 'rm', '--sync', refs.get('lazy')!, refs.get('second')!]);
    await waitFor(
      async () => (await ctr(['snapshot', '--snapshotter', 'clip', 'ls'])).trim().split('\n').length === 1,
      'the snapshots to go',
    );
    assert.deepEqual(snapMounts(), []);
    assert.deepEqual(
      (await daemon.ps()).mounts.filter((m) => m.image.includes('/ctrd/')),
      [],
      'the daemon serves neither image any more',
    );
  });

  it('an image without an index unpacks normally through the clip snapshotter (ctr pull and clip pull) and runs', async () => {
    await image('plain', 'plain image\n', false);
    await ctr(['image', 'pull', '--plain-http', '--snapshotter', 'clip', refs.get('plain')!]);
    assert.equal(await ctr(['run', '--rm', '--snapshotter', 'clip', refs.get('plain')!, 'plain-1', 'cat', '/etc/plain']), 'plain image\n');
    assert.deepEqual(snapMounts(), [], 'no clip mount for an image clip has no index of');
    // Unpacked for real: the file is in a layer directory on disk.
    const infos = await ctr(['snapshot', '--snapshotter', 'clip', 'ls']);
    assert.equal(infos.trim().split('\n').length, 4, infos);
    await ctr(['image', 'rm', '--sync', refs.get('plain')!]);
    await waitFor(
      async () => (await ctr(['snapshot', '--snapshotter', 'clip', 'ls'])).trim().split('\n').length === 1,
      'the snapshots to go',
    );

    const out = await pull('plain');
    assert.match(out, /unpacked \(no clip index\) \(0 lazy, 3 unpacked, 0 already there\)/);
    assert.equal(await ctr(['run', '--rm', '--snapshotter', 'clip', refs.get('plain')!, 'plain-2', 'cat', '/etc/hello']), HELLO);
    await ctr(['image', 'rm', '--sync', refs.get('plain')!]);
  });

  it('a running container keeps running and reading while the serving process and containerd restart', async () => {
    await image('restart', undefined, true);
    await pull('restart');
    const out = path.join(ws.dir, 'out');
    await mkdir(out, { recursive: true });
    const script = [
      'cat /etc/hello > /out/first',
      'while [ ! -e /out/go ]; do sleep 0.1; done',
      // Read for the first time after the restarts: served by the new serving process.
      'sha256sum /usr/share/data.bin > /out/sum.tmp 2>/out/err; mv /out/sum.tmp /out/sum',
      'while true; do sleep 1; done',
    ].join('; ');
    await ctr([
      'run',
      '-d',
      '--snapshotter',
      'clip',
      '--mount',
      `type=bind,src=${out},dst=/out,options=rbind:rw`,
      refs.get('restart')!,
      'restart-1',
      'sh',
      '-c',
      script,
    ]);
    try {
      await waitFor(() => existsSync(path.join(out, 'first')), 'the container to start');
      assert.equal(await readFile(path.join(out, 'first'), 'utf8'), HELLO);
      const before = (await daemon.ps()).daemon.pid;
      process.kill(before, 'SIGKILL');
      await waitFor(async () => (await daemon.ps().catch(() => undefined))?.daemon.pid !== before, 'a new serving process', 60_000);
      await ctrd.restart();
      await writeFile(path.join(out, 'go'), '');
      await waitFor(() => existsSync(path.join(out, 'sum')), 'the container to read after the restarts', 60_000).catch((e: Error) => {
        const procs = spawnSync('ps', ['-eo', 'pid,stat,wchan:32,args'])
          .stdout.toString()
          .split('\n')
          .filter((l) => /sha256sum|sleep|sh -c/.test(l));
        throw new Error(`${e.message}; processes:\n${procs.join('\n')}\nthe daemon said:\n${daemon.output().slice(-3000)}`);
      });
      const want = createHash('sha256')
        .update(createPrng(42).compressible(6 * 1024 * 1024))
        .digest('hex');
      const err = await readFile(path.join(out, 'err'), 'utf8');
      assert.equal(
        (await readFile(path.join(out, 'sum'), 'utf8')).split(' ')[0],
        want,
        `sha256sum: ${err}\n${daemon.output().slice(-3000)}`,
      );
      assert.match(await ctr(['task', 'ls']), /restart-1\s+\d+\s+RUNNING/);
      // The snapshotter answers again, from the metadata it saved.
      assert.match(await ctr(['snapshot', '--snapshotter', 'clip', 'ls']), /Active/);
    } finally {
      await ctr(['task', 'kill', '-s', 'SIGKILL', 'restart-1']).catch(() => undefined);
      await waitFor(
        async () => !/restart-1/.test(await ctr(['task', 'ls'])) || /STOPPED/.test(await ctr(['task', 'ls'])),
        'the task to stop',
      );
      await ctr(['task', 'rm', '-f', 'restart-1']).catch(() => undefined);
      await ctr(['container', 'rm', 'restart-1']).catch(() => undefined);
      await ctr(['image', 'rm', '--sync', refs.get('restart')!]).catch(() => undefined);
    }
    await waitFor(() => snapMounts().length === 0, 'the image mount to go');
  });
});
