// Writes an OCI layout whose layers are given as blobs (any bytes: crafted
// tars, hand-made gzip members), for tests of what the indexer does with
// layers no tar tool would write. The caller supplies each layer's diff id,
// since for huge crafted streams it is cheaper to hash while generating.

import { createHash } from 'node:crypto';
import { mkdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { gzipSync } from 'node:zlib';
import { hostArchitecture, MEDIA } from './image-builder.js';

export interface RawLayer {
  blob: Buffer;
  /** sha256:... of the uncompressed tar. */
  diffId: string;
  /** Default: gzip. */
  mediaType?: string;
}

function digestOf(b: Buffer): string {
  return `sha256:${createHash('sha256').update(b).digest('hex')}`;
}

/** Creates `dir` as an OCI layout holding one image tagged `tag`; returns the oci: reference. */
export async function writeRawLayerImage(dir: string, layers: RawLayer[], tag = 'latest'): Promise<string> {
  const blobs = path.join(dir, 'blobs', 'sha256');
  await mkdir(blobs, { recursive: true });
  const put = async (b: Buffer): Promise<string> => {
    const d = digestOf(b);
    await writeFile(path.join(blobs, d.slice('sha256:'.length)), b);
    return d;
  };
  const config = Buffer.from(
    JSON.stringify({
      architecture: hostArchitecture(),
      os: 'linux',
      config: {},
      rootfs: { type: 'layers', diff_ids: layers.map((l) => l.diffId) },
    }),
  );
  const manifest = Buffer.from(
    JSON.stringify({
      schemaVersion: 2,
      mediaType: MEDIA.ociManifest,
      config: { mediaType: MEDIA.ociConfig, digest: await put(config), size: config.length },
      layers: await Promise.all(
        layers.map(async (l) => ({ mediaType: l.mediaType ?? MEDIA.ociLayerGzip, digest: await put(l.blob), size: l.blob.length })),
      ),
    }),
  );
  const manifestDigest = await put(manifest);
  await writeFile(path.join(dir, 'oci-layout'), JSON.stringify({ imageLayoutVersion: '1.0.0' }));
  await writeFile(
    path.join(dir, 'index.json'),
    JSON.stringify({
      schemaVersion: 2,
      manifests: [
        {
          mediaType: MEDIA.ociManifest,
          digest: manifestDigest,
          size: manifest.length,
          annotations: { 'org.opencontainers.image.ref.name': tag },
        },
      ],
    }),
  );
  return `oci:${dir}:${tag}`;
}

/** A gzip layer of `tar`, with its diff id. */
export function gzipLayer(tar: Buffer): RawLayer {
  return { blob: gzipSync(tar), diffId: digestOf(tar) };
}
