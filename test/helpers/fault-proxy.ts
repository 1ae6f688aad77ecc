// A fault-injecting HTTP proxy on 127.0.0.1 in front of a real registry: it
// forwards everything, and blob requests can be made to fail the ways real
// links fail (dropped connections, stalls, 500s, 429s, flipped bits,
// truncated bodies, bodies that trickle, a registry that is down). The mode can change at any time.
// It can also play a token-auth registry (anonymous Bearer tokens from its own
// /token realm) whose tokens expire on demand, as real registries' do.

import http from 'node:http';
import type { AddressInfo } from 'node:net';

export type FaultMode = 'pass' | 'drop' | 'stall' | 'http500' | 'http429' | 'flip' | 'truncate' | 'trickle' | 'down';

/** 'trickle': the headers, then one byte of the body every this many ms (never a stall). */
export const TRICKLE_MS = 3000;

export interface FaultProxy {
  host: string;
  /** Current fault; `times` limits it to the next N blob requests (then 'pass'). */
  set(mode: FaultMode, times?: number): void;
  /** Blob requests seen. */
  blobRequests: number;
  /** Bytes of blob bodies passed through from the registry (in 'pass' mode). */
  blobBytes: number;
  /** From now on, /v2/ requests need a Bearer token from the proxy's /token endpoint. */
  requireTokens(on: boolean): void;
  /** Every token issued so far stops working (a 401 until a new one is fetched). */
  expireTokens(): void;
  /** Tokens issued, and requests refused with 401. */
  tokensIssued: number;
  refused: number;
  /** Client connections open to the proxy now. */
  connections(): Promise<number>;
  close(): Promise<void>;
}

export interface FaultProxyOptions {
  /** How long the proxy keeps an idle client connection open (ms; Node's default is 5 s). */
  keepAliveMs?: number;
}

export async function startFaultProxy(target: string, opts: FaultProxyOptions = {}): Promise<FaultProxy> {
  const [targetHost, targetPort] = target.split(':') as [string, string];
  let mode: FaultMode = 'pass';
  let left = Infinity;
  let blobRequests = 0;
  let blobBytes = 0;
  let tokens = false;
  let generation = 0;
  let tokensIssued = 0;
  let refused = 0;
  let host = '';
  const server = http.createServer((req, res) => {
    if (req.url?.startsWith('/token')) {
      tokensIssued++;
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ token: `g${generation}.${tokensIssued}`, expires_in: 300 }));
      return;
    }
    if (tokens && req.url?.startsWith('/v2/')) {
      const sent = /^Bearer g(\d+)\./.exec(req.headers.authorization ?? '');
      if (!sent || Number(sent[1]) !== generation) {
        refused++;
        const scope = /^\/v2\/(.+)\/(?:blobs|manifests)\//.exec(req.url)?.[1];
        res.writeHead(401, {
          'www-authenticate': `Bearer realm="http://${host}/token",service="fault-proxy"${scope ? `,scope="repository:${scope}:pull"` : ''}`,
          'content-type': 'application/json',
        });
        res.end(JSON.stringify({ errors: [{ code: 'UNAUTHORIZED', message: sent ? 'token expired' : 'authentication required' }] }));
        return;
      }
      delete req.headers.authorization; // the registry behind needs none
    }
    const isBlob = /\/blobs\/sha256:/.test(req.url ?? '');
    let fault: FaultMode = 'pass';
    if (mode === 'down') fault = 'down';
    else if (isBlob) {
      blobRequests++;
      if (left > 0) {
        fault = mode;
        if (--left === 0) mode = 'pass';
      }
    }
    switch (fault) {
      case 'down':
      case 'drop':
        req.socket.destroy();
        return;
      case 'stall':
        return; // never answer
      case 'http500':
        res.writeHead(500).end('injected failure');
        return;
      case 'http429':
        res.writeHead(429, { 'retry-after': '0' }).end('slow down');
        return;
    }
    const upstream = http.request(
      { host: targetHost, port: Number(targetPort), method: req.method, path: req.url, headers: req.headers },
      (up) => {
        if (fault === 'pass' || (up.statusCode ?? 0) >= 300) {
          res.writeHead(up.statusCode ?? 502, up.headers);
          if (isBlob) up.on('data', (c: Buffer) => (blobBytes += c.length));
          up.pipe(res);
          return;
        }
        const chunks: Buffer[] = [];
        up.on('data', (c: Buffer) => chunks.push(c));
        up.on('end', () => {
          const body = Buffer.concat(chunks);
          if (fault === 'trickle') {
            res.writeHead(up.statusCode ?? 200, up.headers);
            let sent = 0;
            const drip = (): void => {
              if (sent < body.length) res.write(body.subarray(sent, ++sent));
              else clearInterval(timer);
            };
            const timer = setInterval(drip, TRICKLE_MS);
            drip();
            res.on('close', () => clearInterval(timer));
          } else if (fault === 'flip') {
            for (let i = 7; i < body.length; i += 997) body[i] = body[i]! ^ 0x20;
            res.writeHead(up.statusCode ?? 200, up.headers).end(body);
          } else {
            // Truncate: promise the whole length, send half, hang up.
            res.writeHead(up.statusCode ?? 200, up.headers);
            res.write(body.subarray(0, body.length >> 1), () => res.socket?.destroy());
          }
        });
      },
    );
    upstream.on('error', () => res.destroy());
    req.pipe(upstream);
  });
  if (opts.keepAliveMs !== undefined) server.keepAliveTimeout = opts.keepAliveMs;
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  host = `127.0.0.1:${(server.address() as AddressInfo).port}`;
  return {
    host,
    set(m, times = Infinity) {
      mode = m;
      left = times;
    },
    get blobRequests() {
      return blobRequests;
    },
    get blobBytes() {
      return blobBytes;
    },
    requireTokens(on) {
      tokens = on;
    },
    expireTokens() {
      generation++;
    },
    get tokensIssued() {
      return tokensIssued;
    },
    get refused() {
      return refused;
    },
    connections: () => new Promise((r, j) => server.getConnections((e, n) => (e ? j(e) : r(n)))),
    close: () =>
      new Promise((r) => {
        server.closeAllConnections();
        server.close(() => r());
      }),
  };
}
