// Registry writes (distribution API v2): blob uploads (one POST, then one
// monolithic PUT), manifest PUTs, and the HEAD checks that skip what the
// registry already has. Always to the upstream host, never to a mirror.

import { ClipError } from '../errors.js';
import { isTag } from './reference.js';
import { discard, header } from '../http/client.js';
import { checkDigest, digestOf } from '../util/digest.js';
import type { RegistryClient } from './registry.js';

export interface PushedBlob {
  digest: string;
  size: number;
  /** False when the registry had it already (nothing was uploaded). */
  uploaded: boolean;
}

/** Whether the repository has blob `digest` (HEAD; 404 is no). */
export async function blobExists(client: RegistryClient, digest: string): Promise<boolean> {
  checkDigest(digest, 'blob digest');
  const what = `blob HEAD ${digest}`;
  const res = await client.requestUpstream({ method: 'HEAD', path: `blobs/${digest}`, push: true, what });
  await discard(res.body);
  if (res.status === 200) return true;
  if (res.status === 404) return false;
  throw await client.upstreamError(res, what);
}

/** Uploads `data` as a blob unless the repository already has it. */
export async function pushBlob(client: RegistryClient, data: Buffer): Promise<PushedBlob> {
  const digest = digestOf(data);
  if (await blobExists(client, digest)) return { digest, size: data.length, uploaded: false };
  const what = `blob upload of ${digest}`;
  const started = await client.requestUpstream({
    method: 'POST',
    path: 'blobs/uploads/',
    headers: { 'content-length': '0' },
    push: true,
    what,
  });
  if (started.status !== 202) throw await client.upstreamError(started, what);
  await discard(started.body);
  const location = header(started.headers, 'location');
  if (location === undefined) throw new ClipError('REGISTRY', `${what} to ${client.name}: the registry gave no upload Location`);
  const url = new URL(location, started.url);
  if (url.origin !== started.url.origin) {
    // Credentials go only to the registry's own origin; an upload elsewhere is not followed.
    throw new ClipError('REGISTRY', `${what} to ${client.name}: the registry sent the upload to another host (${url.host})`);
  }
  url.searchParams.append('digest', digest);
  const put = await client.requestUpstream({
    method: 'PUT',
    path: url,
    headers: { 'content-type': 'application/octet-stream', 'content-length': String(data.length) },
    body: data,
    push: true,
    what,
  });
  if (put.status !== 201) throw await client.upstreamError(put, what);
  await discard(put.body);
  return { digest, size: data.length, uploaded: true };
}

export interface PushedManifest {
  digest: string;
  size: number;
  /** The registry's OCI-Subject header: it keeps the referrers list of that digest itself. */
  ociSubject?: string;
}

/** PUTs a manifest (or image index) under `reference`: a tag, or its own digest. */
export async function pushManifest(client: RegistryClient, reference: string, bytes: Buffer, mediaType: string): Promise<PushedManifest> {
  const digest = digestOf(bytes);
  if (reference.includes(':')) {
    if (reference !== digest) throw new ClipError('BAD_ARGUMENT', `manifest pushed as ${reference} hashes to ${digest}`);
  } else if (!isTag(reference)) {
    throw new ClipError('BAD_ARGUMENT', `invalid tag ${JSON.stringify(reference)} for ${client.name}`);
  }
  const what = `manifest PUT of ${reference}`;
  const res = await client.requestUpstream({
    method: 'PUT',
    path: `manifests/${reference}`,
    headers: { 'content-type': mediaType, 'content-length': String(bytes.length) },
    body: bytes,
    push: true,
    what,
  });
  if (res.status !== 201 && res.status !== 200) throw await client.upstreamError(res, what);
  await discard(res.body);
  const served = header(res.headers, 'docker-content-digest');
  if (served !== undefined && served.startsWith('sha256:') && served !== digest) {
    throw new ClipError(
      'DIGEST_MISMATCH',
      `${what} to ${client.name}: the registry stored digest ${served}, the manifest hashes to ${digest}`,
    );
  }
  const subject = header(res.headers, 'oci-subject');
  return { digest, size: bytes.length, ...(subject !== undefined ? { ociSubject: subject.trim() } : {}) };
}
