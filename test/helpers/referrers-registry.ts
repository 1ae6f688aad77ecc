// A small in-memory registry on 127.0.0.1 that has the OCI 1.1 referrers API
// (Debian's docker-registry 2.8 has not): /v2/ manifests (GET, HEAD, PUT,
// answering OCI-Subject for a manifest with a subject), blobs (GET with
// Range, HEAD, monolithic POST + PUT uploads) and GET /referrers/<digest>.
// It keeps a log of the requests it served, for tests to assert on. With
// `requireTokens` set it demands Bearer tokens from its /token endpoint, and
// a token whose scope has push for writes.

import { createHash, randomUUID } from 'node:crypto';
import http from 'node:http';
import type { AddressInfo } from 'node:net';

const OCI_INDEX = 'application/vnd.oci.image.index.v1+json';

interface Stored {
  bytes: Buffer;
  mediaType: string;
}

export interface ReferrersRegistry {
  /** "127.0.0.1:PORT" */
  host: string;
  /** "METHOD /path" of every request served, in order. */
  log: string[];
  /** From now on, /v2/ requests need a Bearer token (writes: one with push scope). */
  requireTokens: boolean;
  /** The scopes tokens were asked for, in order. */
  tokenScopes: string[];
  stop(): Promise<void>;
}

function sha256(b: Buffer): string {
  return 'sha256:' + createHash('sha256').update(b).digest('hex');
}

