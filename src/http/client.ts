// HTTP on undici, for registries and S3: one keep-alive Agent per client,
// transient failures retried, redirects followed by hand so that an
// Authorization header never reaches another host (registries redirect blobs
// to object storage).

import { Agent, EnvHttpProxyAgent, request, type Dispatcher } from 'undici';
import type { IncomingHttpHeaders } from 'node:http';
import type { ConnectionOptions } from 'node:tls';
import { ClipError } from '../errors.js';
import { tlsHint } from './tls-options.js';

export type ResponseBody = Dispatcher.ResponseData['body'];

export interface HttpResponse {
  status: number;
  headers: IncomingHttpHeaders;
  body: ResponseBody;
  /** The URL that answered (after redirects). */
  url: URL;
  /** Aborts the body when the response deadline passes (its reason is then a DeadlineError). */
  signal?: AbortSignal;
}

export interface SendOptions {
  /** GET, HEAD, PUT and DELETE are retried on transient failures (idempotent), POST never. */
  method?: 'GET' | 'HEAD' | 'POST' | 'PUT' | 'DELETE';
  headers?: Record<string, string>;
  body?: string | Buffer;
  /** What the server is, in error messages (default "registry"). */
  service?: string;
  /** Sent only to requests whose origin is `authorization.origin`. */
  authorization?: { origin: string; value: string };
  /** Told about each retry, for metrics. */
  onRetry?: (reason: RetryReason) => void;
  /** Bytes the answer is expected to carry (a range's length), to size the response deadline before headers arrive. */
  expectedBytes?: number;
  /** How long a response may take, headers and body (default: RESPONSE_DEADLINE from the environment). */
  deadline?: ResponseDeadline;
  /** Tries after the first on transient failures (default CLIP_RETRIES, 5); a mirror with a fallback gets fewer. */
  retries?: number;
}

/**
 * The overall time one response may take, headers and body: `baseMs` plus
 * its bytes at `minBytesPerSecond`. The stall timeout alone lets a body that
 * trickles one byte every few seconds run forever.
 */
export interface ResponseDeadline {
  baseMs: number;
  minBytesPerSecond: number;
}

/** Why a request was sent again. */
export type RetryReason = 'connection' | 'rate-limited' | 'server-error' | 'body-cut' | 'auth' | 'deadline';

export const USER_AGENT = 'clip/0.1';
const MAX_REDIRECTS = 10;
const RETRIED_STATUS = new Set([429, 500, 502, 503, 504]);
const RETRIED_ERRORS = new Set([
  'ECONNRESET',
  'EPIPE',
  'ETIMEDOUT',
  'EAI_AGAIN',
  'UND_ERR_SOCKET',
  'UND_ERR_CONNECT_TIMEOUT',
  'UND_ERR_HEADERS_TIMEOUT',
  'UND_ERR_BODY_TIMEOUT',
  'ECONNREFUSED',
  'UND_ERR_CLOSED',
]);

/** Fault tolerance knobs, from the environment (tests and operators can tighten them). */
function envMs(name: string, fallback: number): number {
  const v = Number(process.env[name]);
  return Number.isFinite(v) && v > 0 ? v : fallback;
}

/** A request with no progress for this long fails (connect, headers, or a stalled body). */
export const STALL_TIMEOUT_MS = envMs('CLIP_STALL_TIMEOUT_MS', 15_000);
/** Retries of one request stop once this much time has passed since it started. */
export const REQUEST_DEADLINE_MS = envMs('CLIP_REQUEST_DEADLINE_MS', 30_000);
const MAX_RETRIES = envMs('CLIP_RETRIES', 5);
/** Default response deadline: 30 s plus the body at 64 KiB/s (a 4 MiB span: 94 s). */
export const RESPONSE_DEADLINE: ResponseDeadline = {
  baseMs: envMs('CLIP_RESPONSE_DEADLINE_MS', 30_000),
  minBytesPerSecond: envMs('CLIP_MIN_BYTES_PER_SECOND', 64 * 1024),
};
const BACKOFF_BASE_MS = 200;
const BACKOFF_CAP_MS = 5_000;

