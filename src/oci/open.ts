// The two ways in: openImage resolves a reference (registry or "oci:DIR[:TAG]")
// to a ResolvedImage plus its blobs; openBlobSource reopens the blobs later
// from the ResolvedImage.location recorded in an index file.

import { ClipError } from '../errors.js';
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
      ...resolved,
    };
    return { image, blobs: client };
  } catch (e) {
    await client.close();
    throw e;
  }
}

/**
 * Reopens the blobs of an image from its ResolvedImage.location ("docker://..."
 * or "oci:/abs/dir"), or an archive's data ("archive:/abs/file.clip",
 * "s3://bucket/key?..."; those modules load only when used).
 */
export async function openBlobSource(location: string, opts: RegistryOptions = {}): Promise<BlobSource> {
  if (location.startsWith('oci:')) return OciLayout.open(location.slice('oci:'.length));
  if (location.startsWith('archive:')) {
    const file = location.slice('archive:'.length);
    if (file === '') throw new ClipError('BAD_ARGUMENT', 'an archive\'s data is in its .clip file: load the archive from its file (loadIndex) to read it');
    const { EmbeddedBlobSource } = await import('../archive/embedded-blob-source.js');
    return EmbeddedBlobSource.open(file);
  }
  if (location.startsWith('s3://')) {
    const { S3BlobSource } = await import('../s3/blob-source.js');
    return S3BlobSource.open(location);
  }
  if (location.startsWith('docker://')) {
    const parsed = parseReference(location.slice('docker://'.length));
    return new RegistryClient(parsed, opts);
  }
  throw new ClipError('BAD_REFERENCE', `unknown image location ${JSON.stringify(location)} (expected docker://..., oci:..., archive:... or s3://...)`);
}