export async function startReferrersRegistry(): Promise<ReferrersRegistry> {
  const blobs = new Map<string, Buffer>();
  const manifests = new Map<string, Stored>();
  const tags = new Map<string, string>();
  const uploads = new Set<string>();
  const log: string[] = [];
  const tokens = new Map<string, string>();
  const state = { requireTokens: false, tokenScopes: [] as string[] };

  const json = (res: http.ServerResponse, status: number, body: unknown, type = 'application/json'): void => {
    const data = Buffer.from(JSON.stringify(body));
    res.writeHead(status, { 'content-type': type, 'content-length': data.length });
    res.end(data);
  };
  const error = (res: http.ServerResponse, status: number, code: string): void =>
    json(res, status, { errors: [{ code, message: code.toLowerCase() }] });

  const server = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const body = Buffer.concat(chunks);
      const url = new URL(req.url ?? '/', 'http://fake');
      const method = req.method ?? 'GET';
      log.push(`${method} ${url.pathname}`);
      if (url.pathname === '/token') {
        const scope = url.searchParams.get('scope') ?? '';
        state.tokenScopes.push(scope);
        const token = randomUUID();
        tokens.set(token, scope);
        return json(res, 200, { token });
      }
      if (state.requireTokens) {
        const repoOf = /^\/v2\/(.+)\/(?:manifests|blobs|referrers)\//.exec(url.pathname)?.[1] ?? '';
        const write = method === 'POST' || method === 'PUT';
        const wanted = `repository:${repoOf}:${write ? 'pull,push' : 'pull'}`;
        const granted = tokens.get((req.headers['authorization'] ?? '').replace(/^Bearer /, ''));
        const ok = granted !== undefined && granted.startsWith(`repository:${repoOf}:`) && (!write || granted.endsWith('push'));
        if (!ok) {
          const challenge = `Bearer realm="http://${req.headers['host']}/token",service="fake",scope="${wanted}"`;
          res.writeHead(401, { 'www-authenticate': challenge, 'content-type': 'application/json' });
          return res.end(JSON.stringify({ errors: [{ code: 'UNAUTHORIZED', message: 'token needed' }] }));
        }
      }
      if (url.pathname === '/v2/' || url.pathname === '/v2') return json(res, 200, {});
      const m = /^\/v2\/(.+)\/(manifests|blobs|referrers)\/(.*)$/.exec(url.pathname);
      if (!m) return error(res, 404, 'NAME_UNKNOWN');
      const [, repo, kind, rest] = m as unknown as [string, string, string, string];
      if (kind === 'blobs' && rest.startsWith('uploads/')) {
        if (method === 'POST') {
          const id = randomUUID();
          uploads.add(id);
          res.writeHead(202, { location: `/v2/${repo}/blobs/uploads/${id}`, 'content-length': 0 });
          return res.end();
        }
        const id = rest.slice('uploads/'.length);
        const digest = url.searchParams.get('digest');
        if (method !== 'PUT' || !uploads.has(id) || digest === null) return error(res, 400, 'BLOB_UPLOAD_INVALID');
        if (sha256(body) !== digest) return error(res, 400, 'DIGEST_INVALID');
        uploads.delete(id);
        blobs.set(digest, body);
        res.writeHead(201, { location: `/v2/${repo}/blobs/${digest}`, 'docker-content-digest': digest, 'content-length': 0 });
        return res.end();
      }
      if (kind === 'blobs') {
        const data = blobs.get(rest);
        if (data === undefined) return error(res, 404, 'BLOB_UNKNOWN');
        const range = /^bytes=(\d+)-(\d*)$/.exec(req.headers['range'] ?? '');
        if (range) {
          const start = Number(range[1]);
          const end = range[2] === '' ? data.length - 1 : Math.min(Number(range[2]), data.length - 1);
          const part = data.subarray(start, end + 1);
          res.writeHead(206, { 'content-range': `bytes ${start}-${end}/${data.length}`, 'content-length': part.length });
          return res.end(method === 'HEAD' ? undefined : part);
        }
        res.writeHead(200, { 'content-length': data.length, 'docker-content-digest': rest, 'content-type': 'application/octet-stream' });
        return res.end(method === 'HEAD' ? undefined : data);
      }
      if (kind === 'manifests') {
        if (method === 'PUT') {
          const digest = sha256(body);
          manifests.set(`${repo}@${digest}`, { bytes: body, mediaType: String(req.headers['content-type']) });
          if (!rest.startsWith('sha256:')) tags.set(`${repo}:${rest}`, digest);
          else if (rest !== digest) return error(res, 400, 'DIGEST_INVALID');
          const headers: Record<string, string | number> = { 'docker-content-digest': digest, 'content-length': 0 };
          const subject = (JSON.parse(body.toString('utf8')) as { subject?: { digest?: string } }).subject?.digest;
          if (typeof subject === 'string') headers['oci-subject'] = subject;
          res.writeHead(201, headers);
          return res.end();
        }
        const digest = rest.startsWith('sha256:') ? rest : tags.get(`${repo}:${rest}`);
        const stored = digest === undefined ? undefined : manifests.get(`${repo}@${digest}`);
        if (stored === undefined || digest === undefined) return error(res, 404, 'MANIFEST_UNKNOWN');
        res.writeHead(200, { 'content-type': stored.mediaType, 'content-length': stored.bytes.length, 'docker-content-digest': digest });
        return res.end(method === 'HEAD' ? undefined : stored.bytes);
      }
      // referrers: every manifest of the repository whose subject is the digest asked for.
      const list = [];
      for (const [key, stored] of manifests) {
        if (!key.startsWith(`${repo}@`)) continue;
        const man = JSON.parse(stored.bytes.toString('utf8')) as {
          subject?: { digest?: string };
          artifactType?: string;
          config?: { mediaType?: string };
          annotations?: Record<string, string>;
        };
        if (man.subject?.digest !== rest) continue;
        list.push({
          mediaType: stored.mediaType,
          digest: key.slice(repo.length + 1),
          size: stored.bytes.length,
          artifactType: man.artifactType ?? man.config?.mediaType,
          ...(man.annotations ? { annotations: man.annotations } : {}),
        });
      }
      return json(res, 200, { schemaVersion: 2, mediaType: OCI_INDEX, manifests: list }, OCI_INDEX);
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as AddressInfo).port;
  return {
    host: `127.0.0.1:${port}`,
    log,
    get requireTokens() {
      return state.requireTokens;
    },
    set requireTokens(v: boolean) {
      state.requireTokens = v;
    },
    tokenScopes: state.tokenScopes,
    stop: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}
