// A loopback HTTP proxy that makes a local registry look like a remote one:
// each request waits one round trip before it is forwarded, and response
// bodies share one token bucket of `bytesPerSecond`. Counts bytes served.

import http from 'node:http';
import type { AddressInfo } from 'node:net';

export interface ThrottleProxy {
  host: string;
  bytes: number;
  /** Off: forward at full speed with no added round trip (for setting up). */
  throttled: boolean;
  close(): Promise<void>;
}

const HOP_BY_HOP = new Set(['connection', 'keep-alive', 'proxy-connection', 'transfer-encoding', 'upgrade', 'te', 'trailer']);

function withoutHopByHop(headers: http.IncomingHttpHeaders): http.OutgoingHttpHeaders {
  return Object.fromEntries(Object.entries(headers).filter(([k]) => !HOP_BY_HOP.has(k.toLowerCase())));
}

export async function startThrottleProxy(target: string, bytesPerSecond: number, rttMs: number): Promise<ThrottleProxy> {
  const [targetHost, targetPort] = target.split(':') as [string, string];
  let nextFree = 0; // when the shared link is free again (ms, performance.now clock)
  const state = { bytes: 0, throttled: true };
  const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
  const server = http.createServer((req, res) => {
    const body = new Promise<Buffer>((resolve) => {
      const chunks: Buffer[] = [];
      req.on('data', (c: Buffer) => chunks.push(c));
      req.on('end', () => resolve(Buffer.concat(chunks)));
    });
    void (async () => {
      const throttled = state.throttled;
      if (throttled) await sleep(rttMs);
      const upstream = http.request(
        { host: targetHost, port: Number(targetPort), method: req.method, path: req.url, headers: withoutHopByHop(req.headers) },
        (up) => {
          res.writeHead(up.statusCode ?? 502, withoutHopByHop(up.headers));
          if (!throttled) {
            up.pipe(res);
            return;
          }
          // The response ends after its last chunk is written: 'end' can come while that chunk still
          // waits for the link (a stream ends when its data is read, paused or not), and ending the
          // response then would cut its body short.
          let pending = 0;
          let ended = false;
          up.on('data', (chunk: Buffer) => {
            up.pause();
            // Serialize chunks on the shared link at the configured rate.
            const now = performance.now();
            const start = Math.max(now, nextFree);
            nextFree = start + (1000 * chunk.length) / bytesPerSecond;
            state.bytes += chunk.length;
            pending++;
            setTimeout(() => {
              res.write(chunk);
              pending--;
              if (ended && pending === 0) res.end();
              up.resume();
            }, nextFree - now);
          });
          up.on('end', () => {
            ended = true;
            if (pending === 0) res.end();
          });
        },
      );
      upstream.on('error', () => res.destroy());
      // Requests through a registry carry no body (GET, HEAD) or a small one; the body was read
      // while the round trip was waited for, so it is sent whole (piping an ended request would
      // never end the upstream request).
      upstream.end(await body);
    })();
  });
  server.keepAliveTimeout = 120_000;
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const port = (server.address() as AddressInfo).port;
  return {
    host: `127.0.0.1:${port}`,
    get bytes() {
      return state.bytes;
    },
    set bytes(v: number) {
      state.bytes = v;
    },
    get throttled() {
      return state.throttled;
    },
    set throttled(v: boolean) {
      state.throttled = v;
    },
    close: () =>
      new Promise((r) => {
        server.closeAllConnections();
        server.close(() => r());
      }),
  };
}
