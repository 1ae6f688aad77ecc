// Realistic images for the cold-start benchmark: Debian bookworm root file
// systems made with debootstrap (from the machine's Debian mirror), split
// into layers by path with GNU tar + gzip -6 as image builders do, written as
// OCI layouts. Everything is cached in .bench-cache/coldstart (delete it to
// rebuild); a layout appears only once complete (built aside, then renamed).

import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { createHash } from 'node:crypto';
import { closeSync, existsSync, openSync } from 'node:fs';
import { mkdir, readFile, rename, rm, stat } from 'node:fs/promises';
import path from 'node:path';
import { sha256File, writeImage } from './layout-blobs.js';

const CACHE = path.resolve('.bench-cache/coldstart');
const MIRROR = process.env['BENCH_DEBIAN_MIRROR'] ?? 'http://deb.debian.org/debian';
const SUITE = 'bookworm';
/** Never in an image: package caches and the kernel's file systems. */
const ALWAYS_EXCLUDED = ['./var/cache/apt/*', './var/lib/apt/lists/*', './dev/*', './proc/*', './sys/*', './run/*', './tmp/*'];

export interface BenchImage {
  name: string;
  description: string;
  /** OCI layout directory and the tag in it. */
  dir: string;
  tag: string;
  /** Layer blobs, bottom first. */
  layerFiles: string[];
  compressedBytes: number;
  uncompressedBytes: number;
  /** What runc runs, and what it prints once the workload is ready. */
  command: string[];
  readyOutput: string;
}

interface ImageSpec {
  name: string;
  description: string;
  packages: string[];
  /** Installed after debootstrap with apt-get in a chroot (debootstrap's own resolver cannot take them). */
  aptPackages?: string[];
  /** Layers above the base, bottom first: the paths each takes out of the base. */
  layers: string[][];
  command: string[];
  readyOutput: string;
}

const SPECS: ImageSpec[] = [
  {
    name: 'python',
    description: 'debootstrap --variant=minbase + python3; base system, then the interpreter and its standard library',
    packages: ['python3'],
    layers: [['./usr/lib/python3.11', './usr/lib/python3', './usr/bin/python3.11', './usr/share/python3']],
    command: ['/usr/bin/python3', '-c', 'import json, sqlite3; print(1)'],
    readyOutput: '1',
  },
  {
    name: 'big',
    description: 'minbase + python3, numpy, yaml, perl, sqlite3',
    packages: ['python3', 'python3-numpy', 'python3-yaml', 'perl', 'sqlite3'],
    layers: [
      ['./usr/lib/x86_64-linux-gnu/perl', './usr/share/perl', './usr/bin/perl', './usr/bin/perl5.36.0'],
      ['./usr/lib/python3.11', './usr/bin/python3.11', './usr/share/python3'],
      [
        './usr/lib/python3/dist-packages',
        './usr/lib/x86_64-linux-gnu/openblas-pthread',
        './usr/lib/x86_64-linux-gnu/blas',
        './usr/lib/x86_64-linux-gnu/lapack',
      ],
      ['./usr/share/doc', './usr/share/man', './usr/share/locale', './usr/share/zoneinfo'],
    ],
    command: ['/usr/bin/python3', '-c', 'import numpy, yaml, json, sqlite3; print(1)'],
    readyOutput: '1',
  },
  {
    name: 'torch',
    description: "minbase + python3, then Debian's python3-torch and python3-scipy (numpy with them); an ML image",
    packages: ['python3'],
    aptPackages: ['python3-torch', 'python3-scipy'],
    layers: [
      ['./usr/lib/python3.11', './usr/bin/python3.11', './usr/share/python3'],
      ['./usr/lib/python3/dist-packages', './usr/lib/x86_64-linux-gnu'],
    ],
    command: ['/usr/bin/python3', '-c', 'import torch; print(1)'],
    readyOutput: '1',
  },
];

/** A debootstrapped root file system with `packages`, cached. */
function rootfs(spec: ImageSpec, log: (m: string) => void): string {
  const dir = path.join(CACHE, `rootfs-${spec.name}`);
  if (existsSync(path.join(dir, 'etc/debian_version'))) return dir;
  const tmp = `${dir}.tmp`;
  execFileSync('rm', ['-rf', tmp]);
  log(`debootstrap ${SUITE} (${spec.packages.join(', ')}) from ${MIRROR}`);
  const t = performance.now();
  execFileSync('debootstrap', ['--variant=minbase', `--include=${spec.packages.join(',')}`, SUITE, tmp, MIRROR], {
    stdio: ['ignore', 'ignore', 'inherit'],
  });
  if (spec.aptPackages) {
    log(`apt-get install ${spec.aptPackages.join(' ')} in the chroot`);
    execFileSync('cp', ['/etc/resolv.conf', path.join(tmp, 'etc/resolv.conf')]);
    const apt = `apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends ${spec.aptPackages.join(' ')} >/dev/null && apt-get clean`;
    execFileSync('chroot', [tmp, '/bin/sh', '-c', apt], { stdio: ['ignore', 'ignore', 'inherit'] });
  }
  execFileSync('mv', [tmp, dir]);
  log(`debootstrap took ${((performance.now() - t) / 1000).toFixed(0)} s`);
  return dir;
}

