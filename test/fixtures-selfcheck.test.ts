// Tests of the test infrastructure itself: the tar writer against GNU tar, the
// fixtures against umoci (the reference unpacker), and the local registry,
// skopeo push (byte-identical), blob corruption and Basic auth.

import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { gunzipSync } from 'node:zlib';
import { run } from './helpers/exec.js';
import { EVERYTHING, LARGE, buildFixture, everythingLayers, unstableMtimePaths } from './helpers/fixtures.js';
import {
  buildImage,
  buildMultiPlatformImage,
  MEDIA,
  sha256,
  twoPlatformImages,
  type BuiltImage,
  type LayerSpec,
} from './helpers/image-builder.js';
import {
  basicAuth,
  corruptBlobInRegistry,
  httpGet,
  inspectRaw,
  pushImage,
  startRegistry,
  type RegistryHandle,
} from './helpers/registry.js';
import { buildTar, type TarEntrySpec } from './helpers/tar-writer.js';
import { compareTrees, walkTree, type TreeSummary } from './helpers/tree-walk.js';
import { umociUnpack, type UmociBundle } from './helpers/umoci.js';

const hex = (b: Buffer | string): string => createHash('sha256').update(b).digest('hex');

/** Normalised archive path: no "./", no trailing "/", root = "". */
function norm(p: string): string {
  let s = p.replace(/^\.\//, '').replace(/\/+$/, '');
  if (s === '.') s = '';
  return s;
}

function specData(e: TarEntrySpec): Buffer {
  if (e.type !== 'file' || e.data === undefined) return Buffer.alloc(0);
  return typeof e.data === 'string' ? Buffer.from(e.data) : e.data;
}

/** Last entry written per normalised path over all layers (whiteout files skipped). */
function lastEntries(layers: LayerSpec[]): Map<string, TarEntrySpec> {
  const m = new Map<string, TarEntrySpec>();
  for (const l of layers) {
    for (const e of l.entries) {
      const base = norm(e.path).split('/').pop()!;
      if (base.startsWith('.wh.')) continue;
      m.set(norm(e.path), e);
    }
  }
  return m;
}

describe('tar writer', () => {
  test('GNU tar lists exactly the written names (PAX, ustar prefix, GNU long names)', async () => {
    const layers = everythingLayers();
    const tmp = await mkdtemp(join(tmpdir(), 'clip-tarcheck-'));
    try {
      for (const [i, l] of layers.entries()) {
        const file = join(tmp, `layer${i}.tar`);
        await writeFile(file, buildTar(l.entries));
        const { stdout, stderr } = await run('tar', ['--quoting-style=literal', '-tf', file], {
          env: { ...process.env, LC_ALL: 'C.UTF-8' },
        });
        assert.equal(stderr, '');
        const want = l.entries.map((e) => (e.type === 'dir' && !e.path.endsWith('/') ? e.path + '/' : e.path));
        assert.deepEqual(
          stdout
            .toString('utf8')
            .split('\n')
            .filter((s) => s !== ''),
          want,
        );
      }
    } finally {
      await rm(tmp, { recursive: true, force: true });
    }
  });

  test('headers: checksum, PAX records, end blocks', () => {
    const tar = buildTar([
      { type: 'file', path: 'x'.repeat(150), data: 'abc', mtime: { sec: 1, nsec: 5 }, xattrs: { 'user.a': Buffer.from([0, 10, 255]) } },
    ]);
    // PAX header, PAX body, file header, file data, 2 end blocks
    assert.equal(tar.length, 512 * 6);
    assert.equal(String.fromCharCode(tar[156]!), 'x');
    const body = tar.subarray(512, 1024).toString('latin1');
    assert.match(body, /^\d+ path=x{150}\n/);
    assert.ok(body.includes(' mtime=1.000000005\n'));
    assert.ok(tar.subarray(512, 1024).includes(Buffer.from([...Buffer.from(' SCHILY.xattr.user.a='), 0, 10, 255, 10])));
    for (const off of [0, 1024]) {
      const h = Buffer.from(tar.subarray(off, off + 512));
      const stored = parseInt(h.subarray(148, 154).toString('latin1'), 8);
      h.fill(0x20, 148, 156);
      assert.equal(
        stored,
        h.reduce((a, b) => a + b, 0),
      );
    }
    assert.ok(tar.subarray(512 * 4).every((b) => b === 0));
  });
});

describe('everything fixture vs umoci', () => {
  let img: BuiltImage;
  let bundle: UmociBundle;
  let tree: TreeSummary;
  const layers = everythingLayers();

  before(async () => {
    img = await buildImage({ tag: 'everything', layers });
    bundle = await umociUnpack(img.dir, 'everything');
    tree = await walkTree(bundle.rootfs);
  });
  after(async () => {
    await bundle?.cleanup();
    if (img) await rm(img.dir, { recursive: true, force: true });
  });

  test('fixture is deterministic', () => {
    const again = everythingLayers();
    assert.equal(again.length, layers.length);
    for (let i = 0; i < layers.length; i++) assert.equal(hex(buildTar(again[i]!.entries)), img.layers[i]!.diffId.slice(7));
  });

  test('layout, digests, compression kinds', async () => {
    assert.equal(img.layers.length, EVERYTHING.layerCount);
    assert.deepEqual(
      img.layers.map((l) => l.compression),
      ['gzip', 'gzip-multi', 'none', 'gzip'],
    );
    assert.deepEqual(
      img.layers.map((l) => l.mediaType),
      [MEDIA.ociLayerGzip, MEDIA.ociLayerGzip, MEDIA.ociLayerTar, MEDIA.ociLayerGzip],
    );
    const index = JSON.parse(await readFile(join(img.dir, 'index.json'), 'utf8'));
    assert.equal(index.manifests[0].digest, img.manifestDigest);
    assert.equal(index.manifests[0].annotations['org.opencontainers.image.ref.name'], 'everything');
    for (const l of img.layers) {
      const blob = await readFile(join(img.dir, 'blobs', 'sha256', l.digest.slice(7)));
      assert.equal(sha256(blob), l.digest);
      assert.equal(blob.length, l.size);
      assert.equal(sha256(l.tar), l.diffId);
      if (l.compression !== 'none') assert.ok(gunzipSync(blob).equals(l.tar));
    }
    const multi = img.layers[1]!;
    assert.ok(multi.memberCompressedOffsets!.length >= 5, 'several gzip members');
    for (const off of multi.memberCompressedOffsets!) assert.deepEqual([...multi.blob.subarray(off, off + 3)], [0x1f, 0x8b, 8]);
    const config = JSON.parse(await readFile(join(img.dir, 'blobs', 'sha256', img.configDigest.slice(7)), 'utf8'));
    assert.deepEqual(
      config.rootfs.diff_ids,
      img.layers.map((l) => l.diffId),
    );
    assert.equal(config.os, 'linux');
  });

  test('whiteouts and opaque directories', () => {
    assert.ok(!tree.has(EVERYTHING.deletedFile));
    assert.ok(!tree.has(EVERYTHING.deletedDir));
    for (const p of EVERYTHING.deletedDirChildren) assert.ok(!tree.has(p), p);
    assert.equal(tree.get(EVERYTHING.opaqueDir)?.type, 'dir');
    for (const p of EVERYTHING.opaqueHidden) assert.ok(!tree.has(p), p);
    for (const p of EVERYTHING.opaqueVisible) assert.equal(tree.get(p)?.type, 'file', p);
    assert.equal(tree.get('opq/keep-name.txt')?.sha256, hex(EVERYTHING.opaqueKeepNameContent));
    assert.ok(!tree.has(EVERYTHING.longWhitedOut));
    assert.equal(tree.get(EVERYTHING.recreatedChild)?.type, 'file');
    assert.ok(!tree.has(EVERYTHING.recreatedGone));
  });

  test('type replacements across layers', () => {
    assert.equal(tree.get(EVERYTHING.fileToDir)?.type, 'dir');
    assert.equal(tree.get(EVERYTHING.fileToDirChild)?.type, 'file');
    assert.equal(tree.get(EVERYTHING.dirToFile)?.type, 'file');
    for (const p of EVERYTHING.dirToFileGoneChildren) assert.ok(!tree.has(p), p);
    assert.equal(tree.get(EVERYTHING.modifiedFile)?.sha256, hex(EVERYTHING.modifiedFileContent));
    assert.equal(tree.get(EVERYTHING.metadataOnlyChange)?.mode, 0o600);
  });

  test('hardlinks: link counts follow whiteouts', () => {
    for (const p of EVERYTHING.hardlinkSurvivors) assert.equal(tree.get(p)?.nlink, 2, p);
    assert.ok(!tree.has(EVERYTHING.hardlinkWhitedOut));
    for (const p of EVERYTHING.hardlinkPair) assert.equal(tree.get(p)?.nlink, 2, p);
    assert.ok(!tree.has(EVERYTHING.hardlinkTargetWhitedOut));
    for (const p of EVERYTHING.hardlinkTargetSurvivors) {
      assert.equal(tree.get(p)?.nlink, 2, p);
      assert.equal(tree.get(p)?.sha256, hex('target name gets whited out\n'));
    }
    for (const p of EVERYTHING.hardlinkLong) assert.equal(tree.get(p)?.nlink, 2, p);
  });

  test('symlinks, long and unicode names', () => {
    for (const [p, target] of Object.entries(EVERYTHING.symlinks)) {
      assert.equal(tree.get(p)?.type, 'symlink', p);
      assert.equal(tree.get(p)?.target, target, p);
      assert.equal(tree.get(p)?.size, Buffer.byteLength(target), p);
    }
    for (const p of [
      EVERYTHING.longPaxPath,
      EVERYTHING.longPrefixPath,
      EVERYTHING.longGnuPath,
      EVERYTHING.deepPath,
      EVERYTHING.nameMaxPath,
    ]) {
      assert.equal(tree.get(p)?.type, 'file', p);
    }
    assert.ok(Buffer.byteLength(EVERYTHING.deepPath) > 255);
    assert.equal(Buffer.byteLength(EVERYTHING.nameMaxPath.split('/').pop()!), 255);
    for (const p of EVERYTHING.unicode) assert.ok(tree.has(p), p);
    assert.notEqual(tree.get('unicode/caf\u00e9')?.sha256, tree.get('unicode/cafe\u0301')?.sha256);
  });

  test('xattrs, devices, fifo, modes, ids, sizes', () => {
    const cap = tree.get(EVERYTHING.capFile)!;
    assert.equal(cap.xattrs['security.capability'], EVERYTHING.capValue.toString('hex'));
    assert.equal(cap.xattrs['security.capability'], '0100000200040000000000000000000000000000'); // setcap cap_net_bind_service=+ep
    assert.equal(cap.xattrs['user.comment'], Buffer.from('ping binary').toString('hex'));
    assert.deepEqual(tree.get(EVERYTHING.xattrDir)?.xattrs, { 'user.dirattr': '000102feff00' });
    assert.equal(tree.get(EVERYTHING.xattrFile)?.xattrs['user.binary'], '000a3d80ff');
    for (const [p, d] of Object.entries(EVERYTHING.devices)) {
      assert.equal(tree.get(p)?.type, d.type, p);
      assert.deepEqual(tree.get(p)?.rdev, { major: d.major, minor: d.minor }, p);
    }
    assert.equal(tree.get(EVERYTHING.fifo)?.type, 'fifo');
    for (const [p, mode] of Object.entries(EVERYTHING.modes)) assert.equal(tree.get(p)?.mode, mode, p);
    for (const [p, [uid, gid]] of Object.entries(EVERYTHING.ids)) assert.deepEqual([tree.get(p)?.uid, tree.get(p)?.gid], [uid, gid], p);
    assert.equal(tree.get(EVERYTHING.emptyFile)?.size, 0);
    assert.equal(tree.get(EVERYTHING.largeFile)?.size, EVERYTHING.largeFileSize);
  });

  test('implicit parent directories: 0755 root:root', () => {
    assert.equal(tree.get(EVERYTHING.implicitFile)?.type, 'file');
    for (const p of EVERYTHING.implicitDirs) {
      const e = tree.get(p);
      assert.deepEqual([e?.type, e?.mode, e?.uid, e?.gid], ['dir', 0o755, 0, 0], p);
    }
  });

  test('every entry matches the last tar entry for its path (content, ns mtime, mode, owner)', () => {
    const last = lastEntries(layers);
    const unstable = new Set(unstableMtimePaths('everything'));
    let checked = 0;
    for (const [p, got] of tree) {
      if (unstable.has(p)) continue; // root and implicit dirs: umoci gives these the unpack time
      let spec = last.get(p);
      assert.ok(spec, `no tar entry for ${p}`);
      if (spec.type === 'hardlink') spec = last.get(norm(spec.target))!; // the inode keeps the first name's metadata
      const mt = spec.mtime!;
      assert.equal(got.mtimeNs, BigInt(mt.sec) * 1000000000n + BigInt(mt.nsec), `mtime of ${p}`);
      if (got.type !== 'symlink') assert.equal(got.mode, spec.mode ?? (spec.type === 'dir' ? 0o755 : 0o644), `mode of ${p}`);
      assert.equal(got.uid, spec.uid ?? 0, `uid of ${p}`);
      if (got.type === 'file') assert.equal(got.sha256, hex(specData(spec)), `content of ${p}`);
      checked++;
    }
    assert.ok(checked > 90, `checked ${checked}`);
  });

  test('compareTrees reports differences readably', async () => {
    const same = await walkTree(bundle.rootfs);
    assert.deepEqual(compareTrees(tree, same), []);
    const changed: TreeSummary = new Map([...same].map(([k, v]) => [k, { ...v, xattrs: { ...v.xattrs } }]));
    changed.delete('etc/passwd');
    changed.get('usr/bin/su')!.mode = 0o755;
    changed.get(EVERYTHING.capFile)!.xattrs = {};
    changed.set('extra', { type: 'file', mode: 0o644, uid: 0, gid: 0, size: 0, mtimeNs: 0n, nlink: 1, xattrs: {} });
    const diffs = compareTrees(tree, changed);
    assert.deepEqual(diffs, [
      'etc/passwd: missing (expected file)',
      'extra: unexpected file',
      'usr/bin/ping: xattrs: expected {"security.capability":"0100000200040000000000000000000000000000","user.comment":"70696e672062696e617279"}, got {}',
      'usr/bin/su: mode: expected 0o4755, got 0o755',
    ]);
    assert.deepEqual(compareTrees(tree, changed, { ignore: (p) => ['etc/passwd', 'extra'].includes(p), fields: ['type', 'mode'] }), [
      'usr/bin/su: mode: expected 0o4755, got 0o755',
    ]);
  });
});

describe('large and zstd fixtures', () => {
  test('large: 2000 files in two layers, unpacked by umoci', { timeout: 300_000 }, async () => {
    const img = await buildFixture('large');
    let bundle: UmociBundle | undefined;
    try {
      assert.equal(img.layers[1]!.compression, 'gzip-multi');
      bundle = await umociUnpack(img.dir, 'large');
      const tree = await walkTree(bundle.rootfs, { xattrs: false });
      const files = [...tree.values()].filter((e) => e.type === 'file');
      assert.equal(files.length, LARGE.layer0Files + LARGE.layer1Files + Object.keys(LARGE.bigFiles).length);
      for (const [p, size] of Object.entries(LARGE.bigFiles)) assert.equal(tree.get(p)?.size, size, p);
    } finally {
      await bundle?.cleanup();
      await rm(img.dir, { recursive: true, force: true });
    }
  });

  test('zstd: one tar+zstd layer that zstd -d restores', async () => {
    const img = await buildFixture('zstd');
    try {
      const l = img.layers[0]!;
      assert.equal(l.mediaType, MEDIA.ociLayerZstd);
      assert.deepEqual([...l.blob.subarray(0, 4)], [0x28, 0xb5, 0x2f, 0xfd]);
      const file = join(img.dir, 'blobs', 'sha256', l.digest.slice(7));
      const { stdout } = await run('zstd', ['-d', '-c', '-q', file]);
      assert.ok(stdout.equals(l.tar));
    } finally {
      await rm(img.dir, { recursive: true, force: true });
    }
  });
});

describe('local registry', () => {
  let reg: RegistryHandle | undefined;
  const dirs: string[] = [];
  before(async () => {
    reg = await startRegistry();
  });
  after(async () => {
    await reg?.stop();
    for (const d of dirs) await rm(d, { recursive: true, force: true });
  });

  test('push keeps every blob byte-identical; skopeo inspect sees the image', { timeout: 120_000 }, async () => {
    const img = await buildImage({ tag: 'v1', layers: everythingLayers() });
    dirs.push(img.dir);
    const pushed = await pushImage(img.dir, 'v1', reg!.host, 'fixtures/everything');
    assert.equal(pushed.digest, img.manifestDigest);
    const raw = JSON.parse(pushed.rawManifest.toString('utf8'));
    assert.deepEqual(
      raw.layers.map((l: { digest: string }) => l.digest),
      img.layers.map((l) => l.digest),
    );
    assert.equal(raw.layers[2].mediaType, MEDIA.ociLayerTar, 'uncompressed layer stays uncompressed');
    const { stdout } = await run('skopeo', ['inspect', '--tls-verify=false', '--no-creds', `docker://${reg!.host}/fixtures/everything:v1`]);
    const info = JSON.parse(stdout.toString('utf8'));
    assert.equal(info.Digest, img.manifestDigest);
    assert.equal(info.Os, 'linux');
    assert.deepEqual(
      info.Layers,
      img.layers.map((l) => l.digest),
    );
    for (const l of img.layers) {
      const r = await httpGet(`http://${reg!.host}/v2/fixtures/everything/blobs/${l.digest}`);
      assert.equal(r.status, 200);
      assert.equal(sha256(r.body), l.digest);
    }
  });

  test('corruptBlobInRegistry makes a blob mismatch its digest', async () => {
    const img = await buildImage({ tag: 'c', layers: [{ entries: [{ type: 'file', path: 'f', data: Buffer.alloc(4096, 7) }] }] });
    dirs.push(img.dir);
    await pushImage(img.dir, 'c', reg!.host, 'fixtures/corrupt');
    const digest = img.layers[0]!.digest;
    await corruptBlobInRegistry(reg!.dir, digest);
    const r = await httpGet(`http://${reg!.host}/v2/fixtures/corrupt/blobs/${digest}`);
    assert.equal(r.status, 200);
    assert.equal(r.body.length, img.layers[0]!.size);
    assert.notEqual(sha256(r.body), digest);
  });

  test('multi-platform index and Docker media types survive the push', async () => {
    const multi = await buildMultiPlatformImage({ tag: 'multi', images: twoPlatformImages() });
    dirs.push(multi.dir);
    const pushed = await pushImage(multi.dir, 'multi', reg!.host, 'fixtures/multi');
    assert.equal(pushed.digest, multi.indexDigest);
    const index = JSON.parse(pushed.rawManifest.toString('utf8'));
    assert.equal(index.mediaType, MEDIA.ociIndex);
    assert.deepEqual(
      index.manifests.map((m: { platform: { architecture: string } }) => m.platform.architecture),
      ['amd64', 'arm64'],
    );
    for (const img of multi.images) {
      const raw = await inspectRaw(reg!.host, `fixtures/multi@${img.manifestDigest}`);
      assert.equal(sha256(raw), img.manifestDigest);
    }

    const docker = await buildImage({ tag: 'docker', format: 'docker', layers: [{ entries: [{ type: 'file', path: 'a', data: 'a' }] }] });
    dirs.push(docker.dir);
    const p2 = await pushImage(docker.dir, 'docker', reg!.host, 'fixtures/docker');
    assert.equal(JSON.parse(p2.rawManifest.toString('utf8')).mediaType, MEDIA.dockerManifest);
    assert.equal(p2.digest, docker.manifestDigest);

    const dockerList = await buildMultiPlatformImage({ tag: 'dlist', format: 'docker', images: twoPlatformImages() });
    dirs.push(dockerList.dir);
    const p3 = await pushImage(dockerList.dir, 'dlist', reg!.host, 'fixtures/dlist');
    assert.equal(JSON.parse(p3.rawManifest.toString('utf8')).mediaType, MEDIA.dockerList);
    assert.equal(p3.digest, dockerList.indexDigest);
  });
});

describe('registry with Basic auth', () => {
  const creds = { username: 'clip', password: 's3cret-pässword' };
  let reg: RegistryHandle | undefined;
  let dir: string | undefined;
  before(async () => {
    reg = await startRegistry({ htpasswd: creds });
  });
  after(async () => {
    await reg?.stop();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  test('rejects anonymous and wrong credentials, accepts the right ones', async () => {
    const anon = await httpGet(`http://${reg!.host}/v2/`);
    assert.equal(anon.status, 401);
    assert.match(String(anon.headers['www-authenticate']), /^Basic realm="clip-test"/);
    const wrong = await httpGet(`http://${reg!.host}/v2/`, { Authorization: basicAuth({ ...creds, password: 'nope' }) });
    assert.equal(wrong.status, 401);
    const ok = await httpGet(`http://${reg!.host}/v2/`, { Authorization: basicAuth(creds) });
    assert.equal(ok.status, 200);
  });

  test('push and inspect need the credentials', async () => {
    const img = await buildImage({ tag: 'auth', layers: [{ entries: [{ type: 'file', path: 'secret', data: 'x' }] }] });
    dir = img.dir;
    await assert.rejects(pushImage(img.dir, 'auth', reg!.host, 'private/img'));
    const pushed = await pushImage(img.dir, 'auth', reg!.host, 'private/img', creds);
    assert.equal(pushed.digest, img.manifestDigest);
    await assert.rejects(inspectRaw(reg!.host, 'private/img:auth'));
    const r = await httpGet(`http://${reg!.host}/v2/private/img/manifests/auth`, {
      Authorization: basicAuth(creds),
      Accept: MEDIA.ociManifest,
    });
    assert.equal(r.status, 200);
    assert.equal(sha256(r.body), img.manifestDigest);
  });
});
