// A small S3 client over clip's HTTP layer: signed requests to one object
// (path-style for custom endpoints, virtual-hosted for AWS), S3's XML errors
// turned into clear messages. Credentials come from the AWS default chain,
// are kept and refreshed before they expire (credential-cache.ts), and are
// looked up again once when S3 says they expired or are unknown.

import type { Agent } from 'undici';
import { ClipError } from '../errors.js';
import { createAgent, discard, readBody, send, type HttpResponse, type RetryReason } from '../http/client.js';
import { CredentialCache } from './credential-cache.js';
import { anonymousAccess, defaultRegion, endpointFromEnv, loadCredentials, type AwsCredentials } from './credentials.js';
import { badKey, checkRegion, describeS3, encodeSegment, isBucketName, type S3Location } from './location.js';
import { signRequest } from './sign.js';
import { xmlText } from './xml.js';

const SERVICE = 'S3 endpoint';
const REFRESH_CODES = new Set(['ExpiredToken', 'InvalidAccessKeyId', 'SignatureDoesNotMatch', 'TokenRefreshRequired', 'InvalidToken']);

export interface S3RequestOptions {
  /** Sub-resource query ("uploads", "partNumber=1&uploadId=..."). */
  query?: string;
  headers?: Record<string, string>;
  body?: string | Buffer;
  onRetry?: (reason: RetryReason) => void;
}

/** A located object with everything resolved: region, endpoint, credentials. */
export class S3Client {
  private readonly agent: Agent = createAgent();

  private constructor(
    readonly location: Required<Pick<S3Location, 'bucket' | 'key' | 'region'>> & S3Location,
    /** Undefined: anonymous requests (AWS_NO_SIGN_REQUEST). */
    private readonly credentials: CredentialCache | undefined,
  ) {}

  /** Resolves region (location, else AWS_REGION ..., else us-east-1), endpoint (location, else AWS_ENDPOINT_URL_S3 ...) and credentials. */
  static async open(loc: S3Location): Promise<S3Client> {
    const region = loc.region ?? (await defaultRegion());
    // Every S3Location passes here, however it was made: its parts become a URL.
    checkRegion(region);
    if (!isBucketName(loc.bucket)) throw new ClipError('BAD_ARGUMENT', `bad S3 bucket name ${JSON.stringify(loc.bucket)}`);
    const bad = badKey(loc.key);
    if (bad !== undefined) throw new ClipError('BAD_ARGUMENT', `bad S3 object s3://${loc.bucket}/${loc.key}: ${bad}`);
    const endpoint = loc.endpoint ?? endpointFromEnv();
    if (endpoint !== undefined) {
      let u: URL;
      try {
        u = new URL(endpoint);
      } catch {
        throw new ClipError('BAD_ARGUMENT', `bad S3 endpoint ${JSON.stringify(endpoint)}: expected a URL such as http://127.0.0.1:9000`);
      }
      if (u.protocol !== 'http:' && u.protocol !== 'https:')
        throw new ClipError('BAD_ARGUMENT', `bad S3 endpoint ${endpoint}: only http and https are supported`);
    }
    const full = { ...loc, region, ...(endpoint !== undefined ? { endpoint: endpoint.replace(/\/+$/, '') } : {}) };
    if (anonymousAccess()) return new S3Client(full, undefined);
    const credentials = new CredentialCache(() => loadCredentials());
    // Looked up now, so that a missing or broken credential source fails the command at once.
    await credentials.get();
    return new S3Client(full, credentials);
  }

  /** "s3://bucket/key at endpoint", for messages. */
  get name(): string {
    return describeS3(this.location);
  }

