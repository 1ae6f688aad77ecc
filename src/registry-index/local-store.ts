// The node's local index store: $CLIP_DATA_DIR/indexes/<alg>/<hex>.clip,
// keyed by the digest of the (platform) image manifest each index was made
// from. Filled by `clip index` and by downloads from the registry; every
// file is written whole (temp file + rename) and checked to name its key
// before it is stored and again before it is used.

import { randomBytes } from 'node:crypto';
import { constants } from 'node:fs';
import { copyFile, mkdir, rename, rm, stat, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { ClipError } from '../errors.js';
import { loadIndex } from '../index/load.js';
import { encodeIndex } from '../index/format.js';
import type { ClipIndex, RegistryReach } from '../index/types.js';
import { checkDigest } from '../util/digest.js';

export const DEFAULT_DATA_DIR = '/var/lib/clip';

/** $CLIP_DATA_DIR, else /var/lib/clip (as the daemon's config defaults it). */
export function defaultDataDir(): string {
  const env = process.env['CLIP_DATA_DIR'];
  return env !== undefined && env !== '' ? path.resolve(env) : DEFAULT_DATA_DIR;
}

/** Where the index of `manifestDigest` lives (the digest is checked: it becomes a path). */
export function localIndexPath(dataDir: string, manifestDigest: string): string {
  const { algorithm, hex } = checkDigest(manifestDigest, 'image manifest digest');
  return path.join(dataDir, 'indexes', algorithm, `${hex}.clip`);
}

/** A temp file name next to where `manifestDigest`'s index goes (the directory is made). */
export async function storeTempPath(dataDir: string, manifestDigest: string): Promise<string> {
  const final = localIndexPath(dataDir, manifestDigest);
  await mkdir(path.dirname(final), { recursive: true, mode: 0o755 }).catch((e: NodeJS.ErrnoException) => {
    throw new ClipError('IO', `cannot create the local index store ${path.dirname(final)}: ${e.code ?? e.message}`);
  });
  return path.join(path.dirname(final), `.${path.basename(final)}.tmp-${process.pid}-${randomBytes(4).toString('hex')}`);
}

/**
 * Throws unless `file` is a valid OCI image .clip index made from
 * `manifestDigest` (and, when given, of exactly these layer digests, in order:
 * a downloaded index must not read blobs the image does not have).
 */
export async function checkIndexNames(file: string, manifestDigest: string, what: string, layers?: readonly string[]): Promise<ClipIndex> {
  let index;
  try {
    index = await loadIndex(file);
  } catch (e) {
    // Named by what it is (a temp file's name would tell a user nothing).
    if (e instanceof ClipError)
      throw new ClipError(e.code, `${what}: ${e.message.startsWith(`${file}: `) ? e.message.slice(file.length + 2) : e.message}`);
    throw e;
  }
  if (index.kind !== 'oci') throw new ClipError('BAD_INDEX', `${what} is a ${index.kind} index, not an image's`);
  if (index.image.manifestDigest !== manifestDigest) {
    throw new ClipError(
      'DIGEST_MISMATCH',
      `${what} was made from image manifest ${index.image.manifestDigest}, not ${manifestDigest}; refusing to use it for that image`,
    );
  }
  const named = index.layers.map((l) => l.digest);
  if (layers !== undefined && (named.length !== layers.length || named.some((d, i) => d !== layers[i]))) {
    throw new ClipError(
      'DIGEST_MISMATCH',
      `${what} names manifest ${manifestDigest} but lists other layers than it has (${named.join(', ')} instead of ${layers.join(', ')}); refusing it`,
    );
  }
  return index;
}

/** The stored index of `manifestDigest`, checked, or undefined when none is stored. */
export async function findLocalIndex(dataDir: string, manifestDigest: string): Promise<string | undefined> {
  const file = localIndexPath(dataDir, manifestDigest);
  try {
    if (!(await stat(file)).isFile()) return undefined;
  } catch {
    return undefined;
  }
  await checkIndexNames(file, manifestDigest, `the stored index ${file}`);
  return file;
}

/** Moves a checked temp file (from storeTempPath) into place; returns the stored path. */
export async function commitTemp(
  dataDir: string,
  manifestDigest: string,
  tmp: string,
  layers?: readonly string[],
  what = `the index for ${manifestDigest}`,
  relocate?: Pick<ClipIndex['image'], 'location'> & RegistryReach,
): Promise<string> {
  try {
    const index = await checkIndexNames(tmp, manifestDigest, what, layers);
    // Read from where it was found (download.ts says why), rewritten before it is visible.
    if (relocate && index.image.location !== relocate.location) {
      const moved: ClipIndex = {
        ...index,
        image: { ...index.image, location: relocate.location },
        registry: { plainHttp: relocate.plainHttp },
      };
      await writeFile(tmp, encodeIndex(moved));
    }
    const final = localIndexPath(dataDir, manifestDigest);
    await rename(tmp, final);
    return final;
  } catch (e) {
    await rm(tmp, { force: true });
    throw e;
  }
}

/** Stores a copy of the .clip file `file` (made from `manifestDigest`); returns the stored path. */
export async function storeIndexFile(dataDir: string, manifestDigest: string, file: string): Promise<string> {
  const tmp = await storeTempPath(dataDir, manifestDigest);
  try {
    await copyFile(file, tmp, constants.COPYFILE_FICLONE);
  } catch (e) {
    await rm(tmp, { force: true });
    throw new ClipError('IO', `cannot copy ${file} into the local index store: ${(e as NodeJS.ErrnoException).code ?? String(e)}`);
  }
  return commitTemp(dataDir, manifestDigest, tmp);
}

/** Stores an encoded .clip index (made from `manifestDigest`); returns the stored path. */
export async function storeIndexBytes(dataDir: string, manifestDigest: string, data: Buffer): Promise<string> {
  const tmp = await storeTempPath(dataDir, manifestDigest);
  try {
    await writeFile(tmp, data, { flag: 'wx', mode: 0o644 });
  } catch (e) {
    await rm(tmp, { force: true });
    throw new ClipError('IO', `cannot write into the local index store: ${(e as NodeJS.ErrnoException).code ?? String(e)}`);
  }
  return commitTemp(dataDir, manifestDigest, tmp);
}
