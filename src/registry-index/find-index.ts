// The lookup behind `clip mount IMAGE` (and the containerd snapshotter):
// resolve the image to its platform manifest digest, then find its .clip
// index in the local store, else among the manifest's referrers in the
// registry (downloaded into the store), else build it (reads the whole image
// once) when allowed. Whatever is returned names that manifest digest.

import { ClipError } from '../errors.js';
import { openImage } from '../oci/open.js';
import { parseReference, repositoryName } from '../oci/reference.js';
import { listReferrers } from '../oci/referrers.js';
import { RegistryClient } from '../oci/registry.js';
import type { Platform, RegistryOptions, ResolvedImage } from '../oci/types.js';
import { hostPlatform } from '../oci/platform.js';
import { resolveManifest } from '../oci/resolve.js';
import { checkDigest } from '../util/digest.js';
import type { BuildOptions } from '../indexer/index-image.js';
import { clipReferrers } from './artifact.js';
import { downloadIndex } from './download.js';
import { defaultDataDir, findLocalIndex, localIndexPath, storeIndexBytes } from './local-store.js';

export type FoundIndexSource = 'local' | 'registry' | 'built';

export interface FindIndexProgress {
  stage: 'download' | 'build';
  done: number;
  total: number;
}

export interface FindIndexOptions {
  /** Image reference ("host/repo:tag", "host/repo@sha256:...", "oci:DIR[:TAG]"): where the image and its referrers are. */
  reference: string;
  /** The platform image manifest's digest when already known (CRI gives it): no resolution then. */
  manifestDigest?: string;
  /** Platform to pick from a multi-platform image (default: the host's), as `clip index` picks it. */
  platform?: Platform;
  registry?: RegistryOptions;
  /** Where the local index store is (default $CLIP_DATA_DIR, else /var/lib/clip). */
  dataDir?: string;
  /** Index the image on the spot when no index is found (reads the whole image once); else only an index that exists. */
  build?: boolean;
  /** Span settings etc. for a build. */
  buildOptions?: Pick<BuildOptions, 'spanSize' | 'windowEvery' | 'maxRatio' | 'maxEntries'>;
  /** Told before a build starts (the CLI says it reads the whole image once). */
  onNotice?: (message: string) => void;
  onProgress?: (p: FindIndexProgress) => void;
}

export interface FoundIndex {
  /** The .clip file, in the local store. */
  path: string;
  manifestDigest: string;
  source: FoundIndexSource;
}

export async function findImageIndex(opts: FindIndexOptions): Promise<FoundIndex> {
  const dataDir = opts.dataDir ?? defaultDataDir();
  const registry: RegistryOptions = { ...opts.registry, ...(opts.platform ? { platform: opts.platform } : {}) };
  const isLayout = opts.reference.startsWith('oci:');
  const resolved = opts.manifestDigest === undefined ? await resolveImage(opts.reference, registry) : undefined;
  const manifestDigest = opts.manifestDigest ?? resolved!.manifestDigest;
  checkDigest(manifestDigest, 'image manifest digest');

  const local = await findLocalIndex(dataDir, manifestDigest);
  if (local !== undefined) return { path: local, manifestDigest, source: 'local' };

  const name = isLayout ? opts.reference : repositoryName(parseReference(stripScheme(opts.reference)));
  if (!isLayout) {
    const client = new RegistryClient(parseReference(stripScheme(opts.reference)), registry);
    try {
      const { referrers } = await listReferrers(client, manifestDigest);
      // The newest first; a bad or mismatched one is refused loudly, never skipped for an older one.
      const [newest] = clipReferrers(referrers);
      if (newest !== undefined) {
        // The image's layers: a downloaded index must list exactly these (it reads no other blob).
        const layers = (
          resolved ?? (await resolveManifest(client, await client.fetchManifest(manifestDigest), registry.platform ?? hostPlatform()))
        ).layers;
        const subject = { digest: manifestDigest, layers: layers.map((l) => l.digest) };
        const path = await downloadIndex(client, newest, subject, dataDir, (done, total) =>
          opts.onProgress?.({ stage: 'download', done, total }),
        );
        return { path, manifestDigest, source: 'registry' };
      }
    } finally {
      await client.close();
    }
  }

  if (!opts.build) {
    throw new ClipError(
      'NOT_FOUND',
      `no clip index for ${name}@${manifestDigest}: none in the local index store (${localIndexPath(dataDir, manifestDigest)})` +
        `${isLayout ? '' : ' nor among its referrers in the registry'}; push one with clip index IMAGE --push, or let clip build it (--build)`,
    );
  }
  opts.onNotice?.(`no clip index found for ${name}@${manifestDigest}: indexing it now (this reads the whole image once)`);
  // By digest: the image built is the one looked up, even if the tag moves meanwhile.
  const source = isLayout ? opts.reference : `${name}@${manifestDigest}`;
  const { buildIndex } = await import('../indexer/index-image.js');
  const { encodeIndex } = await import('../index/format.js');
  const index = await buildIndex(source, {
    ...registry,
    ...opts.buildOptions,
    onProgress: (done, total) => opts.onProgress?.({ stage: 'build', done, total }),
  });
  const path = await storeIndexBytes(dataDir, manifestDigest, encodeIndex(index));
  return { path, manifestDigest, source: 'built' };
}

/** The platform image manifest `reference` resolves to. */
async function resolveImage(reference: string, registry: RegistryOptions): Promise<ResolvedImage> {
  // As `clip index` resolves it: a platform asked for must match; else the host's is preferred.
  const { image, blobs } = await openImage(reference, registry);
  await blobs.close();
  return image;
}

function stripScheme(reference: string): string {
  return reference.startsWith('docker://') ? reference.slice('docker://'.length) : reference;
}