/** Exponential backoff with full jitter; a server's Retry-After (seconds) wins, within the cap. */
export function backoff(attempt: number, retryAfter?: string): number {
  const asked = retryAfter !== undefined ? Number(retryAfter) * 1000 : NaN;
  if (Number.isFinite(asked) && asked >= 0) return Math.min(asked, BACKOFF_CAP_MS);
  return Math.random() * Math.min(BACKOFF_CAP_MS, BACKOFF_BASE_MS * 2 ** attempt);
}

const CLOSE_GRACE_MS = 2000;

const CONNECT_TIMEOUT_MS = Math.min(STALL_TIMEOUT_MS, 10_000);
const AGENT_OPTIONS = {
  keepAliveTimeout: 30_000,
  keepAliveMaxTimeout: 300_000,
  // Requests per registry host are bounded; the rest queue.
  connections: 16,
  headersTimeout: STALL_TIMEOUT_MS,
  bodyTimeout: STALL_TIMEOUT_MS,
};

/** Direct connections (S3). */
export function createAgent(): Agent {
  return new Agent({ ...AGENT_OPTIONS, connect: { timeout: CONNECT_TIMEOUT_MS } });
}

/**
 * Connections to registry hosts with `tls` (CAs, client certificates,
 * verification), through HTTPS_PROXY / HTTP_PROXY unless NO_PROXY names the
 * host (undici's rules, read when the agent is made: loopback is not exempt,
 * lowercase names win). https goes through a CONNECT tunnel, with `tls` for
 * the registry inside it; http is forwarded as a plain proxy request.
 */
export function createRegistryAgent(tls: ConnectionOptions = {}): Dispatcher {
  const connect = { timeout: CONNECT_TIMEOUT_MS, ...tls };
  return new EnvHttpProxyAgent({
    ...AGENT_OPTIONS,
    connect,
    requestTls: connect,
    proxyTls: { timeout: CONNECT_TIMEOUT_MS },
    proxyTunnel: false,
  } as ConstructorParameters<typeof EnvHttpProxyAgent>[0]);
}

/** Closes an agent's connections, waiting briefly for requests in flight (an unread blob stream must not hang it). */
export async function closeAgent(agent: Dispatcher): Promise<void> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<void>((resolve) => (timer = setTimeout(resolve, CLOSE_GRACE_MS).unref()));
  await Promise.race([agent.close(), timeout]);
  clearTimeout(timer);
  if (!(agent as { destroyed?: boolean }).destroyed) await agent.destroy();
}

/** First value of a response header (names are lowercase in undici). */
export function header(headers: IncomingHttpHeaders, name: string): string | undefined {
  const v = headers[name];
  return Array.isArray(v) ? v[0] : v;
}

/** Every value of a response header. */
export function headerList(headers: IncomingHttpHeaders, name: string): string[] {
  const v = headers[name];
  return v === undefined ? [] : Array.isArray(v) ? v : [v];
}

