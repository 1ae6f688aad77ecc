// Turns a manifest into a ResolvedImage's content, the same way for registries
// and OCI layout directories: index -> platform manifest -> config, with every
// digest verified and the layers paired with the config's diff_ids.

import { ClipError, type ClipErrorCode } from '../errors.js';
import { isDigest } from '../util/digest.js';
import { OCI_INDEX, OCI_MANIFEST, bareMediaType, isConfigType, isIndexType, isManifestType, isSchema1Type } from './media-types.js';
import { formatPlatform, platformScore } from './platform.js';
import type { LayerDescriptor, Platform, ResolvedImage } from './types.js';

export const MAX_MANIFEST_BYTES = 4 << 20;
export const MAX_CONFIG_BYTES = 32 << 20;
const MAX_INDEX_DEPTH = 4;

export interface FetchedManifest {
  bytes: Buffer;
  /** The Content-Type it was served with, if any. */
  contentType?: string;
  /** Digest of `bytes`, already checked against the digest it was fetched by. */
  digest: string;
}

/** Where manifests and small blobs come from: a registry repository or a layout directory. */
export interface ManifestSource {
  /** For messages: "docker.io/library/alpine", "oci:/abs/dir". */
  readonly name: string;
  /** Error code for malformed content ('REGISTRY' for registries, 'IO' for directories). */
  readonly badContent: ClipErrorCode;
  /** Fetches a manifest by digest (verified) or, for registries, by tag. */
  fetchManifest(reference: string): Promise<FetchedManifest>;
  /** Fetches a small blob whole and verifies its digest. */
  fetchBlob(digest: string, maxBytes: number, what: string): Promise<Buffer>;
}

export interface Descriptor {
  mediaType: string;
  digest: string;
  size: number;
  platform?: Platform;
  annotations?: Record<string, string>;
}

export type ResolvedManifest = Pick<
  ResolvedImage,
  'manifestDigest' | 'manifestMediaType' | 'configDigest' | 'config' | 'platform' | 'layers' | 'raw'
>;

type Json = Record<string, unknown>;

/** Resolves a fetched manifest (index or image manifest) for `wanted`. */
export async function resolveManifest(
  source: ManifestSource,
  fetched: FetchedManifest,
  wanted: Platform,
  depth = 0,
): Promise<ResolvedManifest> {
  const json = parseJson(source, fetched.bytes, `manifest ${fetched.digest}`);
  const mediaType = manifestMediaType(source, json, fetched);
  if (isIndexType(mediaType)) {
    if (depth >= MAX_INDEX_DEPTH) throw bad(source, `image indexes nested more than ${MAX_INDEX_DEPTH} deep`);
    const list = descriptors(source, json['manifests'], `index ${fetched.digest}`);
    return resolveDescriptors(source, list, wanted, depth + 1);
  }
  if (!isManifestType(mediaType)) {
    throw new ClipError('UNSUPPORTED', `${source.name}: unsupported manifest media type ${mediaType}`);
  }
  return resolveImageManifest(source, json, mediaType, fetched);
}

/** Picks the descriptor for `wanted` from an index's list, fetches it and resolves it. */
export async function resolveDescriptors(
  source: ManifestSource,
  list: Descriptor[],
  wanted: Platform,
  depth = 0,
): Promise<ResolvedManifest> {
  const chosen = selectPlatform(source.name, list, wanted);
  const fetched = await source.fetchManifest(chosen.digest);
  return resolveManifest(source, fetched, wanted, depth);
}

/** The error for a Docker schema 1 manifest (`what` names where it was found). */
export function schema1Error(name: string, what: string): ClipError {
  return new ClipError(
    'UNSUPPORTED',
    `${name}: ${what} is a Docker image manifest v2 schema 1, which clip does not support (a deprecated format); re-push the image with a current tool (docker, skopeo copy, crane) to convert it to schema 2 or OCI`,
  );
}

