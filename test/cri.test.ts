// The Kubernetes path: this test plays kubelet over the CRI (ImageService,
// RuntimeService) against Debian's containerd 1.6: a host-network pod with a
// pause image from the loopback registry, one container that prints a line
// read from its image, its log file in the CRI format, and the whole teardown.

import assert from 'node:assert/strict';
import { rm } from 'node:fs/promises';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { buildBusyboxImage, HELLO } from './helpers/busybox-image.js';
import { startCriContainerd, type CriContainerd } from './helpers/cri-containerd.js';
import { criClient, readCriLog, type CriClient } from './helpers/cri.js';
import type { BuiltImage } from './helpers/image-builder.js';
import { pushImage, startRegistry, type RegistryHandle } from './helpers/registry.js';

describe('CRI: kubelet against containerd', () => {
  let registry: RegistryHandle;
  let containerd: CriContainerd | undefined;
  let cri: CriClient | undefined;
  const built: BuiltImage[] = [];
  let pause = '';
  let app = '';

  before(async () => {
    registry = await startRegistry();
    // busybox's sleep as the pause container: it only has to hold the pod's namespaces.
    const pauseImage = await buildBusyboxImage([], 'pause', ['/bin/busybox', 'sleep', '86400']);
    const appImage = await buildBusyboxImage([], 'app');
    built.push(pauseImage, appImage);
    pause = (await pushImage(pauseImage.dir, pauseImage.tag, registry.host, 'cri/pause')).reference;
    app = (await pushImage(appImage.dir, appImage.tag, registry.host, 'cri/app')).reference;
  });

  after(async () => {
    cri?.close();
    await containerd?.stop();
    await registry?.stop();
    for (const b of built) await rm(b.dir, { recursive: true, force: true });
  });

  it('overlayfs: PullImage, RunPodSandbox, CreateContainer, StartContainer; the log has the line; teardown', async () => {
    containerd = await startCriContainerd({ registries: [registry.host], sandboxImage: pause });
    cri = criClient(containerd.socket);
    const ref = await cri.pullImage(app);
    assert.match(ref, /^sha256:[0-9a-f]{64}$/);

    const pod = { name: 'pod-a', logDirectory: path.join(containerd.dir, 'pods', 'pod-a') };
    const sandbox = await cri.runPodSandbox(pod);
    const id = await cri.createContainer(sandbox, pod, {
      name: 'hello',
      image: app,
      command: ['/bin/sh', '-c', 'cat /etc/hello; echo to-stderr >&2'],
      logPath: 'hello.log',
    });
    await cri.startContainer(id);
    const status = await cri.waitExited(id);
    assert.equal(status.exit_code, 0, `${status.reason}: ${status.message}`);
    assert.equal(status.log_path, path.join(pod.logDirectory, 'hello.log'));
    const log = await readCriLog(status.log_path);
    assert.deepEqual(
      log.filter((l) => l.stream === 'stdout').map((l) => l.text),
      [HELLO.trimEnd()],
    );
    assert.deepEqual(
      log.filter((l) => l.stream === 'stderr').map((l) => l.text),
      ['to-stderr'],
    );

    await cri.stopContainer(id);
    await cri.removeContainer(id);
    await cri.stopPodSandbox(sandbox);
    await cri.removePodSandbox(sandbox);
    const left = await containerd.ctr(['containers', 'list', '-q']);
    assert.equal(left.trim(), '', 'no container is left in containerd');
  });
});
