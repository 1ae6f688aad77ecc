// The node daemon with real mounts and real runc: one serving process for
// every image, `clip ps`, rootfs that share an image, a container that keeps
// reading while the serving process is SIGKILLed and upgraded (no error, no
// wrong byte), SIGTERM, the clean-up after a daemon killed outright, and the
// settings a served image cannot take.

import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdir, readFile, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { isMounted, readMounts } from '../src/fuse/index.js';
import { indexImage } from '../src/indexer/index-image.js';
import type { PsReply } from '../src/daemon/api.js';
import { buildBusyboxImage } from './helpers/busybox-image.js';
import { runClip } from './helpers/cli.js';
import type { BuiltImage } from './helpers/image-builder.js';
import { alive, clipWorkspace, sweepClipMounts, type ClipWorkspace } from './helpers/mounts.js';
import { createPrng } from './helpers/prng.js';
import { pushImage, startRegistry, type RegistryHandle } from './helpers/registry.js';
import { runContainer } from './helpers/runc.js';
import type { TarEntrySpec } from './helpers/tar-writer.js';

const BIN = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../bin/clip.js');
const T = { sec: 1_700_000_000, nsec: 0 };
/** Files the reading container cycles through (each read after the page cache is dropped goes to FUSE). */
const FILES = 48;

