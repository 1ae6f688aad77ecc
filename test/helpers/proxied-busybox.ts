// The fixture of the fault tests: a real registry on loopback, the fault proxy
// in front of it, the busybox test image pushed, and its index made through
// the proxy with 256 KiB spans, plus the bytes of the file the tests read.

import assert from 'node:assert/strict';
import { rm } from 'node:fs/promises';
import path from 'node:path';
import { buildBusyboxImage } from './busybox-image.js';
import { runClip } from './cli.js';
import { startFaultProxy, type FaultProxy } from './fault-proxy.js';
import type { BuiltImage } from './image-builder.js';
import { clipWorkspace, sweepClipMounts, type ClipWorkspace } from './mounts.js';
import { pushImage, startRegistry, type RegistryHandle } from './registry.js';

/** The file of the image's second layer that the tests read (2 MiB of random bytes). */
export const FILE = 'usr/share/random.bin';

export interface ProxiedBusybox {
  registry: RegistryHandle;
  proxy: FaultProxy;
  image: BuiltImage;
  ws: ClipWorkspace;
  /** The .clip file, indexed through the proxy. */
  index: string;
  /** FILE's bytes as the image holds them. */
  want: Buffer;
  /** Sweeps mounts, stops proxy and registry, removes the image and the workspace. */
  close(): Promise<void>;
}

/** Sets it all up; `name` names the repository (`NAME/busybox`) and the workspace. */
export async function startProxiedBusybox(name: string): Promise<ProxiedBusybox> {
  sweepClipMounts();
  const registry = await startRegistry();
  const proxy = await startFaultProxy(registry.host);
  const image = await buildBusyboxImage();
  await pushImage(image.dir, image.tag, registry.host, `${name}/busybox`);
  const ws = await clipWorkspace(name);
  const index = path.join(ws.dir, 'busybox.clip');
  const r = await runClip(['index', `${proxy.host}/${name}/busybox:${image.tag}`, '-o', index, '--span-size', '256K']);
  assert.equal(r.code, 0, r.stderr);
  const layer = image.layers[1]!;
  const e = layer.tarLayout.find((x) => x.path.endsWith(FILE))!;
  const want = layer.tar.subarray(e.dataOffset, e.dataOffset + e.size);
  const close = async (): Promise<void> => {
    sweepClipMounts();
    await proxy.close();
    await registry.stop();
    await rm(image.dir, { recursive: true, force: true });
    await rm(ws.dir, { recursive: true, force: true });
  };
  return { registry, proxy, image, ws, index, want, close };
}
