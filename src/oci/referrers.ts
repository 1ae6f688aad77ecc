// OCI 1.1 referrers: the artifacts whose `subject` is a given manifest. Read
// through the referrers API (GET /v2/<name>/referrers/<digest>) where the
// registry has it, else through the referrers tag schema: a tag
// "<alg>-<hex>" holding an image index of the referrers, which every writer
// reads, merges and writes back (other tools' entries are kept verbatim).

import { ClipError } from '../errors.js';
import { discard, header, readBody } from '../http/client.js';
import { checkDigest, isDigest } from '../util/digest.js';
import { bareMediaType, OCI_INDEX } from './media-types.js';
import { pushManifest } from './push.js';
import type { RegistryClient } from './registry.js';
import { MAX_MANIFEST_BYTES } from './resolve.js';

/** A referrers list entry: a descriptor with the artifact's type and annotations. */
export interface Referrer {
  mediaType: string;
  digest: string;
  size: number;
  artifactType?: string;
  annotations?: Record<string, string>;
}

export interface ReferrerList {
  /** 'api': the registry's referrers API; 'tag': the referrers tag schema (or nothing found there). */
  via: 'api' | 'tag';
  referrers: Referrer[];
}

/** Pages of a referrers API answer followed at most (Link: rel="next"). */
const MAX_PAGES = 16;

/** The tag of the referrers tag schema: "sha256-<hex>". */
export function referrersTag(subject: string): string {
  const { algorithm, hex } = checkDigest(subject, 'subject digest');
  return `${algorithm}-${hex}`;
}

/** The referrers of `subject` in the client's repository (the API where it answers, else the tag). */
export async function listReferrers(client: RegistryClient, subject: string): Promise<ReferrerList> {
  const api = await referrersFromApi(client, subject);
  if (api !== undefined) return { via: 'api', referrers: api };
  const tagged = await referrersFromTag(client, subject);
  return { via: 'tag', referrers: tagged === undefined ? [] : validReferrers(tagged.manifests) };
}

/**
 * Makes `entry` (an artifact already pushed, whose subject is `subject`) a
 * listed referrer. Nothing to do when the registry keeps the list itself (it
 * answered the push with OCI-Subject, or serves the referrers API); else the
 * tag's index is read, `entry` appended unless already there, and written back.
 */
export async function addReferrer(
  client: RegistryClient,
  subject: string,
  entry: Referrer,
  ociSubject?: string,
): Promise<'api' | 'tag' | 'tag-unchanged'> {
  if (ociSubject === subject) return 'api';
  if ((await referrersFromApi(client, subject)) !== undefined) return 'api';
  const tag = referrersTag(subject);
  const current = await referrersFromTag(client, subject);
  const manifests = current?.manifests ?? [];
  if (manifests.some((m) => isObject(m) && m['digest'] === entry.digest)) return 'tag-unchanged';
  const index: Record<string, unknown> = {
    ...(current?.index ?? {}),
    schemaVersion: 2,
    mediaType: OCI_INDEX,
    manifests: [...manifests, entry],
  };
  await pushManifest(client, tag, Buffer.from(JSON.stringify(index)), OCI_INDEX);
  return 'tag';
}

/**
 * The referrers API's list, or undefined where the registry has no such API:
 * 404 (the spec's answer), or the 400/405/406 some registries give a path they do
 * not know (the digest sent is well-formed, so a 400 cannot be about it).
 */
async function referrersFromApi(client: RegistryClient, subject: string): Promise<Referrer[] | undefined> {
  checkDigest(subject, 'subject digest');
  const what = `referrers of ${subject}`;
  const out: Referrer[] = [];
  let path: string | URL = `referrers/${subject}`;
  for (let page = 0; page < MAX_PAGES; page++) {
    const res = await client.requestUpstream({ method: 'GET', path, headers: { accept: OCI_INDEX }, what });
    if (page === 0 && [400, 404, 405, 406].includes(res.status)) {
      await discard(res.body);
      return undefined;
    }
    if (res.status !== 200) throw await client.upstreamError(res, what);
    const type = bareMediaType(header(res.headers, 'content-type'));
    const bytes = await readBody(res, MAX_MANIFEST_BYTES, what);
    const index = parseIndex(client, bytes, what);
    // A 200 that is not an image index (some registries' catch-all pages) means no API.
    if (index === undefined || (type !== undefined && type !== OCI_INDEX && type !== 'application/json')) {
      if (page === 0) return undefined;
      throw new ClipError('REGISTRY', `${client.name}: ${what}: a later page is not an image index`);
    }
    out.push(...validReferrers(index.manifests));
    const next = nextLink(header(res.headers, 'link'), res.url);
    if (next === undefined) return out;
    path = next;
  }
  throw new ClipError('REGISTRY', `${client.name}: ${what}: more than ${MAX_PAGES} pages`);
}

/** The tag schema's index (raw, to be written back whole), or undefined when the tag does not exist. */
async function referrersFromTag(
  client: RegistryClient,
  subject: string,
): Promise<{ index: Record<string, unknown>; manifests: unknown[] } | undefined> {
  const tag = referrersTag(subject);
  let fetched;
  try {
    fetched = await client.fetchManifest(tag);
  } catch (e) {
    if (e instanceof ClipError && e.code === 'NOT_FOUND') return undefined;
    throw e;
  }
  const what = `referrers tag ${tag}`;
  const index = parseIndex(client, fetched.bytes, what);
  if (index === undefined) {
    // Not ours to overwrite: someone else uses the tag for something else.
    throw new ClipError('REGISTRY', `${client.name}: ${what} holds something other than an OCI image index; refusing to use or replace it`);
  }
  return index;
}

function parseIndex(
  client: RegistryClient,
  bytes: Buffer,
  what: string,
): { index: Record<string, unknown>; manifests: unknown[] } | undefined {
  let json: unknown;
  try {
    json = JSON.parse(bytes.toString('utf8'));
  } catch {
    return undefined;
  }
  if (!isObject(json) || !Array.isArray(json['manifests'])) return undefined;
  if (json['mediaType'] !== undefined && json['mediaType'] !== OCI_INDEX) return undefined;
  if (json['manifests'].length > 100_000) throw new ClipError('REGISTRY', `${client.name}: ${what} lists too many referrers`);
  return { index: json, manifests: json['manifests'] };
}

/** The entries that are well-formed descriptors (others are skipped: a bad entry of another tool must not stop clip). */
function validReferrers(manifests: unknown[]): Referrer[] {
  const out: Referrer[] = [];
  for (const m of manifests) {
    if (!isObject(m)) continue;
    const { mediaType, digest, size, artifactType, annotations } = m;
    if (typeof digest !== 'string' || !isDigest(digest)) continue;
    if (typeof size !== 'number' || !Number.isSafeInteger(size) || size < 0) continue;
    const r: Referrer = { mediaType: typeof mediaType === 'string' ? mediaType : '', digest, size };
    if (typeof artifactType === 'string') r.artifactType = artifactType;
    if (isObject(annotations)) {
      r.annotations = Object.fromEntries(Object.entries(annotations).filter((e): e is [string, string] => typeof e[1] === 'string'));
    }
    out.push(r);
  }
  return out;
}

/** The rel="next" target of a Link header, on the same origin only. */
function nextLink(link: string | undefined, base: URL): URL | undefined {
  if (link === undefined) return undefined;
  const m = /<([^>]*)>\s*;[^,]*rel="?next"?/.exec(link);
  if (!m) return undefined;
  const url = new URL(m[1]!, base);
  return url.origin === base.origin ? url : undefined;
}

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}
