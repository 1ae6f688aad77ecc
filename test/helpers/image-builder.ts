// Writes real OCI image layout directories (oci-layout, index.json, blobs/sha256)
// from layer specs: tars built by tar-writer, compressed as gzip, multi-member
// gzip, zstd (the zstd CLI) or not at all; single images or multi-platform indexes.

import { createHash } from 'node:crypto';
import { spawnSync } from 'node:child_process';
import { mkdir, mkdtemp, readFile, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';
import { createPrng } from './prng.js';
import { buildTarWithLayout, type TarEntryLayout, type TarEntrySpec, type TarOptions } from './tar-writer.js';

export type Compression = 'gzip' | 'gzip-multi' | 'none' | 'zstd';

export interface LayerSpec {
  entries: TarEntrySpec[];
  /** Default 'gzip'. */
  compression?: Compression;
  /** gzip-multi: uncompressed offsets where a new gzip member starts (else chosen by PRNG). */
  splitAt?: number[];
  /** gzip-multi without splitAt: number of members (default 5). */
  members?: number;
  /** gzip-multi: PRNG seed for the split points (default 1). */
  seed?: number;
  /** history[].created_by of this layer. */
  comment?: string;
  tarOptions?: TarOptions;
}

export interface Platform {
  architecture: string;
  os: string;
  variant?: string;
}

export interface BuildImageOptions {
  /** Layout directory (created; an existing index.json is extended). Default: a new temp dir. */
  dir?: string;
  /** Tag, stored as the org.opencontainers.image.ref.name annotation. Default 'latest'. */
  tag?: string;
  layers: LayerSpec[];
  /** Default: the host architecture / linux. */
  platform?: Partial<Platform>;
  cmd?: string[];
  env?: string[];
  /** Media types: OCI (default) or Docker schema 2. */
  format?: 'oci' | 'docker';
  /** Config "created" and history timestamps. */
  created?: string;
}

export interface BuiltLayer {
  digest: string;
  diffId: string;
  mediaType: string;
  /** Size of the (compressed) blob. */
  size: number;
  compression: Compression;
  /** The uncompressed tar. */
  tar: Buffer;
  /** The blob as stored. */
  blob: Buffer;
  /** Entry positions inside the uncompressed tar. */
  tarLayout: TarEntryLayout[];
  /** gzip-multi: uncompressed offsets where each member starts (first is 0). */
  memberUncompressedOffsets?: number[];
  /** gzip / gzip-multi: compressed offsets where each member starts (first is 0). */
  memberCompressedOffsets?: number[];
}

export interface BuiltImage {
  dir: string;
  tag: string;
  manifestDigest: string;
  manifestMediaType: string;
  manifestSize: number;
  manifest: Record<string, unknown>;
  configDigest: string;
  config: Record<string, unknown>;
  platform: Platform;
  layers: BuiltLayer[];
}

export interface BuiltIndex {
  dir: string;
  tag: string;
  /** Digest of the image index the tag points to. */
  indexDigest: string;
  indexMediaType: string;
  images: BuiltImage[];
}

export const MEDIA = {
  ociIndex: 'application/vnd.oci.image.index.v1+json',
  ociManifest: 'application/vnd.oci.image.manifest.v1+json',
  ociConfig: 'application/vnd.oci.image.config.v1+json',
  ociLayerTar: 'application/vnd.oci.image.layer.v1.tar',
  ociLayerGzip: 'application/vnd.oci.image.layer.v1.tar+gzip',
  ociLayerZstd: 'application/vnd.oci.image.layer.v1.tar+zstd',
  dockerList: 'application/vnd.docker.distribution.manifest.list.v2+json',
  dockerManifest: 'application/vnd.docker.distribution.manifest.v2+json',
  dockerConfig: 'application/vnd.docker.container.image.v1+json',
  dockerLayerGzip: 'application/vnd.docker.image.rootfs.diff.tar.gzip',
  dockerLayerTar: 'application/vnd.docker.image.rootfs.diff.tar',
} as const;

export const REF_NAME = 'org.opencontainers.image.ref.name';
const DEFAULT_CREATED = '2024-01-01T00:00:00Z';

export function sha256(b: Buffer | string): string {
  return 'sha256:' + createHash('sha256').update(b).digest('hex');
}

export function hostArchitecture(): string {
  const map: Record<string, string> = {
    x64: 'amd64',
    arm64: 'arm64',
    arm: 'arm',
    ia32: '386',
    ppc64: 'ppc64le',
    s390x: 's390x',
    riscv64: 'riscv64',
  };
  return map[process.arch] ?? process.arch;
}

/** Compress an uncompressed tar as a layer blob. */
export function compressLayer(
  spec: LayerSpec,
  tar: Buffer,
): Pick<BuiltLayer, 'blob' | 'memberUncompressedOffsets' | 'memberCompressedOffsets'> {
  const compression = spec.compression ?? 'gzip';
  switch (compression) {
    case 'none':
      return { blob: tar };
    case 'gzip':
      return { blob: gzipSync(tar, { level: 6 }), memberUncompressedOffsets: [0], memberCompressedOffsets: [0] };
    case 'gzip-multi': {
      let points = spec.splitAt;
      if (!points) {
        const prng = createPrng(spec.seed ?? 1);
        const set = new Set<number>();
        const want = Math.max(1, (spec.members ?? 5) - 1);
        while (set.size < Math.min(want, tar.length - 1)) set.add(1 + prng.int(tar.length - 1));
        points = [...set];
      }
      const starts = [0, ...[...new Set(points)].filter((p) => p > 0 && p < tar.length).sort((a, b) => a - b)];
      const parts: Buffer[] = [];
      const compressedStarts: number[] = [];
      let off = 0;
      for (let i = 0; i < starts.length; i++) {
        compressedStarts.push(off);
        const member = gzipSync(tar.subarray(starts[i], starts[i + 1] ?? tar.length), { level: 6 });
        parts.push(member);
        off += member.length;
      }
      return { blob: Buffer.concat(parts), memberUncompressedOffsets: starts, memberCompressedOffsets: compressedStarts };
    }
    case 'zstd': {
      const r = spawnSync('zstd', ['-q', '-c', '-3'], { input: tar, maxBuffer: 1 << 30 });
      if (r.error) throw new Error(`zstd: ${r.error.message} (apt-get install -y zstd)`);
      if (r.status !== 0) throw new Error(`zstd failed: ${r.stderr.toString()}`);
      return { blob: r.stdout };
    }
  }
}

function layerMediaType(c: Compression, format: 'oci' | 'docker'): string {
  if (c === 'zstd') return MEDIA.ociLayerZstd;
  if (format === 'docker') return c === 'none' ? MEDIA.dockerLayerTar : MEDIA.dockerLayerGzip;
  return c === 'none' ? MEDIA.ociLayerTar : MEDIA.ociLayerGzip;
}

export async function writeBlob(dir: string, data: Buffer): Promise<string> {
  const digest = sha256(data);
  await writeFile(join(dir, 'blobs', 'sha256', digest.slice(7)), data);
  return digest;
}

export async function initLayout(dir: string | undefined): Promise<string> {
  const d = dir ?? (await mkdtemp(join(tmpdir(), 'clip-oci-')));
  await mkdir(join(d, 'blobs', 'sha256'), { recursive: true });
  await writeFile(join(d, 'oci-layout'), JSON.stringify({ imageLayoutVersion: '1.0.0' }));
  return d;
}

export interface Descriptor {
  mediaType: string;
  digest: string;
  size: number;
  platform?: Platform;
  annotations?: Record<string, string>;
}

export async function addToIndexJson(dir: string, desc: Descriptor): Promise<void> {
  const path = join(dir, 'index.json');
  let index: { schemaVersion: number; mediaType?: string; manifests: Descriptor[] };
  try {
    index = JSON.parse(await readFile(path, 'utf8'));
  } catch {
    index = { schemaVersion: 2, mediaType: MEDIA.ociIndex, manifests: [] };
  }
  const tag = desc.annotations?.[REF_NAME];
  index.manifests = index.manifests.filter((m) => m.annotations?.[REF_NAME] !== tag);
  index.manifests.push(desc);
  await writeFile(path, JSON.stringify(index, null, 2));
}

/** Writes blobs + manifest of one image; does not touch index.json. */
async function writeImage(dir: string, opts: BuildImageOptions): Promise<BuiltImage> {
  const format = opts.format ?? 'oci';
  const created = opts.created ?? DEFAULT_CREATED;
  const platform: Platform = {
    architecture: opts.platform?.architecture ?? hostArchitecture(),
    os: opts.platform?.os ?? 'linux',
    ...(opts.platform?.variant ? { variant: opts.platform.variant } : {}),
  };
  const layers: BuiltLayer[] = [];
  for (const spec of opts.layers) {
    const compression = spec.compression ?? 'gzip';
    const { tar, layout } = buildTarWithLayout(spec.entries, spec.tarOptions);
    const c = compressLayer(spec, tar);
    const digest = await writeBlob(dir, c.blob);
    layers.push({
      digest,
      diffId: sha256(tar),
      mediaType: layerMediaType(compression, format),
      size: c.blob.length,
      compression,
      tar,
      tarLayout: layout,
      ...c,
    });
  }
  const config: Record<string, unknown> = {
    created,
    architecture: platform.architecture,
    os: platform.os,
    ...(platform.variant ? { variant: platform.variant } : {}),
    config: {
      Env: opts.env ?? ['PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin'],
      Cmd: opts.cmd ?? ['/bin/sh'],
    },
    rootfs: { type: 'layers', diff_ids: layers.map((l) => l.diffId) },
    history: opts.layers.map((l, i) => ({ created, created_by: l.comment ?? `layer ${i}` })),
  };
  const configBuf = Buffer.from(JSON.stringify(config));
  const configDigest = await writeBlob(dir, configBuf);
  const manifestMediaType = format === 'docker' ? MEDIA.dockerManifest : MEDIA.ociManifest;
  const manifest: Record<string, unknown> = {
    schemaVersion: 2,
    mediaType: manifestMediaType,
    config: { mediaType: format === 'docker' ? MEDIA.dockerConfig : MEDIA.ociConfig, digest: configDigest, size: configBuf.length },
    layers: layers.map((l) => ({ mediaType: l.mediaType, digest: l.digest, size: l.size })),
  };
  const manifestBuf = Buffer.from(JSON.stringify(manifest));
  const manifestDigest = await writeBlob(dir, manifestBuf);
  return {
    dir,
    tag: opts.tag ?? 'latest',
    manifestDigest,
    manifestMediaType,
    manifestSize: manifestBuf.length,
    manifest,
    configDigest,
    config,
    platform,
    layers,
  };
}

/** Build one single-platform image into an OCI layout directory, tagged `tag`. */
export async function buildImage(opts: BuildImageOptions): Promise<BuiltImage> {
  const dir = await initLayout(opts.dir);
  const img = await writeImage(dir, opts);
  await addToIndexJson(dir, {
    mediaType: img.manifestMediaType,
    digest: img.manifestDigest,
    size: img.manifestSize,
    annotations: { [REF_NAME]: img.tag },
  });
  return img;
}

export interface BuildIndexOptions {
  dir?: string;
  tag?: string;
  format?: 'oci' | 'docker';
  /** One image per platform (see twoPlatformImages). */
  images: Array<Omit<BuildImageOptions, 'dir' | 'tag' | 'format'> & { platform: Platform }>;
}

/** Build a multi-platform image index; index.json's tag points at the index blob. */
export async function buildMultiPlatformImage(opts: BuildIndexOptions): Promise<BuiltIndex> {
  const dir = await initLayout(opts.dir);
  const tag = opts.tag ?? 'latest';
  const format = opts.format ?? 'oci';
  const images: BuiltImage[] = [];
  for (const i of opts.images) images.push(await writeImage(dir, { ...i, dir, tag, format }));
  const indexMediaType = format === 'docker' ? MEDIA.dockerList : MEDIA.ociIndex;
  const index = {
    schemaVersion: 2,
    mediaType: indexMediaType,
    manifests: images.map((img) => ({
      mediaType: img.manifestMediaType,
      digest: img.manifestDigest,
      size: img.manifestSize,
      platform: img.platform,
    })),
  };
  const buf = Buffer.from(JSON.stringify(index));
  const indexDigest = await writeBlob(dir, buf);
  await addToIndexJson(dir, { mediaType: indexMediaType, digest: indexDigest, size: buf.length, annotations: { [REF_NAME]: tag } });
  return { dir, tag, indexDigest, indexMediaType, images };
}

/** Two platforms (linux/amd64, linux/arm64/v8), each with a file /platform naming it. */
export function twoPlatformImages(extra: (p: Platform) => TarEntrySpec[] = () => []): BuildIndexOptions['images'] {
  const platforms: Platform[] = [
    { architecture: 'amd64', os: 'linux' },
    { architecture: 'arm64', os: 'linux', variant: 'v8' },
  ];
  return platforms.map((platform) => ({
    platform,
    layers: [
      {
        entries: [
          { type: 'file', path: 'platform', data: `${platform.os}/${platform.architecture}\n`, mtime: { sec: 1700000000, nsec: 0 } },
          ...extra(platform),
        ],
      },
    ],
  }));
}
