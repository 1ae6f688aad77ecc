// clip index --trace: the image's command runs with runc on the fresh index
// (no network), what it reads is embedded in the .clip as its start-up
// profile, and a mount of that index fetches those spans before anything asks.
// Real registry (behind the counting proxy), real runc, real FUSE mounts.

import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdir, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { after, before, describe, it } from 'node:test';
import { isMounted, readMounts } from '../src/fuse/index.js';
import { needsWindow } from '../src/gzip/span-reader.js';
import { decodeIndex, encodeIndex } from '../src/index/format.js';
import { loadIndex } from '../src/index/load.js';
import { profileOnIndex } from '../src/indexer/index-image.js';
import { checkEmbeddedProfile, mapProfile, MAX_PROFILE_ENTRIES, mergeProfiles, type ProfileEntry } from '../src/index/startup-profile.js';
import type { ClipIndex } from '../src/index/types.js';
import { buildBusyboxImage } from './helpers/busybox-image.js';
import { runClip } from './helpers/cli.js';
import { startFaultProxy, type FaultProxy } from './helpers/fault-proxy.js';
import type { BuiltImage } from './helpers/image-builder.js';
import { clipWorkspace, sweepClipMounts, type ClipWorkspace, daemonLog } from './helpers/mounts.js';
import { createPrng } from './helpers/prng.js';
import { pushImage, startRegistry, type RegistryHandle } from './helpers/registry.js';
import { runContainer } from './helpers/runc.js';

const KiB = 1024;
const SPAN = '256K';
const t = { sec: 1_700_000_000, nsec: 0 };
const prng = createPrng(13);
// The third layer: two files the command reads, with bytes nobody reads around them.
const EXTRA = [
  { type: 'dir' as const, path: 'data', mode: 0o755, mtime: t },
  { type: 'file' as const, path: 'data/filler0.bin', mode: 0o644, data: prng.bytes(1024 * KiB), mtime: t },
  { type: 'file' as const, path: 'data/a.bin', mode: 0o644, data: prng.bytes(600 * KiB), mtime: t },
  { type: 'file' as const, path: 'data/filler1.bin', mode: 0o644, data: prng.bytes(1024 * KiB), mtime: t },
  { type: 'file' as const, path: 'data/b.bin', mode: 0o644, data: prng.bytes(600 * KiB), mtime: t },
  { type: 'file' as const, path: 'data/filler2.bin', mode: 0o644, data: prng.bytes(1024 * KiB), mtime: t },
];
// b first, then a: the profile must keep that order.
const CMD = ['/bin/sh', '-c', 'cat /data/b.bin > /dev/null && cat /data/a.bin > /dev/null'];

/** The uncompressed range of a file's data in the third layer. */
function fileRange(image: BuiltImage, file: string): { start: number; end: number } {
  const e = image.layers[2]!.tarLayout.find((x) => x.path.endsWith(file))!;
  return { start: e.dataOffset, end: e.dataOffset + e.size };
}

/** Positions in the profile of the third layer's spans that overlap [start, end). */
function positions(profile: readonly ProfileEntry[], digest: string, r: { start: number; end: number }): number[] {
  return profile.flatMap(([d, s, e], k) => (d === digest && s < r.end && e > r.start ? [k] : []));
}

/** Whether the profile's spans of `digest` cover [start, end) whole. */
function covers(profile: readonly ProfileEntry[], digest: string, r: { start: number; end: number }): boolean {
  const spans = profile.filter(([d]) => d === digest).sort((x, y) => x[1] - y[1]);
  let at = r.start;
  for (const [, s, e] of spans) if (s <= at && e > at) at = e;
  return at >= r.end;
}

/** Processes whose command line holds `marker`. */
function processesWith(marker: string): number[] {
  const out: number[] = [];
  for (const pid of spawnSync('ls', ['/proc']).stdout.toString().split('\n')) {
    if (!/^\d+$/.test(pid) || Number(pid) === process.pid) continue;
    const r = spawnSync('cat', [`/proc/${pid}/cmdline`]);
    if (r.status === 0 && r.stdout.toString().replace(/\0/g, ' ').includes(marker)) out.push(Number(pid));
  }
  return out;
}

