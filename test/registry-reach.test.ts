// A .clip remembers how its registry was reached (plain HTTP or not) and
// reading it later uses that when no flag says otherwise; --plain-http and
// --no-plain-http win. The registry (docker-registry, plain HTTP) sits behind
// a front that tells TLS ClientHellos from plain HTTP, so what clip chose is
// seen whatever clip does with loopback addresses by default. A record alone
// never sends credentials in the clear (shown under a non-loopback name).

import assert from 'node:assert/strict';
import { mkdir, readFile, rm, writeFile } from 'node:fs/promises';
import net from 'node:net';
import path from 'node:path';
import { Agent } from 'undici';
import { after, before, describe, it } from 'node:test';
import { ClipError } from '../src/errors.js';
import { AgentPool } from '../src/http/agent-pool.js';
import { isMounted } from '../src/fuse/index.js';
import { decodeIndex, encodeIndex } from '../src/index/format.js';
import { loadIndex } from '../src/index/load.js';
import type { ClipIndex } from '../src/index/types.js';
import { RegistryClient } from '../src/oci/registry.js';
import { runClip } from './helpers/cli.js';
import { buildImage, type BuiltImage } from './helpers/image-builder.js';
import { clipWorkspace, sweepClipMounts, type ClipWorkspace } from './helpers/mounts.js';
import { pushImage, startRegistry, type RegistryHandle } from './helpers/registry.js';
import { startSchemeSniffer, type SchemeSniffer } from './helpers/scheme-sniffer.js';

const HELLO = 'reached the registry\n';

