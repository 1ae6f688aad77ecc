// The labels containerd's CRI (and `clip pull`) put on a layer's Prepare for
// remote snapshotters, read and checked: they name the image, its manifest
// and the layer, and become file paths and registry requests, so anything
// malformed is refused (the layer is then unpacked the ordinary way).

export const TARGET_REF = 'containerd.io/snapshot.ref';
export const CRI_IMAGE_REF = 'containerd.io/snapshot/cri.image-ref';
export const CRI_MANIFEST_DIGEST = 'containerd.io/snapshot/cri.manifest-digest';
export const CRI_LAYER_DIGEST = 'containerd.io/snapshot/cri.layer-digest';
export const CRI_IMAGE_LAYERS = 'containerd.io/snapshot/cri.image-layers';
/** Set by clip on the snapshots it commits without unpacking (what `ctr snapshot info` shows). */
export const CLIP_REMOTE = 'containerd.io/snapshot/clip.remote';

/** containerd's bound on one label (key and value together). */
export const MAX_LABEL_BYTES = 4096;

const DIGEST = /^sha256:[0-9a-f]{64}$/;
/** A reference as a registry takes it: host[:port]/path[:tag][@digest], no spaces or control characters. */
const REFERENCE = /^[A-Za-z0-9][A-Za-z0-9._:@/-]*$/;

export interface RemoteLayer {
  imageRef: string;
  manifestDigest: string;
  layerDigest: string;
  /** This layer and those above it, as far as the label holds them (it is cut at 4 KiB). */
  imageLayers: string[];
  /** The chain ID the layer is to be committed as. */
  target: string;
}

/**
 * The remote-layer request a Prepare's labels make, if they make one:
 * undefined when the labels are absent (an ordinary Prepare), a string
 * saying what is wrong when they are present but malformed.
 */
export function readRemoteLabels(labels: Record<string, string>): RemoteLayer | string | undefined {
  const imageRef = labels[CRI_IMAGE_REF];
  const manifestDigest = labels[CRI_MANIFEST_DIGEST];
  const layerDigest = labels[CRI_LAYER_DIGEST];
  const target = labels[TARGET_REF];
  if (imageRef === undefined && manifestDigest === undefined && layerDigest === undefined) return undefined;
  if (imageRef === undefined || manifestDigest === undefined || layerDigest === undefined || target === undefined)
    return `incomplete remote-snapshot labels: ${CRI_IMAGE_REF}, ${CRI_MANIFEST_DIGEST}, ${CRI_LAYER_DIGEST} and ${TARGET_REF} go together`;
  if (imageRef.length > 1024 || !REFERENCE.test(imageRef))
    return `${CRI_IMAGE_REF}: not an image reference: ${JSON.stringify(imageRef.slice(0, 200))}`;
  for (const [name, v] of [
    [CRI_MANIFEST_DIGEST, manifestDigest],
    [CRI_LAYER_DIGEST, layerDigest],
    [TARGET_REF, target],
  ] as const)
    if (!DIGEST.test(v)) return `${name}: not a sha256 digest: ${JSON.stringify(v.slice(0, 200))}`;
  const listed = labels[CRI_IMAGE_LAYERS];
  const imageLayers = listed === undefined || listed === '' ? [layerDigest] : listed.split(',');
  const badLayer = imageLayers.find((d) => !DIGEST.test(d));
  if (badLayer !== undefined) return `${CRI_IMAGE_LAYERS}: not a sha256 digest: ${JSON.stringify(badLayer.slice(0, 200))}`;
  if (imageLayers[0] !== layerDigest) return `${CRI_IMAGE_LAYERS} does not start with the layer ${layerDigest}`;
  return { imageRef, manifestDigest, layerDigest, imageLayers, target };
}

/** The containerd label problem, if any: keys non-empty, each pair within 4096 bytes. */
export function labelProblem(labels: Record<string, string>): string | undefined {
  for (const [k, v] of Object.entries(labels)) {
    if (k === '') return 'a label key is empty';
    if (Buffer.byteLength(k) + Buffer.byteLength(v) > MAX_LABEL_BYTES)
      return `label ${JSON.stringify(k.slice(0, 100))}: key and value exceed ${MAX_LABEL_BYTES} bytes`;
  }
  return undefined;
}
