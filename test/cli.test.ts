// The command line end to end against a real registry: index (summary, no
// partial output), inspect, ls, cat; every kind of bad input gives a clear
// message, a non-zero exit and no output file.

import assert from 'node:assert/strict';
import { mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import zlib from 'node:zlib';
import { after, before, describe, it } from 'node:test';
import { runClip } from './helpers/cli.js';
import { buildFixture, EVERYTHING } from './helpers/fixtures.js';
import type { BuiltImage } from './helpers/image-builder.js';
import { replaceLayerBlob } from './helpers/mutate-image.js';
import { corruptBlobInRegistry, freePort, pushImage, startRegistry, type RegistryHandle } from './helpers/registry.js';

async function assertNoOutput(dir: string): Promise<void> {
  assert.deepEqual(await readdir(dir), [], `nothing written in ${dir}`);
}

describe('clip CLI', () => {
  let registry: RegistryHandle;
  let image: BuiltImage;
  let work: string;
  let ref: string;
  let index: string;
  before(async () => {
    registry = await startRegistry();
    image = await buildFixture('everything');
    await pushImage(image.dir, image.tag, registry.host, 'cli/everything');
    work = await mkdtemp(path.join(tmpdir(), 'clip-cli-'));
    ref = `${registry.host}/cli/everything:${image.tag}`;
    index = path.join(work, 'everything.clip');
  });
  after(async () => {
    await registry?.stop();
    if (image) await rm(image.dir, { recursive: true, force: true });
    if (work) await rm(work, { recursive: true, force: true });
  });

  it('index prints a summary and writes the index', async () => {
    const r = await runClip(['index', ref, '-o', index]);
    assert.equal(r.code, 0, r.stderr);
    const text = r.stdout.toString();
    assert.match(text, new RegExp(`indexed ${ref.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')} \\(${image.manifestDigest}\\)`));
    assert.match(text, new RegExp(`layers: +${image.layers.length} `));
    assert.match(text, /% of the compressed image/);
    assert.equal(r.stderr, '', 'no progress output in a pipe');
  });

  it('inspect --json reports the image and layers', async () => {
    const r = await runClip(['inspect', index, '--json']);
    assert.equal(r.code, 0, r.stderr);
    const report = JSON.parse(r.stdout.toString());
    assert.equal(report.image.manifestDigest, image.manifestDigest);
    assert.equal(report.image.configDigest, image.configDigest);
    assert.deepEqual(
      report.layers.map((l: { digest: string }) => l.digest),
      image.layers.map((l) => l.digest),
    );
    assert.deepEqual(
      report.layers.map((l: { compression: string }) => l.compression),
      image.layers.map((l) => (l.compression === 'none' ? 'none' : 'gzip')),
    );
    const text = await runClip(['inspect', index]);
    assert.match(text.stdout.toString(), /layers:/);
  });

  it('ls lists names, -l shows modes and targets, --json has every field', async () => {
    const root = await runClip(['ls', index]);
    assert.equal(root.code, 0, root.stderr);
    const names = root.stdout.toString().trim().split('\n');
    assert.ok(names.includes('opq') && !names.includes(EVERYTHING.deletedFile), names.join(','));
    const long = await runClip(['ls', '-l', index, '/links']);
    assert.match(long.stdout.toString(), /^l.* abs -> \/etc\/hostname$/m);
    const json = JSON.parse((await runClip(['ls', '--json', index, 'links/abs'])).stdout.toString());
    assert.equal(json[0].target, '/etc/hostname');
    const missing = await runClip(['ls', index, '/no/such/dir']);
    assert.notEqual(missing.code, 0);
    assert.match(missing.stderr, /no such file or directory/);
  });

  it('cat writes the exact bytes of a file, following symlinks inside the image', async () => {
    const r = await runClip(['cat', index, EVERYTHING.opaqueDir + '/keep-name.txt']);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout.toString(), EVERYTHING.opaqueKeepNameContent);
    const dir = await runClip(['cat', index, '/opq']);
    assert.notEqual(dir.code, 0);
    assert.match(dir.stderr, /is a directory/);
  });

  it('version and --help', async () => {
    const v = await runClip(['version']);
    const pkg = JSON.parse(await readFile(new URL('../../package.json', import.meta.url), 'utf8'));
    assert.equal(v.stdout.toString().trim(), `clip ${pkg.version}`);
    for (const cmd of [[], ['index'], ['inspect'], ['ls'], ['cat']]) {
      const h = await runClip([...cmd, '--help']);
      assert.equal(h.code, 0);
      assert.match(h.stdout.toString(), /Usage: clip/);
    }
  });

  describe('bad input', () => {
    async function failsCleanly(args: (out: string) => string[], message: RegExp, env?: NodeJS.ProcessEnv): Promise<void> {
      const dir = await mkdtemp(path.join(work, 'out-'));
      const r = await runClip(args(path.join(dir, 'x.clip')), env ? { env } : {});
      assert.notEqual(r.code, 0, 'exit code');
      assert.match(r.stderr, message);
      assert.doesNotMatch(r.stderr, /unexpected error|at .*\.js:\d+/, 'a message, not a stack trace');
      await assertNoOutput(dir);
    }

    it('unknown image, unknown registry, bad reference', async () => {
      await failsCleanly((o) => ['index', `${registry.host}/no/such-image:latest`, '-o', o], /not found/i);
      await failsCleanly((o) => ['index', `${registry.host}/cli/everything:nosuchtag`, '-o', o], /not found/i);
      const port = await freePort();
      await failsCleanly((o) => ['index', `127.0.0.1:${port}/x:latest`, '-o', o], new RegExp(`127.0.0.1:${port}`));
      await failsCleanly((o) => ['index', 'UPPER/Case:tag', '-o', o], /reference/i);
      await failsCleanly((o) => ['index', ref, '-o', o, '--span-size', '10'], /span size/);
    });

    it('a zstd layer is refused as not supported yet', async () => {
      const z = await buildFixture('zstd');
      try {
        await failsCleanly((o) => ['index', `oci:${z.dir}:${z.tag}`, '-o', o], /zstd.*not supported yet/);
      } finally {
        await rm(z.dir, { recursive: true, force: true });
      }
    });

    it('truncated and corrupted gzip layers', async () => {
      const t = await buildFixture('everything');
      try {
        const blob = t.layers[0]!.blob;
        await replaceLayerBlob(t, 0, blob.subarray(0, blob.length - 100));
        await failsCleanly((o) => ['index', `oci:${t.dir}:${t.tag}`, '-o', o], /truncated/);
        const bad = Buffer.from(blob);
        for (let i = 200; i < bad.length - 20; i += 101) bad[i] = bad[i]! ^ 0x5a;
        await replaceLayerBlob(t, 0, bad);
        await failsCleanly((o) => ['index', `oci:${t.dir}:${t.tag}`, '-o', o], /gzip/);
        await replaceLayerBlob(t, 0, zlib.gzipSync(Buffer.from('this is not a tar archive, just text, and quite a lot of it '.repeat(20))));
        await failsCleanly((o) => ['index', `oci:${t.dir}:${t.tag}`, '-o', o], /tar|diff|hash/i);
      } finally {
        await rm(t.dir, { recursive: true, force: true });
      }
    });

    it('a blob whose bytes do not match its digest', async () => {
      const other = await startRegistry();
      try {
        await pushImage(image.dir, image.tag, other.host, 'cli/corrupt');
        await corruptBlobInRegistry(other.dir, image.layers[1]!.digest);
        await failsCleanly(
          (o) => ['index', `${other.host}/cli/corrupt:${image.tag}`, '-o', o],
          new RegExp(`${image.layers[1]!.digest}.*hash`),
        );
      } finally {
        await other.stop();
      }
    });

    it('a read never serves bytes whose span does not verify', async () => {
      const other = await startRegistry();
      try {
        await pushImage(image.dir, image.tag, other.host, 'cli/late-corrupt');
        const out = path.join(work, 'late.clip');
        const ok = await runClip(['index', `${other.host}/cli/late-corrupt:${image.tag}`, '-o', out]);
        assert.equal(ok.code, 0, ok.stderr);
        // The biggest file lives in layer 0; corrupt that blob after indexing.
        await corruptBlobInRegistry(other.dir, image.layers[0]!.digest, (d) => {
          for (let i = 100; i < d.length; i += 4096) d[i] = d[i]! ^ 0xff;
        });
        const r = await runClip(['cat', out, bigFileOf(image)]);
        assert.notEqual(r.code, 0);
        assert.match(r.stderr, new RegExp(`layer ${image.layers[0]!.digest} span \\d+`));
        assert.equal(r.stdout.length, 0, 'no unverified byte reached stdout');
      } finally {
        await other.stop();
      }
    });

    it('corrupted or truncated .clip files', async () => {
      const good = await readFile(index);
      const corrupt = Buffer.from(good);
      corrupt[corrupt.length >> 1] = corrupt[corrupt.length >> 1]! ^ 1;
      const dir = await mkdtemp(path.join(work, 'idx-'));
      await writeFile(path.join(dir, 'corrupt.clip'), corrupt);
      await writeFile(path.join(dir, 'truncated.clip'), good.subarray(0, good.length - 10));
      await writeFile(path.join(dir, 'text.clip'), 'hello\n');
      for (const cmd of ['inspect', 'ls']) {
        const c = await runClip([cmd, path.join(dir, 'corrupt.clip')]);
        assert.notEqual(c.code, 0);
        assert.match(c.stderr, /corrupt.clip: clip index checksum mismatch/);
        const t = await runClip([cmd, path.join(dir, 'truncated.clip')]);
        assert.notEqual(t.code, 0);
        assert.match(t.stderr, /truncated/);
        const x = await runClip([cmd, path.join(dir, 'text.clip')]);
        assert.match(x.stderr, /not a clip index/);
      }
      const m = await runClip(['inspect', path.join(dir, 'missing.clip')]);
      assert.notEqual(m.code, 0);
      assert.match(m.stderr, /cannot read index .*missing.clip: ENOENT/);
    });
  });
});

/** The largest regular file of the fixture's layer 0 (its bytes are spread over several spans). */
function bigFileOf(image: BuiltImage): string {
  const layer = image.layers[0]!;
  const biggest = [...layer.tarLayout].sort((a, b) => b.size - a.size)[0]!;
  return biggest.path.replace(/^\.\//, '');
}