/** One request; network errors become ClipError('REGISTRY') naming the host; GETs retried on transient failures. */
export async function send(dispatcher: Dispatcher, url: URL, opts: SendOptions = {}): Promise<HttpResponse> {
  const method = opts.method ?? 'GET';
  const headers: Record<string, string> = { 'user-agent': USER_AGENT, ...opts.headers };
  if (opts.authorization && opts.authorization.origin === url.origin) headers['authorization'] = opts.authorization.value;
  const started = Date.now();
  for (let attempt = 0; ; attempt++) {
    const retry = method !== 'POST' && attempt < (opts.retries ?? MAX_RETRIES);
    let delay: number;
    // An upload's bytes count too: a large PUT gets the time its body needs.
    const sent = opts.body === undefined ? 0 : Buffer.byteLength(opts.body);
    const timer = new DeadlineTimer(opts.deadline ?? RESPONSE_DEADLINE, sent + (opts.expectedBytes ?? 0));
    try {
      const res = await request(url, { method, headers, body: opts.body ?? null, dispatcher, signal: timer.signal });
      // A 200 to a range request (Range ignored) streams the whole blob: its length is what it will take.
      const sized = opts.expectedBytes === undefined || res.statusCode === 200;
      timer.follow(res.body, sized ? Number(header(res.headers, 'content-length')) : undefined, sent);
      if (!retry || !RETRIED_STATUS.has(res.statusCode)) {
        return { status: res.statusCode, headers: res.headers, body: res.body, url, signal: timer.signal };
      }
      await discard(res.body);
      delay = backoff(attempt, header(res.headers, 'retry-after'));
      if (Date.now() + delay - started > REQUEST_DEADLINE_MS) {
        throw new ClipError(
          'REGISTRY',
          `${opts.service ?? 'registry'} ${url.host} kept answering HTTP ${res.statusCode} for ${url.pathname} (gave up after ${attempt + 1} tries)`,
        );
      }
      opts.onRetry?.(res.statusCode === 429 ? 'rate-limited' : 'server-error');
    } catch (e) {
      timer.clear();
      if (e instanceof ClipError) throw e;
      const passed = isDeadlineError(e) || isDeadlineError(timer.signal.reason);
      const code = (e as NodeJS.ErrnoException).code ?? '';
      delay = backoff(attempt);
      if (!retry || !(passed || RETRIED_ERRORS.has(code)) || Date.now() + delay - started > REQUEST_DEADLINE_MS) {
        throw networkError(url, passed ? timer.signal.reason : e, undefined, opts.service);
      }
      opts.onRetry?.(passed ? 'deadline' : 'connection');
    }
    await new Promise((r) => setTimeout(r, delay));
  }
}

/** Why a response was aborted: it took longer than its deadline. */
export class DeadlineError extends Error {
  readonly code = 'CLIP_DEADLINE';
  constructor(readonly ms: number) {
    super(`response took longer than its deadline of ${(ms / 1000).toFixed(1)} s (too slow)`);
    this.name = 'DeadlineError';
  }
}

/** True for a DeadlineError, or an error (a ClipError from reading a body) caused by one. */
export function isDeadlineError(e: unknown): boolean {
  for (let c = e, depth = 0; c instanceof Error && depth < 4; c = (c as { cause?: unknown }).cause, depth++) {
    if (c instanceof DeadlineError) return true;
  }
  return false;
}

/**
 * Aborts one response when its deadline passes: sized first by the bytes
 * asked for, then by the Content-Length once the headers are in. Cleared
 * when the body is done (read, dropped or failed).
 */
class DeadlineTimer {
  private readonly controller = new AbortController();
  private readonly started = Date.now();
  private timer: NodeJS.Timeout | undefined;
  readonly signal = this.controller.signal;

  constructor(
    private readonly deadline: ResponseDeadline,
    bytes: number,
  ) {
    this.arm(bytes);
  }

  /**
   * Re-arms for the body's length when the caller did not know it (a whole
   * blob: its Content-Length); a body of unknown length has only the stall
   * timeout. Clears once the body closes.
   */
  follow(body: ResponseBody, contentLength: number | undefined, sent: number): void {
    if (contentLength !== undefined) {
      if (Number.isFinite(contentLength) && contentLength >= 0) this.arm(sent + contentLength);
      else this.clear();
    }
    if (body.closed || body.destroyed) this.clear();
    else body.once('close', () => this.clear());
  }

  clear(): void {
    clearTimeout(this.timer);
    this.timer = undefined;
  }

  private arm(bytes: number): void {
    this.clear();
    const ms = this.deadline.baseMs + (1000 * bytes) / this.deadline.minBytesPerSecond;
    // setTimeout's limit is 2^31-1 ms (24 days): a longer deadline is no deadline.
    if (ms > 2 ** 31 - 1) return;
    const left = Math.max(0, this.started + ms - Date.now());
    this.timer = setTimeout(() => this.controller.abort(new DeadlineError(ms)), left).unref();
  }
}

