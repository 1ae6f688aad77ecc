// `clip push FILE.clip` and `clip index --push`: stores a .clip index in the
// repository of the image it was made from, as an OCI artifact whose subject
// is that image manifest, and lists it among the manifest's referrers.

import { readFile } from 'node:fs/promises';
import { ClipError } from '../errors.js';
import { decodeIndex } from '../index/format.js';
import { FORMAT_VERSION } from '../index/types.js';
import { bareMediaType, isManifestType, OCI_MANIFEST } from '../oci/media-types.js';
import { digestOf } from '../util/digest.js';
import { pushBlob, pushManifest } from '../oci/push.js';
import { parseReference, repositoryName } from '../oci/reference.js';
import { addReferrer, listReferrers } from '../oci/referrers.js';
import { RegistryClient } from '../oci/registry.js';
import type { RegistryOptions } from '../oci/types.js';
import { VERSION } from '../version.js';
import {
  ANNOTATION_CREATED,
  ANNOTATION_FORMAT,
  ANNOTATION_INDEX_DIGEST,
  ANNOTATION_SPAN_SIZE,
  ANNOTATION_VERSION,
  ANNOTATION_WINDOW_EVERY,
  artifactManifest,
  clipReferrers,
  OCI_EMPTY_DATA,
  referrerEntry,
  type Subject,
} from './artifact.js';

export interface PushIndexOptions {
  registry?: RegistryOptions;
  /** Push to this repository ("host/repo") instead of the one the index names; it must hold the image manifest. */
  repository?: string;
  /** The index's window spacing, for the annotations (it is not recorded in the .clip file). */
  windowEvery?: number;
}

export interface PushedIndex {
  /** "host/repo@sha256:..." of the artifact manifest. */
  reference: string;
  artifactDigest: string;
  subject: Subject;
  /** How the referrers list was kept: by the registry ('api'), in the referrers tag ('tag'), or it listed this index already ('unchanged', nothing pushed). */
  referrers: 'api' | 'tag' | 'unchanged';
}

/** Pushes the .clip index at `file`; the same file pushed twice gives the same artifact and one list entry. */
export async function pushIndex(file: string, opts: PushIndexOptions = {}): Promise<PushedIndex> {
  const bytes = await readFile(file).catch((e: NodeJS.ErrnoException) => {
    throw new ClipError('IO', `cannot read index ${file}: ${e.code ?? e.message}`);
  });
  let index;
  try {
    index = decodeIndex(bytes);
  } catch (e) {
    if (e instanceof ClipError) throw new ClipError(e.code, `${file}: ${e.message}`);
    throw e;
  }
  if (index.kind !== 'oci')
    throw new ClipError('BAD_ARGUMENT', `${file} is a ${index.kind} index: only an image's index can be pushed to its registry`);
  const target = opts.repository ?? repositoryOf(index.image.location, file);
  const ref = parseReference(target);
  const client = new RegistryClient(ref, opts.registry ?? {});
  try {
    const subject = await subjectDescriptor(client, index.image.manifestDigest);
    // The same .clip already listed (pushed before, perhaps with other annotations): nothing to add.
    const indexDigest = digestOf(bytes);
    const { referrers: listed } = await listReferrers(client, subject.digest);
    const same = clipReferrers(listed).find((r) => r.annotations?.[ANNOTATION_INDEX_DIGEST] === indexDigest);
    if (same !== undefined)
      return { reference: `${repositoryName(ref)}@${same.digest}`, artifactDigest: same.digest, subject, referrers: 'unchanged' };
    await pushBlob(client, OCI_EMPTY_DATA);
    const blob = await pushBlob(client, bytes);
    // The index's own time, not now: the same index pushed again is the same artifact.
    const annotations: Record<string, string> = {
      [ANNOTATION_CREATED]: index.image.indexedAt,
      [ANNOTATION_VERSION]: index.image.indexedBy.replace(/^clip /, '') || VERSION,
      [ANNOTATION_SPAN_SIZE]: String(index.image.spanSize),
      [ANNOTATION_FORMAT]: String(FORMAT_VERSION),
      [ANNOTATION_INDEX_DIGEST]: blob.digest,
      ...(opts.windowEvery !== undefined ? { [ANNOTATION_WINDOW_EVERY]: String(opts.windowEvery) } : {}),
    };
    const manifest = artifactManifest({ subject, blob, annotations });
    const pushed = await pushManifest(client, digestOf(manifest), manifest, OCI_MANIFEST);
    const added = await addReferrer(client, subject.digest, referrerEntry(manifest, pushed.digest, annotations), pushed.ociSubject);
    const referrers = added === 'tag-unchanged' ? 'unchanged' : added;
    return { reference: `${repositoryName(ref)}@${pushed.digest}`, artifactDigest: pushed.digest, subject, referrers };
  } finally {
    await client.close();
  }
}

/** "host/repo" from an index's "docker://host/repo" location. */
function repositoryOf(location: string, file: string): string {
  if (!location.startsWith('docker://')) {
    throw new ClipError('BAD_ARGUMENT', `${file} indexes ${location}, not an image in a registry: name the repository to push to`);
  }
  return location.slice('docker://'.length);
}

/** The descriptor of the indexed image manifest, as the repository serves it (it must be there: it is the subject). */
async function subjectDescriptor(client: RegistryClient, digest: string): Promise<Subject> {
  const fetched = await client.fetchManifest(digest);
  let declared: unknown;
  try {
    declared = (JSON.parse(fetched.bytes.toString('utf8')) as { mediaType?: unknown }).mediaType;
  } catch {
    declared = undefined;
  }
  const mediaType = typeof declared === 'string' ? declared : bareMediaType(fetched.contentType);
  if (mediaType === undefined || !isManifestType(mediaType)) {
    throw new ClipError('REGISTRY', `${client.name}@${digest} is not an image manifest (media type ${mediaType ?? 'unknown'})`);
  }
  return { mediaType, digest, size: fetched.bytes.length };
}
