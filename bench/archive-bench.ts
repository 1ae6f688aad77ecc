// npm run bench:archive: clip archive against tar + gzip and mksquashfs +
// squashfuse on the same tree (default /usr/share, or BENCH_TREE): time and
// throughput to create, size, time to mount, and read throughput through the
// mount (every file, cold and warm; 200 random files, cold). A tar.gz cannot
// be mounted: its "mount" is a full extraction, measured as such.

import { execFileSync, spawnSync } from 'node:child_process';
import { mkdir, mkdtemp, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { createPrng } from '../test/helpers/prng.js';
import { dropCaches, machineDescription } from './machine.js';

const TREE = path.resolve(process.env['BENCH_TREE'] ?? '/usr/share');
const CLIP = path.resolve('bin/clip.js');
const RANDOM_FILES = 200;

function need(cmd: string, pkg: string): void {
  if (spawnSync('sh', ['-c', `command -v ${cmd}`]).status !== 0)
    throw new Error(`${cmd} is missing: apt-get install ${pkg} (scripts/setup.sh installs it)`);
}

function seconds(fn: () => void): number {
  const t = performance.now();
  fn();
  return (performance.now() - t) / 1000;
}

function sh(script: string, env: NodeJS.ProcessEnv = {}): void {
  execFileSync('bash', ['-c', script], { stdio: ['ignore', 'ignore', 'inherit'], env: { ...process.env, ...env }, maxBuffer: 1 << 28 });
}

const mb = (bytes: number): string => (bytes / 1e6).toFixed(0);
const rate = (bytes: number, s: number): string => (bytes / 1e6 / s).toFixed(0);

need('mksquashfs', 'squashfs-tools');
need('squashfuse', 'squashfuse');
const work = await mkdtemp(path.join(tmpdir(), 'clip-bench-archive-'));
const env = { CLIP_STATE_DIR: path.join(work, 'state'), CLIP_DATA_DIR: path.join(work, 'data') };
const mounts: string[] = [];
try {
  const files = execFileSync('find', [TREE, '-type', 'f', '-size', '+0', '-printf', '%P\\n'], { maxBuffer: 1 << 28, encoding: 'utf8' })
    .trim()
    .split('\n');
  const treeBytes = Number(
    execFileSync('bash', ['-c', `find '${TREE}' -type f -printf '%s\\n' | awk '{s+=$1} END {print s}'`], { encoding: 'utf8' }).trim(),
  );
  const prng = createPrng(1);
  const picked = Array.from({ length: RANDOM_FILES }, () => files[prng.int(files.length)]!);
  const listFile = path.join(work, 'random.txt');
  await (await import('node:fs/promises')).writeFile(listFile, picked.join('\0'));
  process.stderr.write(`tree ${TREE}: ${files.length} files, ${mb(treeBytes)} MB\n`);

  // Create.
  const clipFile = path.join(work, 'tree.clip');
  const tgz = path.join(work, 'tree.tar.gz');
  const sqfs = path.join(work, 'tree.sqfs');
  dropCaches();
  const tClip = seconds(() => sh(`node '${CLIP}' archive '${TREE}' -o '${clipFile}' > /dev/null`));
  dropCaches();
  const tTar = seconds(() => sh(`tar -cf - --xattrs -C '${TREE}' . | gzip -6 > '${tgz}'`));
  dropCaches();
  const tSquash = seconds(() => sh(`mksquashfs '${TREE}' '${sqfs}' -comp gzip -noappend -quiet -no-progress > /dev/null`));
  const size = async (f: string): Promise<number> => (await stat(f)).size;

  // Mount (tar.gz: extract).
  const clipMp = path.join(work, 'mnt-clip');
  const sqMp = path.join(work, 'mnt-sqfs');
  const extracted = path.join(work, 'extracted');
  await mkdir(clipMp);
  await mkdir(sqMp);
  await mkdir(extracted);
  dropCaches();
  const mClip = seconds(() => sh(`node '${CLIP}' mount '${clipFile}' '${clipMp}' > /dev/null`, env));
  mounts.push(clipMp);
  dropCaches();
  const mSquash = seconds(() => sh(`squashfuse '${sqfs}' '${sqMp}'`));
  mounts.push(sqMp);
  dropCaches();
  const mTar = seconds(() => sh(`tar -xzf '${tgz}' -C '${extracted}'`));

  // Reads: 200 random files cold, then everything cold, then everything warm.
  const readRandom = (root: string): number => {
    dropCaches();
    return seconds(() => sh(`cd '${root}' && xargs -0 cat < '${listFile}' > /dev/null`));
  };
  const readAll = (root: string, cold: boolean): number => {
    if (cold) dropCaches();
    return seconds(() => sh(`find '${root}' -type f -print0 | xargs -0 cat > /dev/null`));
  };
  const rClip = readRandom(clipMp);
  const rSquash = readRandom(sqMp);
  const rDisk = readRandom(extracted);
  // clip's span cache keeps what the random reads inflated: start the full read from a fresh mount.
  sh(`node '${CLIP}' umount '${clipMp}'`, env);
  await rm(path.join(work, 'data'), { recursive: true, force: true });
  sh(`node '${CLIP}' mount '${clipFile}' '${clipMp}' > /dev/null`, env);
  const aClip = readAll(clipMp, true);
  const aClipWarm = readAll(clipMp, false);
  const aSquash = readAll(sqMp, true);
  const aSquashWarm = readAll(sqMp, false);
  const aDisk = readAll(extracted, true);
  const aDiskWarm = readAll(extracted, false);

  const [sClip, sTar, sSquash] = [await size(clipFile), await size(tgz), await size(sqfs)];
  console.log(`## clip archive vs tar + gzip vs mksquashfs + squashfuse`);
  console.log(
    `\n${machineDescription()}; tree ${TREE}: ${files.length} files, ${mb(treeBytes)} MB. Times in seconds, throughput in MB/s of file bytes; caches dropped before every cold run.\n`,
  );
  console.log('| measure | clip archive | tar + gzip -6 | mksquashfs -comp gzip + squashfuse |');
  console.log('|---|---|---|---|');
  console.log(`| create (s) | ${tClip.toFixed(1)} | ${tTar.toFixed(1)} | ${tSquash.toFixed(1)} |`);
  console.log(`| create throughput (MB/s) | ${rate(treeBytes, tClip)} | ${rate(treeBytes, tTar)} | ${rate(treeBytes, tSquash)} |`);
  console.log(
    `| size (MB, % of the files) | ${mb(sClip)} (${((100 * sClip) / treeBytes).toFixed(1)}%) | ${mb(sTar)} (${((100 * sTar) / treeBytes).toFixed(1)}%) | ${mb(sSquash)} (${((100 * sSquash) / treeBytes).toFixed(1)}%) |`,
  );
  console.log(`| mount until ready (s) | ${mClip.toFixed(2)} | ${mTar.toFixed(1)} (tar -xzf: no mount) | ${mSquash.toFixed(2)} |`);
  console.log(
    `| ${RANDOM_FILES} random files, cold (s) | ${rClip.toFixed(2)} | ${rDisk.toFixed(2)} (after the extraction) | ${rSquash.toFixed(2)} |`,
  );
  console.log(
    `| read every file, cold (s, MB/s) | ${aClip.toFixed(1)}, ${rate(treeBytes, aClip)} | ${aDisk.toFixed(1)}, ${rate(treeBytes, aDisk)} (extracted, on disk) | ${aSquash.toFixed(1)}, ${rate(treeBytes, aSquash)} |`,
  );
  console.log(
    `| read every file, warm (s, MB/s) | ${aClipWarm.toFixed(1)}, ${rate(treeBytes, aClipWarm)} | ${aDiskWarm.toFixed(1)}, ${rate(treeBytes, aDiskWarm)} | ${aSquashWarm.toFixed(1)}, ${rate(treeBytes, aSquashWarm)} |`,
  );
} finally {
  for (const mp of mounts.reverse()) {
    if (mp.endsWith('mnt-clip')) spawnSync(process.execPath, [CLIP, 'umount', mp], { env: { ...process.env, ...env } });
    else spawnSync('umount', [mp]);
  }
  await rm(work, { recursive: true, force: true });
}
