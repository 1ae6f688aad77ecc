// A client for one repository of a registry (distribution API v2): manifests,
// whole blobs and byte ranges of blobs, with authentication and docker's
// conventions (docker.io -> registry-1.docker.io, plain HTTP for localhost).

import type { Readable } from 'node:stream';
import type { Agent } from 'undici';
import { ClipError } from '../errors.js';
import { Authenticator } from './auth.js';
import { findCredentials } from './credentials.js';
import { checkDigest, digestOf, isDigest, verifyDigest } from '../util/digest.js';
import {
  backoff,
  closeAgent,
  createAgent,
  discard,
  header,
  headerList,
  isBodyCut,
  readBody,
  REQUEST_DEADLINE_MS,
  sendFollowingRedirects,
  type HttpResponse,
  type RetryReason,
} from '../http/client.js';
import { MANIFEST_ACCEPT } from './media-types.js';
import { DOCKER_HUB } from './reference.js';
import { MAX_MANIFEST_BYTES, type FetchedManifest, type ManifestSource } from './resolve.js';
import { checkRange, readRangeRetrying } from '../http/range-read.js';
import { resumableBlob } from '../http/resumable-blob.js';
import type { BlobSource, RangeOptions, Reference, RegistryOptions, ResponseDeadline } from './types.js';

const MAX_AUTH_ATTEMPTS = 4;
const MAX_ERROR_BODY = 64 * 1024;
const TAG_RE = /^[\w][\w.-]{0,127}$/;

/** True for localhost, 127.0.0.0/8 and ::1, with or without a port. */
export function isLocalRegistry(registry: string): boolean {
  let host = registry.toLowerCase();
  if (host.startsWith('[')) host = host.slice(1, host.indexOf(']'));
  else if (host.split(':').length === 2) host = host.slice(0, host.indexOf(':'));
  return host === 'localhost' || host === '::1' || /^127\.\d{1,3}\.\d{1,3}\.\d{1,3}$/.test(host);
}

/** The base URL of a registry's API ("https://registry-1.docker.io"). */
export function registryBaseUrl(registry: string, plainHttp = false): URL {
  const host = registry === DOCKER_HUB ? 'registry-1.docker.io' : registry;
  const scheme = plainHttp || isLocalRegistry(registry) ? 'http' : 'https';
  return new URL(`${scheme}://${host}`);
}

type Target = { kind: 'manifest'; reference: string } | { kind: 'blob'; digest: string } | { kind: 'other'; what: string };

/** A request of push.ts / referrers.ts, sent to the upstream registry (never a mirror). */
export interface UpstreamRequest {
  method: 'GET' | 'HEAD' | 'POST' | 'PUT';
  /** Under /v2/<repository>/ ("blobs/uploads/"), or an absolute URL the registry handed out (an upload's Location). */
  path: string | URL;
  headers?: Record<string, string>;
  body?: Buffer;
  /** Ask for push access (the token scope becomes pull,push). */
  push?: boolean;
  /** For messages: "manifest PUT of sha256-...". */
  what: string;
}

export class RegistryClient implements BlobSource, ManifestSource {
  readonly registry: string;
  readonly repository: string;
  readonly name: string;
  readonly badContent = 'REGISTRY' as const;
  private readonly base: URL;
  private readonly agent: Agent;
  /** False when the agent was lent (a ReadPool's, shared by the clients of one registry): its owner closes it. */
  private readonly ownsAgent: boolean;
  private readonly auth: Authenticator;
  private readonly scope: string;
  private readonly deadline: ResponseDeadline | undefined;

  /** `agent`: connections to share with other clients of the same registry (not closed by close()). */
  constructor(ref: Pick<Reference, 'registry' | 'repository'>, opts: RegistryOptions = {}, agent?: Agent) {
    this.registry = ref.registry;
    this.repository = ref.repository;
    this.name = `${ref.registry}/${ref.repository}`;
    this.base = registryBaseUrl(ref.registry, opts.plainHttp);
    this.agent = agent ?? createAgent();
    this.ownsAgent = agent === undefined;
    this.scope = `repository:${ref.repository}:pull`;
    this.deadline = opts.deadline;
    const lookup: { username?: string; password?: string } = {};
    if (opts.username !== undefined) lookup.username = opts.username;
    if (opts.password !== undefined) lookup.password = opts.password;
    this.auth = new Authenticator({
      registry: ref.registry,
      repository: ref.repository,
      dispatcher: this.agent,
      credentials: () => findCredentials(ref.registry, ref.repository, lookup),
    });
  }

