// The registry client's view of an image: what was resolved, and where its
// blobs can be read from (whole or by range).

import type { Readable } from 'node:stream';
import type { ResponseDeadline } from '../http/client.js';
import type { Platform } from '../image/types.js';

export type { Platform, ResponseDeadline };

export interface Reference {
  /** Registry host as docker names it ("docker.io", "localhost:5000"). */
  registry: string;
  /** Repository path ("library/alpine"). */
  repository: string;
  tag?: string;
  /** "sha256:..." when pinned. */
  digest?: string;
}

export interface LayerDescriptor {
  digest: string;
  mediaType: string;
  size: number;
  /** Uncompressed digest from the image config's rootfs.diff_ids. */
  diffId: string;
}

export interface ResolvedImage {
  /** Where the image came from, enough to open its blobs again later:
   *  "docker://registry/repository" or "oci:/abs/dir". */
  location: string;
  /** The reference as given by the user, normalised ("docker.io/library/alpine:latest"). */
  reference: string;
  registry?: string;
  repository?: string;
  /** From a registry: whether it answered over plain HTTP. */
  plainHttp?: boolean;
  manifestDigest: string;
  manifestMediaType: string;
  configDigest: string;
  /** The raw image config JSON (entrypoint, env, ...). */
  config: Record<string, unknown>;
  platform: Platform;
  layers: LayerDescriptor[];
  /** The manifest's and config's bytes as fetched and verified (clip pull stores them in containerd as they are). */
  raw: { manifest: Buffer; config: Buffer; configMediaType: string };
}

/** Reads blobs of one repository (or one OCI layout directory). */
export interface BlobSource {
  /** Streams a whole blob (of `size` bytes, when known: it sizes the response deadline). Callers verify its digest. */
  openBlob(digest: string, size?: number): Promise<Readable>;
  /** Reads bytes [start, end) of a blob; `onRetry` hears of requests sent again. */
  readRange(digest: string, start: number, end: number, opts?: RangeOptions): Promise<Buffer>;
  close(): Promise<void>;
}

export interface RangeOptions {
  onRetry?: (reason: string) => void;
}

export interface RegistryOptions {
  /** true: plain HTTP from the start (and after a TLS attempt answered in HTTP); false: never, also not on loopback; default: TLS first, plain HTTP allowed for localhost, 127.0.0.0/8 and ::1. */
  plainHttp?: boolean;
  /** How the .clip being read says its registry was reached: used only when nothing else decides (plainHttp, host settings). */
  recordedPlainHttp?: boolean;
  /** containerd's hosts config path: `<hostsDir>/<host>/hosts.toml` or docker's certs.d files (default $CLIP_HOSTS_DIR, else /etc/clip/certs.d). */
  hostsDir?: string;
  /** skopeo's --cert-dir: *.crt CAs and *.cert/*.key client pairs for the registry (instead of its hosts directory's). */
  certDir?: string;
  /** false: accept any certificate, and allow plain HTTP (skopeo's --tls-verify=false). */
  tlsVerify?: boolean;
  username?: string;
  password?: string;
  /** Platform to pick from an index; default: linux and the host's architecture. */
  platform?: Platform;
  /** How long one response may take (default: 30 s + its bytes at 64 KiB/s; CLIP_RESPONSE_DEADLINE_MS, CLIP_MIN_BYTES_PER_SECOND). */
  deadline?: ResponseDeadline;
}
