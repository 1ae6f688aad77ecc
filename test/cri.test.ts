// The Kubernetes path: this test plays kubelet over the CRI (ImageService,
// RuntimeService) against Debian's containerd 1.6: a host-network pod with a
// pause image from the loopback registry, one container that prints a line
// read from its image, its log file in the CRI format, and the whole teardown;
// and gVisor's runsc run by containerd's runc shim.

import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { chmod, mkdir, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { indexImage } from '../src/indexer/index-image.js';
import { localIndexPath } from '../src/registry-index/local-store.js';
import { BUSYBOX, buildBusyboxImage, HELLO } from './helpers/busybox-image.js';
import { startClipDaemon, type ClipDaemon } from './helpers/clip-daemon.js';
import { startCriContainerd, type CriContainerd } from './helpers/cri-containerd.js';
import { criClient, readCriLog, type CriClient, type LogLine } from './helpers/cri.js';
import { startFaultProxy, type FaultProxy } from './helpers/fault-proxy.js';
import { buildImage, sha256, type BuiltImage } from './helpers/image-builder.js';
import { clipWorkspace, mountRecords, sweepClipMounts, type ClipWorkspace } from './helpers/mounts.js';
import { pushImage, startRegistry, type RegistryHandle } from './helpers/registry.js';
import type { TarEntrySpec } from './helpers/tar-writer.js';

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

/** A one-layer image of busybox plus `files`: its layer is no other image's (containerd shares snapshots by layer chain). */
function oneLayerImage(tag: string, files: Record<string, string>, cmd: string[]): Promise<BuiltImage> {
  const entries: TarEntrySpec[] = [
    { type: 'dir', path: 'bin', mode: 0o755 },
    { type: 'dir', path: 'etc', mode: 0o755 },
    { type: 'file', path: 'bin/busybox', mode: 0o755, data: readFileSync(BUSYBOX) },
    ...['sh', 'cat', 'sleep'].map((t): TarEntrySpec => ({ type: 'symlink', path: `bin/${t}`, target: 'busybox' })),
    ...Object.entries(files).map(([p, data]): TarEntrySpec => ({ type: 'file', path: p, mode: 0o644, data })),
  ];
  return buildImage({ tag, layers: [{ entries }], cmd });
}

/** The runc shim runs its runtime binary with runc's flags only: runsc's own go in a wrapper script. */
async function runscWrapper(dir: string): Promise<string> {
  const file = path.join(dir, 'runsc-ptrace');
  await writeFile(file, '#!/bin/sh\nexec /usr/bin/runsc --platform=ptrace --network=none "$@"\n');
  await chmod(file, 0o755);
  return file;
}

const configSize = (img: BuiltImage): number => (img.manifest['config'] as { size: number }).size;

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
    runsc = await runscWrapper(appImage.dir);
    containerd = await startCriContainerd({ registries: [registry.host], sandboxImage: pause });
    cri = criClient(containerd.socket);
  });

  after(async () => {
    cri?.close();
    await containerd?.destroy();
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
    assert.equal((await containerd!.ctr(['containers', 'list', '-q'])).stdout.toString().trim(), '', 'no container is left in containerd');
  });

  it("gVisor through containerd: ctr run with runsc as the runc shim's runtime binary, on the image the CRI pulled", async () => {
    // Debian's runsc ships no containerd-shim-runsc-v1. containerd's runc shim runs runsc for a single
    // container; it cannot follow the containers of a CRI pod inside one gVisor sandbox (it tracks each
    // task by a host pid, and all of a pod's are the sandbox's), so pods with a runsc RuntimeClass are not tested.
    await cri!.pullImage(app);
    const { stdout } = await containerd!.ctr([
      'run',
      '--rm',
      '--runc-binary',
      runsc,
      '--runc-root',
      containerd!.runcRoot,
      app,
      `gvisor-${process.pid}`,
      '/bin/sh',
      '-c',
      'cat /etc/hello; /bin/busybox dmesg | head -n 1',
    ]);
    const [hello, dmesg] = stdout.toString().split('\n');
    assert.equal(hello, HELLO.trimEnd());
    assert.match(dmesg ?? '', /Starting gVisor/, 'dmesg is the gVisor kernel log, not the host kernel');
  });
});

