// Tiny HTTP client for tests (node:http, no keep-alive agent so no sockets
// outlive a test): registry probes, blob fetches, raw pushes.

import { request } from 'node:http';

export interface HttpResponse {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: Buffer;
}

export interface Credentials {
  username: string;
  password: string;
}

export function basicAuth(c: Credentials): string {
  return 'Basic ' + Buffer.from(`${c.username}:${c.password}`).toString('base64');
}

export function httpRequest(
  method: string,
  url: string,
  headers: Record<string, string> = {},
  body?: Buffer,
  timeoutMs = 30_000,
): Promise<HttpResponse> {
  return new Promise((res, rej) => {
    const h: Record<string, string> = { ...headers };
    if (body) h['Content-Length'] = String(body.length);
    const req = request(url, { method, headers: h, agent: false }, (r) => {
      const chunks: Buffer[] = [];
      r.on('data', (c: Buffer) => chunks.push(c));
      r.on('end', () => res({ status: r.statusCode ?? 0, headers: r.headers, body: Buffer.concat(chunks) }));
      r.on('error', rej);
    });
    req.on('error', rej);
    req.setTimeout(timeoutMs, () => req.destroy(new Error(`${method} ${url}: timeout`)));
    req.end(body);
  });
}

export function httpGet(url: string, headers: Record<string, string> = {}): Promise<HttpResponse> {
  return httpRequest('GET', url, headers);
}
