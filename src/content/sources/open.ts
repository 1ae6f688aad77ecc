// Where an index's bytes come from, by its ImageRecord.location: a registry or
// OCI layout (registry.ts), the data part of a local archive (embedded.ts) or
// of an S3 archive (s3.ts). The archive and S3 sources load only when used.

import { ClipError } from '../../errors.js';
import type { BlobSource, RegistryOptions } from '../../oci/types.js';
import { openRegistrySource } from './registry.js';

/**
 * Reopens the blobs of an image from its ResolvedImage.location ("docker://..."
 * or "oci:/abs/dir"), or an archive's data ("archive:/abs/file.clip",
 * "s3://bucket/key?...").
 */
export async function openBlobSource(location: string, opts: RegistryOptions = {}): Promise<BlobSource> {
  if (location.startsWith('oci:') || location.startsWith('docker://')) return openRegistrySource(location, opts);
  if (location.startsWith('archive:')) {
    const file = location.slice('archive:'.length);
    if (file === '')
      throw new ClipError('BAD_ARGUMENT', "an archive's data is in its .clip file: load the archive from its file (loadIndex) to read it");
    const { EmbeddedBlobSource } = await import('./embedded.js');
    return EmbeddedBlobSource.open(file);
  }
  if (location.startsWith('s3://')) {
    const { S3BlobSource } = await import('./s3.js');
    return S3BlobSource.open(location);
  }
  throw new ClipError(
    'BAD_REFERENCE',
    `unknown image location ${JSON.stringify(location)} (expected docker://..., oci:..., archive:... or s3://...)`,
  );
}
