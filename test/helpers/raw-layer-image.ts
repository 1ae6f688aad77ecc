// Writes an OCI layout whose layers are given as blobs (any bytes: crafted
// tars, hand-made gzip members), for tests of what the indexer does with
// layers no tar tool would write. The caller supplies each layer's diff id,
// since for huge crafted streams it is cheaper to hash while generating.

import { gzipSync } from 'node:zlib';
import { addToIndexJson, hostArchitecture, initLayout, MEDIA, REF_NAME, sha256, writeBlob } from './image-builder.js';

export interface RawLayer {
  blob: Buffer;
  /** sha256:... of the uncompressed tar. */
  diffId: string;
  /** Default: gzip. */
  mediaType?: string;
}

/** Creates `dir` as an OCI layout holding one image tagged `tag`; returns the oci: reference. */
export async function writeRawLayerImage(dir: string, layers: RawLayer[], tag = 'latest'): Promise<string> {
  await initLayout(dir);
  const config = Buffer.from(
    JSON.stringify({
      architecture: hostArchitecture(),
      os: 'linux',
      config: {},
      rootfs: { type: 'layers', diff_ids: layers.map((l) => l.diffId) },
    }),
  );
  const descriptors = [];
  for (const l of layers)
    descriptors.push({ mediaType: l.mediaType ?? MEDIA.ociLayerGzip, digest: await writeBlob(dir, l.blob), size: l.blob.length });
  const manifest = Buffer.from(
    JSON.stringify({
      schemaVersion: 2,
      mediaType: MEDIA.ociManifest,
      config: { mediaType: MEDIA.ociConfig, digest: await writeBlob(dir, config), size: config.length },
      layers: descriptors,
    }),
  );
  await addToIndexJson(dir, {
    mediaType: MEDIA.ociManifest,
    digest: await writeBlob(dir, manifest),
    size: manifest.length,
    annotations: { [REF_NAME]: tag },
  });
  return `oci:${dir}:${tag}`;
}

/** A gzip layer of `tar`, with its diff id. */
export function gzipLayer(tar: Buffer): RawLayer {
  return { blob: gzipSync(tar), diffId: sha256(tar) };
}
