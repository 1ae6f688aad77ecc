// Swaps one layer blob of a built OCI layout for other bytes (truncated or
// corrupt gzip), keeping the layout consistent: the manifest names the new
// digest and size, so only the content itself is bad.

import { createHash } from 'node:crypto';
import { readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import type { BuiltImage } from './image-builder.js';

function sha(b: Buffer): string {
  return createHash('sha256').update(b).digest('hex');
}

export async function replaceLayerBlob(image: BuiltImage, layer: number, blob: Buffer): Promise<void> {
  const blobs = path.join(image.dir, 'blobs', 'sha256');
  await writeFile(path.join(blobs, sha(blob)), blob);
  const manifest = JSON.parse(JSON.stringify(image.manifest)) as { layers: { digest: string; size: number }[] };
  manifest.layers[layer]!.digest = `sha256:${sha(blob)}`;
  manifest.layers[layer]!.size = blob.length;
  const bytes = Buffer.from(JSON.stringify(manifest));
  await writeFile(path.join(blobs, sha(bytes)), bytes);
  const indexPath = path.join(image.dir, 'index.json');
  const index = JSON.parse(await readFile(indexPath, 'utf8')) as {
    manifests: { digest: string; size: number; annotations?: Record<string, string> }[];
  };
  for (const m of index.manifests) {
    if (m.annotations?.['org.opencontainers.image.ref.name'] === image.tag) {
      m.digest = `sha256:${sha(bytes)}`;
      m.size = bytes.length;
    }
  }
  await writeFile(indexPath, JSON.stringify(index));
}
