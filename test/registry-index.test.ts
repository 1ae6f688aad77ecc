// Indexes in the registry: `clip index --push` stores the .clip as an OCI
// artifact referring to the image manifest (Debian's docker-registry 2.8:
// the referrers tag schema, other tools' entries kept; a fake registry: the
// referrers API), a fresh node mounts the image by reference and runs it
// with runc, and an index made for one manifest is never used for another.

import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { copyFile, mkdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { isMounted } from '../src/fuse/index.js';
import { encodeIndex } from '../src/index/format.js';
import { loadIndex } from '../src/index/load.js';
import { DEFAULT_SPAN_SIZE } from '../src/indexer/span-size.js';
import { isIndexFileArgument } from '../src/cli/index-argument.js';
import { RegistryClient } from '../src/oci/registry.js';
import { pushBlob, pushManifest } from '../src/oci/push.js';
import { addReferrer } from '../src/oci/referrers.js';
import { artifactManifest, OCI_EMPTY_DATA, referrerEntry } from '../src/registry-index/artifact.js';
import { buildBusyboxImage, HELLO } from './helpers/busybox-image.js';
import { runClip } from './helpers/cli.js';
import { buildMultiPlatformImage, twoPlatformImages, type BuiltImage, type BuiltIndex } from './helpers/image-builder.js';
import { clipWorkspace, sweepClipMounts, type ClipWorkspace } from './helpers/mounts.js';
import { httpPushImage } from './helpers/http-push.js';
import { startReferrersRegistry, type ReferrersRegistry } from './helpers/referrers-registry.js';
import { httpGet, httpRequest, pushImage, startRegistry, type RegistryHandle } from './helpers/registry.js';
import { runContainer } from './helpers/runc.js';

const CLIP_TYPE = 'application/vnd.clip.index.v1';
const OCI_INDEX = 'application/vnd.oci.image.index.v1+json';
const OCI_MANIFEST = 'application/vnd.oci.image.manifest.v1+json';

function sha256(b: Buffer): string {
  return 'sha256:' + createHash('sha256').update(b).digest('hex');
}

function tagOf(digest: string): string {
  return digest.replace(':', '-');
}

function storedPath(ws: ClipWorkspace, digest: string): string {
  return path.join(ws.env['CLIP_DATA_DIR']!, 'indexes', 'sha256', `${digest.slice('sha256:'.length)}.clip`);
}

async function exists(file: string): Promise<boolean> {
  return stat(file).then(
    () => true,
    () => false,
  );
}

/** A manifest (and its blobs) pushed over plain HTTP, as another tool would. */
async function pushRawManifest(host: string, repo: string, ref: string, manifest: Buffer, mediaType: string): Promise<void> {
  const put = await httpRequest('PUT', `http://${host}/v2/${repo}/manifests/${ref}`, { 'Content-Type': mediaType }, manifest);
  assert.equal(put.status, 201, `PUT ${ref}: ${put.body.toString()}`);
}

async function pushRawBlob(host: string, repo: string, data: Buffer): Promise<string> {
  const digest = sha256(data);
  const start = await httpRequest('POST', `http://${host}/v2/${repo}/blobs/uploads/`);
  assert.equal(start.status, 202);
  const url = new URL(String(start.headers['location']), `http://${host}`);
  url.searchParams.set('digest', digest);
  const put = await httpRequest('PUT', url.toString(), { 'Content-Type': 'application/octet-stream' }, data);
  assert.equal(put.status, 201, put.body.toString());
  return digest;
}

async function getJson(host: string, repo: string, ref: string): Promise<{ status: number; json: Record<string, unknown> | undefined }> {
  const r = await httpRequest('GET', `http://${host}/v2/${repo}/manifests/${ref}`, { Accept: `${OCI_INDEX}, ${OCI_MANIFEST}` });
  return { status: r.status, json: r.status === 200 ? (JSON.parse(r.body.toString('utf8')) as Record<string, unknown>) : undefined };
}

/** An artifact of "another tool" (an SBOM) referring to `subject`, listed in the referrers tag as that tool writes it. */
async function pushOtherToolReferrer(
  host: string,
  repo: string,
  subject: { digest: string; size: number },
): Promise<Record<string, unknown>> {
  const empty = await pushRawBlob(host, repo, Buffer.from('{}'));
  const sbom = Buffer.from('{"sbom":"not clip"}');
  const sbomDigest = await pushRawBlob(host, repo, sbom);
  const manifest = Buffer.from(
    JSON.stringify({
      schemaVersion: 2,
      mediaType: OCI_MANIFEST,
      artifactType: 'application/vnd.example.sbom.v1+json',
      config: { mediaType: 'application/vnd.oci.empty.v1+json', digest: empty, size: 2 },
      layers: [{ mediaType: 'application/vnd.example.sbom.v1+json', digest: sbomDigest, size: sbom.length }],
      subject: { mediaType: OCI_MANIFEST, digest: subject.digest, size: subject.size },
    }),
  );
  const digest = sha256(manifest);
  await pushRawManifest(host, repo, digest, manifest, OCI_MANIFEST);
  const entry = {
    mediaType: OCI_MANIFEST,
    digest,
    size: manifest.length,
    artifactType: 'application/vnd.example.sbom.v1+json',
    annotations: { 'org.example.tool': 'sbom-maker', 'org.example.extra': 'kept as written' },
  };
  const index = Buffer.from(JSON.stringify({ schemaVersion: 2, mediaType: OCI_INDEX, manifests: [entry] }));
  await pushRawManifest(host, repo, tagOf(subject.digest), index, OCI_INDEX);
  return entry;
}

describe('the file-or-reference rule of clip mount/ls/cat', () => {
  it('a name ending in .clip, a path, or an existing regular file is a file; anything else is an image reference', async () => {
    const ws = await clipWorkspace('argrule');
    try {
      const existing = path.join(ws.dir, 'plain');
      await writeFile(existing, 'x');
      assert.equal(isIndexFileArgument('image.clip'), true);
      assert.equal(isIndexFileArgument('./alpine'), true);
      assert.equal(isIndexFileArgument('/no/such/thing'), true);
      assert.equal(isIndexFileArgument(existing), true);
      assert.equal(isIndexFileArgument(ws.dir), true, 'an absolute path is a file (a directory then fails to load as one)');
      assert.equal(isIndexFileArgument('alpine'), false);
      assert.equal(isIndexFileArgument('localhost:5000/app:1'), false);
      assert.equal(isIndexFileArgument('ghcr.io/org/app@sha256:' + 'a'.repeat(64)), false);
      assert.equal(isIndexFileArgument('docker://x.clip'), false);
      assert.equal(isIndexFileArgument('oci:./layout:tag'), false);
    } finally {
      await rm(ws.dir, { recursive: true, force: true });
    }
  });
});

describe('indexes in the registry: docker-registry 2.8 (referrers tag schema)', () => {
  let registry: RegistryHandle;
  let busybox: BuiltImage;
  let multi: BuiltIndex;
  const workspaces: ClipWorkspace[] = [];
  const mounted: { mp: string; ws: ClipWorkspace }[] = [];

  async function workspace(name: string): Promise<ClipWorkspace> {
    const ws = await clipWorkspace(name);
    workspaces.push(ws);
    return ws;
  }
  const image = (repo: string) => `${registry.host}/${repo}:busybox`;
  const arm = () => multi.images.find((i) => i.platform.architecture === 'arm64')!;
  const amd = () => multi.images.find((i) => i.platform.architecture === 'amd64')!;

  before(async () => {
    sweepClipMounts();
    registry = await startRegistry();
    busybox = await buildBusyboxImage();
    multi = await buildMultiPlatformImage({ tag: 'multi', images: twoPlatformImages() });
    for (const repo of ['ri/busybox', 'ri/mixed', 'ri/mixed2']) await pushImage(busybox.dir, busybox.tag, registry.host, repo);
    await pushImage(multi.dir, multi.tag, registry.host, 'ri/multi');
  });

  after(async () => {
    for (const { mp, ws } of mounted) if (isMounted(mp)) await runClip(['umount', mp], { env: ws.env });
    sweepClipMounts();
    await registry?.stop();
    for (const d of [busybox?.dir, multi?.dir]) if (d) await rm(d, { recursive: true, force: true });
    for (const ws of workspaces) await rm(ws.dir, { recursive: true, force: true });
  });

  it("clip index --push: the artifact refers to the image manifest; the referrers tag lists it after another tool's entry, kept as it was; a second push adds nothing", async () => {
    const ws = await workspace('pushnode');
    const other = await pushOtherToolReferrer(registry.host, 'ri/busybox', { digest: busybox.manifestDigest, size: busybox.manifestSize });

    const r = await runClip(['index', image('ri/busybox'), '--push', '--window-every', '8MiB'], { env: ws.env });
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout.toString(), /pushed: +127\.0\.0\.1:\d+\/ri\/busybox@sha256:[0-9a-f]{64}/);
    const stored = storedPath(ws, busybox.manifestDigest);
    const clipBytes = await readFile(stored);

    const tag = await getJson(registry.host, 'ri/busybox', tagOf(busybox.manifestDigest));
    assert.equal(tag.status, 200);
    const entries = tag.json!['manifests'] as Record<string, unknown>[];
    assert.equal(entries.length, 2, JSON.stringify(entries));
    assert.deepEqual(entries[0], other, "the other tool's entry is kept exactly");
    const mine = entries[1]!;
    assert.equal(mine['artifactType'], CLIP_TYPE);
    const notes = mine['annotations'] as Record<string, string>;
    assert.ok(!Number.isNaN(Date.parse(notes['org.opencontainers.image.created']!)), 'created is a date');
    assert.match(notes['dev.clip.version']!, /\d+\.\d+/);
    assert.equal(notes['dev.clip.span-size'], String(DEFAULT_SPAN_SIZE));
    assert.equal(notes['dev.clip.window-every'], String(8 << 20));
    assert.equal(notes['dev.clip.index.digest'], sha256(clipBytes));

    const artifact = await getJson(registry.host, 'ri/busybox', mine['digest'] as string);
    assert.equal(artifact.status, 200);
    const a = artifact.json!;
    assert.equal(a['artifactType'], CLIP_TYPE);
    assert.deepEqual(a['subject'], { mediaType: busybox.manifestMediaType, digest: busybox.manifestDigest, size: busybox.manifestSize });
    assert.deepEqual(a['config'], { mediaType: 'application/vnd.oci.empty.v1+json', digest: sha256(Buffer.from('{}')), size: 2 });
    const layers = a['layers'] as { digest: string; size: number }[];
    assert.equal(layers.length, 1);
    assert.equal(layers[0]!.digest, sha256(clipBytes), 'the one blob is the .clip file clip index kept');
    const blob = await httpGet(`http://${registry.host}/v2/ri/busybox/blobs/${layers[0]!.digest}`);
    assert.ok(blob.body.equals(clipBytes));

    const again = await runClip(['push', stored], { env: ws.env });
    assert.equal(again.code, 0, again.stderr);
    assert.match(again.stdout.toString(), /already listed/);
    const after2 = await getJson(registry.host, 'ri/busybox', tagOf(busybox.manifestDigest));
    assert.deepEqual(after2.json, tag.json, 'pushing the same index again leaves the list as it was');

    const api = await httpGet(`http://${registry.host}/v2/ri/busybox/referrers/${busybox.manifestDigest}`);
    assert.equal(api.status, 404, 'this registry has no referrers API: the tag schema was the way');
  });

  it('a fresh node: clip mount IMAGE --rootfs finds the index among the referrers, stores it, and runc runs a container on it', async () => {
    const pushed = storedPath(workspaces[0]!, busybox.manifestDigest);
    const ws = await workspace('freshnode');
    const rootfs = path.join(ws.dir, 'rootfs');
    await mkdir(rootfs);
    const m = await runClip(['mount', image('ri/busybox'), '--rootfs', rootfs, '--index-only'], { env: ws.env });
    assert.equal(m.code, 0, m.stderr);
    mounted.push({ mp: rootfs, ws });
    try {
      assert.doesNotMatch(m.stderr, /indexing/, 'nothing was indexed here');
      const stored = storedPath(ws, busybox.manifestDigest);
      assert.ok((await readFile(stored)).equals(await readFile(pushed)), "the downloaded index is the pushed one, in this node's store");
      const c = await runContainer(rootfs, ['/bin/sh', '-c', 'cat /etc/hello && wc -c < /usr/share/random.bin']);
      assert.equal(c.code, 0, c.stderr);
      assert.equal(c.stdout, `${HELLO}${2 * 1024 * 1024}\n`);
      // The runtime's call shape (`clip mount X --rootfs DIR`) with a reference, the daemon running: served from the store.
      const second = path.join(ws.dir, 'rootfs2');
      await mkdir(second);
      const m2 = await runClip(['mount', image('ri/busybox'), '--rootfs', second], { env: ws.env });
      assert.equal(m2.code, 0, m2.stderr);
      mounted.push({ mp: second, ws });
      assert.equal(await readFile(path.join(second, 'etc/hello'), 'utf8'), HELLO);
      const u2 = await runClip(['umount', second], { env: ws.env });
      assert.equal(u2.code, 0, u2.stderr);
    } finally {
      const u = await runClip(['umount', rootfs], { env: ws.env });
      assert.equal(u.code, 0, u.stderr);
    }
    // ls and cat take the reference too (now from the local store).
    const cat = await runClip(['cat', image('ri/busybox'), '/etc/hello', '--index-only'], { env: ws.env });
    assert.equal(cat.code, 0, cat.stderr);
    assert.equal(cat.stdout.toString(), HELLO);
  });

  it('an index pushed to another repository that holds the image: a node finds it there and reads the blobs from there', async () => {
    await pushImage(busybox.dir, busybox.tag, registry.host, 'ri/copy');
    const made = storedPath(workspaces[0]!, busybox.manifestDigest); // indexed from ri/busybox
    assert.equal((await loadIndex(made)).image.location, `docker://${registry.host}/ri/busybox`);
    const p = await runClip(['push', made, `${registry.host}/ri/copy`], { env: workspaces[0]!.env });
    assert.equal(p.code, 0, p.stderr);
    const ws = await workspace('copynode');
    const cat = await runClip(['cat', image('ri/copy'), '/usr/share/random.bin', '--index-only'], { env: ws.env });
    assert.equal(cat.code, 0, cat.stderr);
    assert.equal(cat.stdout.length, 2 * 1024 * 1024);
    const e = busybox.layers[1]!.tarLayout.find((x) => x.path.endsWith('usr/share/random.bin'))!;
    assert.ok(cat.stdout.equals(busybox.layers[1]!.tar.subarray(e.dataOffset, e.dataOffset + e.size)));
    const stored = await loadIndex(storedPath(ws, busybox.manifestDigest));
    assert.equal(stored.image.location, `docker://${registry.host}/ri/copy`, 'the stored index reads from the repository it was found in');
    assert.equal(stored.image.manifestDigest, busybox.manifestDigest);
  });

  it('a multi-platform image: the subject is the platform manifest that was indexed, and a node picks it by --platform', async () => {
    const ws = await workspace('multipush');
    const r = await runClip(['index', `${registry.host}/ri/multi:multi`, '--platform', 'linux/arm64/v8', '--push'], { env: ws.env });
    assert.equal(r.code, 0, r.stderr);
    const tag = await getJson(registry.host, 'ri/multi', tagOf(arm().manifestDigest));
    assert.equal(tag.status, 200);
    assert.equal((tag.json!['manifests'] as { artifactType: string }[])[0]!.artifactType, CLIP_TYPE);
    assert.equal((await getJson(registry.host, 'ri/multi', tagOf(multi.indexDigest))).status, 404, 'nothing refers to the image index');

    const fresh = await workspace('multinode');
    const cat = await runClip(['cat', `${registry.host}/ri/multi:multi`, '/platform', '--platform', 'linux/arm64/v8', '--index-only'], {
      env: fresh.env,
    });
    assert.equal(cat.code, 0, cat.stderr);
    assert.equal(cat.stdout.toString(), 'linux/arm64\n');
  });

  it('--index-only fails when no index exists; without it clip indexes the image on the spot and says that it reads it whole', async () => {
    const ws = await workspace('noindex');
    const ref = `${registry.host}/ri/multi:multi`;
    const only = await runClip(['ls', ref, '--platform', 'linux/amd64', '--index-only'], { env: ws.env });
    assert.equal(only.code, 1);
    assert.match(
      only.stderr,
      /^clip: no clip index for 127\.0\.0\.1:\d+\/ri\/multi@sha256:[0-9a-f]{64}: none in the local index store .*nor among its referrers in the registry; .*\(--build\)$/m,
    );
    assert.equal(await exists(storedPath(ws, amd().manifestDigest)), false);

    const built = await runClip(['ls', ref, '--platform', 'linux/amd64'], { env: ws.env });
    assert.equal(built.code, 0, built.stderr);
    assert.match(built.stderr, /indexing it now \(this reads the whole image once\)/);
    assert.match(built.stdout.toString(), /^platform$/m);
    assert.equal(await exists(storedPath(ws, amd().manifestDigest)), true, 'the index built is kept in the store');
  });

  it('of several clip indexes for one manifest, a node takes the newest (by its created annotation)', async () => {
    await pushImage(busybox.dir, busybox.tag, registry.host, 'ri/two');
    const ws = await workspace('twopush');
    const first = await runClip(['index', image('ri/two'), '--push'], { env: ws.env });
    assert.equal(first.code, 0, first.stderr);
    const second = await runClip(['index', image('ri/two'), '--push', '--span-size', '256K'], { env: ws.env });
    assert.equal(second.code, 0, second.stderr);
    const tag = await getJson(registry.host, 'ri/two', tagOf(busybox.manifestDigest));
    assert.deepEqual(
      (tag.json!['manifests'] as { annotations: Record<string, string> }[]).map((m) => m.annotations['dev.clip.span-size']),
      [String(DEFAULT_SPAN_SIZE), String(256 * 1024)],
      'both are listed, the older first',
    );
    const fresh = await workspace('twonode');
    const r = await runClip(['ls', image('ri/two'), '--index-only'], { env: fresh.env });
    assert.equal(r.code, 0, r.stderr);
    assert.equal((await loadIndex(storedPath(fresh, busybox.manifestDigest))).image.spanSize, 256 * 1024);
  });

  it('a referrers tag that holds something other than an image index is neither used nor replaced', async () => {
    const ws = await workspace('weirdtag');
    await pushImage(busybox.dir, busybox.tag, registry.host, 'ri/weird');
    const raw = await getJson(registry.host, 'ri/weird', busybox.tag);
    const manifestBytes = Buffer.from(JSON.stringify(raw.json));
    await pushRawManifest(registry.host, 'ri/weird', tagOf(busybox.manifestDigest), manifestBytes, OCI_MANIFEST);
    const before = await httpRequest('GET', `http://${registry.host}/v2/ri/weird/manifests/${tagOf(busybox.manifestDigest)}`, {
      Accept: OCI_MANIFEST,
    });
    const r = await runClip(['index', image('ri/weird'), '--push'], { env: ws.env });
    assert.equal(r.code, 1);
    assert.match(
      r.stderr,
      /referrers tag sha256-[0-9a-f]{64} holds something other than an OCI image index; refusing to use or replace it/,
    );
    const after = await httpRequest('GET', `http://${registry.host}/v2/ri/weird/manifests/${tagOf(busybox.manifestDigest)}`, {
      Accept: OCI_MANIFEST,
    });
    assert.ok(after.body.equals(before.body), 'the tag is as it was');
  });

  it('an index pushed for one manifest is never used for another: each mismatch is refused with a message naming both digests', async () => {
    const armIndex = storedPath(
      workspaces.find((w) => w.dir.includes('clip-multipush-'))!,
      arm().manifestDigest,
    );
    const bb = busybox.manifestDigest;
    const armDigest = arm().manifestDigest;

    // (1) An artifact whose subject is busybox's manifest but whose .clip was made from another manifest.
    const client = new RegistryClient({ registry: registry.host, repository: 'ri/mixed' });
    try {
      await pushBlob(client, OCI_EMPTY_DATA);
      const blob = await pushBlob(client, await readFile(armIndex));
      const annotations = { 'org.opencontainers.image.created': new Date().toISOString() };
      const manifest = artifactManifest({
        subject: { mediaType: busybox.manifestMediaType, digest: bb, size: busybox.manifestSize },
        blob,
        annotations,
      });
      const pushed = await pushManifest(client, sha256(manifest), manifest, OCI_MANIFEST);
      assert.equal(await addReferrer(client, bb, referrerEntry(manifest, pushed.digest, annotations)), 'tag');
    } finally {
      await client.close();
    }
    const ws1 = await workspace('mismatch');
    const r1 = await runClip(['ls', image('ri/mixed'), '--index-only'], { env: ws1.env });
    assert.equal(r1.code, 1);
    assert.ok(r1.stderr.includes(`was made from image manifest ${armDigest}, not ${bb}`), r1.stderr);
    assert.equal(await exists(storedPath(ws1, bb)), false, 'nothing was stored');

    // (2) A referrers entry (written by hand) naming an artifact made for another subject.
    const other = new RegistryClient({ registry: registry.host, repository: 'ri/mixed2' });
    try {
      await pushBlob(other, OCI_EMPTY_DATA);
      const blob = await pushBlob(other, await readFile(armIndex));
      const annotations = { 'org.opencontainers.image.created': new Date().toISOString() };
      const manifest = artifactManifest({
        subject: { mediaType: OCI_MANIFEST, digest: armDigest, size: arm().manifestSize },
        blob,
        annotations,
      });
      const pushed = await pushManifest(other, sha256(manifest), manifest, OCI_MANIFEST);
      const list = Buffer.from(
        JSON.stringify({ schemaVersion: 2, mediaType: OCI_INDEX, manifests: [referrerEntry(manifest, pushed.digest, annotations)] }),
      );
      await pushManifest(other, tagOf(bb), list, OCI_INDEX);
    } finally {
      await other.close();
    }
    const r2 = await runClip(['cat', image('ri/mixed2'), '/etc/hello', '--index-only'], { env: ws1.env });
    assert.equal(r2.code, 1);
    assert.ok(r2.stderr.includes(`was pushed for manifest ${armDigest}, not for ${bb}`), r2.stderr);

    // (3) An index that names busybox's manifest but reads a layer blob the image does not have.
    await pushImage(busybox.dir, busybox.tag, registry.host, 'ri/mixed3');
    const good = await loadIndex(storedPath(workspaces[0]!, bb));
    const swapped = encodeIndex({
      ...good,
      layers: [{ ...good.layers[0]!, digest: 'sha256:' + 'cd'.repeat(32) }, ...good.layers.slice(1)],
    });
    const third = new RegistryClient({ registry: registry.host, repository: 'ri/mixed3' });
    try {
      await pushBlob(third, OCI_EMPTY_DATA);
      const blob = await pushBlob(third, swapped);
      const annotations = { 'org.opencontainers.image.created': new Date().toISOString() };
      const manifest = artifactManifest({
        subject: { mediaType: busybox.manifestMediaType, digest: bb, size: busybox.manifestSize },
        blob,
        annotations,
      });
      const pushed = await pushManifest(third, sha256(manifest), manifest, OCI_MANIFEST);
      await addReferrer(third, bb, referrerEntry(manifest, pushed.digest, annotations));
    } finally {
      await third.close();
    }
    const r4 = await runClip(['ls', image('ri/mixed3'), '--index-only'], { env: ws1.env });
    assert.equal(r4.code, 1);
    assert.match(r4.stderr, /names manifest sha256:[0-9a-f]{64} but lists other layers than it has/);
    assert.equal(await exists(storedPath(ws1, bb)), false, 'nothing was stored');

    // (4) A local store file under busybox's digest that indexes another manifest.
    const ws3 = await workspace('badstore');
    const planted = storedPath(ws3, bb);
    await mkdir(path.dirname(planted), { recursive: true });
    await copyFile(armIndex, planted);
    const rootfs = path.join(ws3.dir, 'rootfs');
    await mkdir(rootfs);
    const r3 = await runClip(['mount', image('ri/busybox'), '--rootfs', rootfs], { env: ws3.env });
    assert.equal(r3.code, 1);
    assert.ok(r3.stderr.includes(`was made from image manifest ${armDigest}, not ${bb}`), r3.stderr);
    assert.equal(isMounted(rootfs), false);
  });
});

