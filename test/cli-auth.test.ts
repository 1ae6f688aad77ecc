// A registry with htpasswd Basic auth: clip index and clip cat work with
// credentials from flags, stdin and docker's config.json, and wrong ones fail
// with a clear message and no output file.

import assert from 'node:assert/strict';
import { mkdtemp, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { runClip } from './helpers/cli.js';
import { buildFixture, EVERYTHING } from './helpers/fixtures.js';
import type { BuiltImage } from './helpers/image-builder.js';
import { pushImage, startRegistry, type RegistryHandle } from './helpers/registry.js';

describe('registry with Basic auth (htpasswd)', () => {
  const creds = { username: 'clipuser', password: 's3cret pass' };
  let registry: RegistryHandle;
  let image: BuiltImage;
  let work: string;
  let ref: string;
  /** An empty docker config dir, so no credentials of the machine leak in. */
  let noConfig: NodeJS.ProcessEnv;
  before(async () => {
    registry = await startRegistry({ htpasswd: creds });
    image = await buildFixture('everything');
    await pushImage(image.dir, image.tag, registry.host, 'private/app', creds);
    work = await mkdtemp(path.join(tmpdir(), 'clip-auth-'));
    ref = `${registry.host}/private/app:${image.tag}`;
    noConfig = { DOCKER_CONFIG: path.join(work, 'empty'), REGISTRY_AUTH_FILE: path.join(work, 'none.json'), HOME: work };
  });
  after(async () => {
    await registry?.stop();
    if (image) await rm(image.dir, { recursive: true, force: true });
    if (work) await rm(work, { recursive: true, force: true });
  });

  it('wrong or missing credentials: clear error, no index written', async () => {
    const out = path.join(work, 'denied.clip');
    const wrong = await runClip(['index', ref, '-o', out, '--username', creds.username, '--password', 'nope'], { env: noConfig });
    assert.notEqual(wrong.code, 0);
    assert.match(wrong.stderr, /denied for user "clipuser"/);
    const none = await runClip(['index', ref, '-o', out], { env: noConfig });
    assert.notEqual(none.code, 0);
    assert.match(none.stderr, /denied without credentials/);
    assert.deepEqual(
      (await readdir(work)).filter((f) => f.includes('denied')),
      [],
    );
  });

  it('credentials from flags and stdin index and read the image', async () => {
    const out = path.join(work, 'flags.clip');
    const r = await runClip(['index', ref, '-o', out, '--username', creds.username, '--password-stdin'], {
      env: noConfig,
      input: creds.password + '\n',
    });
    assert.equal(r.code, 0, r.stderr);
    const cat = await runClip(
      ['cat', out, `${EVERYTHING.opaqueDir}/keep-name.txt`, '--username', creds.username, '--password', creds.password],
      { env: noConfig },
    );
    assert.equal(cat.code, 0, cat.stderr);
    assert.equal(cat.stdout.toString(), EVERYTHING.opaqueKeepNameContent);
    const anonymous = await runClip(['cat', out, `${EVERYTHING.opaqueDir}/keep-name.txt`], { env: noConfig });
    assert.notEqual(anonymous.code, 0, 'reads need the credentials too');
  });

  it("credentials from docker's config.json", async () => {
    const dir = await mkdtemp(path.join(work, 'docker-'));
    const auth = Buffer.from(`${creds.username}:${creds.password}`).toString('base64');
    await writeFile(path.join(dir, 'config.json'), JSON.stringify({ auths: { [registry.host]: { auth } } }));
    const env = { ...noConfig, DOCKER_CONFIG: dir };
    const out = path.join(work, 'config.clip');
    const r = await runClip(['index', ref, '-o', out], { env });
    assert.equal(r.code, 0, r.stderr);
    const cat = await runClip(['cat', out, `${EVERYTHING.opaqueDir}/keep-name.txt`], { env });
    assert.equal(cat.stdout.toString(), EVERYTHING.opaqueKeepNameContent);
  });
});
