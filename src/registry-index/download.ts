// Fetches clip's index artifact for an image manifest from its repository:
// the artifact manifest (by digest, verified, checked to name the subject),
// then its .clip blob streamed to a temp file in the local store with a size
// limit and a digest check, checked to be an index of that manifest, stored;
// it reads its blobs from the repository it was found in.

import { createHash } from 'node:crypto';
import { open, rm } from 'node:fs/promises';
import { ClipError } from '../errors.js';
import type { RegistryClient } from '../oci/registry.js';
import type { Referrer } from '../oci/referrers.js';
import { checkArtifact } from './artifact.js';
import { commitTemp, storeTempPath } from './local-store.js';

/**
 * Downloads the index that referrer `entry` carries for `subject` (an image
 * manifest of these `layers`) into the store; returns the stored path.
 */
export async function downloadIndex(
  client: RegistryClient,
  entry: Referrer,
  subject: { digest: string; layers: readonly string[] },
  dataDir: string,
  onProgress?: (done: number, total: number) => void,
): Promise<string> {
  const where = `${client.name}@${entry.digest}`;
  const manifest = await client.fetchManifest(entry.digest);
  const blob = checkArtifact(manifest.bytes, subject.digest, where);
  const tmp = await storeTempPath(dataDir, subject.digest);
  try {
    const hash = createHash('sha256');
    const fh = await open(tmp, 'wx', 0o644);
    let done = 0;
    try {
      const body = await client.openBlob(blob.digest, blob.size);
      try {
        for await (const chunk of body) {
          const b = chunk as Buffer;
          done += b.length;
          if (done > blob.size)
            throw new ClipError('REGISTRY', `${where}: the .clip blob is larger than its descriptor's ${blob.size} bytes`);
          hash.update(b);
          await fh.write(b);
          onProgress?.(done, blob.size);
        }
      } finally {
        body.destroy();
      }
    } finally {
      await fh.close();
    }
    if (done !== blob.size) throw new ClipError('REGISTRY', `${where}: the .clip blob ended after ${done} of ${blob.size} bytes`);
    const actual = `sha256:${hash.digest('hex')}`;
    if (!blob.digest.startsWith('sha256:') || actual !== blob.digest) {
      throw new ClipError('DIGEST_MISMATCH', `${where}: the .clip blob hashes to ${actual}, its descriptor says ${blob.digest}`);
    }
  } catch (e) {
    await rm(tmp, { force: true });
    throw e;
  }
  // An index made from another repository (pushed here with `clip push FILE HOST/REPO`, or copied with the
  // image) reads its blobs from here: this repository holds the manifest it names and its layers (checked
  // at commit); the other may be unreachable from this node.
  const here = { location: `docker://${client.name}`, plainHttp: client.plainHttp };
  return commitTemp(dataDir, subject.digest, tmp, subject.layers, `the index downloaded from ${where}`, here);
}
