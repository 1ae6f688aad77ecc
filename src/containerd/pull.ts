// `clip pull`: makes an image runnable by containerd through clip's
// snapshotter without downloading its layers. The manifest and config go
// into containerd's content store, each layer is prepared with the labels
// containerd's CRI gives remote snapshotters (so clip commits it remotely
// when it has an index of the image), and the image record is created. A
// layer the snapshotter does not take remotely (no index) is unpacked the
// ordinary way: its blob fetched into the content store and applied by
// containerd's differ.

import { randomBytes } from 'node:crypto';
import { createHash } from 'node:crypto';
import * as grpc from '@grpc/grpc-js';
import { ClipError } from '../errors.js';
import { openImage } from '../oci/open.js';
import { RegistryClient } from '../oci/registry.js';
import type { RegistryOptions, ResolvedImage } from '../oci/types.js';
import {
  CRI_IMAGE_LAYERS,
  CRI_IMAGE_REF,
  CRI_LAYER_DIGEST,
  CRI_MANIFEST_DIGEST,
  MAX_LABEL_BYTES,
  TARGET_REF,
} from '../snapshotter/labels.js';
import { ContainerdClient, grpcCode, type Descriptor } from './client.js';

export interface PullOptions {
  /** containerd's socket. */
  address: string;
  namespace: string;
  /** The snapshotter's name in containerd's config (default "clip"). */
  snapshotter?: string;
  registry?: RegistryOptions;
  /** Progress lines. */
  log?: (line: string) => void;
}

export interface PullResult {
  /** The image's name in containerd. */
  name: string;
  manifestDigest: string;
  /** Layers the snapshotter committed without unpacking (or that were there already). */
  remoteLayers: number;
  /** Layers unpacked the ordinary way (fetched whole). */
  unpackedLayers: number;
  /** Layers the snapshotter had already (another image's, or an earlier pull's). */
  existingLayers: number;
}

/** The chain IDs of a layer stack (OCI image spec): the first is its diff ID, each next one hashes the last with the next diff ID. */
export function chainIds(diffIds: string[]): string[] {
  const out: string[] = [];
  for (const d of diffIds) {
    const prev = out[out.length - 1];
    out.push(prev === undefined ? d : `sha256:${createHash('sha256').update(`${prev} ${d}`).digest('hex')}`);
  }
  return out;
}

/** The image-layers label: this layer's digest and those above it, cut to what a label holds (as containerd's CRI cuts it). */
function imageLayersLabel(digests: string[]): string {
  let v = '';
  for (const d of digests) {
    const next = v === '' ? d : `${v},${d}`;
    if (Buffer.byteLength(CRI_IMAGE_LAYERS) + next.length > MAX_LABEL_BYTES) break;
    v = next;
  }
  return v;
}

export async function pullImage(ref: string, opts: PullOptions): Promise<PullResult> {
  if (ref.startsWith('oci:')) throw new ClipError('BAD_ARGUMENT', `clip pull takes a registry reference, not an OCI layout (${ref})`);
  const say = opts.log ?? (() => undefined);
  const snapshotter = opts.snapshotter ?? 'clip';
  const { image, blobs } = await openImage(ref, opts.registry ?? {});
  const ctr = new ContainerdClient(opts.address, opts.namespace);
  try {
    if (!(blobs instanceof RegistryClient)) throw new ClipError('BAD_ARGUMENT', `clip pull takes a registry reference (${ref})`);
    await ctr.takeLease();
    try {
      return await pullInto(ctr, image, blobs, snapshotter, say);
    } finally {
      await ctr.releaseLease().catch(() => undefined);
    }
  } finally {
    ctr.close();
    await blobs.close();
  }
}