  /** Fetches a manifest by tag or digest; verified when fetched by digest. */
  async fetchManifest(reference: string): Promise<FetchedManifest> {
    if (!isDigest(reference) && !TAG_RE.test(reference)) {
      throw new ClipError('BAD_ARGUMENT', `invalid tag or digest ${JSON.stringify(reference)} for ${this.name}`);
    }
    const target: Target = { kind: 'manifest', reference };
    const { res, bytes } = await this.readWhole(
      () => this.get(`manifests/${reference}`, { accept: MANIFEST_ACCEPT }, target),
      target,
      MAX_MANIFEST_BYTES,
      `manifest of ${this.describe(target)}`,
    );
    const contentType = header(res.headers, 'content-type');
    let digest: string;
    if (isDigest(reference)) {
      verifyDigest(bytes, reference, `manifest of ${this.describe(target)}`);
      digest = reference;
    } else {
      digest = digestOf(bytes);
      const served = header(res.headers, 'docker-content-digest');
      if (served?.startsWith('sha256:') && served !== digest) {
        throw new ClipError(
          'DIGEST_MISMATCH',
          `manifest of ${this.describe(target)}: registry says digest ${served}, content hashes to ${digest}`,
        );
      }
    }
    return contentType === undefined ? { bytes, digest } : { bytes, digest, contentType };
  }

  /** Fetches a small blob whole (an image config) and verifies its digest. */
  async fetchBlob(digest: string, maxBytes: number, what: string): Promise<Buffer> {
    const target: Target = { kind: 'blob', digest };
    const { bytes } = await this.readWhole(() => this.blobRequest(digest, {}), target, maxBytes, what);
    verifyDigest(bytes, digest, what);
    return bytes;
  }

  /** A 200 answer's whole (bounded) body; a body lost mid-way is asked for again, within the request deadline. */
  private async readWhole(
    request: () => Promise<HttpResponse>,
    target: Target,
    limit: number,
    what: string,
  ): Promise<{ res: HttpResponse; bytes: Buffer }> {
    const started = Date.now();
    for (let attempt = 0; ; attempt++) {
      const res = await request();
      if (res.status !== 200) throw await this.failure(res, target);
      try {
        return { res, bytes: await readBody(res, limit, what) };
      } catch (e) {
        const delay = backoff(attempt);
        if (!isBodyCut(e) || Date.now() + delay - started > REQUEST_DEADLINE_MS) throw e;
        await new Promise((r) => setTimeout(r, delay));
      }
    }
  }

  /** Streams a whole blob; a connection lost mid-way is resumed from the byte reached (see resumable-blob.ts). */
  async openBlob(digest: string, size?: number): Promise<Readable> {
    const what = `blob ${digest} of ${this.name}`;
    const open = async (from: number, onRetry: (reason: RetryReason) => void): Promise<HttpResponse> => {
      const extra: Record<string, string> = from > 0 ? { range: `bytes=${from}-` } : {};
      const expected = size === undefined ? undefined : size - from;
      const res = await this.blobRequest(digest, extra, onRetry, expected);
      if (res.status !== 200 && res.status !== 206) throw await this.failure(res, { kind: 'blob', digest });
      return res;
    };
    return resumableBlob(open, what);
  }

  async readRange(digest: string, start: number, end: number, opts: RangeOptions = {}): Promise<Buffer> {
    const what = `blob ${digest} of ${this.name}`;
    checkRange(start, end, what);
    checkDigest(digest, 'blob digest');
    return readRangeRetrying(start, end, {
      send: () => this.blobRequest(digest, { range: `bytes=${start}-${end - 1}` }, opts.onRetry, end - start),
      failure: (res) => this.failure(res, { kind: 'blob', digest }),
      what,
      onRetry: opts.onRetry,
    });
  }

  /**
   * One request to the upstream registry for writes and referrer look-ups,
   * answering authentication challenges; returns any non-401 response.
   */
  async requestUpstream(req: UpstreamRequest): Promise<HttpResponse> {
    const url = req.path instanceof URL ? req.path : new URL(`/v2/${this.repository}/${req.path}`, this.base);
    const scope = req.push ? `repository:${this.repository}:pull,push` : this.scope;
    const startGeneration = this.auth.currentGeneration;
    for (let attempt = 1; ; attempt++) {
      const authorization = await this.auth.authorization(scope);
      const res = await sendFollowingRedirects(this.agent, url, {
        method: req.method,
        headers: req.headers ?? {},
        ...(req.body !== undefined ? { body: req.body } : {}),
        ...(authorization ? { authorization: { origin: this.base.origin, value: authorization } } : {}),
        ...(this.deadline ? { deadline: this.deadline } : {}),
      });
      if (res.status !== 401) return res;
      const detail = errorSummary(await readErrorBody(res));
      if (attempt >= MAX_AUTH_ATTEMPTS || res.url.origin !== this.base.origin) {
        throw new ClipError('UNAUTHORIZED', `${req.what}: access to ${this.name} denied${detail ? ` (${detail})` : ''}`);
      }
      await this.auth.unauthorized(scope, headerList(res.headers, 'www-authenticate'), authorization, startGeneration, detail);
    }
  }

