// The fixture of the fault and fetch tests: a real registry on loopback, the
// fault proxy in front of it, an image pushed (the busybox test image, or one
// of the test's own), and its index made through the proxy by `clip index`,
// plus, for busybox, the bytes of the file the tests read.

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

export interface ProxiedImage {
  registry: RegistryHandle;
  proxy: FaultProxy;
  image: BuiltImage;
  ws: ClipWorkspace;
  /** The .clip file, indexed through the proxy. */
  index: string;
  /** Sweeps mounts, stops proxy and registry, removes the image and the workspace. */
  close(): Promise<void>;
}

export interface ProxiedBusybox extends ProxiedImage {
  /** FILE's bytes as the image holds them. */
  want: Buffer;
}

/**
 * Pushes `image` as `NAME/REPO` and indexes it through the proxy with spans of
 * `spanSize` (a --span-size value); `name` also names the workspace.
 */
export async function startProxiedImage(name: string, repo: string, image: BuiltImage, spanSize: string): Promise<ProxiedImage> {
  sweepClipMounts();
  const registry = await startRegistry();
  const proxy = await startFaultProxy(registry.host);
  const ws = await clipWorkspace(name);
  const close = async (): Promise<void> => {
    sweepClipMounts();
    await proxy.close();
    await registry.stop();
    await rm(image.dir, { recursive: true, force: true });
    await rm(ws.dir, { recursive: true, force: true });
  };
  try {
    await pushImage(image.dir, image.tag, registry.host, `${name}/${repo}`);
    const index = path.join(ws.dir, `${repo}.clip`);
    const r = await runClip(['index', `${proxy.host}/${name}/${repo}:${image.tag}`, '-o', index, '--span-size', spanSize]);
    assert.equal(r.code, 0, r.stderr);
    return { registry, proxy, image, ws, index, close };
  } catch (e) {
    await close();
    throw e;
  }
}

/** The busybox test image with 256 KiB spans; `name` names the repository (`NAME/busybox`) and the workspace. */
export async function startProxiedBusybox(name: string): Promise<ProxiedBusybox> {
  const fixture = await startProxiedImage(name, 'busybox', await buildBusyboxImage(), '256K');
  const layer = fixture.image.layers[1]!;
  const e = layer.tarLayout.find((x) => x.path.endsWith(FILE))!;
  return { ...fixture, want: layer.tar.subarray(e.dataOffset, e.dataOffset + e.size) };
}
