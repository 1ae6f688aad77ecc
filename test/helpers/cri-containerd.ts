// containerd (test/helpers/containerd.ts) with its CRI plugin on, for tests
// that play kubelet: loopback registries as plain-HTTP mirrors, a chosen
// snapshotter (clip's proxy plugin, or containerd's own overlayfs) with the
// remote-snapshotter labels on, and a pause image from a registry.
// Host-network pods only: the CRI sets up no network for them, so no CNI
// plugin or config is needed (an empty conf dir of its own keeps /etc/cni out).

import { readFileSync } from 'node:fs';
import { mkdir, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { startContainerd, type ContainerdHandle } from './containerd.js';
import { criClient } from './cri.js';

export interface CriContainerdOptions {
  /** Registries ("127.0.0.1:PORT") pulled from over plain HTTP. */
  registries: string[];
  /** The sandbox ("pause") image, e.g. 127.0.0.1:PORT/pause:1. */
  sandboxImage: string;
  /** clip's snapshotter socket: CRI's snapshotter is then "clip" (default: overlayfs). */
  clipSocket?: string;
}

/** The containerd handle; `ctr` runs in namespace k8s.io, where the CRI keeps its images and containers. */
export interface CriContainerd extends ContainerdHandle {
  /** runc's state dir for this containerd's containers (runc's default, /run/containerd/runc/k8s.io, is every CRI's). */
  runcRoot: string;
}

function criConfig(own: string, o: CriContainerdOptions): string {
  const cri = 'plugins."io.containerd.grpc.v1.cri"';
  return [
    `[${cri}]`,
    `  sandbox_image = ${JSON.stringify(o.sandboxImage)}`,
    // A random port: parallel containerds would all want the default 10010.
    '  stream_server_address = "127.0.0.1"',
    '  stream_server_port = "0"',
    // The sandbox asks for oom_score_adj -998, which needs CAP_SYS_RESOURCE (which CI machines in containers may lack).
    '  restrict_oom_score_adj = true',
    `[${cri}.containerd]`,
    `  snapshotter = "${o.clipSocket !== undefined ? 'clip' : 'overlayfs'}"`,
    // The labels (cri.image-ref, cri.layer-digest, ...) that remote snapshotters need on Prepare.
    '  disable_snapshot_annotations = false',
    // A runtimes table replaces containerd's default one: runc, as by default, with a state dir of its own.
    `[${cri}.containerd.runtimes.runc]`,
    '  runtime_type = "io.containerd.runc.v2"',
    `[${cri}.containerd.runtimes.runc.options]`,
    `  Root = ${JSON.stringify(path.join(own, 'runc'))}`,
    `[${cri}.cni]`,
    `  bin_dir = ${JSON.stringify(path.join(own, 'cni', 'bin'))}`,
    `  conf_dir = ${JSON.stringify(path.join(own, 'cni', 'net.d'))}`,
    ...o.registries.flatMap((host) => [`[${cri}.registry.mirrors."${host}"]`, `  endpoint = ["http://${host}"]`]),
    '',
  ].join('\n');
}

/** Starts containerd with the CRI and waits until the CRI answers; the caller must `destroy()` it. */
export async function startCriContainerd(o: CriContainerdOptions): Promise<CriContainerd> {
  // runc's state and the CNI dirs (which only have to exist, empty: the CRI watches the conf dir).
  const own = await mkdtemp(path.join(tmpdir(), 'cri-'));
  await mkdir(path.join(own, 'cni', 'net.d'), { recursive: true });
  await mkdir(path.join(own, 'cni', 'bin'), { recursive: true });
  const h = await startContainerd({
    cri: true,
    namespace: 'k8s.io',
    extraConfig: criConfig(own, o),
    ...(o.clipSocket !== undefined ? { snapshotterSocket: o.clipSocket } : {}),
  }).catch(async (e: unknown) => {
    await rm(own, { recursive: true, force: true });
    throw e;
  });
  const destroy = h.destroy.bind(h);
  const handle: CriContainerd = Object.assign(h, {
    runcRoot: path.join(own, 'runc'),
    async destroy() {
      await destroy();
      await rm(own, { recursive: true, force: true });
    },
  });
  // containerd answers before its CRI plugin has loaded, and still answers if the plugin failed to load.
  const cri = criClient(h.socket);
  try {
    for (let waited = 0; ; waited += 200) {
      const up = await cri.version().then(
        (v) => v.runtime_api_version === 'v1',
        (e: Error) => (/code 12/.test(e.message) ? Promise.reject(e) : false), // UNIMPLEMENTED: no CRI plugin
      );
      if (up) break;
      if (waited > 30_000) throw new Error('the CRI did not answer within 30 s');
      await new Promise((r) => setTimeout(r, 200));
    }
  } catch (e) {
    const log = readFileSync(h.logFile, 'utf8');
    await handle.destroy();
    throw new Error(`containerd's CRI did not start: ${(e as Error).message}\n${log.split('\n').slice(-20).join('\n')}`);
  } finally {
    cri.close();
  }
  return handle;
}