/** Like send, following up to 10 redirects; Authorization stays with its origin. */
export async function sendFollowingRedirects(dispatcher: Dispatcher, url: URL, opts: SendOptions = {}): Promise<HttpResponse> {
  let current = url;
  let currentOpts = opts;
  for (let hops = 0; ; hops++) {
    const res = await send(dispatcher, current, currentOpts);
    if (![301, 302, 303, 307, 308].includes(res.status)) return res;
    const location = header(res.headers, 'location');
    await discard(res.body);
    if (location === undefined) {
      throw new ClipError('REGISTRY', `${current.host} answered ${res.status} without a Location header for ${current.pathname}`);
    }
    if (hops >= MAX_REDIRECTS) throw new ClipError('REGISTRY', `too many redirects fetching ${url.pathname} from ${url.host}`);
    const next = new URL(location, current);
    if (next.protocol !== 'https:' && next.protocol !== 'http:') {
      throw new ClipError('REGISTRY', `${current.host} redirected to an unsupported URL scheme ${next.protocol}`);
    }
    if (res.status === 303 && currentOpts.method === 'POST') {
      currentOpts = { ...currentOpts, method: 'GET' };
      delete currentOpts.body;
    }
    current = next;
  }
}

/** Reads a whole (small) body, refusing more than `limit` bytes. */
export async function readBody(res: HttpResponse, limit: number, what: string): Promise<Buffer> {
  const declared = Number(header(res.headers, 'content-length'));
  if (Number.isFinite(declared) && declared > limit) {
    await discard(res.body);
    throw new ClipError('REGISTRY', `${what} from ${res.url.host} is too large (${declared} bytes, limit ${limit})`);
  }
  const chunks: Buffer[] = [];
  let size = 0;
  try {
    for await (const chunk of res.body) {
      const b = chunk as Buffer;
      size += b.length;
      if (size > limit) {
        res.body.destroy();
        throw new ClipError('REGISTRY', `${what} from ${res.url.host} is larger than ${limit} bytes`);
      }
      chunks.push(b);
    }
  } catch (e) {
    if (e instanceof ClipError) throw e;
    throw networkError(res.url, bodyError(res, e), `reading ${what}`);
  }
  return Buffer.concat(chunks, size);
}

/** The real cause of a body that failed: the deadline, when it is what aborted it. */
export function bodyError(res: HttpResponse, e: unknown): unknown {
  return res.signal?.aborted && isDeadlineError(res.signal.reason) ? res.signal.reason : e;
}

/** Drops a response body so the connection can be reused. */
export async function discard(body: ResponseBody): Promise<void> {
  try {
    await body.dump({ limit: 256 * 1024 });
  } catch {
    // the connection is dropped instead; nothing to report
  }
}

export function networkError(url: URL, e: unknown, doing?: string, service = 'registry'): ClipError {
  if (e instanceof ClipError) return e;
  const err = e as NodeJS.ErrnoException;
  const reasons: Record<string, string> = {
    ECONNREFUSED: 'connection refused',
    ENOTFOUND: 'host not found',
    EAI_AGAIN: 'host name lookup failed',
    ECONNRESET: 'connection reset',
    ETIMEDOUT: 'timed out',
    EHOSTUNREACH: 'host unreachable',
    ENETUNREACH: 'network unreachable',
    UND_ERR_CONNECT_TIMEOUT: 'connection timed out',
    UND_ERR_HEADERS_TIMEOUT: 'no response (timed out)',
    UND_ERR_BODY_TIMEOUT: 'response stalled (timed out)',
    UND_ERR_SOCKET: 'connection lost',
  };
  // A TLS failure says what to do about it (OpenSSL's own text names source files, not the problem).
  const reason = e instanceof DeadlineError ? e.message : ((err.code && reasons[err.code]) ?? tlsHint(e) ?? err.message ?? String(e));
  const message = doing
    ? `${url.host}: ${reason} while ${doing}`
    : `cannot connect to ${service} ${url.host} (${url.protocol}//${url.host}): ${reason}`;
  const out = new ClipError('REGISTRY', message, { cause: e });
  if (doing) bodyCuts.add(out);
  return out;
}

const bodyCuts = new WeakSet<ClipError>();

/** True for the error of a body lost mid-way (connection, stall, deadline): worth asking again. */
export function isBodyCut(e: unknown): boolean {
  return e instanceof ClipError && bodyCuts.has(e);
}
