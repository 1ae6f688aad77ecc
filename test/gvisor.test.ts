// gVisor on a clip rootfs: Debian's runsc (ptrace platform, no network) runs
// a container whose rootfs is `clip mount --rootfs`, as runc does; its gofer
// reads the lazily served image through FUSE and the overlay.

import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdir, readFile, rm } from 'node:fs/promises';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { isMounted } from '../src/fuse/index.js';
import { indexImage } from '../src/indexer/index-image.js';
import { buildBusyboxImage, HELLO } from './helpers/busybox-image.js';
import { runClip } from './helpers/cli.js';
import type { BuiltImage } from './helpers/image-builder.js';
import { clipWorkspace, sweepClipMounts, testMounts, type ClipWorkspace } from './helpers/mounts.js';
import { pushImage, startRegistry, type RegistryHandle } from './helpers/registry.js';
import { runContainer } from './helpers/runc.js';

const RUNSC = '/usr/bin/runsc';
const GVISOR = { runtime: RUNSC, flags: ['--platform=ptrace', '--network=none'] };

describe('gVisor (runsc) on a clip rootfs', () => {
  let registry: RegistryHandle;
  let ws: ClipWorkspace;
  let image: BuiltImage;
  let index: string;
  const mounted: string[] = [];

  before(async () => {
    assert.ok(existsSync(RUNSC), `${RUNSC} is missing: apt-get install runsc (scripts/setup.sh installs it)`);
    sweepClipMounts();
    registry = await startRegistry();
    ws = await clipWorkspace('gvisor');
    image = await buildBusyboxImage();
    await pushImage(image.dir, image.tag, registry.host, 'gvisor/busybox');
    index = path.join(ws.dir, 'busybox.clip');
    await indexImage(`${registry.host}/gvisor/busybox:${image.tag}`, { output: index });
  });

  after(async () => {
    for (const mp of mounted.reverse()) if (isMounted(mp)) await runClip(['umount', mp], { env: ws.env });
    sweepClipMounts();
    await registry?.stop();
    if (image) await rm(image.dir, { recursive: true, force: true });
    if (ws) await rm(ws.dir, { recursive: true, force: true });
  });

  it('runsc runs a container on `clip mount --rootfs`: it reads the image and writes to the upper dir', async () => {
    const rootfs = path.join(ws.dir, 'rootfs');
    const upper = path.join(ws.dir, 'upper');
    await mkdir(rootfs);
    const m = await runClip(['mount', index, '--rootfs', rootfs, '--upper-dir', upper], { env: ws.env });
    assert.equal(m.code, 0, m.stderr);
    mounted.push(rootfs);
    try {
      // Written under /root: runsc mounts a tmpfs of its own on /tmp.
      const r = await runContainer(
        rootfs,
        [
          '/bin/sh',
          '-c',
          'cat /etc/hello && sha256sum /usr/share/random.bin && echo from-gvisor > /root/out && /bin/busybox dmesg | head -n 1',
        ],
        GVISOR,
      );
      assert.equal(r.code, 0, r.stderr);
      const random = image.layers[1]!.tarLayout.find((e) => e.path.endsWith('usr/share/random.bin'))!;
      const want = createHash('sha256')
        .update(image.layers[1]!.tar.subarray(random.dataOffset, random.dataOffset + random.size))
        .digest('hex');
      const lines = r.stdout.split('\n');
      assert.equal(lines.slice(0, 2).join('\n') + '\n', `${HELLO}${want}  /usr/share/random.bin\n`);
      // gVisor's own kernel log, not the host's: the container really ran in the sandbox.
      assert.match(lines[2] ?? '', /gVisor/, `dmesg inside the container: ${lines[2]}`);
      assert.equal(await readFile(path.join(upper, 'root/out'), 'utf8'), 'from-gvisor\n', 'the write went through the overlay');
    } finally {
      const u = await runClip(['umount', rootfs], { env: ws.env });
      assert.equal(u.code, 0, u.stderr);
    }
    assert.deepEqual(testMounts(true), [], 'nothing of this test is left mounted');
  });
});