  /** The ClipError for an unexpected answer to requestUpstream (its body is read for the registry's error). */
  upstreamError(res: HttpResponse, what: string): Promise<ClipError> {
    return this.failure(res, { kind: 'other', what });
  }

  /** Closes the connections (unless the agent was lent), waiting briefly for requests in flight. */
  async close(): Promise<void> {
    if (this.ownsAgent) await closeAgent(this.agent);
  }

  private blobRequest(
    digest: string,
    extra: Record<string, string>,
    onRetry?: (reason: RetryReason) => void,
    expectedBytes?: number,
  ): Promise<HttpResponse> {
    checkDigest(digest, 'blob digest');
    return this.get(`blobs/${digest}`, { 'accept-encoding': 'identity', ...extra }, { kind: 'blob', digest }, onRetry, expectedBytes);
  }

  /** GET /v2/<repository>/<path>, answering authentication challenges; returns any non-401 response. */
  private async get(
    path: string,
    headers: Record<string, string>,
    target: Target,
    onRetry?: (reason: RetryReason) => void,
    expectedBytes?: number,
  ): Promise<HttpResponse> {
    const url = new URL(`/v2/${this.repository}/${path}`, this.base);
    const startGeneration = this.auth.currentGeneration;
    for (let attempt = 1; ; attempt++) {
      const authorization = await this.auth.authorization(this.scope);
      const res = await sendFollowingRedirects(this.agent, url, {
        headers,
        ...(authorization ? { authorization: { origin: this.base.origin, value: authorization } } : {}),
        ...(onRetry ? { onRetry } : {}),
        ...(expectedBytes !== undefined ? { expectedBytes } : {}),
        ...(this.deadline ? { deadline: this.deadline } : {}),
      });
      if (res.status !== 401) return res;
      if (res.url.origin !== this.base.origin) {
        await discard(res.body);
        throw new ClipError('REGISTRY', `${res.url.host} (redirected from ${this.registry}) refused ${this.describe(target)} with 401`);
      }
      const detail = errorSummary(await readErrorBody(res));
      if (attempt >= MAX_AUTH_ATTEMPTS) {
        throw new ClipError('UNAUTHORIZED', `access to ${this.name} denied${detail ? ` (${detail})` : ''}`);
      }
      await this.auth.unauthorized(this.scope, headerList(res.headers, 'www-authenticate'), authorization, startGeneration, detail);
      if (authorization) onRetry?.('auth'); // a credential or token was refused (tokens expire)
    }
  }

  /** The ClipError for an unexpected response. */
  private async failure(res: HttpResponse, target: Target): Promise<ClipError> {
    const errors = await readErrorBody(res);
    const detail = errorSummary(errors);
    const codes = new Set(errors.map((e) => e.code));
    const suffix = detail ? ` (${detail})` : '';
    if (res.status === 404 || codes.has('NAME_UNKNOWN') || codes.has('MANIFEST_UNKNOWN') || codes.has('BLOB_UNKNOWN')) {
      const message = target.kind === 'manifest' ? `image ${this.describe(target)} not found` : `${this.describe(target)} not found`;
      return new ClipError('NOT_FOUND', `${message}${suffix}`);
    }
    if (res.status === 403 || codes.has('DENIED')) {
      return new ClipError('UNAUTHORIZED', `access to ${this.name} denied${suffix}`);
    }
    if (res.status === 429 || codes.has('TOOMANYREQUESTS')) {
      return new ClipError('REGISTRY', `${this.registry} is rate limiting requests for ${this.name}${suffix}`);
    }
    return new ClipError('REGISTRY', `${res.url.host} answered HTTP ${res.status} for ${this.describe(target)}${suffix}`);
  }

  private describe(target: Target): string {
    if (target.kind === 'blob') return `blob ${target.digest} of ${this.name}`;
    if (target.kind === 'other') return `${target.what} of ${this.name}`;
    return isDigest(target.reference) ? `${this.name}@${target.reference}` : `${this.name}:${target.reference}`;
  }
}

interface RegistryErrorEntry {
  code: string;
  message: string;
}

/** Reads the distribution error body ({"errors":[{code,message}]}) if there is one. */
async function readErrorBody(res: HttpResponse): Promise<RegistryErrorEntry[]> {
  let body: Buffer;
  try {
    body = await readBody(res, MAX_ERROR_BODY, 'error response');
  } catch {
    return [];
  }
  try {
    const json = JSON.parse(body.toString('utf8')) as { errors?: unknown };
    if (!Array.isArray(json.errors)) return [];
    return json.errors.map((e: { code?: unknown; message?: unknown }) => ({
      code: typeof e?.code === 'string' ? e.code : '',
      message: typeof e?.message === 'string' ? e.message : '',
    }));
  } catch {
    return [];
  }
}

function errorSummary(errors: RegistryErrorEntry[]): string {
  return errors
    .map((e) => [e.code, e.message].filter(Boolean).join(': '))
    .filter(Boolean)
    .join('; ');
}
