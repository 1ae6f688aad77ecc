// The bench images' upper layers are made by GNU tar from chosen paths, so they
// hold ./usr/lib/python3.11/... without entries for ./usr and ./usr/lib (valid
// OCI: the lower layer has them). ctr-remote 0.12's optimizer moves each file it
// prioritizes together with its parent directories' entries and fails on such a
// layer ("failed to sort tar entries: file: usr/bin: not found"). This writes a
// copy of an image whose layers carry those directory entries too (taken from
// the debootstrapped root the image was made from): the same tree, file for
// file, for the eStargz conversion, which compresses every layer anew anyway.

import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdir, readFile, rename, rm, stat } from 'node:fs/promises';
import path from 'node:path';
import { promisify } from 'node:util';
import type { BenchImage } from './debian-images.js';
import { sha256File, writeImage, type LayerDescriptor } from './layout-blobs.js';

const exec = promisify(execFile);
const name = (entry: string): string => entry.replace(/^\.\//, '').replace(/\/$/, '');

/** Writes `img` with every layer's missing parent directory entries added into the OCI layout `dir`. */
export async function withParentDirs(img: BenchImage, root: string, dir: string): Promise<void> {
  if (!existsSync(path.join(root, 'etc/debian_version'))) throw new Error(`${root}: not the root the image was made from`);
  const index = JSON.parse(await readFile(path.join(img.dir, 'index.json'), 'utf8'));
  const blob = (digest: string): string => path.join(img.dir, 'blobs/sha256', digest.slice(7));
  const manifest = JSON.parse(await readFile(blob(index.manifests[0].digest), 'utf8'));
  const config = JSON.parse(await readFile(blob(manifest.config.digest), 'utf8'));
  await mkdir(path.join(dir, 'blobs/sha256'), { recursive: true });
  const layers: LayerDescriptor[] = [];
  const diffIds: string[] = [];
  for (const [i, layer] of (manifest.layers as LayerDescriptor[]).entries()) {
    const tar = path.join(dir, `layer${i}.tar`);
    await exec('sh', ['-c', `gzip -dc '${blob(layer.digest)}' > '${tar}'`]);
    const { stdout } = await exec('tar', ['-tf', tar], { maxBuffer: 1 << 30 });
    const entries = new Set(stdout.split('\n').filter(Boolean).map(name));
    const missing = new Set<string>();
    for (const e of entries)
      for (let p = path.posix.dirname(e); p !== '.' && p !== '/' && !entries.has(p); p = path.posix.dirname(p)) missing.add(p);
    const out = path.join(dir, `layer${i}.out.tar`);
    if (missing.size) {
      const parents = [...missing].sort().map((p) => `./${p}`);
      await exec('tar', ['--numeric-owner', '--no-recursion', '-C', root, '-cf', out, ...parents]);
      await exec('tar', ['-Af', out, tar]);
      await rm(tar);
    } else {
      await rename(tar, out);
    }
    diffIds.push(`sha256:${await sha256File(out)}`);
    await exec('gzip', ['-1', out]);
    const hex = await sha256File(`${out}.gz`);
    const dest = path.join(dir, 'blobs/sha256', hex);
    await rename(`${out}.gz`, dest);
    layers.push({ mediaType: layer.mediaType, digest: `sha256:${hex}`, size: (await stat(dest)).size });
  }
  await writeImage(dir, { ...config, rootfs: { type: 'layers', diff_ids: diffIds } }, layers, img.tag);
}
