// The OCI artifact that carries a .clip index in the image's own repository:
// an image manifest with artifactType application/vnd.clip.index.v1, the
// empty config, the .clip file as its one layer, and `subject` = the indexed
// (platform) image manifest. Pure: building and checking the JSON.

import { ClipError } from '../errors.js';
import { OCI_MANIFEST } from '../oci/media-types.js';
import type { Referrer } from '../oci/referrers.js';
import { isDigest } from '../util/digest.js';

export const CLIP_ARTIFACT_TYPE = 'application/vnd.clip.index.v1';
/** The media type of the artifact's one blob, a .clip file. */
export const CLIP_LAYER_TYPE = 'application/vnd.clip.index.v1.clip';
export const OCI_EMPTY_TYPE = 'application/vnd.oci.empty.v1+json';
export const OCI_EMPTY_DATA = Buffer.from('{}');
export const OCI_EMPTY_DIGEST = 'sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a';

export const ANNOTATION_CREATED = 'org.opencontainers.image.created';
export const ANNOTATION_VERSION = 'dev.clip.version';
export const ANNOTATION_SPAN_SIZE = 'dev.clip.span-size';
export const ANNOTATION_WINDOW_EVERY = 'dev.clip.window-every';
export const ANNOTATION_FORMAT = 'dev.clip.format-version';
/** The .clip blob's digest, also in the list entry: the same index is never listed twice. */
export const ANNOTATION_INDEX_DIGEST = 'dev.clip.index.digest';

/** Largest .clip blob clip downloads (an image of millions of files indexes to far less). */
export const MAX_INDEX_BLOB_BYTES = 1 << 30;

export interface Subject {
  mediaType: string;
  digest: string;
  size: number;
}

export interface ArtifactInput {
  subject: Subject;
  blob: { digest: string; size: number };
  annotations: Record<string, string>;
}

/** The artifact manifest's bytes; the same inputs give the same bytes (so pushing one index twice adds nothing). */
export function artifactManifest(input: ArtifactInput): Buffer {
  const manifest = {
    schemaVersion: 2,
    mediaType: OCI_MANIFEST,
    artifactType: CLIP_ARTIFACT_TYPE,
    config: { mediaType: OCI_EMPTY_TYPE, digest: OCI_EMPTY_DIGEST, size: OCI_EMPTY_DATA.length },
    layers: [
      {
        mediaType: CLIP_LAYER_TYPE,
        digest: input.blob.digest,
        size: input.blob.size,
        annotations: { 'org.opencontainers.image.title': 'index.clip' },
      },
    ],
    subject: { mediaType: input.subject.mediaType, digest: input.subject.digest, size: input.subject.size },
    annotations: input.annotations,
  };
  return Buffer.from(JSON.stringify(manifest));
}

/** The referrers list entry for an artifact manifest. */
export function referrerEntry(manifest: Buffer, digest: string, annotations: Record<string, string>): Referrer {
  return { mediaType: OCI_MANIFEST, digest, size: manifest.length, artifactType: CLIP_ARTIFACT_TYPE, annotations };
}

/** clip's entries of a referrers list, the newest first (by their created annotation; none counts as oldest). */
export function clipReferrers(list: readonly Referrer[]): Referrer[] {
  const created = (r: Referrer): number => {
    const t = Date.parse(r.annotations?.[ANNOTATION_CREATED] ?? '');
    return Number.isFinite(t) ? t : -Infinity;
  };
  return list.filter((r) => r.artifactType === CLIP_ARTIFACT_TYPE).sort((a, b) => created(b) - created(a));
}

/**
 * Checks a fetched artifact manifest: a clip index for `subject`, with one
 * .clip blob of a sane size. Returns that blob's descriptor.
 */
export function checkArtifact(bytes: Buffer, subject: string, where: string): { digest: string; size: number } {
  const bad = (why: string) => new ClipError('BAD_INDEX', `${where}: ${why}`);
  let json: Record<string, unknown>;
  try {
    json = JSON.parse(bytes.toString('utf8')) as Record<string, unknown>;
  } catch {
    throw bad('the clip index artifact manifest is not JSON');
  }
  if (typeof json !== 'object' || json === null) throw bad('the clip index artifact manifest is not a JSON object');
  if (json['artifactType'] !== CLIP_ARTIFACT_TYPE)
    throw bad(`not a clip index artifact (artifactType ${JSON.stringify(json['artifactType'])})`);
  const s = json['subject'] as Record<string, unknown> | undefined;
  if (typeof s !== 'object' || s === null || typeof s['digest'] !== 'string') throw bad('the clip index artifact names no subject');
  if (s['digest'] !== subject) {
    throw new ClipError(
      'DIGEST_MISMATCH',
      `${where}: the clip index artifact was pushed for manifest ${String(s['digest'])}, not for ${subject}; refusing it`,
    );
  }
  const layers = json['layers'];
  if (!Array.isArray(layers) || layers.length !== 1) throw bad('a clip index artifact must have exactly one layer (the .clip file)');
  const l = layers[0] as Record<string, unknown>;
  if (typeof l !== 'object' || l === null || l['mediaType'] !== CLIP_LAYER_TYPE)
    throw bad(`its layer is not a .clip file (media type ${JSON.stringify(l?.['mediaType'])})`);
  const { digest, size } = l;
  if (typeof digest !== 'string' || !isDigest(digest)) throw bad(`its layer has an invalid digest ${JSON.stringify(digest)}`);
  if (typeof size !== 'number' || !Number.isSafeInteger(size) || size <= 0)
    throw bad(`its layer has an invalid size ${JSON.stringify(size)}`);
  if (size > MAX_INDEX_BLOB_BYTES) throw bad(`its .clip blob is ${size} bytes, more than the ${MAX_INDEX_BLOB_BYTES} clip accepts`);
  return { digest, size };
}