/** One layer: `paths` of the root (or everything but `exclude`), by GNU tar, gzip -6 into `out`; returns the diff id. */
async function tarLayer(root: string, out: string, paths: string[], exclude: string[]): Promise<string> {
  const existing = paths.filter((p) => existsSync(path.join(root, p)));
  const excludes = [...ALWAYS_EXCLUDED, ...exclude].map((e) => `--exclude=${e}`);
  const tar = spawn(
    'tar',
    [
      '--numeric-owner',
      '--xattrs',
      '--xattrs-include=*',
      '--sort=name',
      ...excludes,
      '-C',
      root,
      '-cf',
      '-',
      ...(existing.length ? existing : ['.']),
    ],
    {
      stdio: ['ignore', 'pipe', 'inherit'],
    },
  );
  const file = openSync(out, 'w');
  const gzip = spawn('gzip', ['-6'], { stdio: ['pipe', file, 'inherit'] });
  closeSync(file);
  const diff = createHash('sha256');
  tar.stdout.on('data', (c: Buffer) => diff.update(c));
  tar.stdout.pipe(gzip.stdin!);
  const exited = (p: ChildProcess, what: string) =>
    new Promise<void>((resolve, reject) => p.on('close', (code) => (code === 0 ? resolve() : reject(new Error(`${what} exited ${code}`)))));
  await Promise.all([exited(tar, 'tar'), exited(gzip, 'gzip')]);
  return `sha256:${diff.digest('hex')}`;
}

async function buildLayout(spec: ImageSpec, log: (m: string) => void): Promise<void> {
  const root = rootfs(spec, log);
  const final = path.join(CACHE, spec.name);
  const dir = `${final}.tmp`;
  await rm(dir, { recursive: true, force: true });
  await mkdir(path.join(dir, 'blobs/sha256'), { recursive: true });
  log(`${spec.name}: building ${spec.layers.length + 1} layers`);
  const layers = [];
  const diffIds = [];
  const parts: [string[], string[]][] = [[[], spec.layers.flat()], ...spec.layers.map((l): [string[], string[]] => [l, []])];
  for (const [i, [paths, exclude]] of parts.entries()) {
    const out = path.join(dir, `layer${i}.tar.gz`);
    const diffId = await tarLayer(root, out, paths, exclude);
    const hex = await sha256File(out);
    const blob = path.join(dir, 'blobs/sha256', hex);
    await rename(out, blob);
    layers.push({ mediaType: 'application/vnd.oci.image.layer.v1.tar+gzip', digest: `sha256:${hex}`, size: (await stat(blob)).size });
    diffIds.push(diffId);
  }
  await writeImage(
    dir,
    {
      config: { Env: ['PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin'], Cmd: spec.command },
      rootfs: { type: 'layers', diff_ids: diffIds },
      history: parts.map((_, i) => ({ created_by: `clip bench: layer ${i} of ${spec.name}` })),
    },
    layers,
    spec.name,
  );
  await rm(final, { recursive: true, force: true });
  await rename(dir, final);
}

async function describe(spec: ImageSpec): Promise<BenchImage> {
  const dir = path.join(CACHE, spec.name);
  const index = JSON.parse(await readFile(path.join(dir, 'index.json'), 'utf8'));
  const manifest = JSON.parse(await readFile(path.join(dir, 'blobs/sha256', index.manifests[0].digest.slice(7)), 'utf8'));
  const layerFiles: string[] = manifest.layers.map((l: { digest: string }) => path.join(dir, 'blobs/sha256', l.digest.slice(7)));
  let uncompressedBytes = 0;
  for (const f of layerFiles)
    uncompressedBytes += Number(execFileSync('bash', ['-c', `gzip -dc '${f}' | wc -c`], { encoding: 'utf8' }).trim());
  return {
    name: spec.name,
    description: spec.description,
    dir,
    tag: spec.name,
    layerFiles,
    compressedBytes: manifest.layers.reduce((a: number, l: { size: number }) => a + l.size, 0),
    uncompressedBytes,
    command: spec.command,
    readyOutput: spec.readyOutput,
  };
}

/** The benchmark images, built on first use. */
export async function debianImages(opts: { log?: (m: string) => void; names?: string[] } = {}): Promise<BenchImage[]> {
  const log = opts.log ?? (() => undefined);
  const out: BenchImage[] = [];
  for (const spec of SPECS.filter((s) => !opts.names || opts.names.includes(s.name))) {
    if (!existsSync(path.join(CACHE, spec.name, 'index.json'))) await buildLayout(spec, log);
    out.push(await describe(spec));
  }
  return out;
}
