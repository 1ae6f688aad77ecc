// The node daemon's one HTTP endpoint on --metrics-addr: Prometheus text at
// /metrics, liveness at /healthz, one image's layer summary at
// /stats?image=REF. Read-only, so anything but GET is refused.

import http from 'node:http';
import { ClipError } from '../errors.js';
import type { DaemonMetrics } from './daemon-metrics.js';

function json(res: http.ServerResponse, status: number, body: unknown): void {
  res.writeHead(status, { 'content-type': 'application/json' }).end(JSON.stringify(body));
}

export function daemonMetricsHandler(metrics: DaemonMetrics, health: () => Record<string, unknown>): http.RequestListener {
  return (req, res) => {
    if (req.method !== 'GET') {
      res.writeHead(405, { allow: 'GET' }).end();
      return;
    }
    const url = new URL(req.url ?? '/', 'http://daemon');
    switch (url.pathname) {
      case '/metrics':
        metrics.registry.metrics().then(
          (text) => res.writeHead(200, { 'content-type': metrics.registry.contentType }).end(text),
          (e: unknown) => res.writeHead(500).end(String(e)),
        );
        return;
      case '/healthz':
        json(res, 200, { status: 'ok', ...health() });
        return;
      case '/stats': {
        const image = url.searchParams.get('image');
        if (image === null) return json(res, 400, { error: 'expected /stats?image=REF' });
        const m = metrics.find(image);
        if (!m) return json(res, 404, { error: `no mounted image ${JSON.stringify(image)}` });
        return json(res, 200, m.summary());
      }
      default:
        res.writeHead(404).end();
    }
  };
}

/** HOST:PORT as the config takes it (a bracketed IPv6 host too) -> listen() arguments. */
function parseAddr(addr: string): { host: string; port: number } {
  const m = /^([^\s:]+|\[[0-9a-fA-F:.]+\]):(\d{1,5})$/.exec(addr);
  const port = Number(m?.[2]);
  if (!m || port < 1 || port > 65535)
    throw new ClipError('BAD_ARGUMENT', `metrics address ${JSON.stringify(addr)}: expected HOST:PORT, e.g. 127.0.0.1:9100`);
  return { host: m[1]!.replace(/^\[|\]$/g, ''), port };
}

/** Serves the endpoint on `addr` (HOST:PORT); returns a closer that also ends idle keep-alive connections. */
export async function serveDaemonMetrics(
  metrics: DaemonMetrics,
  health: () => Record<string, unknown>,
  addr: string,
): Promise<() => Promise<void>> {
  const { host, port } = parseAddr(addr);
  const server = http.createServer(daemonMetricsHandler(metrics, health));
  await new Promise<void>((resolve, reject) => {
    server.once('error', (e: NodeJS.ErrnoException) => {
      const why =
        e.code === 'EADDRINUSE'
          ? 'the address is in use (another daemon or program listens there)'
          : e.code === 'EADDRNOTAVAIL'
            ? 'no interface of this host has that address'
            : e.code === 'EACCES'
              ? 'permission denied'
              : `${e.code ?? 'error'}: ${e.message}`;
      reject(new ClipError('IO', `cannot serve metrics on ${addr}: ${why}`, { cause: e }));
    });
    server.listen(port, host, () => resolve());
  });
  return () =>
    new Promise<void>((resolve) => {
      server.close(() => resolve());
      server.closeAllConnections();
    });
}
