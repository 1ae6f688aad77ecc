// A client for one repository of a registry (distribution API v2): manifests,
// whole blobs and byte ranges of blobs, with authentication and docker's
// conventions (docker.io -> registry-1.docker.io). Requests go to the
// registry's endpoints (endpoints.ts: hosts.toml mirrors, then the upstream),
// each with its own connections, TLS settings and authentication.

import type { Readable } from 'node:stream';
import type { Dispatcher } from 'undici';
import { ClipError } from '../errors.js';
import { isTag } from './reference.js';
import { AgentPool } from '../http/agent-pool.js';
import { diagnoseTlsClose, isPlainHttpAnswer } from '../http/tls-options.js';
import { Authenticator } from './auth.js';
import { findCredentials } from './credentials.js';
import { checkDigest, digestOf, isDigest, verifyDigest } from '../util/digest.js';
import {
  backoff,
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
import {
  candidates,
  currentRoot,
  fallBackToHttp,
  markFailed,
  markHealthy,
  registryEndpoints,
  type Capability,
  type Endpoint,
} from './endpoints.js';
import { MANIFEST_ACCEPT } from './media-types.js';
import { MAX_MANIFEST_BYTES, type FetchedManifest, type ManifestSource } from './resolve.js';
import { checkRange, readRangeRetrying } from '../http/range-read.js';
import { resumableBlob } from '../http/resumable-blob.js';
import type { BlobSource, RangeOptions, Reference, RegistryOptions, ResponseDeadline } from './types.js';

import { plainOnRecordOnly } from './registry-host.js';

export { isLocalRegistry } from './registry-host.js';

const MAX_AUTH_ATTEMPTS = 4;
const MAX_ERROR_BODY = 64 * 1024;
/** A mirror with somewhere to fall back to gets this many tries after the first: failing over beats waiting. */
const MIRROR_RETRIES = 1;

/** One endpoint as this client uses it: its connections and its authentication state. */
interface Route {
  endpoint: Endpoint;
  agent: Dispatcher;
  auth: Authenticator;
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
  private readonly opts: RegistryOptions;
  private readonly agents: AgentPool;
  /** False when the agents were lent (a ReadPool's, shared by the clients of one registry): their owner closes them. */
  private readonly ownsAgents: boolean;
  private readonly scope: string;
  private readonly deadline: ResponseDeadline | undefined;
  private routes: Promise<Route[]> | undefined;
  /** The API root the last answer came from. */
  private lastRoot: URL | undefined;

  /** `agents`: connections to share with other clients of the same registry and settings (not closed by close()). */
  constructor(ref: Pick<Reference, 'registry' | 'repository'>, opts: RegistryOptions = {}, agents?: AgentPool) {
    this.registry = ref.registry;
    this.repository = ref.repository;
    this.name = `${ref.registry}/${ref.repository}`;
    this.opts = opts;
    this.agents = agents ?? new AgentPool();
    this.ownsAgents = agents === undefined;
    this.scope = `repository:${ref.repository}:pull`;
    this.deadline = opts.deadline;
  }

  /** The endpoints with their connections and authentication, loaded (hosts.toml, certificates) on first use. */
  private loadRoutes(): Promise<Route[]> {
    this.routes ??= registryEndpoints(this.registry, this.opts).then((endpoints) =>
      endpoints.map((endpoint) => {
        const agent = this.agents.get(endpoint.tlsKey, endpoint.tls);
        // Explicit credentials are for the registry named; a mirror gets what is stored for its own host.
        const lookup: { username?: string; password?: string } = {};
        if (!endpoint.mirror && this.opts.username !== undefined) lookup.username = this.opts.username;
        if (!endpoint.mirror && this.opts.password !== undefined) lookup.password = this.opts.password;
        const host = endpoint.mirror ? endpoint.host : this.registry;
        // Plain HTTP on a .clip file's say-so alone (untrusted) never carries credentials: that takes --plain-http.
        const withheld = !endpoint.mirror && plainOnRecordOnly(this.registry, this.opts);
        const auth = new Authenticator({
          registry: host,
          repository: this.repository,
          dispatcher: agent,
          credentials: () => (withheld ? Promise.resolve(undefined) : findCredentials(host, this.repository, lookup)),
        });
        return { endpoint, agent, auth };
      }),
    );
    // A bad hosts.toml is reported by every call, not remembered as a broken client.
    this.routes.catch(() => (this.routes = undefined));
    return this.routes;
  }

  /**
   * Whether this client speaks plain HTTP to the registry (recorded in an
   * index, the default for reading it later): as the last answer came, else
   * as it will start (--plain-http, or the record of the index being read).
   */
  get plainHttp(): boolean {
    if (this.lastRoot) return this.lastRoot.protocol === 'http:';
    return this.opts.plainHttp ?? this.opts.recordedPlainHttp ?? false;
  }

  /** Fetches a manifest by tag or digest; verified when fetched by digest. */
  async fetchManifest(reference: string): Promise<FetchedManifest> {
    if (!isDigest(reference) && !isTag(reference)) {
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
   * One request to the upstream registry (never a mirror: writes and
   * referrer look-ups), answering authentication challenges; returns any
   * non-401 response.
   */
  async requestUpstream(req: UpstreamRequest): Promise<HttpResponse> {
    const route = (await this.loadRoutes()).find((r) => !r.endpoint.mirror)!;
    const scope = req.push ? `repository:${this.repository}:pull,push` : this.scope;
    const body = req.body !== undefined ? { body: req.body } : {};
    return this.sendTo(route, req.path, req.headers ?? {}, { kind: 'other', what: req.what }, { method: req.method, scope, ...body });
  }

  /** The ClipError for an unexpected answer to requestUpstream (its body is read for the registry's error). */
  upstreamError(res: HttpResponse, what: string): Promise<ClipError> {
    return this.failure(res, { kind: 'other', what });
  }

  /** Closes the connections (unless the agents were lent), waiting briefly for requests in flight. */
  async close(): Promise<void> {
    if (this.ownsAgents) await this.agents.close();
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

  /**
   * GET <root>/<repository>/<path> from the first endpoint that can do it:
   * mirrors in order (one that fails is skipped for a while; one that lacks
   * the content is passed over), then the upstream, whose answer is final.
   */
  private async get(
    path: string,
    headers: Record<string, string>,
    target: Target,
    onRetry?: (reason: RetryReason) => void,
    expectedBytes?: number,
  ): Promise<HttpResponse> {
    // containerd's rule: a tag is resolved, content by digest is pulled.
    const capability: Capability = target.kind === 'manifest' && !isDigest(target.reference) ? 'resolve' : 'pull';
    const routes = await this.loadRoutes();
    const usable = candidates(
      routes.map((r) => r.endpoint),
      capability,
    );
    if (usable.length === 0) {
      const source = routes[0]?.endpoint.source;
      throw new ClipError('REGISTRY', `no host of ${this.registry} can ${capability}${source ? ` (see ${source})` : ''}`);
    }
    for (let i = 0; i < usable.length; i++) {
      const route = routes.find((r) => r.endpoint === usable[i])!;
      const last = i === usable.length - 1;
      if (last) return this.getFrom(route, path, headers, target, onRetry, expectedBytes);
      let res: HttpResponse;
      try {
        res = await this.getFrom(route, path, headers, target, onRetry, expectedBytes, MIRROR_RETRIES);
      } catch (e) {
        markFailed(route.endpoint, this.registry, (e as Error).message);
        continue;
      }
      if (res.status === 200 || res.status === 206) {
        markHealthy(route.endpoint);
        return res;
      }
      // A mirror without the content is healthy; one that errs is skipped for a while.
      if (res.status >= 500 || res.status === 429)
        markFailed(route.endpoint, this.registry, `HTTP ${res.status} for ${this.describe(target)}`);
      await discard(res.body);
    }
    throw new Error('unreachable: the last endpoint answers');
  }

  /** One endpoint's answer, authentication challenges answered; any non-401 response is returned. */
  private getFrom(
    route: Route,
    path: string,
    headers: Record<string, string>,
    target: Target,
    onRetry?: (reason: RetryReason) => void,
    expectedBytes?: number,
    retries?: number,
  ): Promise<HttpResponse> {
    return this.sendTo(route, path, headers, target, {
      ...(onRetry ? { onRetry } : {}),
      ...(expectedBytes !== undefined ? { expectedBytes } : {}),
      ...(retries !== undefined ? { retries } : {}),
    });
  }

  /**
   * One request to one endpoint (`path` under <root>/<repository>/, or an
   * absolute URL the registry handed out), authentication challenges
   * answered, plain HTTP after a TLS attempt answered in HTTP where allowed;
   * any non-401 response is returned.
   */
  private async sendTo(
    route: Route,
    path: string | URL,
    headers: Record<string, string>,
    target: Target,
    opts: {
      method?: UpstreamRequest['method'];
      body?: Buffer;
      scope?: string;
      onRetry?: (reason: RetryReason) => void;
      expectedBytes?: number;
      retries?: number;
    },
  ): Promise<HttpResponse> {
    const { endpoint, auth, agent } = route;
    const { scope = this.scope, onRetry, ...send } = opts;
    const startGeneration = auth.currentGeneration;
    for (let attempt = 1; ; attempt++) {
      const root = currentRoot(endpoint);
      const url = path instanceof URL ? path : new URL(`${root.pathname}/${this.repository}/${path}`, root);
      const authorization = await auth.authorization(scope);
      let res: HttpResponse;
      try {
        res = await sendFollowingRedirects(agent, url, {
          ...send,
          headers: { ...endpoint.headers, ...headers },
          ...(authorization ? { authorization: { origin: root.origin, value: authorization } } : {}),
          ...(onRetry ? { onRetry } : {}),
          ...(this.deadline ? { deadline: this.deadline } : {}),
        });
      } catch (e) {
        // A plain HTTP answer to TLS: where allowed (loopback, --plain-http, --tls-verify=false), speak HTTP
        // (not to a URL the registry handed out: that names its scheme).
        const cause = (e as Error).cause;
        if (!(path instanceof URL) && url.protocol === 'https:' && isPlainHttpAnswer(cause) && fallBackToHttp(endpoint)) continue;
        throw await this.explainClose(e, url, endpoint);
      }
      this.lastRoot = root;
      if (res.status !== 401) return res;
      if (res.url.origin !== root.origin) {
        await discard(res.body);
        throw new ClipError('REGISTRY', `${res.url.host} (redirected from ${endpoint.host}) refused ${this.describe(target)} with 401`);
      }
      const detail = errorSummary(await readErrorBody(res));
      if (attempt >= MAX_AUTH_ATTEMPTS) {
        const what = target.kind === 'other' ? `${target.what}: ` : '';
        throw new ClipError('UNAUTHORIZED', `${what}access to ${this.name} denied${detail ? ` (${detail})` : ''}`);
      }
      await auth.unauthorized(scope, headerList(res.headers, 'www-authenticate'), authorization, startGeneration, detail);
      if (authorization) onRetry?.('auth'); // a credential or token was refused (tokens expire)
    }
  }

  /** A TLS connection the registry closed: the reason read from a direct connection, when there is one (see diagnoseTlsClose). */
  private async explainClose(e: unknown, url: URL, endpoint: Endpoint): Promise<unknown> {
    const code = ((e as Error).cause as NodeJS.ErrnoException | undefined)?.code;
    const proxied = process.env['https_proxy'] || process.env['HTTPS_PROXY'] || process.env['http_proxy'] || process.env['HTTP_PROXY'];
    if (url.protocol !== 'https:' || code !== 'UND_ERR_SOCKET' || proxied) return e;
    const why = await diagnoseTlsClose(url, endpoint.tls);
    return why
      ? new ClipError('REGISTRY', `cannot connect to registry ${url.host} (${url.protocol}//${url.host}): ${why}`, { cause: e })
      : e;
  }

  /** The ClipError for an unexpected response. */
  private async failure(res: HttpResponse, target: Target): Promise<ClipError> {
    if (res.status === 400 && res.url.protocol === 'http:') {
      // Go's TLS servers answer a plain HTTP request with this 400.
      const text = (await readBody(res, MAX_ERROR_BODY, 'error response').catch(() => Buffer.alloc(0))).toString('utf8');
      const tlsServer = /HTTP request to an HTTPS server/i.test(text);
      return new ClipError(
        'REGISTRY',
        tlsServer
          ? `${res.url.host} speaks HTTPS but was asked in plain HTTP (client sent an HTTP request to an HTTPS server): give it as https:// in hosts.toml`
          : `${res.url.host} answered HTTP 400 for ${this.describe(target)}`,
      );
    }
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
