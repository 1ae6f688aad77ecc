// Push an OCI layout tag to a registry over the plain distribution API (monolithic
// blob uploads, manifest PUT with its own media type). Used where skopeo cannot
// read the layout as is (Docker media types in index.json); bytes stay identical.

import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { basicAuth, httpRequest, type Credentials } from './http.js';

interface Descriptor {
  mediaType: string;
  digest: string;
  size: number;
  annotations?: Record<string, string>;
}

const INDEX_TYPES = new Set(['application/vnd.oci.image.index.v1+json', 'application/vnd.docker.distribution.manifest.list.v2+json']);

export async function findTagDescriptor(layoutDir: string, tag: string): Promise<Descriptor> {
  const index = JSON.parse(await readFile(join(layoutDir, 'index.json'), 'utf8')) as { manifests: Descriptor[] };
  const d = index.manifests.find((m) => m.annotations?.['org.opencontainers.image.ref.name'] === tag);
  if (!d) throw new Error(`tag ${tag} not in ${layoutDir}/index.json`);
  return d;
}

export async function httpPushImage(layoutDir: string, tag: string, host: string, repo: string, creds?: Credentials): Promise<void> {
  const base = `http://${host}/v2/${repo}`;
  const auth: Record<string, string> = creds ? { Authorization: basicAuth(creds) } : {};
  const blob = (digest: string): Promise<Buffer> => readFile(join(layoutDir, 'blobs', 'sha256', digest.replace(/^sha256:/, '')));
  const check = (what: string, status: number, ok: number[], body: Buffer): void => {
    if (!ok.includes(status)) throw new Error(`${what}: HTTP ${status} ${body.toString('utf8').slice(0, 300)}`);
  };

  const pushBlob = async (digest: string): Promise<void> => {
    const head = await httpRequest('HEAD', `${base}/blobs/${digest}`, auth);
    if (head.status === 200) return;
    const start = await httpRequest('POST', `${base}/blobs/uploads/`, auth);
    check(`start upload ${digest}`, start.status, [202], start.body);
    const loc = String(start.headers['location']);
    const url = new URL(loc, `http://${host}`);
    url.searchParams.set('digest', digest);
    const put = await httpRequest('PUT', url.toString(), { ...auth, 'Content-Type': 'application/octet-stream' }, await blob(digest));
    check(`upload ${digest}`, put.status, [201], put.body);
  };

  const pushManifest = async (d: Descriptor, ref: string): Promise<void> => {
    const body = await blob(d.digest);
    const m = JSON.parse(body.toString('utf8')) as { manifests?: Descriptor[]; config?: Descriptor; layers?: Descriptor[] };
    if (INDEX_TYPES.has(d.mediaType)) {
      for (const child of m.manifests ?? []) await pushManifest(child, child.digest);
    } else {
      for (const b of [m.config!, ...(m.layers ?? [])]) await pushBlob(b.digest);
    }
    const put = await httpRequest('PUT', `${base}/manifests/${ref}`, { ...auth, 'Content-Type': d.mediaType }, body);
    check(`put manifest ${ref}`, put.status, [201], put.body);
  };

  await pushManifest(await findTagDescriptor(layoutDir, tag), tag);
}