describe('CRI: kubelet against containerd with snapshotter = "clip"', () => {
  let registry: RegistryHandle;
  let proxy: FaultProxy;
  let ws: ClipWorkspace;
  let daemon: ClipDaemon | undefined;
  let containerd: CriContainerd | undefined;
  let cri: CriClient | undefined;
  const built: BuiltImage[] = [];
  let appImage: BuiltImage;
  let app = '';
  let plain = '';

  before(async () => {
    sweepClipMounts();
    registry = await startRegistry();
    // Everything is pulled through the proxy, which counts the blob bytes.
    proxy = await startFaultProxy(registry.host);
    ws = await clipWorkspace('cri');
    // Pause and plain share no layer with app: the app's layers must not be there before its pull.
    const pauseImage = await oneLayerImage('pause', { 'etc/pause': 'pause\n' }, ['/bin/busybox', 'sleep', '86400']);
    appImage = await buildBusyboxImage([], 'app');
    // An image clip has no index of: the snapshotter unpacks it as containerd's overlayfs would.
    const plainImage = await oneLayerImage('plain', { 'etc/plain': 'unpacked, not lazy\n', 'etc/hello': HELLO }, ['/bin/sh']);
    built.push(pauseImage, appImage, plainImage);
    await pushImage(pauseImage.dir, pauseImage.tag, registry.host, 'cri/pause');
    await pushImage(appImage.dir, appImage.tag, registry.host, 'cri/app');
    await pushImage(plainImage.dir, plainImage.tag, registry.host, 'cri/plain');
    app = `${proxy.host}/cri/app:${appImage.tag}`;
    plain = `${proxy.host}/cri/plain:${plainImage.tag}`;
    // The node's local index store, where the snapshotter looks for an index of a pulled manifest.
    const stored = localIndexPath(ws.env['CLIP_DATA_DIR']!, appImage.manifestDigest);
    await mkdir(path.dirname(stored), { recursive: true });
    await indexImage(app, { output: stored });

    daemon = await startClipDaemon(ws.env);
    containerd = await startCriContainerd({
      registries: [proxy.host],
      sandboxImage: `${proxy.host}/cri/pause:${pauseImage.tag}`,
      clipSocket: daemon.snapshotterSocket,
    });
    cri = criClient(containerd.socket);
  });

  after(async () => {
    cri?.close();
    await containerd?.destroy();
    await daemon?.stop();
    sweepClipMounts();
    await proxy?.close();
    await registry?.stop();
    for (const b of built) await rm(b.dir, { recursive: true, force: true });
    if (ws) await rm(ws.dir, { recursive: true, force: true });
  });

  it('PullImage fetches no layer; the pod prints a line read lazily from the registry, a fraction of the image', async (t) => {
    // The sandbox image first (no index: unpacked), so that only the app's bytes are counted below.
    await cri!.pullImage(`${proxy.host}/cri/pause:pause`);
    const start = proxy.blobBytes;
    await cri!.pullImage(app);
    const pulled = proxy.blobBytes - start;
    // The config, and at most a probe: the smallest layer is hundreds of KiB.
    assert.ok(pulled < configSize(appImage) + 4096, `PullImage fetched ${pulled} blob bytes (config: ${configSize(appImage)})`);

    const r = await runPod(cri!, containerd!.dir, 'pod-lazy', app, ['/bin/sh', '-c', 'cat /etc/hello']);
    assert.equal(r.exitCode, 0, lines(r.log, 'stderr').join('\n'));
    assert.deepEqual(lines(r.log, 'stdout'), [HELLO.trimEnd()]);
    const fetched = proxy.blobBytes - start - pulled;
    const [base, data] = appImage.layers as [BuiltImage['layers'][0], BuiltImage['layers'][0]];
    t.diagnostic(`pull: ${pulled} B, run: ${fetched} B; layers ${base.size} + ${data.size} B`);
    assert.ok(fetched > 0, 'the container read its files from the registry after the pull');
    assert.ok(
      fetched < data.size,
      `the container fetched ${fetched} bytes: it needs the base layer (${base.size}), not the data layer (${data.size})`,
    );
    const served = (await mountRecords(ws)).map((m) => m.image);
    assert.ok(
      served.some((i) => i.includes('cri/app')),
      `the clip daemon serves the image: ${served.join(', ')}`,
    );
  });

  it('gVisor through containerd on the lazily pulled image: ctr run --snapshotter clip with runsc', async () => {
    const runsc = await runscWrapper(ws.dir);
    const { stdout } = await containerd!.ctr([
      'run',
      '--rm',
      '--snapshotter',
      'clip',
      '--runc-binary',
      runsc,
      '--runc-root',
      containerd!.runcRoot,
      app,
      `gvisor-clip-${process.pid}`,
      '/bin/sh',
      '-c',
      'cat /etc/hello; /bin/busybox dmesg | head -n 1',
    ]);
    const [hello, dmesg] = stdout.toString().split('\n');
    assert.equal(hello, HELLO.trimEnd());
    assert.match(dmesg ?? '', /Starting gVisor/);
  });

  it('an image without an index is unpacked normally by the same snapshotter and runs', async () => {
    const start = proxy.blobBytes;
    await cri!.pullImage(plain);
    const image = built[2]!;
    assert.equal(proxy.blobBytes - start, image.layers[0]!.size + configSize(image), 'the layer blob was downloaded whole');
    const r = await runPod(cri!, containerd!.dir, 'pod-plain', plain, ['/bin/sh', '-c', 'cat /etc/plain /etc/hello']);
    assert.equal(r.exitCode, 0, lines(r.log, 'stderr').join('\n'));
    assert.deepEqual(lines(r.log, 'stdout'), ['unpacked, not lazy', HELLO.trimEnd()]);
  });

  it("RemoveImage (kubelet's image GC) of the lazy image: the daemon stops serving it", async () => {
    const serving = async (): Promise<boolean> => (await mountRecords(ws)).some((m) => m.image.includes('cri/app'));
    // Committed layer snapshots are named by chain id (the image spec's ChainID).
    const chain = appImage.layers.reduce<string[]>(
      (ids, l) => [...ids, ids.length === 0 ? l.diffId : sha256(`${ids.at(-1)!} ${l.diffId}`)],
      [],
    );
    const snapshots = async (): Promise<string> => (await containerd!.ctr(['snapshots', '--snapshotter', 'clip', 'ls'])).stdout.toString();
    const before = await snapshots();
    for (const id of chain) assert.ok(before.includes(id), `snapshot ${id} is there before the removal:\n${before}`);
    assert.ok(await serving(), 'served before the removal');
    await cri!.removeImage(app);
    // The CRI deletes the image with a synchronous GC (its snapshots are removed); the daemon then lets the mount go.
    for (let waited = 0; await serving(); waited += 100) {
      if (waited > 30_000) assert.fail(`still served 30 s after RemoveImage:\n${daemon!.output().slice(-2000)}`);
      await new Promise((r) => setTimeout(r, 100));
    }
    const left = await snapshots();
    for (const id of chain) assert.ok(!left.includes(id), `snapshot ${id} of the removed image is gone:\n${left}`);
  });
});
