// Serves a mount's metrics over HTTP: Prometheus text at /metrics and the
// per-layer summary as JSON at /stats, on a unix socket in the state
// directory (for `clip stats`) and, when asked, on a TCP address.

import { mkdirSync, rmSync } from 'node:fs';
import path from 'node:path';
import http from 'node:http';
import type { MountMetrics } from './mount-metrics.js';

export function metricsHandler(metrics: MountMetrics): http.RequestListener {
  return (req, res) => {
    if (req.url === '/metrics') {
      metrics.registry.metrics().then(
        (text) => res.writeHead(200, { 'content-type': metrics.registry.contentType }).end(text),
        (e: unknown) => res.writeHead(500).end(String(e)),
      );
    } else if (req.url === '/stats') {
      res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify(metrics.summary()));
    } else {
      res.writeHead(404).end();
    }
  };
}

/** Listens on `where` ("HOST:PORT" or a socket path); returns a closer. */
export async function serveMetrics(metrics: MountMetrics, where: string): Promise<() => void> {
  const server = http.createServer(metricsHandler(metrics));
  const isSocket = where.startsWith('/');
  if (isSocket) {
    mkdirSync(path.dirname(where), { recursive: true, mode: 0o700 });
    rmSync(where, { force: true });
  }
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    if (isSocket) server.listen(where, resolve);
    else {
      const i = where.lastIndexOf(':');
      server.listen(Number(where.slice(i + 1)), where.slice(0, i).replace(/^\[|\]$/g, ''), resolve);
    }
  });
  server.unref();
  return () => {
    server.close();
    if (isSocket) rmSync(where, { force: true });
  };
}
