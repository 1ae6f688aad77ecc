// The Kubernetes path: this test plays kubelet over the CRI (ImageService,
// RuntimeService) against Debian's containerd 1.6: a host-network pod with a
// pause image from the loopback registry, one container that prints a line
// read from its image, its log file in the CRI format, and the whole teardown;
// and gVisor's runsc run by containerd's runc shim.

import assert from 'node:assert/strict';
import { chmod, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { buildBusyboxImage, HELLO } from './helpers/busybox-image.js';
import { startCriContainerd, type CriContainerd } from './helpers/cri-containerd.js';
import { criClient, readCriLog, type CriClient, type LogLine } from './helpers/cri.js';
import type { BuiltImage } from './helpers/image-builder.js';
import { pushImage, startRegistry, type RegistryHandle } from './helpers/registry.js';

/** What kubelet does for a one-container pod, start to teardown; resolves with the container's exit code and log. */
async function runPod(
  cri: CriClient,
  dir: string,
  name: string,
  image: string,
  command: string[],
): Promise<{ exitCode: number; log: LogLine[] }> {
  const pod = { name, logDirectory: path.join(dir, 'pods', name) };
  const sandbox = await cri.runPodSandbox(pod);
  try {
    const id = await cri.createContainer(sandbox, pod, { name: 'main', image, command, logPath: 'main.log' });
    try {
      await cri.startContainer(id);
      const status = await cri.waitExited(id);
      assert.equal(status.log_path, path.join(pod.logDirectory, 'main.log'));
      return { exitCode: status.exit_code, log: await readCriLog(status.log_path) };
    } finally {
      await cri.stopContainer(id);
      await cri.removeContainer(id);
    }
  } finally {
    await cri.stopPodSandbox(sandbox);
    await cri.removePodSandbox(sandbox);
  }
}

const lines = (log: LogLine[], stream: 'stdout' | 'stderr'): string[] => log.filter((l) => l.stream === stream).map((l) => l.text);

describe('CRI: kubelet against containerd (overlayfs snapshotter)', () => {
  let registry: RegistryHandle;
  let containerd: CriContainerd | undefined;
  let cri: CriClient | undefined;
  const built: BuiltImage[] = [];
  let app = '';
  let runsc = '';

  before(async () => {
    registry = await startRegistry();
    // busybox's sleep as the pause container: it only has to hold the pod's namespaces.
    const pauseImage = await buildBusyboxImage([], 'pause', ['/bin/busybox', 'sleep', '86400']);
    const appImage = await buildBusyboxImage([], 'app');
    built.push(pauseImage, appImage);
    const pause = (await pushImage(pauseImage.dir, pauseImage.tag, registry.host, 'cri/pause')).reference;
    app = (await pushImage(appImage.dir, appImage.tag, registry.host, 'cri/app')).reference;
    // The runc shim runs its runtime binary with runc's flags only: runsc's own go in a wrapper.
    runsc = path.join(appImage.dir, 'runsc-ptrace');
    await writeFile(runsc, '#!/bin/sh\nexec /usr/bin/runsc --platform=ptrace --network=none "$@"\n');
    await chmod(runsc, 0o755);
    containerd = await startCriContainerd({ registries: [registry.host], sandboxImage: pause });
    cri = criClient(containerd.socket);
  });

  after(async () => {
    cri?.close();
    await containerd?.stop();
    await registry?.stop();
    for (const b of built) await rm(b.dir, { recursive: true, force: true });
  });

  it('PullImage, RunPodSandbox, CreateContainer, StartContainer: the log has the line; teardown leaves nothing', async () => {
    const ref = await cri!.pullImage(app);
    assert.match(ref, /^sha256:[0-9a-f]{64}$/);
    const r = await runPod(cri!, containerd!.dir, 'pod-runc', app, ['/bin/sh', '-c', 'cat /etc/hello; echo to-stderr >&2']);
    assert.equal(r.exitCode, 0);
    assert.deepEqual(lines(r.log, 'stdout'), [HELLO.trimEnd()]);
    assert.deepEqual(lines(r.log, 'stderr'), ['to-stderr']);
    assert.equal((await containerd!.ctr(['containers', 'list', '-q'])).trim(), '', 'no container is left in containerd');
  });

  it("gVisor through containerd: ctr run with runsc as the runc shim's runtime binary, on the image the CRI pulled", async () => {
    // Debian's runsc ships no containerd-shim-runsc-v1. containerd's runc shim runs runsc for a single
    // container; it cannot follow the containers of a CRI pod inside one gVisor sandbox (it tracks each
    // task by a host pid, and all of a pod's are the sandbox's), so pods with a runsc RuntimeClass are not tested.
    await cri!.pullImage(app);
    const out = await containerd!.ctr([
      'run',
      '--rm',
      '--runc-binary',
      runsc,
      app,
      `gvisor-${process.pid}`,
      '/bin/sh',
      '-c',
      'cat /etc/hello; /bin/busybox dmesg | head -n 1',
    ]);
    const [hello, dmesg] = out.split('\n');
    assert.equal(hello, HELLO.trimEnd());
    assert.match(dmesg ?? '', /Starting gVisor/, 'dmesg is the gVisor kernel log, not the host kernel');
  });
});