async function waitFor(cond: () => boolean | Promise<boolean>, what: string, ms = 20_000): Promise<void> {
  const until = Date.now() + ms;
  while (!(await cond())) {
    if (Date.now() > until) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

function extraFiles(name: string, count: number, size: number): { entries: TarEntrySpec[]; sums: Map<string, string> } {
  const prng = createPrng(name.length * 7919 + count);
  const entries: TarEntrySpec[] = [{ type: 'dir', path: `data-${name}`, mode: 0o755, mtime: T }];
  const sums = new Map<string, string>();
  for (let i = 0; i < count; i++) {
    const data = prng.bytes(size);
    const p = `data-${name}/f${String(i).padStart(3, '0')}`;
    entries.push({ type: 'file', path: p, mode: 0o644, data, mtime: T });
    sums.set(`/${p}`, createHash('sha256').update(data).digest('hex'));
  }
  return { entries, sums };
}

describe('clip daemon', () => {
  let registry: RegistryHandle;
  let ws: ClipWorkspace;
  const indexes = new Map<string, string>();
  const built: BuiltImage[] = [];
  let sums: Map<string, string>;
  const daemons: ChildProcess[] = [];

  const clip = (args: string[], env: NodeJS.ProcessEnv = ws.env) => runClip(args, { env });
  async function ps(env: NodeJS.ProcessEnv = ws.env): Promise<PsReply> {
    const r = await clip(['ps', '--json'], env);
    assert.equal(r.code, 0, r.stderr);
    return JSON.parse(r.stdout.toString()) as PsReply;
  }
  async function dir(name: string): Promise<string> {
    const d = path.join(ws.dir, name);
    await mkdir(d, { recursive: true });
    return d;
  }
  async function mountOk(args: string[], env: NodeJS.ProcessEnv = ws.env): Promise<void> {
    const r = await clip(['mount', ...args], env);
    assert.equal(r.code, 0, r.stderr);
  }
  async function umountOk(mp: string, env: NodeJS.ProcessEnv = ws.env): Promise<void> {
    const r = await clip(['umount', mp], env);
    assert.equal(r.code, 0, r.stderr);
  }
  /** A foreground `clip daemon` of its own state dir, as systemd would run it. */
  function startDaemon(env: NodeJS.ProcessEnv): ChildProcess {
    const child = spawn(process.execPath, [BIN, 'daemon'], { env: { ...process.env, ...env }, stdio: ['ignore', 'ignore', 'pipe'] });
    child.stderr.resume();
    daemons.push(child);
    return child;
  }

  before(async () => {
    sweepClipMounts();
    registry = await startRegistry();
    ws = await clipWorkspace('daemon');
    const reading = extraFiles('loop', FILES, 96 * 1024);
    sums = reading.sums;
    const variants: [string, TarEntrySpec[]][] = [
      ['a', reading.entries],
      ['b', extraFiles('b', 4, 4096).entries],
      ['c', extraFiles('c', 4, 4096).entries],
    ];
    for (const [name, extra] of variants) {
      const image = await buildBusyboxImage(extra, name);
      built.push(image);
      await pushImage(image.dir, image.tag, registry.host, `daemon/${name}`);
      const index = path.join(ws.dir, `${name}.clip`);
      // Small spans: the reading loop makes many distinct fetches.
      await indexImage(`${registry.host}/daemon/${name}:${image.tag}`, { output: index, spanSize: 256 * 1024 });
      indexes.set(name, index);
    }
  });

  after(async () => {
    for (const d of daemons) if (d.exitCode === null && d.signalCode === null) d.kill('SIGTERM');
    for (const d of daemons) if (d.exitCode === null && d.signalCode === null) await new Promise((r) => d.once('exit', r));
    sweepClipMounts();
    await registry?.stop();
    for (const image of built) await rm(image.dir, { recursive: true, force: true });
    if (ws) await rm(ws.dir, { recursive: true, force: true });
  });

  it('serves three images from one process; clip ps lists them; two rootfs of one image share its read-only mount', async () => {
    const mpA = await dir('mnt-a');
    const mpB = await dir('mnt-b');
    const r1 = await dir('rootfs-1');
    const r2 = await dir('rootfs-2');
    await mountOk([indexes.get('a')!, mpA]);
    await mountOk([indexes.get('b')!, mpB]);
    await mountOk([indexes.get('c')!, '--rootfs', r1]);
    await mountOk([indexes.get('c')!, '--rootfs', r2]);
    try {
      const p = await ps();
      assert.ok(alive(p.daemon.pid) && p.daemon.pid !== p.daemon.supervisor);
      assert.equal(p.mounts.length, 3, 'one entry per image');
      const c = p.mounts.find((m) => m.index === indexes.get('c'))!;
      assert.deepEqual(c.rootfs.sort(), [r1, r2].sort(), 'both rootfs are of the one served image');
      assert.match(c.image, new RegExp(`^${registry.host}/daemon/c@sha256:[0-9a-f]{64}$`));
      assert.deepEqual(p.mounts.find((m) => m.index === indexes.get('a'))!.mountpoints, [mpA]);
      // One FUSE connection for everything: every clip mount has the same device.
      const devices = new Set(
        readMounts()
          .filter((m) => m.fsType === 'fuse.clip' && m.mountPoint.startsWith(ws.dir))
          .map((m) => m.device),
      );
      assert.equal(devices.size, 1);
      for (const lower of readMounts().filter((m) => m.fsType === 'overlay' && (m.mountPoint === r1 || m.mountPoint === r2)))
        assert.match(lower.superOptions, new RegExp(`lowerdir=${c.mountpoint}`), 'both overlays stack on the image directory');
      assert.equal(await readFile(path.join(mpB, 'etc/hello'), 'utf8'), await readFile(path.join(r1, 'etc/hello'), 'utf8'));
      const run = await runContainer(r2, ['/bin/sh', '-c', 'cat /etc/hello']);
      assert.equal(run.code, 0, run.stderr);
      // The fetched bytes are counted per image.
      assert.ok((await ps()).mounts.find((m) => m.index === indexes.get('b'))!.fetchedBytes > 0);
    } finally {
      for (const mp of [r2, r1, mpB, mpA]) await umountOk(mp);
    }
    assert.ok(![mpA, mpB, r1, r2].some(isMounted), 'nothing mounted');
  });

  it('bin/clip starts the per-container mount without NODE_EXTRA_CA_CERTS and gives it back to everything else', async () => {
    // Node warns at its start when it loads NODE_EXTRA_CA_CERTS and the file is missing: the warning says whether it did.
    const warned = /Ignoring extra certs from/;
    const env = { ...ws.env, NODE_EXTRA_CA_CERTS: path.join(ws.dir, 'missing-ca.pem') };
    const r1 = await dir('rootfs-certs-1');
    const r2 = await dir('rootfs-certs-2');
    await mountOk([indexes.get('b')!, '--rootfs', r1]);
    try {
      const fast = await runClip(['mount', indexes.get('b')!, '--rootfs', r2], { env, wrapper: true });
      assert.equal(fast.code, 0, fast.stderr);
      assert.equal(fast.stdout.toString(), `${r2}\n`);
      assert.doesNotMatch(fast.stderr, warned, 'the mount of a served image ran without the certificates');
      assert.equal(await readFile(path.join(r2, 'etc/hello'), 'utf8'), await readFile(path.join(r1, 'etc/hello'), 'utf8'));
      // Any other command keeps them.
      const listed = await runClip(['ps', '--json'], { env, wrapper: true });
      assert.equal(listed.code, 0, listed.stderr);
      assert.match(listed.stderr, warned);
      // The same call shape that the fast path hands on (a missing index) goes the full way with them, and fails as it does.
      const missing = await runClip(['mount', path.join(ws.dir, 'missing.clip'), '--rootfs', r2], { env, wrapper: true });
      assert.equal(missing.code, 1);
      assert.match(missing.stderr, warned);
      assert.match(missing.stderr, /missing\.clip/);
    } finally {
      for (const mp of [r2, r1]) if (isMounted(mp)) await umountOk(mp);
    }
  });

  it('a container reading in a loop sees no error and no wrong byte while the serving process is SIGKILLed twice and upgraded', async () => {
    const rootfs = await dir('rootfs-loop');
    await mountOk([indexes.get('a')!, '--rootfs', rootfs]);
    try {
      const first = await ps();
      const script = [
        'n=0',
        'while [ ! -e /stop ]; do',
        '  for f in /data-loop/*; do sha256sum "$f" || echo "READ ERROR $f"; done',
        '  n=$((n+1)); echo "round $n" > /tmp/rounds',
        'done',
      ].join('\n');
      const container = runContainer(rootfs, ['/bin/sh', '-c', script]);
      const rounds = async (): Promise<number> =>
        Number((await readFile(path.join(rootfs, 'tmp/rounds'), 'utf8').catch(() => 'round 0')).split(' ')[1]);
      const dropCaches = () => writeFile('/proc/sys/vm/drop_caches', '3');
      await waitFor(async () => (await rounds()) >= 1, 'the first round');
      const pids = [first.daemon.pid];
      for (const step of ['kill', 'kill', 'upgrade'] as const) {
        const before = await rounds();
        await dropCaches();
        if (step === 'kill') process.kill(pids.at(-1)!, 'SIGKILL');
        else {
          const u = await clip(['daemon', '--upgrade']);
          assert.equal(u.code, 0, u.stderr);
        }
        await waitFor(async () => (await ps()).daemon.pid !== pids.at(-1), `a new serving process after ${step}`);
        pids.push((await ps()).daemon.pid);
        await dropCaches();
        await waitFor(async () => (await rounds()) >= before + 2, `two more rounds after ${step}`);
      }
      await writeFile(path.join(rootfs, 'stop'), '');
      const r = await container;
      assert.equal(r.code, 0, r.stderr);
      assert.equal(r.stderr, '');
      const lines = r.stdout.trim().split('\n');
      assert.ok(lines.length >= FILES * 7, `read ${lines.length} files`);
      for (const line of lines) {
        const [sum, file] = line.split(/\s+/);
        assert.equal(sum, sums.get(file!), `right bytes of ${file} (${line})`);
      }
      assert.equal(new Set(pids).size, 4, 'four serving processes in turn');
      assert.equal((await ps()).daemon.supervisor, first.daemon.supervisor, 'one daemon throughout');
      assert.deepEqual(
        (await ps()).mounts.map((m) => m.rootfs),
        [[rootfs]],
        'the rootfs is still listed',
      );
    } finally {
      await rm(path.join(rootfs, 'stop'), { force: true }).catch(() => undefined);
      await umountOk(rootfs);
    }
  });

  it('refuses settings a served image or the daemon cannot take, naming them', async () => {
    const r1 = await dir('rootfs-s1');
    const r2 = await dir('rootfs-s2');
    const mp = await dir('mnt-s');
    await mountOk([indexes.get('b')!, '--rootfs', r1, '--prefetch']);
    try {
      const other = await clip(['mount', indexes.get('b')!, '--rootfs', r2, '--record-profile', path.join(ws.dir, 'p.json')]);
      assert.equal(other.code, 1);
      assert.match(other.stderr, /^clip: .*already mounted .*--record-profile .*records none/);
      const cache = await clip(['mount', indexes.get('c')!, mp, '--cache-dir', path.join(ws.dir, 'elsewhere')]);
      assert.equal(cache.code, 1);
      assert.match(cache.stderr, /^clip: the clip daemon .* runs with other settings: --cache-dir .*elsewhere \(it has /);
      assert.ok(!isMounted(r2) && !isMounted(mp), 'nothing mounted for the refused requests');
      const same = await clip(['mount', indexes.get('b')!, '--rootfs', r2, '--prefetch']);
      assert.equal(same.code, 0, same.stderr);
      await umountOk(r2);
    } finally {
      await umountOk(r1);
    }
  });

  it('SIGTERM to the daemon unmounts everything it serves; the next start cleans up after a daemon killed outright', async () => {
    const own = await clipWorkspace('daemonterm');
    try {
      const d = startDaemon(own.env);
      await waitFor(async () => (await clip(['ps', '--json'], own.env)).code === 0, 'the daemon to answer');
      const mp = path.join(own.dir, 'mnt');
      const rootfs = path.join(own.dir, 'rootfs');
      await mkdir(mp);
      await mkdir(rootfs);
      await mountOk([indexes.get('b')!, mp], own.env);
      await mountOk([indexes.get('c')!, '--rootfs', rootfs], own.env);
      d.kill('SIGTERM');
      await new Promise((r) => d.once('exit', r));
      assert.equal(d.exitCode, 0);
      const left = readMounts().filter((m) => m.mountPoint.startsWith(own.dir));
      assert.deepEqual(left, [], 'nothing of the daemon stays mounted');
      assert.ok(!existsSync(path.join(own.env['CLIP_STATE_DIR']!, 'clip.sock')), 'the socket is gone');

      // Killed outright (supervisor and serving process): its mounts are dead, its socket and table stay.
      const d2 = startDaemon(own.env);
      await waitFor(async () => (await clip(['ps', '--json'], own.env)).code === 0, 'the second daemon to answer');
      await mountOk([indexes.get('b')!, mp], own.env);
      const serving = (await ps(own.env)).daemon.pid;
      d2.kill('SIGKILL');
      process.kill(serving, 'SIGKILL');
      await waitFor(() => d2.exitCode !== null || d2.signalCode !== null, 'the daemon to die');
      await waitFor(() => !alive(serving), 'the serving process to die');
      assert.ok(existsSync(path.join(own.env['CLIP_STATE_DIR']!, 'clip.sock')), 'a stale socket is left');
      assert.ok(isMounted(mp), 'a dead mount is left');
      // `clip mount` starts a daemon, which detaches what the dead one left, then mounts afresh.
      await mountOk([indexes.get('b')!, mp], own.env);
      assert.equal(readMounts().filter((m) => m.mountPoint === mp).length, 1, 'one mount at the path, not two stacked');
      assert.equal(await readFile(path.join(mp, 'etc/hello'), 'utf8'), 'hello from a clip rootfs\n');
      await umountOk(mp, own.env);
      // That daemon was started by clip mount: it ends with its last mount.
      assert.deepEqual(
        readMounts().filter((m) => m.mountPoint.startsWith(own.dir)),
        [],
      );
    } finally {
      sweepClipMounts();
      await rm(own.dir, { recursive: true, force: true });
    }
  });

  it('a config file with an unknown key or a bad value stops the daemon before it starts, naming the key', async () => {
    const conf = path.join(ws.dir, 'bad.toml');
    await writeFile(conf, 'cache_size = "lots"\n');
    const r = await clip(['daemon', '--config', conf]);
    assert.equal(r.code, 1);
    assert.match(r.stderr, /^clip: config .*bad\.toml:1: cache_size: bad size "lots"/);
    await writeFile(conf, 'cache_sise = "1G"\n');
    const u = await clip(['daemon', '--config', conf]);
    assert.equal(u.code, 1);
    assert.match(u.stderr, /cache_sise/);
  });
});
