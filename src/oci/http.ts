// HTTP for registries on undici: one keep-alive Agent per client, transient
// failures retried, redirects followed by hand so that an Authorization header
// never reaches another host (registries redirect blobs to object storage).

import { Agent, request, type Dispatcher } from 'undici';
import type { IncomingHttpHeaders } from 'node:http';
import { ClipError } from '../errors.js';

export type ResponseBody = Dispatcher.ResponseData['body'];

export interface HttpResponse {
  status: number;
  headers: IncomingHttpHeaders;
  body: ResponseBody;
  /** The URL that answered (after redirects). */
  url: URL;
}

export interface SendOptions {
  method?: 'GET' | 'HEAD' | 'POST';
  headers?: Record<string, string>;
  body?: string;
  /** Sent only to requests whose origin is `authorization.origin`. */
  authorization?: { origin: string; value: string };
}

export const USER_AGENT = 'clip/0.1';
const MAX_REDIRECTS = 10;
const RETRY_DELAYS_MS = [250, 1000];
const RETRIED_STATUS = new Set([502, 503, 504]);
const RETRIED_ERRORS = new Set([
  'ECONNRESET',
  'EPIPE',
  'ETIMEDOUT',
  'EAI_AGAIN',
  'UND_ERR_SOCKET',
  'UND_ERR_CONNECT_TIMEOUT',
  'UND_ERR_HEADERS_TIMEOUT',
  'UND_ERR_CLOSED',
]);

export function createAgent(): Agent {
  return new Agent({
    keepAliveTimeout: 30_000,
    keepAliveMaxTimeout: 300_000,
    connections: 32,
    connect: { timeout: 30_000 },
    headersTimeout: 60_000,
    bodyTimeout: 120_000,
  });
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
  for (let attempt = 0; ; attempt++) {
    const retry = method !== 'POST' && attempt < RETRY_DELAYS_MS.length;
    try {
      const res = await request(url, { method, headers, body: opts.body ?? null, dispatcher });
      if (retry && RETRIED_STATUS.has(res.statusCode)) {
        await discard(res.body);
      } else {
        return { status: res.statusCode, headers: res.headers, body: res.body, url };
      }
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code ?? '';
      if (!retry || !RETRIED_ERRORS.has(code)) throw networkError(url, e);
    }
    await new Promise((r) => setTimeout(r, RETRY_DELAYS_MS[attempt]));
  }
}

/** Like send, following up to 10 redirects; Authorization stays with its origin. */
export async function sendFollowingRedirects(
  dispatcher: Dispatcher,
  url: URL,
  opts: SendOptions = {},
): Promise<HttpResponse> {
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
    throw networkError(res.url, e, `reading ${what}`);
  }
  return Buffer.concat(chunks, size);
}

/** Drops a response body so the connection can be reused. */
export async function discard(body: ResponseBody): Promise<void> {
  try {
    await body.dump({ limit: 256 * 1024 });
  } catch {
    // the connection is dropped instead; nothing to report
  }
}

export function networkError(url: URL, e: unknown, doing?: string): ClipError {
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
  const reason = (err.code && reasons[err.code]) ?? err.message ?? String(e);
  const message = doing
    ? `${url.host}: ${reason} while ${doing}`
    : `cannot connect to registry ${url.host} (${url.protocol}//${url.host}): ${reason}`;
  return new ClipError('REGISTRY', message, { cause: e });
}
