// OCI image layout directories ("oci:DIR[:TAG]", as skopeo and umoci write
// them): index.json names the images, blobs/<alg>/<hex> holds the content,
// read whole as streams or by range with positioned reads.

import { open, readFile, stat, type FileHandle } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import type { Readable } from 'node:stream';
import { ClipError } from '../errors.js';
import { checkDigest, verifyDigest } from '../util/digest.js';
import { MAX_MANIFEST_BYTES, descriptors, type Descriptor, type FetchedManifest, type ManifestSource } from './resolve.js';
import type { BlobSource } from './types.js';

export const REF_NAME = 'org.opencontainers.image.ref.name';
const CONTAINERD_NAME = 'io.containerd.image.name';
const MAX_MARKER_BYTES = 64 * 1024;

/** A small file of the layout as text, refusing more than `limit` bytes (a hostile layout could hold gigabytes). */
async function readBounded(file: string, limit: number): Promise<string> {
  const fh = await open(file, 'r');
  try {
    const size = (await fh.stat()).size;
    if (size > limit) throw new ClipError('IO', `${file} is too large (${size} bytes, limit ${limit})`);
    const buf = Buffer.alloc(size);
    const { bytesRead } = await fh.read(buf, 0, size, 0);
    return buf.subarray(0, bytesRead).toString('utf8');
  } finally {
    await fh.close();
  }
}

/** Splits "oci:DIR[:TAG]" at the first colon after "oci:" (skopeo's rule). */
export function parseLayoutReference(ref: string): { dir: string; tag?: string } {
  if (!ref.startsWith('oci:')) throw new ClipError('BAD_REFERENCE', `not an OCI layout reference: ${JSON.stringify(ref)}`);
  const rest = ref.slice(4);
  const colon = rest.indexOf(':');
  const dir = colon < 0 ? rest : rest.slice(0, colon);
  const tag = colon < 0 ? undefined : rest.slice(colon + 1);
  if (dir === '') throw new ClipError('BAD_REFERENCE', `invalid reference ${JSON.stringify(ref)}: missing directory after "oci:"`);
  if (tag === '') throw new ClipError('BAD_REFERENCE', `invalid reference ${JSON.stringify(ref)}: empty tag after the directory`);
  return tag === undefined ? { dir } : { dir, tag };
}

export class OciLayout implements BlobSource, ManifestSource {
  readonly name: string;
  readonly badContent = 'IO' as const;

  private constructor(readonly dir: string) {
    this.name = `oci:${dir}`;
  }

