// The benchmark image: six layers made with GNU tar + gzip from this
// machine's /usr (real files, real compression), as an OCI layout cached in
// .bench-cache/index-image (delete it to rebuild).

import { execFileSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdir, readFile, rm, stat } from 'node:fs/promises';
import path from 'node:path';
import { sha256File, writeImage } from './layout-blobs.js';

export const BENCH_IMAGE_DIR = path.resolve('.bench-cache/index-image');
export const BENCH_TAG = 'bench';
const CACHE = BENCH_IMAGE_DIR;
const LAYERS: string[][] = [
  ['usr/bin', 'usr/sbin'],
  ['usr/include'],
  ['usr/share/doc', 'usr/share/man', 'usr/share/perl'],
  ['usr/lib/python3', 'usr/lib/python3.11'],
  ['usr/share/locale', 'usr/share/vim'],
  ['etc'],
];

/** Builds the image once; returns the layer blob files, bottom first. */
export async function benchImage(): Promise<string[]> {
  const dir = CACHE;
  if (existsSync(path.join(dir, 'index.json'))) {
    const index = JSON.parse(await readFile(path.join(dir, 'index.json'), 'utf8'));
    const manifest = JSON.parse(await readFile(path.join(dir, 'blobs/sha256', index.manifests[0].digest.slice(7)), 'utf8'));
    return manifest.layers.map((l: { digest: string }) => path.join(dir, 'blobs/sha256', l.digest.slice(7)));
  }
  await rm(dir, { recursive: true, force: true });
  await mkdir(path.join(dir, 'blobs/sha256'), { recursive: true });
  const layers = [];
  const diffIds = [];
  const files = [];
  for (const [i, dirs] of LAYERS.entries()) {
    const present = dirs.filter((d) => existsSync(path.join('/', d)));
    if (present.length === 0) continue;
    const tmp = path.join(dir, `layer${i}.tar.gz`);
    process.stderr.write(`building layer ${i}: ${present.join(' ')}\n`);
    execFileSync('bash', [
      '-c',
      `tar -C / --numeric-owner -cf - ${present.join(' ')} 2>/dev/null | tee >(sha256sum > ${tmp}.diffid) | gzip -6 > ${tmp}`,
    ]);
    const diff = (await readFile(`${tmp}.diffid`, 'utf8')).split(' ')[0]!;
    const hex = await sha256File(tmp);
    const blob = path.join(dir, 'blobs/sha256', hex);
    execFileSync('mv', [tmp, blob]);
    await rm(`${tmp}.diffid`);
    layers.push({ mediaType: 'application/vnd.oci.image.layer.v1.tar+gzip', digest: `sha256:${hex}`, size: (await stat(blob)).size });
    diffIds.push(`sha256:${diff}`);
    files.push(blob);
  }
  await writeImage(dir, { rootfs: { type: 'layers', diff_ids: diffIds }, config: { Cmd: ['/bin/sh'] } }, layers, 'bench');
  return files;
}
