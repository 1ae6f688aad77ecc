// A proxy on 127.0.0.1 in front of an S3 test server (s3rver) that checks
// what s3rver does not: it logs which access key and session token signed
// each request, and refuses (403 ExpiredToken, as S3 does) requests signed
// with a session token the test says has expired.

import http from 'node:http';
import type { AddressInfo } from 'node:net';

export interface GateEntry {
  method: string;
  url: string;
  /** The access key id of the SigV4 Authorization header; undefined for an anonymous request. */
  accessKeyId: string | undefined;
  token: string | undefined;
  refused: boolean;
}

export interface S3AuthGate {
  host: string;
  log: GateEntry[];
  close(): Promise<void>;
}

/** `expired(token)`: whether to refuse a request signed with that session token. */
export async function startS3AuthGate(target: string, expired: (token: string) => boolean = () => false): Promise<S3AuthGate> {
  const [targetHost, targetPort] = target.split(':') as [string, string];
  const log: GateEntry[] = [];
  const server = http.createServer((req, res) => {
    const auth = req.headers['authorization'];
    const accessKeyId = typeof auth === 'string' ? /Credential=([^/]+)\//.exec(auth)?.[1] : undefined;
    const raw = req.headers['x-amz-security-token'];
    const token = typeof raw === 'string' ? raw : undefined;
    const refused = token !== undefined && expired(token);
    log.push({ method: req.method ?? '', url: req.url ?? '', accessKeyId, token, refused });
    if (refused) {
      req.resume();
      res.writeHead(403, { 'content-type': 'application/xml' });
      res.end('<?xml version="1.0"?><Error><Code>ExpiredToken</Code><Message>The provided token has expired.</Message></Error>');
      return;
    }
    const upstream = http.request(
      { host: targetHost, port: Number(targetPort), method: req.method, path: req.url, headers: req.headers },
      (up) => {
        res.writeHead(up.statusCode ?? 502, up.headers);
        up.pipe(res);
      },
    );
    upstream.on('error', () => res.destroy());
    req.pipe(upstream);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return {
    host: `127.0.0.1:${(server.address() as AddressInfo).port}`,
    log,
    close: () =>
      new Promise<void>((r) => {
        server.closeAllConnections();
        server.close(() => r());
      }),
  };
}
