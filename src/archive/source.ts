// What `clip archive SOURCE` archives: a local directory, an existing .clip
// file (any kind), or an image reference (indexed in memory first, then its
// merged tree read through the FileReader: only what is archived is fetched).

import { stat } from 'node:fs/promises';
import path from 'node:path';
import type { FileReader } from '../content/file-reader.js';
import type { ClipIndex } from '../index/types.js';
import type { Platform, RegistryOptions } from '../oci/types.js';
import { readDirSource } from './dir-source.js';
import { treeEntries, treeFileBytes } from './tree-source.js';
import type { ArchiveEntry, SkipListener } from './types.js';

export interface ArchiveSource {
  /** What was archived, for the index ("dir:/abs/path", an image reference). */
  reference: string;
  entries: ArchiveEntry[];
  fileBytes: number;
  /** Kept from an image (entrypoint, env, ...): empty for a directory. */
  config: Record<string, unknown>;
  configDigest: string;
  platform: Platform;
  close(): Promise<void>;
}

export interface SourceOptions extends RegistryOptions {
  exclude?: (absPath: string) => boolean;
  xattrs?: boolean;
  onSkip?: SkipListener;
  /** An image source: compressed bytes of its layers read so far, of `total`. */
  onProgress?: (read: number, total: number) => void;
}

const NO_PLATFORM: Platform = { os: '', architecture: '' };

function fromIndex(index: ClipIndex, reader: FileReader): ArchiveSource {
  return {
    reference: index.image.reference,
    entries: treeEntries(index, reader),
    fileBytes: treeFileBytes(index),
    config: index.image.config,
    configDigest: index.image.configDigest,
    platform: index.image.platform,
    close: () => reader.close(),
  };
}

export async function openArchiveSource(source: string, opts: SourceOptions = {}): Promise<ArchiveSource> {
  const st = await stat(source).catch(() => undefined);
  if (st?.isDirectory()) {
    const abs = path.resolve(source);
    const dir = await readDirSource(abs, opts);
    return { reference: `dir:${abs}`, ...dir, config: {}, configDigest: '', platform: NO_PLATFORM, close: async () => undefined };
  }
  const [{ loadIndex }, { FileReader }] = await Promise.all([import('../index/load.js'), import('../content/file-reader.js')]);
  if (st?.isFile()) {
    const index = await loadIndex(source);
    return fromIndex(index, await FileReader.open(index, opts));
  }
  // An image reference: indexed in memory, nothing written.
  const { buildIndex } = await import('../indexer/index-image.js');
  const index = await buildIndex(source, opts);
  return fromIndex(index, await FileReader.open(index, opts));
}