/**
 * The best descriptor for `wanted`; NOT_FOUND listing what exists when none
 * can run there, UNSUPPORTED naming the real problem when the index holds no
 * manifest clip can read (schema 1, unknown media types) or none at all.
 */
export function selectPlatform(name: string, list: Descriptor[], wanted: Platform): Descriptor {
  const candidates = list.filter((d) => isIndexType(d.mediaType) || isManifestType(d.mediaType));
  const others = list.filter((d) => !candidates.includes(d));
  // A schema 1 entry that could be the wanted image is the reason, not "no such platform".
  const schema1 = others.find((d) => isSchema1Type(d.mediaType) && (!d.platform || platformScore(wanted, d.platform) !== undefined));
  if (candidates.length === 0) {
    if (list.length === 0) throw new ClipError('NOT_FOUND', `${name}: the image index lists no manifests (an empty image index)`);
    if (schema1) throw schema1Error(name, `the image index entry ${schema1.digest}`);
    const types = [...new Set(others.map((d) => (d.mediaType === '' ? '(no media type)' : d.mediaType)))];
    throw new ClipError('UNSUPPORTED', `${name}: the image index lists no image manifest clip can read (media types: ${types.join(', ')})`);
  }
  const withPlatform = candidates.filter((d) => d.platform && d.platform.os !== 'unknown');
  if (withPlatform.length === 0 && candidates.length === 1) return candidates[0]!;
  let best: Descriptor | undefined;
  let bestScore = -1;
  for (const d of withPlatform) {
    const score = platformScore(wanted, d.platform!);
    if (score !== undefined && score > bestScore) {
      best = d;
      bestScore = score;
    }
  }
  if (best) return best;
  if (schema1) throw schema1Error(name, `the image index entry ${schema1.digest}`);
  const available = [...new Set(withPlatform.map((d) => formatPlatform(d.platform!)))];
  throw new ClipError(
    'NOT_FOUND',
    `${name} has no image for platform ${formatPlatform(wanted)}; available: ${available.length ? available.join(', ') : '(none)'}`,
  );
}

/**
 * Refuses an image whose config names another platform than the one asked
 * for: a single-platform image offers no choice, and indexing it anyway would
 * silently give the user another architecture. A config that names no
 * platform ("unknown") cannot be checked and passes.
 */
export function requirePlatform(name: string, resolved: ResolvedManifest, wanted: Platform): void {
  const has = resolved.platform;
  if (has.os === 'unknown' || has.architecture === 'unknown') return;
  if (platformScore(wanted, has) !== undefined) return;
  throw new ClipError(
    'NOT_FOUND',
    `${name} has no image for platform ${formatPlatform(wanted)}: it is a ${formatPlatform(has)} image (its config says so)`,
  );
}

function manifestMediaType(source: ManifestSource, json: Json, fetched: FetchedManifest): string {
  const declared = typeof json['mediaType'] === 'string' ? json['mediaType'] : undefined;
  const served = bareMediaType(fetched.contentType);
  if (json['schemaVersion'] === 1 || isSchema1Type(declared ?? '') || isSchema1Type(served ?? '')) {
    throw schema1Error(source.name, `manifest ${fetched.digest}`);
  }
  if (declared) return declared;
  if (served && (isIndexType(served) || isManifestType(served))) return served;
  if (Array.isArray(json['manifests'])) return OCI_INDEX;
  if (json['config'] !== undefined && Array.isArray(json['layers'])) return OCI_MANIFEST;
  throw bad(source, `manifest ${fetched.digest} has no media type`);
}

