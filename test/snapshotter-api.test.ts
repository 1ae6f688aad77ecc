// The snapshots API clip's daemon serves, called directly over its socket as
// containerd's proxy plugin calls it: containerd's semantics and error codes
// for every call, the overlayfs layout (a real overlay mounted from what
// Mounts returns), metadata that survives restarts, remote commits only for
// an index that names the manifest, and image mounts brought back after the
// whole daemon restarted.

import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { copyFile, mkdir, readFile, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import * as grpc from '@grpc/grpc-js';
import { ContainerdClient, grpcCode } from '../src/containerd/client.js';
import { chainIds } from '../src/containerd/pull.js';
import { isMounted } from '../src/fuse/index.js';
import { buildBusyboxImage, HELLO } from './helpers/busybox-image.js';
import { runClip } from './helpers/cli.js';
import { startClipDaemon, type ClipDaemon } from './helpers/clip-daemon.js';
import type { BuiltImage } from './helpers/image-builder.js';
import { clipWorkspace, sweepClipMounts, type ClipWorkspace } from './helpers/mounts.js';
import { pushImage, startRegistry, type RegistryHandle } from './helpers/registry.js';

const SVC = 'snapshots.v1.Snapshots';
type Mount = { type: string; source: string; options: string[] };
type Info = { name: string; parent: string; kind: string; labels: Record<string, string> };

describe('the snapshots API of clip daemon', () => {
  let registry: RegistryHandle;
  let ws: ClipWorkspace;
  let daemon: ClipDaemon;
  let img: BuiltImage;
  let ref: string;
  let api: ContainerdClient;

  const call = (method: string, req: Record<string, unknown>) => api.call(SVC, method, { snapshotter: 'clip', ...req });
  const mountsOf = async (method: string, req: Record<string, unknown>): Promise<Mount[]> => (await call(method, req))['mounts'] as Mount[];
  const info = async (key: string): Promise<Info> => (await call('Stat', { key }))['info'] as Info;
  async function code(p: Promise<unknown>): Promise<number | undefined> {
    try {
      await p;
      return grpc.status.OK;
    } catch (e) {
      return grpcCode(e);
    }
  }
  async function list(filters: string[]): Promise<string[]> {
    const msgs = await api.stream(SVC, 'List', { snapshotter: 'clip', filters });
    return msgs.flatMap((m) => (m['info'] as Info[]).map((i) => i.name)).sort();
  }
  const snapDir = (...p: string[]): string => path.join(ws.env['CLIP_DATA_DIR']!, 'snapshotter', 'snapshots', ...p);
  /** The snapshot directory a bind mount's source is in. */
  const fsOf = (m: Mount[]): string => m[0]!.source;

  async function restartDaemon(): Promise<void> {
    api.close();
    await daemon.stop();
    daemon = await startClipDaemon(ws.env);
    api = new ContainerdClient(daemon.snapshotterSocket, 'unused');
  }

  function remoteLabels(layer: number, manifestDigest = img.manifestDigest): Record<string, string> {
    const chain = chainIds(img.layers.map((l) => l.diffId));
    return {
      'containerd.io/snapshot.ref': chain[layer]!,
      'containerd.io/snapshot/cri.image-ref': ref,
      'containerd.io/snapshot/cri.manifest-digest': manifestDigest,
      'containerd.io/snapshot/cri.layer-digest': img.layers[layer]!.digest,
      'containerd.io/snapshot/cri.image-layers': img.layers
        .slice(layer)
        .map((l) => l.digest)
        .join(','),
    };
  }

  before(async () => {
    sweepClipMounts();
    registry = await startRegistry();
    ws = await clipWorkspace('snapapi');
    img = await buildBusyboxImage([], 'api');
    ref = (await pushImage(img.dir, img.tag, registry.host, 'snapapi/bb')).reference;
    daemon = await startClipDaemon(ws.env);
    api = new ContainerdClient(daemon.snapshotterSocket, 'unused');
  });

  after(async () => {
    api?.close();
    await daemon?.stop();
    sweepClipMounts();
    await registry?.stop();
    if (img) await rm(img.dir, { recursive: true, force: true });
    if (ws) await rm(ws.dir, { recursive: true, force: true });
  });

  it('has containerd semantics and error codes for every call, and mounts that work', async () => {
    const first = await mountsOf('Prepare', { key: 'ns/1/a', parent: '', labels: {} });
    assert.deepEqual(
      first.map((m) => [m.type, m.options]),
      [['bind', ['rw', 'rbind']]],
    );
    await writeFile(path.join(fsOf(first), 'base-file'), Buffer.alloc(64 * 1024, 7));
    await call('Commit', { name: 'ns/1/base', key: 'ns/1/a', labels: { keep: 'yes' } });
    assert.equal((await info('ns/1/base')).kind, 'COMMITTED');
    assert.equal(await code(info('ns/1/a')), grpc.status.NOT_FOUND, 'the active key is gone after Commit');
    assert.equal(await code(call('Mounts', { key: 'ns/1/base' })), grpc.status.FAILED_PRECONDITION);

    const active = await mountsOf('Prepare', { key: 'ns/1/c1', parent: 'ns/1/base', labels: {} });
    assert.equal(active[0]!.type, 'overlay');
    const opts = active[0]!.options;
    assert.ok(opts.some((o) => o.startsWith('upperdir=')) && opts.some((o) => o.startsWith('workdir=')), opts.join(','));
    assert.deepEqual(await mountsOf('Mounts', { key: 'ns/1/c1' }), active);
    // Mounted as containerd would: the committed layer below, writes in the upper dir.
    const target = path.join(ws.dir, 'rootfs');
    await mkdir(target, { recursive: true });
    execFileSync('mount', ['-t', 'overlay', 'overlay', '-o', opts.join(','), target]);
    try {
      assert.equal((await readFile(path.join(target, 'base-file'))).length, 64 * 1024);
      await writeFile(path.join(target, 'new-file'), 'upper\n');
    } finally {
      execFileSync('umount', [target]);
    }
    const upper = opts.find((o) => o.startsWith('upperdir='))!.slice('upperdir='.length);
    assert.equal(await readFile(path.join(upper, 'new-file'), 'utf8'), 'upper\n');

    const view = await mountsOf('View', { key: 'ns/1/v1', parent: 'ns/1/base', labels: {} });
    assert.deepEqual(
      view.map((m) => [m.type, m.options]),
      [['bind', ['ro', 'rbind']]],
    );
    assert.equal(view[0]!.source, fsOf(first), 'a view of one layer is that layer, read-only');
    assert.equal((await info('ns/1/v1')).kind, 'VIEW');

    assert.equal(await code(call('Prepare', { key: 'ns/1/c1', parent: '', labels: {} })), grpc.status.ALREADY_EXISTS);
    assert.equal(await code(call('Prepare', { key: 'ns/1/x', parent: 'ns/1/missing', labels: {} })), grpc.status.NOT_FOUND);
    assert.equal(await code(call('Prepare', { key: 'ns/1/x', parent: 'ns/1/c1', labels: {} })), grpc.status.INVALID_ARGUMENT);
    assert.equal(await code(call('Prepare', { key: '', parent: '', labels: {} })), grpc.status.INVALID_ARGUMENT);
    assert.equal(
      await code(call('Prepare', { key: 'ns/1/x', parent: '', labels: { big: 'x'.repeat(5000) } })),
      grpc.status.INVALID_ARGUMENT,
    );
    assert.equal(await code(call('Commit', { name: 'ns/1/other', key: 'ns/1/v1', labels: {} })), grpc.status.FAILED_PRECONDITION);
    assert.equal(await code(call('Commit', { name: 'ns/1/base', key: 'ns/1/c1', labels: {} })), grpc.status.ALREADY_EXISTS);
    assert.equal(await code(call('Commit', { name: 'ns/1/y', key: 'ns/1/none', labels: {} })), grpc.status.NOT_FOUND);
    assert.equal(await code(call('Remove', { key: 'ns/1/base' })), grpc.status.FAILED_PRECONDITION, 'it has children');
    assert.equal(await code(call('Remove', { key: 'ns/1/none' })), grpc.status.NOT_FOUND);

    const updated = (
      await call('Update', { info: { name: 'ns/1/base', labels: { extra: '1' } }, update_mask: { paths: ['labels.extra'] } })
    )['info'] as Info;
    assert.deepEqual(updated.labels, { keep: 'yes', extra: '1' });
    assert.equal(
      await code(call('Update', { info: { name: 'ns/1/base', parent: 'x' }, update_mask: { paths: ['parent'] } })),
      grpc.status.INVALID_ARGUMENT,
    );

    const usage = await call('Usage', { key: 'ns/1/base' });
    assert.ok(Number(usage['size']) >= 64 * 1024 && Number(usage['inodes']) >= 1, JSON.stringify(usage));

    assert.deepEqual(await list([]), ['ns/1/base', 'ns/1/c1', 'ns/1/v1']);
    assert.deepEqual(await list(['labels."keep"==yes']), ['ns/1/base']);
    assert.deepEqual(await list(['parent=="ns/1/base",kind==Active']), ['ns/1/c1']);
    assert.deepEqual(await list(['kind==View', 'name~=^ns/1/b']), ['ns/1/base', 'ns/1/v1'], 'filters are ORed, terms ANDed');
    assert.equal(await code(list(['labels."keep==yes'])), grpc.status.INVALID_ARGUMENT);

    // Metadata outlives the serving process and the whole daemon.
    const pid = (await daemon.ps()).daemon.pid;
    process.kill(pid, 'SIGKILL');
    const deadline = Date.now() + 30_000;
    while ((await daemon.ps().catch(() => undefined))?.daemon.pid === pid || (await code(info('ns/1/base'))) !== grpc.status.OK) {
      assert.ok(Date.now() < deadline, 'a new serving process answers');
      await new Promise((r) => setTimeout(r, 200));
    }
    assert.deepEqual((await info('ns/1/base')).labels, { keep: 'yes', extra: '1' });
    await restartDaemon();
    assert.equal((await info('ns/1/c1')).parent, 'ns/1/base');

    // Cleanup removes what no snapshot owns; Remove takes the directory with it.
    await mkdir(snapDir('999999', 'fs'), { recursive: true });
    await call('Cleanup', {});
    assert.ok(!existsSync(snapDir('999999')));
    for (const key of ['ns/1/v1', 'ns/1/c1', 'ns/1/base']) await call('Remove', { key });
    assert.deepEqual(await list([]), []);
    assert.ok(!existsSync(path.dirname(fsOf(first))), 'the directory went with the snapshot');
  });

  it('commits an indexed image remotely only when the index names the manifest, and restores its mount after a daemon restart', async () => {
    const store = path.join(ws.env['CLIP_DATA_DIR']!, 'indexes', 'sha256');
    await mkdir(store, { recursive: true });
    const index = path.join(store, `${img.manifestDigest.slice('sha256:'.length)}.clip`);
    const r = await runClip(['index', ref, '-o', index], { env: ws.env });
    assert.equal(r.code, 0, r.stderr);
    const chain = chainIds(img.layers.map((l) => l.diffId));

    // The same index filed under another manifest's digest is not trusted for it: an ordinary Prepare.
    const other = `sha256:${'ab'.repeat(32)}`;
    await copyFile(index, path.join(store, `${'ab'.repeat(32)}.clip`));
    const ordinary = await mountsOf('Prepare', { key: 'ns/2/extract-x', parent: '', labels: remoteLabels(0, other) });
    assert.equal(ordinary[0]!.type, 'bind');
    await call('Remove', { key: 'ns/2/extract-x' });
    // Malformed labels: an ordinary Prepare too.
    const bad = { ...remoteLabels(0), 'containerd.io/snapshot/cri.layer-digest': '../../etc' };
    assert.equal((await mountsOf('Prepare', { key: 'ns/2/extract-y', parent: '', labels: bad }))[0]!.type, 'bind');
    await call('Remove', { key: 'ns/2/extract-y' });

    assert.equal(await code(call('Prepare', { key: 'ns/2/extract-0', parent: '', labels: remoteLabels(0) })), grpc.status.ALREADY_EXISTS);
    assert.equal(
      await code(call('Prepare', { key: 'ns/2/extract-1', parent: chain[0], labels: remoteLabels(1) })),
      grpc.status.ALREADY_EXISTS,
    );
    // containerd then finds the target by this Walk.
    assert.deepEqual(await list([`labels."containerd.io/snapshot.ref"==${chain[1]},parent=="${chain[0]}"`]), [chain[1]]);
    const topInfo = await info(chain[1]!);
    assert.equal(topInfo.kind, 'COMMITTED');
    assert.equal(topInfo.labels['containerd.io/snapshot/clip.remote'], 'image');
    assert.equal((await info(chain[0]!)).labels['containerd.io/snapshot/clip.remote'], 'placeholder');

    const c = await mountsOf('Prepare', { key: 'ns/2/ctr', parent: chain[1], labels: {} });
    const lower = c[0]!.options.find((o) => o.startsWith('lowerdir='))!.slice('lowerdir='.length);
    assert.ok(!lower.includes(':'), `one lower dir, the image's merged mount: ${lower}`);
    assert.equal(await readFile(path.join(lower, 'etc/hello'), 'utf8'), HELLO);

    // The whole daemon stopped (its mounts with it) and started: the image mount is back.
    await restartDaemon();
    assert.ok(isMounted(lower), 'the image mount is restored');
    assert.equal(await readFile(path.join(lower, 'etc/hello'), 'utf8'), HELLO);

    for (const key of ['ns/2/ctr', chain[1]!, chain[0]!]) await call('Remove', { key });
    assert.ok(!isMounted(lower), 'removing the top layer unmounts the image');
    assert.deepEqual((await daemon.ps()).mounts, []);
  });
});
