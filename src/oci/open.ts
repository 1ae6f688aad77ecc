// The way in: openImage resolves a reference (registry or "oci:DIR[:TAG]") to
// a ResolvedImage plus its blobs. (Reopening the blobs later, from the
// location an index records, is content/sources/open.ts.)

import { OciLayout, parseLayoutReference } from './layout.js';
import { hostPlatform } from './platform.js';
import { formatReference, parseReference, repositoryName } from './reference.js';
import { RegistryClient } from './registry.js';
import { requirePlatform, resolveDescriptors, resolveManifest } from './resolve.js';
import type { BlobSource, RegistryOptions, ResolvedImage } from './types.js';

export interface OpenedImage {
  image: ResolvedImage;
  blobs: BlobSource;
}

/** Resolves `ref` ("alpine", "docker://host/app:1", "oci:DIR[:TAG]") for opts.platform or the host's. */
export async function openImage(ref: string, opts: RegistryOptions = {}): Promise<OpenedImage> {
  const wanted = opts.platform ?? hostPlatform();
  if (ref.startsWith('oci:')) {
    const { dir, tag } = parseLayoutReference(ref);
    const layout = await OciLayout.open(dir);
    const resolved = await resolveDescriptors(layout, await layout.select(tag), wanted);
    if (opts.platform) requirePlatform(layout.name, resolved, opts.platform);
    const image: ResolvedImage = {
      location: layout.name,
      reference: tag === undefined ? layout.name : `${layout.name}:${tag}`,
      ...resolved,
    };
    return { image, blobs: layout };
  }

  const parsed = parseReference(ref.startsWith('docker://') ? ref.slice('docker://'.length) : ref);
  const client = new RegistryClient(parsed, opts);
  try {
    const fetched = await client.fetchManifest(parsed.digest ?? parsed.tag ?? 'latest');
    const resolved = await resolveManifest(client, fetched, wanted);
    // Only a platform asked for: without one, a single-platform image is what there is.
    if (opts.platform) requirePlatform(client.name, resolved, opts.platform);
    const image: ResolvedImage = {
      location: `docker://${repositoryName(parsed)}`,
      reference: formatReference(parsed),
      registry: parsed.registry,
      repository: parsed.repository,
      plainHttp: client.plainHttp,
      ...resolved,
    };
    return { image, blobs: client };
  } catch (e) {
    await client.close();
    throw e;
  }
}
