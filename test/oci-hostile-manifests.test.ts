// Manifests clip cannot use get messages that name the real problem, not
// "no image for platform ...": Docker schema 1 (in an index or on its own),
// an index with no manifests or only unknown media types, manifests,
// index.json files and configs too large to read, a config that is not JSON.
// Each is an OCI layout written by the test.

import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { mkdir, mkdtemp, readdir, rm, truncate, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { isClipError } from '../src/errors.js';
import { openImage } from '../src/oci/index.js';
import * as mt from '../src/oci/media-types.js';
import { runClip } from './helpers/cli.js';

const AMD64 = { platform: { os: 'linux', architecture: 'amd64' } };
const sha256 = (b: Buffer): string => `sha256:${createHash('sha256').update(b).digest('hex')}`;
const json = (v: unknown): Buffer => Buffer.from(JSON.stringify(v));

/** An OCI layout: blobs by content, index.json listing `entries` (descriptors of blobs written first). */
async function layout(root: string, name: string, build: (put: (b: Buffer) => Promise<string>) => Promise<unknown[]>): Promise<string> {
  const dir = path.join(root, name);
  await mkdir(path.join(dir, 'blobs', 'sha256'), { recursive: true });
  await writeFile(path.join(dir, 'oci-layout'), '{"imageLayoutVersion":"1.0.0"}');
  const put = async (b: Buffer): Promise<string> => {
    const d = sha256(b);
    await writeFile(path.join(dir, 'blobs', 'sha256', d.slice(7)), b);
    return d;
  };
  await writeFile(path.join(dir, 'index.json'), json({ schemaVersion: 2, manifests: await build(put) }));
  return dir;
}

function fails(code: string, message: RegExp) {
  return (e: unknown): boolean => {
    assert.ok(isClipError(e), `a ClipError, got ${String(e)}`);
    assert.equal(e.code, code);
    assert.match(e.message, message);
    assert.doesNotMatch(e.message, /no image for platform/);
    return true;
  };
}

const wanted = { platform: { os: 'linux', architecture: 'amd64' } };
const LAYER = Buffer.from('not really a layer');

describe('manifests clip cannot use, named for what they are', () => {
  let root: string;
  before(async () => {
    root = await mkdtemp(path.join(tmpdir(), 'clip-hostile-manifests-'));
  });
  after(async () => {
    if (root) await rm(root, { recursive: true, force: true });
  });

  /** A manifest for `config` (written as a blob) with one layer. */
  async function manifestWith(put: (b: Buffer) => Promise<string>, config: Buffer): Promise<Buffer> {
    return json({
      schemaVersion: 2,
      mediaType: mt.OCI_MANIFEST,
      config: { mediaType: mt.OCI_CONFIG, digest: await put(config), size: config.length },
      layers: [{ mediaType: 'application/vnd.oci.image.layer.v1.tar', digest: await put(LAYER), size: LAYER.length }],
    });
  }

  it('an index entry that is a schema 1 manifest: "schema 1 is not supported, re-push", also from the CLI', async () => {
    const dir = await layout(root, 'schema1-entry', async (put) => {
      const s1 = json({ schemaVersion: 1, name: 'x', tag: 'latest', architecture: 'amd64', fsLayers: [], history: [] });
      return [{ mediaType: mt.DOCKER_SCHEMA1_SIGNED, digest: await put(s1), size: s1.length, ...AMD64 }];
    });
    await assert.rejects(openImage(`oci:${dir}`, wanted), fails('UNSUPPORTED', /Docker image manifest v2 schema 1.*not support.*re-push/));
    const out = path.join(root, 'schema1.clip');
    const r = await runClip(['index', `oci:${dir}`, '-o', out, '--platform', 'linux/amd64']);
    assert.equal(r.code, 1);
    assert.match(r.stderr, /^clip: .*schema 1.*re-push/);
    assert.doesNotMatch(r.stderr, /unexpected error|\n\s+at /);
    assert.ok(!(await readdir(root)).includes('schema1.clip'));
  });

  it('a schema 1 manifest labelled as an OCI manifest is recognised by its content', async () => {
    const dir = await layout(root, 'schema1-content', async (put) => {
      const s1 = json({ schemaVersion: 1, name: 'x', fsLayers: [] });
      return [{ mediaType: mt.OCI_MANIFEST, digest: await put(s1), size: s1.length }];
    });
    await assert.rejects(openImage(`oci:${dir}`, wanted), fails('UNSUPPORTED', /schema 1/));
  });

  it('a nested image index with no manifests: "lists no manifests"', async () => {
    const dir = await layout(root, 'empty-index', async (put) => {
      const empty = json({ schemaVersion: 2, mediaType: mt.OCI_INDEX, manifests: [] });
      return [{ mediaType: mt.OCI_INDEX, digest: await put(empty), size: empty.length }];
    });
    await assert.rejects(openImage(`oci:${dir}`, wanted), fails('NOT_FOUND', /lists no manifests/));
  });

  it('an index of unknown media types only: names them', async () => {
    const dir = await layout(root, 'unknown-types', async (put) => {
      const blob = json({ hello: 'world' });
      return [{ mediaType: 'application/vnd.example.thing+json', digest: await put(blob), size: blob.length, ...AMD64 }];
    });
    await assert.rejects(
      openImage(`oci:${dir}`, wanted),
      fails('UNSUPPORTED', /no image manifest clip can read \(media types: application\/vnd\.example\.thing\+json\)/),
    );
  });

  it('a manifest larger than the limit is refused before it is read', async () => {
    const dir = await layout(root, 'huge-manifest', async (put) => {
      const big = Buffer.alloc(5 << 20, 0x20);
      return [{ mediaType: mt.OCI_MANIFEST, digest: await put(big), size: big.length }];
    });
    await assert.rejects(openImage(`oci:${dir}`, wanted), fails('IO', /too large/));
  });

  it('an index.json larger than the limit is refused before it is read', async () => {
    const dir = await layout(root, 'huge-index-json', async () => []);
    await truncate(path.join(dir, 'index.json'), 64 << 20); // sparse: cheap to make, costly to read
    await assert.rejects(openImage(`oci:${dir}`, wanted), fails('IO', /index\.json is too large/));
  });

  it('a config larger than the limit is refused before it is read', async () => {
    const dir = await layout(root, 'huge-config', async (put) => {
      const m = await manifestWith(
        put,
        json({ os: 'linux', architecture: 'amd64', rootfs: { type: 'layers', diff_ids: [sha256(LAYER)] } }),
      );
      return [{ mediaType: mt.OCI_MANIFEST, digest: await put(m), size: m.length }];
    });
    // Swap the config blob for a 64 MiB sparse file of the same name: the size check comes first.
    const configs = await readdir(path.join(dir, 'blobs', 'sha256'));
    for (const f of configs) {
      const p = path.join(dir, 'blobs', 'sha256', f);
      const text = await import('node:fs/promises').then((fs) => fs.readFile(p, 'utf8'));
      if (text.includes('diff_ids')) await truncate(p, 64 << 20);
    }
    await assert.rejects(openImage(`oci:${dir}`, wanted), fails('IO', /image config .* too large/));
  });

  it('a config that is not JSON: "is not valid JSON"', async () => {
    const dir = await layout(root, 'config-not-json', async (put) => {
      const m = await manifestWith(put, Buffer.from('\x00\x01 definitely not json'));
      return [{ mediaType: mt.OCI_MANIFEST, digest: await put(m), size: m.length }];
    });
    await assert.rejects(openImage(`oci:${dir}`, wanted), fails('IO', /image config sha256:[0-9a-f]{64} is not valid JSON/));
  });
});