async function pullInto(
  ctr: ContainerdClient,
  image: ResolvedImage,
  blobs: RegistryClient,
  snapshotter: string,
  say: (line: string) => void,
): Promise<PullResult> {
  const name = image.reference;
  const chain = chainIds(image.layers.map((l) => l.diffId));
  const top = chain[chain.length - 1];
  if (top === undefined) throw new ClipError('UNSUPPORTED', `${name} has no layers: nothing to run`);
  const source =
    image.registry !== undefined && image.repository !== undefined
      ? { [`containerd.io/distribution.source.${image.registry}`]: image.repository }
      : {};
  const { manifest: manifestBytes, config: configBytes, configMediaType } = image.raw;
  const configDesc: Descriptor = { mediaType: configMediaType, digest: image.configDigest, size: configBytes.length };
  await ctr.writeContent(configDesc, configBytes, { ...source, [`containerd.io/gc.ref.snapshot.${snapshotter}`]: top });
  const manifestLabels: Record<string, string> = { ...source, 'containerd.io/gc.ref.content.config': image.configDigest };
  image.layers.forEach((l, i) => (manifestLabels[`containerd.io/gc.ref.content.l.${i}`] = l.digest));
  const manifestDesc: Descriptor = { mediaType: image.manifestMediaType, digest: image.manifestDigest, size: manifestBytes.length };
  await ctr.writeContent(manifestDesc, manifestBytes, manifestLabels);

  let remoteLayers = 0;
  let unpackedLayers = 0;
  let existingLayers = 0;
  const svc = 'snapshots.v1.Snapshots';
  for (let i = 0; i < image.layers.length; i++) {
    const layer = image.layers[i]!;
    const chainId = chain[i]!;
    const parent = i === 0 ? '' : chain[i - 1]!;
    if (await exists(ctr, snapshotter, chainId)) {
      existingLayers++;
      continue;
    }
    const key = `extract-${randomBytes(6).toString('hex')}-${chainId}`;
    const labels = {
      [TARGET_REF]: chainId,
      [CRI_IMAGE_REF]: name,
      [CRI_MANIFEST_DIGEST]: image.manifestDigest,
      [CRI_LAYER_DIGEST]: layer.digest,
      [CRI_IMAGE_LAYERS]: imageLayersLabel(image.layers.slice(i).map((l) => l.digest)),
    };
    let mounts: unknown;
    try {
      mounts = (await ctr.call(svc, 'Prepare', { snapshotter, key, parent, labels }))['mounts'];
    } catch (e) {
      if (grpcCode(e) !== grpc.status.ALREADY_EXISTS) throw e;
      remoteLayers++;
      say(`layer ${i + 1}/${image.layers.length} ${layer.digest}: lazy`);
      continue;
    }
    // Not taken remotely: unpacked as containerd's own unpacker would.
    try {
      say(`layer ${i + 1}/${image.layers.length} ${layer.digest}: no index, fetching ${layer.size} bytes`);
      const layerDesc: Descriptor = { mediaType: layer.mediaType, digest: layer.digest, size: layer.size };
      if (!(await ctr.hasContent(layer.digest))) await ctr.writeContent(layerDesc, await blobs.openBlob(layer.digest, layer.size), source);
      await ctr.call('diff.v1.Diff', 'Apply', { diff: { media_type: layer.mediaType, digest: layer.digest, size: layer.size }, mounts });
      await ctr.call(svc, 'Commit', { snapshotter, name: chainId, key, labels: { [TARGET_REF]: chainId } });
      unpackedLayers++;
    } catch (e) {
      await ctr.call(svc, 'Remove', { snapshotter, key }).catch(() => undefined);
      throw e;
    }
  }

  const record = {
    name,
    labels: {},
    target: { media_type: manifestDesc.mediaType, digest: manifestDesc.digest, size: manifestDesc.size },
  };
  try {
    await ctr.call('images.v1.Images', 'Create', { image: record });
  } catch (e) {
    if (grpcCode(e) !== grpc.status.ALREADY_EXISTS) throw e;
    await ctr.call('images.v1.Images', 'Update', { image: record, update_mask: { paths: ['target'] } });
  }
  return { name, manifestDigest: image.manifestDigest, remoteLayers, unpackedLayers, existingLayers };
}

async function exists(ctr: ContainerdClient, snapshotter: string, key: string): Promise<boolean> {
  try {
    await ctr.call('snapshots.v1.Snapshots', 'Stat', { snapshotter, key });
    return true;
  } catch (e) {
    if (grpcCode(e) === grpc.status.NOT_FOUND) return false;
    throw e;
  }
}