describe('a .clip remembers how its registry was reached', () => {
  let ws: ClipWorkspace;
  let registry: RegistryHandle;
  let sniffer: SchemeSniffer;
  let image: BuiltImage;
  /** Indexed with --plain-http: records plain HTTP. */
  let plain: string;
  /** The same index, recorded as reached over HTTPS. */
  let tls: string;
  let indexed: ClipIndex;

  before(async () => {
    sweepClipMounts();
    ws = await clipWorkspace('reach');
    registry = await startRegistry();
    const t = { sec: 1_700_000_000, nsec: 0 };
    image = await buildImage({
      layers: [
        {
          entries: [
            { type: 'dir', path: 'etc', mode: 0o755, mtime: t },
            { type: 'file', path: 'etc/hello', mode: 0o644, data: HELLO, mtime: t },
          ],
        },
      ],
    });
    await pushImage(image.dir, image.tag, registry.host, 'reach/app');
    sniffer = await startSchemeSniffer(registry.host);
    plain = path.join(ws.dir, 'plain.clip');
    tls = path.join(ws.dir, 'tls.clip');
  });
  after(async () => {
    sweepClipMounts();
    await sniffer?.close();
    await registry?.stop();
    if (ws) await rm(ws.dir, { recursive: true, force: true });
  });

  /** What the front saw during `fn`. */
  async function seenDuring(fn: () => Promise<void>): Promise<SchemeSniffer['seen']> {
    const start = sniffer.seen.length;
    await fn();
    return sniffer.seen.slice(start);
  }

  const cat = (file: string, ...flags: string[]) => runClip(['cat', file, 'etc/hello', ...flags], { env: ws.env });

  it('clip index --plain-http records it in the index; it survives a round trip', async () => {
    const seen = await seenDuring(async () => {
      const r = await runClip(['index', `docker://${sniffer.host}/reach/app:${image.tag}`, '--plain-http', '-o', plain], { env: ws.env });
      assert.equal(r.code, 0, r.stderr);
    });
    assert.ok(seen.length > 0 && seen.every((s) => s === 'http'), seen.join());
    indexed = await loadIndex(plain);
    assert.deepEqual(indexed.registry, { plainHttp: true });
    assert.deepEqual(decodeIndex(encodeIndex(indexed)).registry, { plainHttp: true });
    await writeFile(tls, encodeIndex({ ...indexed, registry: { plainHttp: false } }));
    assert.deepEqual((await loadIndex(tls)).registry, { plainHttp: false });
    const inspect = await runClip(['inspect', plain], { env: ws.env });
    assert.match(inspect.stdout.toString(), /^registry: +plain HTTP \(as indexed/m);
  });

  it('clip cat without a flag reaches the registry as the index records: plain HTTP for one, TLS for the other', async () => {
    const plainSeen = await seenDuring(async () => {
      const r = await cat(plain);
      assert.equal(r.code, 0, r.stderr);
      assert.equal(r.stdout.toString(), HELLO);
    });
    assert.ok(plainSeen.length > 0 && plainSeen.every((s) => s === 'http'), plainSeen.join());
    const tlsSeen = await seenDuring(async () => {
      await cat(tls);
    });
    assert.equal(tlsSeen[0], 'tls', 'the first connection began a TLS handshake');
  });

  it('a flag wins over the record: --plain-http for the TLS one, --no-plain-http for the plain one', async () => {
    const forcedPlain = await seenDuring(async () => {
      const r = await cat(tls, '--plain-http');
      assert.equal(r.code, 0, r.stderr);
      assert.equal(r.stdout.toString(), HELLO);
    });
    assert.ok(forcedPlain.length > 0 && forcedPlain.every((s) => s === 'http'), forcedPlain.join());
    const forcedTls = await seenDuring(async () => {
      await cat(plain, '--no-plain-http');
    });
    assert.equal(forcedTls[0], 'tls');
  });

  it('clip mount: the record is the default and a flag wins, through the daemon', async () => {
    const mp = path.join(ws.dir, 'mnt');
    await mkdir(mp);
    for (const [file, flags] of [
      [plain, []],
      [tls, ['--plain-http']],
    ] as const) {
      const seen = await seenDuring(async () => {
        const m = await runClip(['mount', file, mp, '--cache-dir', path.join(ws.dir, `cache-${path.basename(file)}`), ...flags], {
          env: ws.env,
        });
        assert.equal(m.code, 0, m.stderr);
        try {
          assert.equal(await readFile(path.join(mp, 'etc/hello'), 'utf8'), HELLO);
        } finally {
          await runClip(['umount', mp], { env: ws.env });
          assert.ok(!isMounted(mp));
        }
      });
      assert.ok(seen.length > 0 && seen.every((s) => s === 'http'), `${path.basename(file)} ${flags.join(' ')}: ${seen.join()}`);
    }
    // Without the flag, the daemon goes by the record: HTTPS first (the front then hangs up).
    const seen = await seenDuring(async () => {
      const m = await runClip(['mount', tls, mp, '--cache-dir', path.join(ws.dir, 'cache-tls-default')], { env: ws.env });
      if (m.code === 0) await runClip(['umount', mp], { env: ws.env });
    });
    assert.ok(!isMounted(mp));
    assert.equal(seen[0], 'tls', seen.join());
  });

  it('is validated on load (index-format.test.ts has the cases): a hostile record fails clip cat with a clear message; older files have none', async () => {
    const older: ClipIndex = { ...indexed };
    delete older.registry;
    const file = path.join(ws.dir, 'older.clip');
    await writeFile(file, encodeIndex(older));
    assert.equal((await loadIndex(file)).registry, undefined);
    const r = await runClip(['inspect', file, '--json'], { env: ws.env });
    assert.equal(r.code, 0, r.stderr);
    assert.equal(JSON.parse(r.stdout.toString()).registry, undefined);
    const hostile = path.join(ws.dir, 'hostile.clip');
    await writeFile(hostile, encodeIndex({ ...indexed, registry: { plainHttp: 1 as unknown as boolean } }));
    const refused = await cat(hostile);
    assert.equal(refused.code, 1);
    assert.match(refused.stderr, /^clip: .*hostile\.clip: .*registry\.plainHttp is not true or false/m);
  });

  it('under a non-loopback name, the record alone means plain HTTP but no credentials; --plain-http sends them', async () => {
    const user = { username: 'reach', password: 'reach-secret' };
    const locked = await startRegistry({ htpasswd: user });
    // "registry.clip.test" is connected to the loopback registry: no name lookup, no network.
    const port = Number(locked.host.split(':')[1]);
    const agent = new Agent({
      connect: (_opts, cb) => {
        const socket = net.connect(port, '127.0.0.1');
        socket.once('connect', () => cb(null, socket));
        socket.once('error', (e) => cb(e, null));
      },
    });
    const pool = new AgentPool(agent);
    const ref = { registry: `registry.clip.test:${port}`, repository: 'reach/app' };
    try {
      await pushImage(image.dir, image.tag, locked.host, 'reach/app', user);
      const recorded = new RegistryClient(ref, { ...user, recordedPlainHttp: true }, pool);
      assert.equal(recorded.plainHttp, true, 'the record makes it plain HTTP, also for a name that is not loopback');
      await assert.rejects(recorded.fetchManifest(image.tag), (e: unknown) => e instanceof ClipError && e.code === 'UNAUTHORIZED');
      const asked = new RegistryClient(ref, { ...user, plainHttp: true, recordedPlainHttp: true }, pool);
      const fetched = await asked.fetchManifest(image.tag);
      assert.ok(fetched.bytes.length > 0);
      assert.equal(new RegistryClient(ref, { recordedPlainHttp: false }, pool).plainHttp, false);
      assert.equal(new RegistryClient(ref, {}, pool).plainHttp, false, 'no record, no flag: HTTPS');
    } finally {
      await agent.close();
      await locked.stop();
    }
  });
});