  /**
   * The object's URL: path-style on a custom endpoint, virtual-hosted on AWS
   * (path-style for dotted bucket names). Built from encoded segments; the
   * URL parser must not have changed the path (it resolves "." and "..").
   */
  objectUrl(query = ''): URL {
    const { bucket, key, region, endpoint } = this.location;
    const path = key.split('/').map(encodeSegment).join('/');
    const pathStyle = endpoint !== undefined || bucket.includes('.');
    const origin = endpoint ?? (pathStyle ? `https://s3.${region}.amazonaws.com` : `https://${bucket}.s3.${region}.amazonaws.com`);
    const pathname = `${new URL(origin).pathname.replace(/\/+$/, '')}${pathStyle ? `/${encodeSegment(bucket)}` : ''}/${path}`;
    const url = new URL(`${new URL(origin).origin}${pathname}${query ? `?${query}` : ''}`);
    if (url.pathname !== pathname)
      throw new ClipError('BAD_ARGUMENT', `S3 key ${JSON.stringify(key)} cannot be addressed: the URL path became ${url.pathname}`);
    return url;
  }

  /** One signed request (retried by the HTTP layer on transient failures, except POST). */
  async request(method: 'GET' | 'HEAD' | 'PUT' | 'POST' | 'DELETE', opts: S3RequestOptions = {}): Promise<HttpResponse> {
    const url = this.objectUrl(opts.query);
    for (let refreshed = false; ; refreshed = true) {
      const used = await this.credentials?.get();
      const headers = signRequest(
        { method, url, headers: opts.headers ?? {}, region: this.location.region, ...(opts.body !== undefined ? { body: opts.body } : {}) },
        used,
      );
      const res = await send(this.agent, url, {
        method,
        headers,
        service: SERVICE,
        ...(opts.body !== undefined ? { body: opts.body } : {}),
        ...(opts.onRetry ? { onRetry: opts.onRetry } : {}),
      }).catch((e: unknown) => {
        throw asS3Error(e);
      });
      if (res.status !== 403 || refreshed || method === 'HEAD' || !this.credentials) return res;
      // Credentials may have been rotated or revoked since they were read: look once more.
      const error = await this.errorOf(res);
      if (!REFRESH_CODES.has(error.code)) throw this.failure(403, error, method);
      const fresh = await this.credentials.refresh().catch(() => undefined);
      if (!fresh || sameCredentials(fresh, used)) throw this.failure(403, error, method);
    }
  }

  /** The ClipError for a non-success answer (reads S3's XML error body). */
  async error(res: HttpResponse, doing: string): Promise<ClipError> {
    return this.failure(res.status, await this.errorOf(res), doing);
  }

  async close(): Promise<void> {
    await this.agent.close().catch(() => undefined);
  }

  private async errorOf(res: HttpResponse): Promise<{ code: string; message: string }> {
    if (res.status >= 200 && res.status < 300) {
      await discard(res.body);
      return { code: '', message: '' };
    }
    const body = await readBody(res, 64 * 1024, 'S3 error').catch(() => Buffer.alloc(0));
    const text = body.toString('utf8');
    return { code: xmlText(text, 'Code') ?? '', message: xmlText(text, 'Message') ?? '' };
  }

  private failure(status: number, e: { code: string; message: string }, doing: string): ClipError {
    const what = `${e.code ? `${e.code}` : `HTTP ${status}`}${e.message ? `: ${e.message}` : ''}`;
    const last = this.credentials?.last;
    const creds = last ? `credentials from ${last.source}` : 'anonymous request (AWS_NO_SIGN_REQUEST)';
    if (status === 403 || status === 401) return new ClipError('UNAUTHORIZED', `S3 refused ${doing} ${this.name} (${what}; ${creds})`);
    if (status === 404)
      return new ClipError(
        'NOT_FOUND',
        `S3 has no ${e.code === 'NoSuchBucket' ? 'such bucket' : e.code === 'NoSuchUpload' ? 'such upload' : 'such object'} for ${doing} ${this.name} (${what})`,
      );
    return new ClipError('S3', `S3 answered HTTP ${status} to ${doing} ${this.name} (${what})`);
  }
}

function sameCredentials(a: AwsCredentials, b: AwsCredentials | undefined): boolean {
  return !!b && a.accessKeyId === b.accessKeyId && a.secretAccessKey === b.secretAccessKey && a.sessionToken === b.sessionToken;
}

/** The HTTP layer names its network and body failures REGISTRY; from an S3 request they are S3's. */
export function asS3Error(e: unknown): unknown {
  return e instanceof ClipError && e.code === 'REGISTRY' ? new ClipError('S3', e.message, { cause: e }) : e;
}
