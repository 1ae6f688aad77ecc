// An HTTP proxy on 127.0.0.1 that drops connections the way flaky links do,
// in front of any HTTP server (here: S3): a matching upload is cut after
// part of its body went out, a matching download after part of its body came
// back, either a set number of times or until healed. Every request is logged.

import http from 'node:http';
import type { AddressInfo } from 'node:net';

export interface DropRule {
  method: string;
  /** Tested against the request URL (path and query). */
  url: RegExp;
  /** How many matching requests to drop (Infinity: until heal()). */
  times: number;
  /** Bytes let through before the connection is dropped (default 64 KiB). */
  after?: number;
}

export interface DropProxy {
  host: string;
  drop(rule: DropRule): void;
  heal(): void;
  /** Every request seen: method, URL, and whether it was dropped. */
  log: { method: string; url: string; dropped: boolean }[];
  close(): Promise<void>;
}

export async function startDropProxy(target: string): Promise<DropProxy> {
  const [targetHost, targetPort] = target.split(':') as [string, string];
  let rules: DropRule[] = [];
  const log: DropProxy['log'] = [];
  const server = http.createServer((req, res) => {
    const rule = rules.find((r) => r.times > 0 && r.method === req.method && r.url.test(req.url ?? ''));
    if (rule) rule.times--;
    log.push({ method: req.method ?? '', url: req.url ?? '', dropped: !!rule });
    const after = rule?.after ?? 64 * 1024;
    if (rule && req.method !== 'GET' && req.method !== 'HEAD') {
      // An upload cut short: take some of the body, then hang up without answering.
      let seen = 0;
      req.on('data', (c: Buffer) => {
        seen += c.length;
        if (seen >= after) req.socket.destroy();
      });
      req.on('end', () => req.socket.destroy());
      return;
    }
    const upstream = http.request(
      { host: targetHost, port: Number(targetPort), method: req.method, path: req.url, headers: req.headers },
      (up) => {
        res.writeHead(up.statusCode ?? 502, up.headers);
        if (!rule) {
          up.pipe(res);
          return;
        }
        // A download cut short: some of the body, then the connection goes.
        let sent = 0;
        up.on('data', (c: Buffer) => {
          if (sent >= after) return;
          const part = c.subarray(0, Math.min(c.length, after - sent));
          sent += part.length;
          res.write(part, () => {
            if (sent >= after) res.socket?.destroy();
          });
        });
        up.on('end', () => res.socket?.destroy());
      },
    );
    upstream.on('error', () => res.destroy());
    req.pipe(upstream);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return {
    host: `127.0.0.1:${(server.address() as AddressInfo).port}`,
    drop(rule) {
      rules.push({ ...rule });
    },
    heal() {
      rules = [];
    },
    log,
    close: () =>
      new Promise((r) => {
        server.closeAllConnections();
        server.close(() => r());
      }),
  };
}
