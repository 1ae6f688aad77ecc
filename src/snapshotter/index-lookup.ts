// Where the snapshotter finds the .clip index of an image: by default the
// node's local store, $CLIP_DATA_DIR/indexes/sha256/<hex>.clip, named by the
// manifest digest, and trusted only if the index says it is of that manifest.
// (The registry-native lookup, local store then the registry's referrers,
// plugs in through the same function type.)

import { stat } from 'node:fs/promises';
import path from 'node:path';
import { loadIndex } from '../index/load.js';
import { isSha256Digest } from './labels.js';

/** The path of a .clip index of that manifest, if one is known. */
export type FindImageIndex = (imageRef: string, manifestDigest: string) => Promise<string | undefined>;

export function localIndexPath(dataDir: string, manifestDigest: string): string {
  if (!isSha256Digest(manifestDigest)) throw new Error(`not a sha256 digest: ${manifestDigest}`);
  return path.join(dataDir, 'indexes', 'sha256', `${manifestDigest.slice('sha256:'.length)}.clip`);
}

/** The local-store lookup; `onReject` hears of a file there that is not an index of that manifest. */
export function localIndexLookup(dataDir: string, onReject: (file: string, why: string) => void = () => undefined): FindImageIndex {
  return async (_imageRef, manifestDigest) => {
    if (!isSha256Digest(manifestDigest)) return undefined;
    const file = localIndexPath(dataDir, manifestDigest);
    try {
      if (!(await stat(file)).isFile()) return undefined;
    } catch {
      return undefined;
    }
    try {
      const index = await loadIndex(file);
      if (index.image.manifestDigest !== manifestDigest) {
        onReject(file, `it indexes manifest ${index.image.manifestDigest}`);
        return undefined;
      }
      return file;
    } catch (e) {
      onReject(file, (e as Error).message);
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