async function resolveImageManifest(
  source: ManifestSource,
  json: Json,
  mediaType: string,
  fetched: FetchedManifest,
): Promise<ResolvedManifest> {
  const manifestDigest = fetched.digest;
  const what = `manifest ${manifestDigest}`;
  const [configDesc] = descriptors(source, [json['config']], `${what} config`);
  if (!isConfigType(configDesc!.mediaType)) {
    throw new ClipError('UNSUPPORTED', `${source.name} is not a container image (config media type ${configDesc!.mediaType})`);
  }
  if (!Array.isArray(json['layers'])) throw bad(source, `${what} has no layers list`);
  const layerDescs = descriptors(source, json['layers'], `${what} layers`);
  const configBytes = await source.fetchBlob(configDesc!.digest, MAX_CONFIG_BYTES, `image config of ${source.name}`);
  const config = parseJson(source, configBytes, `image config ${configDesc!.digest}`);
  const rootfs = config['rootfs'] as Json | undefined;
  const diffIds = rootfs && Array.isArray(rootfs['diff_ids']) ? (rootfs['diff_ids'] as unknown[]) : undefined;
  if (!diffIds || !diffIds.every((d): d is string => typeof d === 'string' && isDigest(d))) {
    throw bad(source, `image config ${configDesc!.digest} has no valid rootfs.diff_ids`);
  }
  if (diffIds.length !== layerDescs.length) {
    throw bad(
      source,
      `image config ${configDesc!.digest} lists ${diffIds.length} diff_ids but manifest ${manifestDigest} has ${layerDescs.length} layers`,
    );
  }
  const layers: LayerDescriptor[] = layerDescs.map((d, i) => ({
    digest: d.digest,
    mediaType: d.mediaType,
    size: d.size,
    diffId: diffIds[i]!,
  }));
  const platform: Platform = {
    os: typeof config['os'] === 'string' ? config['os'] : 'unknown',
    architecture: typeof config['architecture'] === 'string' ? config['architecture'] : 'unknown',
  };
  if (typeof config['variant'] === 'string' && config['variant'] !== '') platform.variant = config['variant'];
  const raw = { manifest: fetched.bytes, config: configBytes, configMediaType: configDesc!.mediaType };
  return { manifestDigest, manifestMediaType: mediaType, configDigest: configDesc!.digest, config, platform, layers, raw };
}

/** Validates a list of descriptors (digests become URL and path components). */
export function descriptors(source: ManifestSource, value: unknown, what: string): Descriptor[] {
  if (!Array.isArray(value)) throw bad(source, `${what}: expected a list of descriptors`);
  return value.map((v, i) => {
    const d = v as Json | null;
    if (!d || typeof d !== 'object') throw bad(source, `${what}[${i}] is not a descriptor`);
    const { mediaType, digest, size } = d;
    if (typeof digest !== 'string' || !isDigest(digest)) {
      throw bad(source, `${what}[${i}] has an invalid digest ${JSON.stringify(digest)}`);
    }
    if (typeof size !== 'number' || !Number.isSafeInteger(size) || size < 0) {
      throw bad(source, `${what}[${i}] has an invalid size ${JSON.stringify(size)}`);
    }
    const out: Descriptor = { mediaType: typeof mediaType === 'string' ? mediaType : '', digest, size };
    const p = d['platform'] as Json | undefined;
    if (p && typeof p === 'object' && typeof p['os'] === 'string' && typeof p['architecture'] === 'string') {
      out.platform = { os: p['os'], architecture: p['architecture'] };
      if (typeof p['variant'] === 'string' && p['variant'] !== '') out.platform.variant = p['variant'];
    }
    const a = d['annotations'];
    if (a && typeof a === 'object') out.annotations = a as Record<string, string>;
    return out;
  });
}

function parseJson(source: ManifestSource, bytes: Buffer, what: string): Json {
  let v: unknown;
  try {
    v = JSON.parse(bytes.toString('utf8'));
  } catch (e) {
    throw bad(source, `${what} is not valid JSON: ${(e as Error).message}`);
  }
  if (!v || typeof v !== 'object' || Array.isArray(v)) throw bad(source, `${what} is not a JSON object`);
  return v as Json;
}

function bad(source: ManifestSource, message: string): ClipError {
  return new ClipError(source.badContent, `${source.name}: ${message}`);
}
