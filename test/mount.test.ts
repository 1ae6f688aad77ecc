// Mounting indexed images with the real kernel: the mounted tree equals
// `umoci unpack`'s (walked with ordinary system calls), containers run on a
// clip rootfs with runc, many readers at once get the right bytes, and the
// lifecycle (SIGKILL, SIGTERM, remount, two images, errors) leaves nothing
// mounted behind.

import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdir, readFile, readdir, rm, stat, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { isMounted } from '../src/fuse/index.js';
import { indexImage } from '../src/indexer/index-image.js';
import { buildBusyboxImage, HELLO } from './helpers/busybox-image.js';
import { runClip } from './helpers/cli.js';
import { buildFixture, LARGE, unstableMtimePaths } from './helpers/fixtures.js';
import type { BuiltImage } from './helpers/image-builder.js';
import { alive, clipWorkspace, mountRecords, sweepClipMounts, testMounts, type ClipWorkspace } from './helpers/mounts.js';
import { pushImage, startRegistry, type RegistryHandle } from './helpers/registry.js';
import { runContainer } from './helpers/runc.js';
import { compareTrees, walkTree } from './helpers/tree-walk.js';
import { umociUnpack } from './helpers/umoci.js';

const records = mountRecords;

async function waitFor(cond: () => boolean | Promise<boolean>, what: string, ms = 10_000): Promise<void> {
  const until = Date.now() + ms;
  while (!(await cond())) {
    if (Date.now() > until) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

describe('clip mount', () => {
  let registry: RegistryHandle;
  let ws: ClipWorkspace;
  const images = new Map<string, { image: BuiltImage; index: string }>();
  const mounted: string[] = [];

  async function mount(name: string, mp: string): Promise<void> {
    await mkdir(mp, { recursive: true });
    const r = await runClip(['mount', images.get(name)!.index, mp], { env: ws.env });
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout.toString().trim(), mp);
    mounted.push(mp);
  }

  async function umount(mp: string): Promise<void> {
    const r = await runClip(['umount', mp], { env: ws.env });
    assert.equal(r.code, 0, r.stderr);
    assert.ok(!isMounted(mp), `${mp} is unmounted`);
  }

  before(async () => {
    sweepClipMounts();
    registry = await startRegistry();
    ws = await clipWorkspace('mount');
    const built: [string, BuiltImage][] = [
      ['everything', await buildFixture('everything')],
      ['large', await buildFixture('large')],
      ['busybox', await buildBusyboxImage()],
    ];
    for (const [name, image] of built) {
      await pushImage(image.dir, image.tag, registry.host, `mount/${name}`);
      const index = path.join(ws.dir, `${name}.clip`);
      await indexImage(`${registry.host}/mount/${name}:${image.tag}`, { output: index, spanSize: name === 'large' ? 256 * 1024 : 4 << 20 });
      images.set(name, { image, index });
    }
  });

  after(async () => {
    for (const mp of mounted.reverse()) {
      if (isMounted(mp)) await runClip(['umount', mp], { env: ws.env });
    }
    sweepClipMounts();
    await registry?.stop();
    for (const { image } of images.values()) await rm(image.dir, { recursive: true, force: true });
    if (ws) await rm(ws.dir, { recursive: true, force: true });
  });

  for (const name of ['everything', 'large']) {
    it(`${name}: the mounted tree equals umoci unpack (metadata, xattrs, sha256 of every file)`, async () => {
      const mp = path.join(ws.dir, `mnt-${name}`);
      await mount(name, mp);
      try {
        const { image } = images.get(name)!;
        const bundle = await umociUnpack(image.dir, image.tag);
        let expected;
        try {
          expected = await walkTree(bundle.rootfs);
        } finally {
          await bundle.cleanup();
        }
        const actual = await walkTree(mp);
        const unstable = new Set(unstableMtimePaths(name as 'everything' | 'large'));
        assert.deepEqual(compareTrees(expected, actual, { ignoreField: (p, f) => f === 'mtimeNs' && unstable.has(p) }), []);
        assert.ok(actual.size > 20);
        const cap = spawnSync('getcap', [path.join(mp, 'usr/bin/ping')], { encoding: 'utf8' });
        if (name === 'everything') assert.match(cap.stdout, /cap_net_bind_service[=+]ep/);
        const df = spawnSync('df', ['-k', mp], { encoding: 'utf8' });
        assert.equal(df.status, 0, df.stderr);
      } finally {
        await umount(mp);
      }
    });
  }

  it('writes are refused: the image is read-only', async () => {
    const mp = path.join(ws.dir, 'mnt-ro');
    await mount('everything', mp);
    try {
      await assert.rejects(writeFile(path.join(mp, 'new.txt'), 'x'), { code: 'EROFS' });
      await assert.rejects(mkdir(path.join(mp, 'newdir')), { code: 'EROFS' });
      await assert.rejects(rm(path.join(mp, 'empty.txt')), { code: 'EROFS' });
    } finally {
      await umount(mp);
    }
  });

  it('runs a runc container on a writable clip rootfs; writes land in the upper dir, not the image', async () => {
    const rootfs = path.join(ws.dir, 'rootfs-a');
    const upper = path.join(ws.dir, 'upper-a');
    await mkdir(rootfs);
    const m = await runClip(['mount', images.get('busybox')!.index, '--rootfs', rootfs, '--upper-dir', upper], { env: ws.env });
    assert.equal(m.code, 0, m.stderr);
    mounted.push(rootfs);
    try {
      const r = await runContainer(rootfs, [
        '/bin/sh',
        '-c',
        'cat /etc/hello && sha256sum /usr/share/random.bin && echo written > /tmp/out && cat /tmp/out',
      ]);
      assert.equal(r.code, 0, r.stderr);
      const { image } = images.get('busybox')!;
      const random = image.layers[1]!.tarLayout.find((e) => e.path.endsWith('usr/share/random.bin'))!;
      const want = createHash('sha256')
        .update(image.layers[1]!.tar.subarray(random.dataOffset, random.dataOffset + random.size))
        .digest('hex');
      assert.equal(r.stdout, `${HELLO}${want}  /usr/share/random.bin\nwritten\n`);
      assert.equal(await readFile(path.join(upper, 'tmp/out'), 'utf8'), 'written\n', 'the write is in the upper dir');
      const served = async () => (await records(ws)).filter((x) => x.mountpoint.includes('/state/fs/'));
      const [lower] = await served();
      assert.ok(lower, 'the image has its directory in the daemon mount');
      assert.ok(!existsSync(path.join(lower.mountpoint, 'tmp/out')), 'the image is unchanged');

      // A second container of the same image shares the read-only image.
      const rootfsB = path.join(ws.dir, 'rootfs-b');
      await mkdir(rootfsB);
      const b = await runClip(['mount', images.get('busybox')!.index, '--rootfs', rootfsB], { env: ws.env });
      assert.equal(b.code, 0, b.stderr);
      mounted.push(rootfsB);
      assert.equal((await served()).length, 1, 'one served image');
      const rb = await runContainer(rootfsB, ['/bin/sh', '-c', 'test ! -e /tmp/out && echo clean']);
      assert.equal(rb.stdout, 'clean\n', rb.stderr);
      await umount(rootfsB);
      assert.equal((await served()).length, 1, 'the image stays served while rootfs-a uses it');
      await umount(rootfs);
      assert.deepEqual(await records(ws), [], 'the last umount ends the image');
      await waitFor(() => !alive(lower.pid), 'the daemon (started by clip mount) to exit');
    } finally {
      if (isMounted(rootfs)) await runClip(['umount', rootfs], { env: ws.env });
    }
  });

  it('many processes reading the same and different files at once get identical bytes', async () => {
    const mp = path.join(ws.dir, 'mnt-concurrent');
    await mount('large', mp);
    try {
      const { image } = images.get('large')!;
      const expected = new Map<string, string>();
      for (const layer of image.layers) {
        for (const e of layer.tarLayout) {
          const p = e.path.replace(/^\.\//, '');
          if (p.startsWith('big/') || p.endsWith('0.dat')) {
            expected.set(
              p,
              createHash('sha256')
                .update(layer.tar.subarray(e.dataOffset, e.dataOffset + e.size))
                .digest('hex'),
            );
          }
        }
      }
      const files = [...expected.keys()];
      const jobs: Promise<void>[] = [];
      for (let i = 0; i < 32; i++) {
        // Half the readers read the big files (the same ones), half different small files.
        const chosen = i % 2 === 0 ? Object.keys(LARGE.bigFiles) : files.slice((i * 7) % files.length, ((i * 7) % files.length) + 12);
        jobs.push(
          new Promise((resolve, reject) => {
            const child = spawn(
              'sha256sum',
              chosen.map((f) => path.join(mp, f)),
            );
            let out = '';
            child.stdout.on('data', (b: Buffer) => (out += b.toString()));
            child.on('error', reject);
            child.on('close', (code) => {
              try {
                assert.equal(code, 0);
                for (const line of out.trim().split('\n')) {
                  const [sum, file] = line.split(/\s+/);
                  assert.equal(sum, expected.get(path.relative(mp, file!)), file);
                }
                resolve();
              } catch (e) {
                reject(e);
              }
            });
          }),
        );
      }
      await Promise.all(jobs);
    } finally {
      await umount(mp);
    }
  });

  it('keeps inflated spans on disk by layer digest; damaged cache files are refetched, never served', async () => {
    const cacheDir = path.join(ws.dir, 'span-cache');
    const mp = path.join(ws.dir, 'mnt-cache');
    await mkdir(mp);
    const { image, index } = images.get('busybox')!;
    const read = async (): Promise<string> =>
      createHash('sha256')
        .update(await readFile(path.join(mp, 'usr/share/random.bin')))
        .digest('hex');
    const m = await runClip(['mount', index, mp, '--cache-dir', cacheDir], { env: ws.env });
    assert.equal(m.code, 0, m.stderr);
    mounted.push(mp);
    const want = await read();
    await umount(mp);
    const layerDir = path.join(cacheDir, 'sha256', image.layers[1]!.digest.slice(7, 9), image.layers[1]!.digest.slice(7));
    const spans = (await readdir(layerDir)).filter((f) => f.endsWith('.span'));
    assert.ok(spans.length > 0, 'spans of the layer that was read are cached');
    const damaged = new Map<string, Buffer>();
    for (const f of spans) {
      const file = path.join(layerDir, f);
      const data = await readFile(file);
      data[data.length - 1] = data[data.length - 1]! ^ 0xff;
      await writeFile(file, data);
      damaged.set(file, data);
    }
    // A new daemon (a restart) with the damaged cache still reads the right bytes.
    const again = await runClip(['mount', index, mp, '--cache-dir', cacheDir], { env: ws.env });
    assert.equal(again.code, 0, again.stderr);
    try {
      assert.equal(await read(), want);
      const { image: img } = images.get('busybox')!;
      const e = img.layers[1]!.tarLayout.find((x) => x.path.endsWith('usr/share/random.bin'))!;
      assert.equal(
        want,
        createHash('sha256')
          .update(img.layers[1]!.tar.subarray(e.dataOffset, e.dataOffset + e.size))
          .digest('hex'),
      );
      // The good copy is written in the background after the read: wait for it.
      for (const [file, bad] of damaged) {
        await waitFor(async () => (await readFile(file).catch(() => bad)).equals(bad) === false, `${file} to be replaced by a good copy`);
      }
    } finally {
      await umount(mp);
    }
  });

  it('after SIGKILL of the serving process the mount keeps working; umount leaves nothing mounted and the image mounts again', async () => {
    const mp = path.join(ws.dir, 'mnt-kill');
    await mount('everything', mp);
    const rec = (await records(ws)).find((r) => r.mountpoint === mp)!;
    process.kill(rec.pid, 'SIGKILL');
    await waitFor(() => !alive(rec.pid), 'the serving process to die');
    assert.ok((await readFile(path.join(mp, 'opq/keep-name.txt'), 'utf8')).length > 0, 'a new serving process answers');
    const now = (await records(ws)).find((r) => r.mountpoint === mp)!;
    assert.notEqual(now.pid, rec.pid);
    await umount(mp);
    await stat(mp);
    assert.deepEqual(await records(ws), []);
    await mount('everything', mp);
    assert.equal((await readFile(path.join(mp, 'opq/keep-name.txt'), 'utf8')).length > 0, true);
    await umount(mp);
  });

  it('SIGTERM to the serving process stops the daemon: both images it serves are unmounted cleanly', async () => {
    const a = path.join(ws.dir, 'mnt-two-a');
    const b = path.join(ws.dir, 'mnt-two-b');
    await mount('everything', a);
    await mount('busybox', b);
    assert.equal(await readFile(path.join(b, 'etc/hello'), 'utf8'), HELLO);
    assert.ok(existsSync(path.join(a, 'opq')));
    const rec = (await records(ws)).find((r) => r.mountpoint === a)!;
    process.kill(rec.pid, 'SIGTERM');
    await waitFor(() => !isMounted(a) && !isMounted(b) && !alive(rec.pid), 'SIGTERM to unmount');
    assert.deepEqual(await records(ws), [], 'its state is cleaned');
    assert.deepEqual(testMounts(true), []);
  });

  describe('errors', () => {
    it('missing mountpoint, busy mountpoint, unreadable index, not a clip mount', async () => {
      const idx = images.get('everything')!.index;
      const missing = await runClip(['mount', idx, path.join(ws.dir, 'nope')], { env: ws.env });
      assert.notEqual(missing.code, 0);
      assert.match(missing.stderr, /does not exist/);

      const mp = path.join(ws.dir, 'mnt-busy');
      await mount('everything', mp);
      try {
        const busy = await runClip(['mount', idx, mp], { env: ws.env });
        assert.notEqual(busy.code, 0);
        assert.match(busy.stderr, /already a mount point/);
      } finally {
        await umount(mp);
      }

      await mkdir(mp, { recursive: true });
      const bad = path.join(ws.dir, 'bad.clip');
      await writeFile(bad, 'not an index');
      const unreadable = await runClip(['mount', bad, mp], { env: ws.env });
      assert.notEqual(unreadable.code, 0);
      assert.match(unreadable.stderr, /not a clip index/);
      assert.ok(!isMounted(mp));

      const notClip = await runClip(['umount', mp], { env: ws.env });
      assert.notEqual(notClip.code, 0);
      assert.match(notClip.stderr, /not a clip mount/);
    });

    it('registry unreachable at mount time: clear error, nothing mounted', async () => {
      const other = await startRegistry();
      const { image } = images.get('busybox')!;
      await pushImage(image.dir, image.tag, other.host, 'gone/busybox');
      const idx = path.join(ws.dir, 'gone.clip');
      await indexImage(`${other.host}/gone/busybox:${image.tag}`, { output: idx });
      await other.stop();
      const mp = path.join(ws.dir, 'mnt-gone');
      await mkdir(mp);
      const r = await runClip(['mount', idx, mp], { env: ws.env });
      assert.notEqual(r.code, 0);
      assert.match(r.stderr, new RegExp(`cannot read the image's layers from docker://${other.host}`));
      assert.ok(!isMounted(mp));
    });

    it('not root: a clear message', async () => {
      const mp = path.join(ws.dir, 'mnt-user');
      await mkdir(mp, { recursive: true });
      const idx = images.get('busybox')!.index;
      const r = spawnSync(
        'setpriv',
        ['--reuid=65534', '--regid=65534', '--clear-groups', process.execPath, path.resolve('bin/clip.js'), 'mount', idx, mp],
        {
          encoding: 'utf8',
          env: { ...process.env, ...ws.env, CLIP_STATE_DIR: path.join(ws.dir, 'user-state') },
        },
      );
      assert.notEqual(r.status, 0);
      assert.match(r.stderr, /clip mount must run as root/);
      assert.ok(!isMounted(mp));
    });
  });

  it('leaves no clip mount behind', () => {
    assert.deepEqual(testMounts(true), []);
  });
});