/** Nothing of a trace is left: no mount, no temp dir, no daemon, no container process. */
async function assertNothingLeft(marker?: string): Promise<void> {
  const prefix = path.join(tmpdir(), `clip-trace-`);
  assert.deepEqual(
    readMounts().filter((m) => m.mountPoint.startsWith(prefix)),
    [],
    'no trace mount left',
  );
  assert.deepEqual(
    (await readdir(tmpdir())).filter((n) => n.startsWith('clip-trace-')),
    [],
    'no trace temp dir left',
  );
  assert.deepEqual(processesWith(prefix), [], 'no trace daemon left');
  if (marker !== undefined) assert.deepEqual(processesWith(marker), [], 'no container process left');
}

describe('clip index --trace', () => {
  let registry: RegistryHandle;
  let proxy: FaultProxy;
  let image: BuiltImage;
  let ws: ClipWorkspace;
  let ref: string;
  let traced: string;
  let index: ClipIndex;
  let digest: string;

  before(async () => {
    sweepClipMounts();
    registry = await startRegistry();
    proxy = await startFaultProxy(registry.host);
    image = await buildBusyboxImage(EXTRA, 'trace', CMD);
    await pushImage(image.dir, image.tag, registry.host, 'trace/busybox');
    ws = await clipWorkspace('indextrace'); // not clip-trace-*: those are the traces' own temp dirs
    ref = `${proxy.host}/trace/busybox:${image.tag}`;
    digest = image.layers[2]!.digest;
    traced = path.join(ws.dir, 'traced.clip');
    const r = await runClip(['index', ref, '-o', traced, '--span-size', SPAN, '--trace'], { env: ws.env });
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout.toString(), /trace: +\d+ spans read, first read first, shipped in the index \(the command exited 0/);
    index = await loadIndex(traced);
  });
  after(async () => {
    sweepClipMounts();
    await proxy?.close();
    await registry?.stop();
    if (image) await rm(image.dir, { recursive: true, force: true });
    if (ws) await rm(ws.dir, { recursive: true, force: true });
  });

  it("embeds a profile of the Cmd's reads: the files' spans, in first-read order, windows where their runs begin", async () => {
    const profile = index.profile ?? [];
    const a = fileRange(image, 'data/a.bin');
    const b = fileRange(image, 'data/b.bin');
    assert.ok(covers(profile, digest, a), 'every span of a.bin is in the profile');
    assert.ok(covers(profile, digest, b), 'every span of b.bin is in the profile');
    assert.ok(Math.max(...positions(profile, digest, b)) < Math.min(...positions(profile, digest, a)), 'b.bin (read first) before a.bin');
    const after = profile.filter(([d, start]) => d === digest && start >= b.end);
    assert.deepEqual(after, [], 'no span that starts after the last byte read');
    // The span where b.bin ends was read up to its last byte: the entry says so (a mount fetches that prefix only).
    const end = profile.find(([d, start, stop]) => d === digest && start < b.end && b.end <= stop)!;
    assert.ok(end[2] > b.end, 'b.bin ends inside a span (the fixture places it so)');
    assert.equal(end[3], b.end);
    // Every entry starts a span of the index; the span where a run of b.bin's spans begins keeps its window.
    const { spans, skipped } = mapProfile(index, profile);
    assert.equal(skipped, 0);
    const layer = index.layers[2]!;
    const firstOfB = layer.spans.checkpoints.findIndex(
      (c, i) => c.out <= b.start && (layer.spans.checkpoints[i + 1]?.out ?? Infinity) > b.start,
    );
    assert.ok(spans.some((s) => s.layer === 2 && s.span === firstOfB));
    if (firstOfB > 0 && !spans.some((s) => s.layer === 2 && s.span === firstOfB - 1))
      assert.ok(!needsWindow(layer.spans, firstOfB), 'the span where the profiled run begins keeps its window');
    await assertNothingLeft();
  });

  it('a mount of the traced index fetches the profiled spans at once: the same Cmd then fetches nothing', async () => {
    const rootfs = path.join(ws.dir, 'rootfs');
    await mkdir(rootfs, { recursive: true });
    const before = proxy.blobRequests;
    const m = await runClip(['mount', traced, '--rootfs', rootfs, '--cache-dir', path.join(ws.dir, 'cache-mount')], { env: ws.env });
    assert.equal(m.code, 0, m.stderr);
    try {
      // Nothing reads yet: the profile's spans come by themselves.
      for (let i = 0; i < 400 && !(await daemonLog(ws)).includes('start-up profile fetched'); i++) await sleep(50);
      assert.match(await daemonLog(ws), /start-up profile fetched/);
      const warmed = proxy.blobRequests - before;
      assert.ok(warmed > 0, 'the profile was fetched before any read');
      const run = await runContainer(rootfs, CMD);
      assert.equal(run.code, 0, run.stderr);
      assert.equal(proxy.blobRequests - before, warmed, 'running the Cmd needed no further fetch');
    } finally {
      const u = await runClip(['umount', rootfs], { env: ws.env });
      assert.equal(u.code, 0, u.stderr);
    }
    assert.ok(!isMounted(rootfs));
  });

  it('--trace-cmd replaces Entrypoint and Cmd', async () => {
    const out = path.join(ws.dir, 'a-only.clip');
    const r = await runClip(['index', ref, '-o', out, '--span-size', SPAN, '--trace', '--trace-cmd', '["/bin/sha256sum","/data/a.bin"]'], {
      env: ws.env,
    });
    assert.equal(r.code, 0, r.stderr);
    const profile = (await loadIndex(out)).profile ?? [];
    assert.ok(covers(profile, digest, fileRange(image, 'data/a.bin')), 'a.bin was read');
    assert.deepEqual(positions(profile, digest, fileRange(image, 'data/b.bin')), [], 'b.bin was not (the Cmd did not run)');
    await assertNothingLeft();
  });

  it('a command that never exits is stopped at --trace-timeout and still gives a profile', async () => {
    const out = path.join(ws.dir, 'server.clip');
    const marker = 'sleep 7913';
    const cmd = JSON.stringify(['/bin/sh', '-c', `cat /data/a.bin > /dev/null; exec /bin/busybox ${marker}`]);
    const r = await runClip(['index', ref, '-o', out, '--span-size', SPAN, '--trace', '--trace-cmd', cmd, '--trace-timeout', '3'], {
      env: ws.env,
    });
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout.toString(), /the command stopped at the timeout/);
    assert.ok(
      covers((await loadIndex(out)).profile ?? [], digest, fileRange(image, 'data/a.bin')),
      'what it read until then is the profile',
    );
    await assertNothingLeft(marker);
  });

  it('the traced command has no network: it cannot reach the registry the host reaches', async () => {
    const url = `http://${registry.host}/v2/`;
    const host = spawnSync('/bin/busybox', ['wget', '-q', '-O', '/dev/null', url]);
    assert.equal(host.status, 0, 'the registry answers on the host');
    const cmd = JSON.stringify(['/bin/sh', '-c', `/bin/busybox wget -q -O /dev/null ${url} && echo NET-OPEN || echo NET-CLOSED`]);
    const r = await runClip(['index', ref, '-o', path.join(ws.dir, 'net.clip'), '--span-size', SPAN, '--trace', '--trace-cmd', cmd], {
      env: ws.env,
    });
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stderr, /NET-CLOSED/);
    assert.doesNotMatch(r.stderr, /NET-OPEN/);
    await assertNothingLeft();
  });

  it('a bad --trace-cmd is a clear error before anything runs', async () => {
    // The image is unreachable: an error about it would mean the command was checked too late.
    for (const [cmd, why] of [
      ['[1', /not JSON/],
      ['["/bin/sh", 3]', /non-empty JSON array of strings/],
      ['[]', /non-empty JSON array of strings/],
      ['"/bin/sh"', /non-empty JSON array of strings/],
    ] as const) {
      const out = path.join(ws.dir, 'never.clip');
      const r = await runClip(['index', '127.0.0.1:1/none/none:x', '-o', out, '--trace', '--trace-cmd', cmd], { env: ws.env });
      assert.equal(r.code, 1);
      assert.match(r.stderr, /^clip: bad --trace-cmd /);
      assert.match(r.stderr, why);
      assert.ok(!r.stderr.includes('    at '), 'no stack trace');
      await assert.rejects(readFile(out), { code: 'ENOENT' });
    }
    const r = await runClip(['index', '127.0.0.1:1/none/none:x', '-o', path.join(ws.dir, 'never.clip'), '--trace-timeout', '5'], {
      env: ws.env,
    });
    assert.equal(r.code, 1);
    assert.match(r.stderr, /^clip: --trace-cmd and --trace-timeout go with --trace/);
  });

  it('several --profile merge by interleaving their first-access orders, and the result ships in the index', async () => {
    const ab = index.profile!;
    const aOnly = (await loadIndex(path.join(ws.dir, 'a-only.clip'))).profile!;
    const files = [path.join(ws.dir, 'ab.profile'), path.join(ws.dir, 'a.profile')];
    const body = (spans: ProfileEntry[]): string =>
      JSON.stringify({ clipStartupProfile: 2, manifestDigest: index.image.manifestDigest, spanSize: 256 * KiB, spans });
    await writeFile(files[0]!, body(ab));
    await writeFile(files[1]!, body(aOnly));
    const out = path.join(ws.dir, 'merged.clip');
    const r = await runClip(['index', ref, '-o', out, '--span-size', SPAN, '--profile', files[0]!, '--profile', files[1]!]);
    assert.equal(r.code, 0, r.stderr);
    const mergedIndex = await loadIndex(out);
    const merged = mergedIndex.profile!;
    // Both lists interleaved, as this index's spans (its checkpoints are placed where either list's reads begin).
    assert.deepEqual(merged, profileOnIndex(mergeProfiles([ab, aOnly]), mergedIndex.layers));
    // Every range either list reads is read by the merged profile.
    const reads = (e: ProfileEntry): [string, number, number] => [e[0], e.length === 5 ? e[4] : e[1], e.length === 3 ? e[2] : e[3]];
    for (const e of [...ab, ...aOnly]) {
      const [digest, from, until] = reads(e);
      const covering = merged.filter((m) => m[0] === digest && m[1] <= from && from < reads(m)[2]);
      assert.equal(covering.length, 1, `${digest.slice(0, 16)} at ${from} is read once by the merged profile`);
      for (let at = from; at < until;) {
        const m = merged.find((x) => x[0] === digest && x[1] <= at && at < reads(x)[2]);
        assert.ok(m, `${digest.slice(0, 16)} [${from}, ${until}) is read up to ${at} only`);
        at = reads(m)[2];
      }
    }
    // A span named by both keeps the larger until; one read to its end (no until) stays whole.
    assert.deepEqual(
      mergeProfiles([
        [
          ['x', 0, 10, 3],
          ['x', 10, 20, 12],
        ],
        [
          ['x', 0, 10, 7],
          ['x', 10, 20],
        ],
      ]),
      [
        ['x', 0, 10, 7],
        ['x', 10, 20],
      ],
    );
    // Interleaved: a.bin's first span (a-only's first layer-3 entry) comes well before its place in ab's order.
    assert.deepEqual(
      mergeProfiles([
        [
          ['x', 0, 1],
          ['x', 1, 2],
          ['x', 2, 3],
        ],
        [
          ['x', 5, 6],
          ['x', 0, 1],
        ],
      ]),
      [
        ['x', 0, 1],
        ['x', 5, 6],
        ['x', 1, 2],
        ['x', 2, 3],
      ],
    );
  });

  it('an embedded profile is checked at load: bounded, layers of the index, offsets inside them', () => {
    const layer = index.layers[2]!;
    const size = layer.spans.uncompressedSize;
    for (const [profile, why] of [
      [[[`sha256:${'0'.repeat(64)}`, 0, 10]], /names layer .* not in the index/],
      [[[layer.digest, 0, size + 1]], /past the end of its layer/],
      [[[layer.digest, 10, 10]], /entry 0 is not \[layer digest, start offset, end offset, until\?, from\?\]/],
      [[[layer.digest, -1, 10]], /entry 0 is not/],
      // How far into a span was read: inside it, or the entry is refused (a mount must not fetch past the span).
      [[[layer.digest, 0, 10, 11]], /entry 0 is not .*\(start < until <= end, start < from < until\)/],
      [[[layer.digest, 5, 10, 5]], /entry 0 is not/],
      [[[layer.digest, 0, 10, 2 ** 60]], /entry 0 is not/],
      [[[layer.digest, 0, 10, 5, 6]], /entry 0 is not/],
      [{ spans: [] }, /is not a list/],
    ] as const) {
      const bad = encodeIndex({ ...index, profile: profile as unknown as ProfileEntry[] });
      assert.throws(
        () => decodeIndex(bad),
        (e: Error) => /start-up profile/.test(e.message) && why.test(e.message),
      );
    }
    // The bound is checked before any entry (a million identical entries would not even pass the body's size check).
    assert.throws(
      () =>
        checkEmbeddedProfile(
          Array.from({ length: MAX_PROFILE_ENTRIES + 1 }, () => [layer.digest, 0, 1]),
          index.layers,
        ),
      /has 1000001 entries \(at most 1000000\)/,
    );
    // And one that passes round-trips unchanged.
    assert.deepEqual(decodeIndex(encodeIndex(index)).profile, index.profile);
  });
});
