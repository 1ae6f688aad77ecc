// S3 object addresses: what a user types (`s3://BUCKET/KEY`, the key taken
// literally) and what an index records: "s3://bucket/percent-encoded/key"
// plus the region and endpoint it was written to, so a mount needs nothing
// else ("s3://b/k?region=eu-west-1&endpoint=http%3A%2F%2F127.0.0.1%3A9000").

import { ClipError } from '../errors.js';

export interface S3Location {
  bucket: string;
  key: string;
  region?: string;
  /** An S3-compatible endpoint ("http://127.0.0.1:9000"); AWS when absent. */
  endpoint?: string;
}

const BUCKET = /^[A-Za-z0-9][A-Za-z0-9._-]{1,254}$/;
/** Whether `s` can stand in a host name or one path segment as it is (what S3Client needs; parsing is stricter). */
export function isBucketName(s: string): boolean {
  return /^[A-Za-z0-9._-]+$/.test(s) && s !== '.' && s !== '..';
}

/** Region names go into a host name ("s3.REGION.amazonaws.com"): letters, digits, '-' and '_' only. */
const REGION = /^[A-Za-z0-9_-]{1,64}$/;

/**
 * Why a key cannot be addressed, or undefined. URL parsers (WHATWG URL, and
 * so fetch and undici) resolve "." and ".." path segments, also spelled
 * "%2e", so such a key would address another key, or another bucket.
 */
export function badKey(key: string): string | undefined {
  if (key === '' || key.endsWith('/')) return 'it names no object (expected s3://BUCKET/KEY)';
  const dots = key.split('/').find((seg) => seg === '.' || seg === '..');
  if (dots !== undefined) return `its key has a ${JSON.stringify(dots)} segment, which URLs resolve to another key`;
  return undefined;
}

/** Throws unless `region` can be put in a host name. */
export function checkRegion(region: string, code: 'BAD_ARGUMENT' | 'BAD_INDEX' = 'BAD_ARGUMENT'): void {
  if (!REGION.test(region))
    throw new ClipError(code, `bad S3 region ${JSON.stringify(region)}: expected letters, digits and dashes (e.g. eu-west-1)`);
}

/** RFC 3986 percent-encoding of one path segment, as S3 canonicalises it. */
export function encodeSegment(s: string): string {
  return encodeURIComponent(s).replace(/[!'()*]/g, (c) => `%${c.charCodeAt(0).toString(16).toUpperCase()}`);
}

/** `s3://BUCKET/KEY` as a user gives it on the command line. */
export function parseS3Url(url: string): S3Location {
  if (!url.startsWith('s3://')) throw new ClipError('BAD_ARGUMENT', `bad S3 URL ${JSON.stringify(url)}: expected s3://BUCKET/KEY`);
  const rest = url.slice('s3://'.length);
  const slash = rest.indexOf('/');
  const bucket = slash < 0 ? rest : rest.slice(0, slash);
  const key = slash < 0 ? '' : rest.slice(slash + 1);
  if (!BUCKET.test(bucket))
    throw new ClipError('BAD_ARGUMENT', `bad S3 URL ${JSON.stringify(url)}: ${JSON.stringify(bucket)} is not a bucket name`);
  const bad = badKey(key);
  if (bad !== undefined) throw new ClipError('BAD_ARGUMENT', `bad S3 URL ${JSON.stringify(url)}: ${bad}`);
  return { bucket, key };
}

/** The location recorded in an index. */
export function formatS3Location(loc: S3Location): string {
  const query = new URLSearchParams();
  if (loc.region) query.set('region', loc.region);
  if (loc.endpoint) query.set('endpoint', loc.endpoint);
  const q = query.toString();
  return `s3://${loc.bucket}/${loc.key.split('/').map(encodeSegment).join('/')}${q ? `?${q}` : ''}`;
}

/** Reads a location recorded by formatS3Location. */
export function parseS3Location(location: string): S3Location {
  if (!location.startsWith('s3://')) throw new ClipError('BAD_INDEX', `not an S3 location: ${JSON.stringify(location)}`);
  const q = location.indexOf('?');
  const path = location.slice('s3://'.length, q < 0 ? undefined : q);
  const query = new URLSearchParams(q < 0 ? '' : location.slice(q + 1));
  const slash = path.indexOf('/');
  let key: string;
  try {
    key = path
      .slice(slash + 1)
      .split('/')
      .map(decodeURIComponent)
      .join('/');
  } catch {
    throw new ClipError('BAD_INDEX', `bad S3 location ${JSON.stringify(location)}`);
  }
  const loc: S3Location = { bucket: path.slice(0, slash), key };
  if (slash <= 0 || !BUCKET.test(loc.bucket))
    throw new ClipError('BAD_INDEX', `bad S3 location ${JSON.stringify(location)}: no valid bucket name`);
  // Checked after decoding: "%2e%2e" is ".." to a URL parser too.
  const bad = badKey(key);
  if (bad !== undefined) throw new ClipError('BAD_INDEX', `bad S3 location ${JSON.stringify(location)}: ${bad}`);
  const region = query.get('region');
  const endpoint = query.get('endpoint');
  if (region) checkRegion(region, 'BAD_INDEX');
  if (region) loc.region = region;
  if (endpoint) loc.endpoint = endpoint;
  return loc;
}

/** "s3://bucket/key" for messages. */
export function describeS3(loc: S3Location): string {
  return `s3://${loc.bucket}/${loc.key}${loc.endpoint ? ` at ${loc.endpoint}` : ''}`;
}