describe('indexes in the registry: the referrers API (a fake registry that has it)', () => {
  let fake: ReferrersRegistry;
  let busybox: BuiltImage;
  const workspaces: ClipWorkspace[] = [];

  before(async () => {
    fake = await startReferrersRegistry();
    busybox = await buildBusyboxImage();
    await httpPushImage(busybox.dir, busybox.tag, fake.host, 'api/busybox');
  });

  after(async () => {
    await fake?.stop();
    if (busybox) await rm(busybox.dir, { recursive: true, force: true });
    for (const ws of workspaces) await rm(ws.dir, { recursive: true, force: true });
  });

  it('a registry that answers the push with OCI-Subject keeps the list: no referrers tag is written, and a fresh node finds the index through GET /referrers/', async () => {
    const ws = await clipWorkspace('apipush');
    workspaces.push(ws);
    const ref = `${fake.host}/api/busybox:busybox`;
    const r = await runClip(['index', ref, '--push'], { env: ws.env });
    assert.equal(r.code, 0, r.stderr);
    const puts = fake.log.filter((l) => l.startsWith('PUT /v2/api/busybox/manifests/'));
    assert.ok(
      puts.some((l) => /manifests\/sha256:[0-9a-f]{64}$/.test(l)),
      puts.join('\n'),
    );
    assert.ok(
      !fake.log.some((l) => l.includes(`/manifests/${tagOf(busybox.manifestDigest)}`)),
      'the referrers tag was never read or written',
    );

    const fresh = await clipWorkspace('apinode');
    workspaces.push(fresh);
    const before = fake.log.length;
    const cat = await runClip(['cat', ref, '/etc/hello', '--index-only'], { env: fresh.env });
    assert.equal(cat.code, 0, cat.stderr);
    assert.equal(cat.stdout.toString(), HELLO);
    const served = fake.log.slice(before);
    assert.ok(served.includes(`GET /v2/api/busybox/referrers/${busybox.manifestDigest}`), served.join('\n'));
    assert.ok((await readFile(storedPath(fresh, busybox.manifestDigest))).equals(await readFile(storedPath(ws, busybox.manifestDigest))));
  });

  it('with token auth, the push asks for a pull,push token and the lookup needs only pull', async () => {
    const img = await buildBusyboxImage(
      [{ type: 'file', path: 'etc/tokens', data: 'tokens\n', mtime: { sec: 1_700_000_000, nsec: 0 } }],
      'tokens',
    );
    try {
      await httpPushImage(img.dir, img.tag, fake.host, 'api/tokens');
      fake.requireTokens = true;
      const ws = await clipWorkspace('tokenpush');
      workspaces.push(ws);
      const ref = `${fake.host}/api/tokens:tokens`;
      const r = await runClip(['index', ref, '--push'], { env: ws.env });
      assert.equal(r.code, 0, r.stderr);
      assert.ok(fake.tokenScopes.includes('repository:api/tokens:pull,push'), fake.tokenScopes.join(' '));
      const fresh = await clipWorkspace('tokennode');
      workspaces.push(fresh);
      const asked = fake.tokenScopes.length;
      const cat = await runClip(['cat', ref, '/etc/tokens', '--index-only'], { env: fresh.env });
      assert.equal(cat.code, 0, cat.stderr);
      assert.equal(cat.stdout.toString(), 'tokens\n');
      assert.deepEqual(new Set(fake.tokenScopes.slice(asked)), new Set(['repository:api/tokens:pull']), 'reading asks for pull only');
    } finally {
      fake.requireTokens = false;
      await rm(img.dir, { recursive: true, force: true });
    }
  });

  it('an artifact whose .clip blob is larger than clip accepts is refused before any of it is fetched', async () => {
    const other = await buildBusyboxImage(
      [{ type: 'file', path: 'etc/other', data: 'other\n', mtime: { sec: 1_700_000_000, nsec: 0 } }],
      'other',
    );
    try {
      await httpPushImage(other.dir, other.tag, fake.host, 'api/big');
      const client = new RegistryClient({ registry: fake.host, repository: 'api/big' });
      try {
        await pushBlob(client, OCI_EMPTY_DATA);
        const manifest = artifactManifest({
          subject: { mediaType: other.manifestMediaType, digest: other.manifestDigest, size: other.manifestSize },
          blob: { digest: 'sha256:' + 'ab'.repeat(32), size: 4 * 1024 ** 3 },
          annotations: {},
        });
        await pushManifest(client, sha256(manifest), manifest, OCI_MANIFEST);
      } finally {
        await client.close();
      }
      const ws = await clipWorkspace('bigblob');
      workspaces.push(ws);
      const before = fake.log.length;
      const r = await runClip(['ls', `${fake.host}/api/big:other`, '--index-only'], { env: ws.env });
      assert.equal(r.code, 1);
      assert.match(r.stderr, /its \.clip blob is 4294967296 bytes, more than the \d+ clip accepts/);
      assert.ok(!fake.log.slice(before).some((l) => l.includes('/blobs/sha256:' + 'ab'.repeat(32))), 'the blob was never asked for');
    } finally {
      await rm(other.dir, { recursive: true, force: true });
    }
  });
});
