// Where the snapshotter finds the .clip index of an image: the node's local
// store, $CLIP_DATA_DIR/indexes/sha256/<hex>.clip, named by the manifest
// digest, then the manifest's referrers in the registry (findImageIndex,
// which downloads into the store); trusted only if the index says it is of
// that manifest. Never built on the spot: without an index, a layer is
// unpacked as containerd's own snapshotters do.

import { stat } from 'node:fs/promises';
import { loadIndex } from '../index/load.js';
import type { RegistryOptions } from '../oci/types.js';
import { findImageIndex } from '../registry-index/find-index.js';

/** The path of a .clip index of that manifest, if one is known. */
export type FindImageIndex = (imageRef: string, manifestDigest: string) => Promise<string | undefined>;

/** How long a manifest found to have no index is not looked up again (every layer's Prepare asks). */
const NO_INDEX_MS = 60_000;

/**
 * The local store, then the registry's referrers (registry settings as
 * `registry`); what cannot be had (no index, the registry unreachable) is
 * heard by `onMiss` and means a normal unpack.
 */
export function registryIndexLookup(
  dataDir: string,
  registry: RegistryOptions,
  onMiss: (imageRef: string, why: string) => void = () => undefined,
): FindImageIndex {
  const missing = new Map<string, number>();
  return async (imageRef, manifestDigest) => {
    const since = missing.get(manifestDigest);
    if (since !== undefined && Date.now() - since < NO_INDEX_MS) return undefined;
    try {
      const found = await findImageIndex({ reference: imageRef, manifestDigest, dataDir, registry });
      missing.delete(manifestDigest);
      return found.path;
    } catch (e) {
      missing.set(manifestDigest, Date.now());
      if (missing.size > 1024) missing.delete(missing.keys().next().value!);
      onMiss(imageRef, (e as Error).message);
      return undefined;
    }
  };
}

/** The layer digests of an index (bottom first), remembered per file version: every layer's Prepare asks. */
export class IndexLayers {
  private readonly cache = new Map<string, { stamp: string; manifestDigest: string; layers: string[] }>();

  async of(file: string): Promise<{ manifestDigest: string; layers: string[] }> {
    const st = await stat(file);
    const stamp = `${st.size}:${st.mtimeMs}:${st.ino}`;
    let hit = this.cache.get(file);
    if (hit?.stamp !== stamp) {
      const index = await loadIndex(file);
      hit = { stamp, manifestDigest: index.image.manifestDigest, layers: index.layers.map((l) => l.digest) };
      this.cache.set(file, hit);
      if (this.cache.size > 64) this.cache.delete(this.cache.keys().next().value!);
    }
    return { manifestDigest: hit.manifestDigest, layers: hit.layers };
  }
}