  /** Opens a layout directory, checking its oci-layout marker. */
  static async open(dir: string): Promise<OciLayout> {
    const abs = resolve(dir);
    try {
      if (!(await stat(abs)).isDirectory()) throw new ClipError('NOT_FOUND', `${abs} is not a directory (expected an OCI image layout)`);
    } catch (e) {
      throw fsError(e, `OCI image layout directory ${abs}`);
    }
    let marker: { imageLayoutVersion?: unknown };
    try {
      marker = JSON.parse(await readBounded(join(abs, 'oci-layout'), MAX_MARKER_BYTES)) as typeof marker;
    } catch (e) {
      if (e instanceof ClipError) throw e;
      if (e instanceof SyntaxError) throw new ClipError('IO', `${join(abs, 'oci-layout')} is not valid JSON: ${e.message}`);
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') {
        throw new ClipError('NOT_FOUND', `${abs} is not an OCI image layout (no oci-layout file)`);
      }
      throw fsError(e, `${join(abs, 'oci-layout')}`);
    }
    if (typeof marker?.imageLayoutVersion !== 'string') {
      throw new ClipError('IO', `${join(abs, 'oci-layout')} has no imageLayoutVersion`);
    }
    return new OciLayout(abs);
  }

  /** The descriptors listed in index.json. */
  async index(): Promise<Descriptor[]> {
    const file = join(this.dir, 'index.json');
    let json: { manifests?: unknown };
    try {
      json = JSON.parse(await readBounded(file, MAX_MANIFEST_BYTES)) as typeof json;
    } catch (e) {
      if (e instanceof ClipError) throw e;
      if (e instanceof SyntaxError) throw new ClipError('IO', `${file} is not valid JSON: ${e.message}`);
      throw fsError(e, file);
    }
    if (!json || typeof json !== 'object' || Array.isArray(json)) throw new ClipError('IO', `${file} is not a JSON object`);
    return descriptors(this, json.manifests ?? [], 'index.json manifests');
  }

  /**
   * The index.json entries for `tag` (matched against the ref.name annotation);
   * without a tag: the only entry, else those named "latest", else all of them
   * when none is named (a platform list).
   */
  async select(tag: string | undefined): Promise<Descriptor[]> {
    const all = await this.index();
    const nameOf = (d: Descriptor) => d.annotations?.[REF_NAME];
    if (tag !== undefined) {
      const hits = all.filter((d) => nameOf(d) === tag || d.annotations?.[CONTAINERD_NAME] === tag);
      if (hits.length > 0) return hits;
    } else {
      if (all.length === 1) return all;
      const latest = all.filter((d) => nameOf(d) === 'latest');
      if (latest.length > 0) return latest;
      if (all.length > 0 && all.every((d) => nameOf(d) === undefined)) return all;
    }
    const names = [...new Set(all.map(nameOf).filter((n): n is string => n !== undefined))];
    const listed = names.length ? names.join(', ') : '(none)';
    if (all.length === 0) throw new ClipError('NOT_FOUND', `OCI layout ${this.dir} contains no images`);
    if (tag === undefined) {
      throw new ClipError('NOT_FOUND', `OCI layout ${this.dir} holds several images and none is tagged "latest"; pick one of: ${listed}`);
    }
    throw new ClipError('NOT_FOUND', `image ${this.name}:${tag} not found; tags in the layout: ${listed}`);
  }

  async fetchManifest(digest: string): Promise<FetchedManifest> {
    return { bytes: await this.fetchBlob(digest, MAX_MANIFEST_BYTES, `manifest ${digest} in ${this.name}`), digest };
  }

  async fetchBlob(digest: string, maxBytes: number, what: string): Promise<Buffer> {
    const path = this.blobPath(digest);
    let bytes: Buffer;
    try {
      const st = await stat(path);
      if (st.size > maxBytes) throw new ClipError('IO', `${what} is too large (${st.size} bytes, limit ${maxBytes})`);
      bytes = await readFile(path);
    } catch (e) {
      throw fsError(e, `blob ${digest} in ${this.name}`);
    }
    verifyDigest(bytes, digest, what);
    return bytes;
  }

  async openBlob(digest: string): Promise<Readable> {
    const fh = await this.openFile(digest);
    return fh.createReadStream();
  }

  async readRange(digest: string, start: number, end: number): Promise<Buffer> {
    if (!Number.isSafeInteger(start) || !Number.isSafeInteger(end) || start < 0 || end < start) {
      throw new ClipError('BAD_ARGUMENT', `invalid byte range [${start}, ${end}) of blob ${digest}`);
    }
    const fh = await this.openFile(digest);
    try {
      const out = Buffer.alloc(end - start);
      let filled = 0;
      while (filled < out.length) {
        const { bytesRead } = await fh.read(out, filled, out.length - filled, start + filled);
        if (bytesRead === 0) {
          const size = (await fh.stat()).size;
          throw new ClipError(
            'BAD_ARGUMENT',
            `byte range [${start}, ${end}) is beyond the end of blob ${digest} in ${this.name} (size ${size})`,
          );
        }
        filled += bytesRead;
      }
      return out;
    } catch (e) {
      throw fsError(e, `blob ${digest} in ${this.name}`);
    } finally {
      await fh.close();
    }
  }

  async close(): Promise<void> {}

  private blobPath(digest: string): string {
    const { algorithm, hex } = checkDigest(digest, 'blob digest');
    return join(this.dir, 'blobs', algorithm, hex);
  }

  private async openFile(digest: string): Promise<FileHandle> {
    try {
      return await open(this.blobPath(digest), 'r');
    } catch (e) {
      throw fsError(e, `blob ${digest} in ${this.name}`);
    }
  }
}

function fsError(e: unknown, what: string): ClipError {
  if (e instanceof ClipError) return e;
  const code = (e as NodeJS.ErrnoException).code;
  if (code === 'ENOENT' || code === 'ENOTDIR') return new ClipError('NOT_FOUND', `${what} not found`, { cause: e });
  return new ClipError('IO', `cannot read ${what}: ${(e as Error).message}`, { cause: e });
}
