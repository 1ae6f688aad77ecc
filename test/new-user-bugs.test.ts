// The bugs a new user hit (issue 11), each end to end through the CLI against
// a real registry: a clear one-line `clip: ...` message, exit 1, no stack
// trace, no output file, nothing left running.

import assert from 'node:assert/strict';
import { mkdtemp, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { createArchive } from '../src/archive/create-archive.js';
import { loadIndex } from '../src/index/load.js';
import { ClipError } from '../src/errors.js';
import { isMounted } from '../src/fuse/index.js';
import { ensureDaemon } from '../src/daemon/client.js';
import { existsSync } from 'node:fs';
import { runClip, type CliResult } from './helpers/cli.js';
import { alive, clipWorkspace, mountRecords, sweepClipMounts, type ClipWorkspace } from './helpers/mounts.js';
import { buildImage, compressLayer, hostArchitecture, type BuiltImage, type LayerSpec } from './helpers/image-builder.js';
import { replaceLayerBlob } from './helpers/mutate-image.js';
import { createPrng } from './helpers/prng.js';
import { pushImage, startRegistry, type RegistryHandle } from './helpers/registry.js';

/** Exit 1 with exactly one line on stderr, `clip: ` and matching `message`. */
function failsWith(r: CliResult, message: RegExp): void {
  assert.equal(r.code, 1, `exit code (stderr: ${r.stderr})`);
  assert.match(r.stderr, /^clip: [^\n]*\n$/, 'one line on stderr');
  assert.match(r.stderr, message);
  assert.doesNotMatch(r.stderr, /unexpected error|UND_ERR|at .*\.js:\d+/, 'a message, not a stack trace');
}

async function assertEmpty(dir: string): Promise<void> {
  assert.deepEqual(await readdir(dir), [], `nothing written in ${dir}`);
}

/** A layer of `mib` MiB of incompressible data, so the blob is that large too. */
function bigLayer(seed: number, mib: number, compression: NonNullable<LayerSpec['compression']>): LayerSpec {
  const prng = createPrng(seed);
  return {
    compression,
    entries: [
      { type: 'dir', path: `d${seed}`, mtime: { sec: 1700000000, nsec: 0 } },
      { type: 'file', path: `d${seed}/blob.bin`, data: prng.bytes(mib * 1024 * 1024), mtime: { sec: 1700000000, nsec: 0 } },
    ],
  };
}

describe('bugs a new user hits', () => {
  let registry: RegistryHandle;
  let work: string;
  const images: BuiltImage[] = [];
  let small: string;
  before(async () => {
    registry = await startRegistry();
    work = await mkdtemp(path.join(tmpdir(), 'clip-newuser-'));
    const img = await buildImage({
      tag: 'small',
      layers: [bigLayer(1, 1, 'gzip')],
      platform: { os: 'linux', architecture: hostArchitecture() },
    });
    images.push(img);
    small = (await pushImage(img.dir, img.tag, registry.host, 'newuser/small')).reference;
  });
  after(async () => {
    await registry?.stop();
    for (const img of images) await rm(img.dir, { recursive: true, force: true });
    if (work) await rm(work, { recursive: true, force: true });
  });

  async function outDir(): Promise<string> {
    return mkdtemp(path.join(work, 'out-'));
  }

  it('a zstd layer of several MB from a registry is refused, not a silent exit 0', async () => {
    const img = await buildImage({ tag: 'zstd', layers: [bigLayer(2, 8, 'zstd')] });
    images.push(img);
    assert.ok(img.layers[0]!.size > 8 * 1024 * 1024, 'the blob is larger than a socket buffer');
    const { reference } = await pushImage(img.dir, img.tag, registry.host, 'newuser/zstd');
    const dir = await outDir();
    const r = await runClip(['index', reference, '-o', path.join(dir, 'x.clip')]);
    failsWith(r, /zstd.*not supported/);
    await assertEmpty(dir);
  });

  it('many layers, several of them zstd, big gzip ones among them: refused with one clear error, no UND_ERR_ABORTED', async () => {
    const layers: LayerSpec[] = [];
    for (let i = 0; i < 8; i++) layers.push(bigLayer(10 + i, 4, i % 3 === 1 ? 'zstd' : 'gzip'));
    const img = await buildImage({ tag: 'many', layers });
    images.push(img);
    const { reference } = await pushImage(img.dir, img.tag, registry.host, 'newuser/many');
    const dir = await outDir();
    failsWith(await runClip(['index', reference, '-o', path.join(dir, 'x.clip')]), /zstd.*not supported/);
    await assertEmpty(dir);
  });

  it('zstd bytes under a gzip media type, found while other big layers are in flight: one clear error', async () => {
    const layers: LayerSpec[] = [];
    for (let i = 0; i < 7; i++) layers.push(bigLayer(30 + i, 6, 'gzip'));
    const img = await buildImage({ tag: 'mislabelled', layers });
    images.push(img);
    // Layers 1 and 4 hold zstd of the same tar (the diff ids still match): only the bytes tell.
    for (const i of [1, 4]) await replaceLayerBlob(img, i, compressLayer({ entries: [], compression: 'zstd' }, img.layers[i]!.tar).blob);
    const { reference } = await pushImage(img.dir, img.tag, registry.host, 'newuser/mislabelled');
    const dir = await outDir();
    for (let run = 0; run < 3; run++) {
      failsWith(await runClip(['index', reference, '-o', path.join(dir, 'x.clip')]), /zstd-compressed: zstd layers are not supported/);
    }
    await assertEmpty(dir);
  });

  it('-o MISSING_DIR/a.clip is refused before any work, naming the directory', async () => {
    const missing = path.join(work, 'no-such-dir');
    failsWith(await runClip(['index', small, '-o', path.join(missing, 'a.clip')]), new RegExp(`${missing} is not a directory`));
    failsWith(await runClip(['archive', small, '-o', path.join(missing, 'a.clip')]), new RegExp(`${missing} is not a directory`));
  });

  it('--platform a single-platform image does not have is refused', async () => {
    const other = hostArchitecture() === 'arm64' ? 'amd64' : 'arm64';
    const dir = await outDir();
    failsWith(
      await runClip(['index', small, '--platform', `linux/${other}`, '-o', path.join(dir, 'x.clip')]),
      new RegExp(`no image for platform linux/${other}: it is a linux/${hostArchitecture()} image`),
    );
    const layout = images[0]!;
    failsWith(
      await runClip(['index', `oci:${layout.dir}:${layout.tag}`, '--platform', `linux/${other}`, '-o', path.join(dir, 'x.clip')]),
      /no image for platform/,
    );
    failsWith(await runClip(['archive', small, '--platform', `linux/${other}`, '-o', path.join(dir, 'x.clip')]), /no image for platform/);
    await assertEmpty(dir);
    // Its own platform, in another spelling, still passes.
    const same = await runClip([
      'index',
      small,
      '--platform',
      `linux/${hostArchitecture() === 'amd64' ? 'x86_64' : hostArchitecture()}`,
      '-o',
      path.join(dir, 'x.clip'),
    ]);
    assert.equal(same.code, 0, same.stderr);
  });

  it('-o - writes the index to stdout and the summary to stderr; clip archive refuses it', async () => {
    const r = await runClip(['index', small, '-o', '-']);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stderr, /indexed .* \(sha256:/, 'the summary on stderr');
    const dir = await outDir();
    assert.deepEqual(await readdir(process.cwd()).then((names) => names.includes('-')), false, 'no file named -');
    const file = path.join(dir, 'from-stdout.clip');
    await writeFile(file, r.stdout);
    const loaded = await loadIndex(file);
    assert.equal(loaded.image.reference, small);
    const json = await runClip(['index', small, '-o', '-', '--json']);
    assert.equal(JSON.parse(json.stderr).indexBytes, json.stdout.length);
    failsWith(await runClip(['archive', small, '-o', '-']), /cannot write to stdout \(-o -\)/);
  });

  it('clip version and clip --version print the same line', async () => {
    const a = await runClip(['version']);
    const b = await runClip(['--version']);
    assert.equal(a.code, 0);
    assert.match(a.stdout.toString(), /^clip \d+\.\d+\.\d+\S*\n$/);
    assert.equal(b.stdout.toString(), a.stdout.toString());
  });

  it('the archive of an image reports progress with its own signature (a phase first)', async () => {
    const calls: unknown[][] = [];
    const dir = await outDir();
    await createArchive(small, { output: path.join(dir, 'a.clip'), onProgress: (...args) => void calls.push(args) });
    assert.ok(calls.length > 0);
    for (const [phase, done, total] of calls) {
      assert.ok(phase === 'indexing' || phase === 'archiving', `phase ${String(phase)}`);
      assert.ok(typeof done === 'number' && typeof total === 'number' && done <= total, `${String(done)}/${String(total)}`);
    }
    assert.ok(
      calls.some(([p]) => p === 'indexing'),
      'the image is indexed first',
    );
  });
});

describe('bugs a new user hits: clip mount', () => {
  let registry: RegistryHandle;
  let img: BuiltImage;
  let ws: ClipWorkspace;
  let index: string;
  const mounted: string[] = [];
  before(async () => {
    sweepClipMounts();
    registry = await startRegistry();
    ws = await clipWorkspace('newuser');
    img = await buildImage({ tag: 'm', layers: [bigLayer(50, 1, 'gzip')] });
    const { reference } = await pushImage(img.dir, img.tag, registry.host, 'newuser/mount');
    index = path.join(ws.dir, 'm.clip');
    const r = await runClip(['index', reference, '-o', index]);
    assert.equal(r.code, 0, r.stderr);
  });
  after(async () => {
    // Rootfs first: the last one takes the shared mount and its daemon down.
    for (const mp of mounted.reverse()) if (isMounted(mp)) await runClip(['umount', mp], { env: ws.env });
    sweepClipMounts();
    await registry?.stop();
    if (img) await rm(img.dir, { recursive: true, force: true });
    if (ws) await rm(ws.dir, { recursive: true, force: true });
  });

  async function noDaemons(): Promise<void> {
    for (const r of await mountRecords(ws)) assert.ok(!alive(r.pid), `daemon ${r.pid} for ${r.mountpoint} still runs`);
  }

  it('--log-level verbose is refused before a daemon starts, naming the levels', async () => {
    const mp = await mkdtemp(path.join(ws.dir, 'mp-'));
    failsWith(
      await runClip(['mount', index, mp, '--log-level', 'verbose'], { env: ws.env }),
      /bad --log-level verbose: expected one of trace, debug, info, warn, error/,
    );
    const rootfs = await mkdtemp(path.join(ws.dir, 'rootfs-'));
    failsWith(await runClip(['mount', index, '--rootfs', rootfs, '--log-level', 'verbose'], { env: ws.env }), /bad --log-level verbose/);
    assert.ok(!isMounted(mp) && !isMounted(rootfs));
    assert.deepEqual(await mountRecords(ws), []);
  });

  it('a daemon that fails before it is ready: its own error line is relayed', async () => {
    // Past the CLI's checks (a library caller can): the daemon refuses the level itself, before it answers.
    await assert.rejects(ensureDaemon(ws.env['CLIP_STATE_DIR']!, ['--log-level', 'verbose']), (e: unknown) => {
      assert.ok(e instanceof ClipError);
      assert.match(e.message, /^--log-level: expected one of trace, debug, info, warn, error/);
      return true;
    });
    assert.ok(!existsSync(path.join(ws.env['CLIP_STATE_DIR']!, 'clip.sock')), 'no daemon answers');
  });

  it('a second --rootfs of a mounted image is refused what its daemon and the image were not started with', async () => {
    const a = await mkdtemp(path.join(ws.dir, 'rootfs-'));
    const cacheA = path.join(ws.dir, 'cache-a');
    const first = await runClip(['mount', index, '--rootfs', a, '--cache-dir', cacheA], { env: ws.env });
    assert.equal(first.code, 0, first.stderr);
    mounted.push(a);
    const b = await mkdtemp(path.join(ws.dir, 'rootfs-'));
    const cacheB = path.join(ws.dir, 'cache-b');
    const refused = await runClip(['mount', index, '--rootfs', b, '--cache-dir', cacheB, '--prefetch', '--metrics-addr', '127.0.0.1:9'], {
      env: ws.env,
    });
    failsWith(
      refused,
      new RegExp(
        `already mounted .*--cache-dir ${cacheB} \\(it has ${cacheA}\\), --prefetch --prefetch-rate \\d+ \\(it does not prefetch\\), --metrics-addr 127.0.0.1:9 \\(it serves no metrics\\)`,
      ),
    );
    assert.ok(!isMounted(b), 'nothing mounted for the refused rootfs');
    // What the running daemon serves, or nothing asked for: the shared mount is reused.
    for (const flags of [['--cache-dir', cacheA], []]) {
      const ok = await runClip(['mount', index, '--rootfs', b, ...flags], { env: ws.env });
      assert.equal(ok.code, 0, ok.stderr);
      mounted.push(b);
      const u = await runClip(['umount', b], { env: ws.env });
      assert.equal(u.code, 0, u.stderr);
    }
    const u = await runClip(['umount', a], { env: ws.env });
    assert.equal(u.code, 0, u.stderr);
    await noDaemons();
  });
});
