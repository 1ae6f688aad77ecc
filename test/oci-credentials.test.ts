// Credential lookup order and formats: explicit options, CLIP_* variables,
// containers auth.json, docker config.json auths/credHelpers/credsStore (a
// fake docker-credential-test helper on PATH answers for the helper cases).

import assert from 'node:assert/strict';
import { chmod, mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { isClipError } from '../src/errors.js';
import { credentialFiles, findCredentials } from '../src/oci/credentials.js';

let dir: string;
let binDir: string;
let dockerDir: string;
let home: string;

const b64 = (s: string) => Buffer.from(s).toString('base64');

before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'clip-creds-'));
  binDir = join(dir, 'bin');
  dockerDir = join(dir, 'docker');
  home = join(dir, 'home');
  await mkdir(binDir);
  await mkdir(dockerDir);
  await mkdir(home);
  // Answers like docker-credential-pass: JSON for known servers, "not found" and exit 1 otherwise.
  const helper = `#!/bin/sh
[ "$1" = get ] || exit 2
read server
case "$server" in
  helper.example.com) echo '{"ServerURL":"helper.example.com","Username":"hu","Secret":"hs"}' ;;
  store.example.com) echo '{"ServerURL":"store.example.com","Username":"su","Secret":"ss"}' ;;
  https://index.docker.io/v1/) echo '{"ServerURL":"https://index.docker.io/v1/","Username":"hub","Secret":"hubpw"}' ;;
  broken.example.com) echo 'boom' >&2; exit 3 ;;
  *) echo 'credentials not found in native keychain'; exit 1 ;;
esac
`;
  await writeFile(join(binDir, 'docker-credential-test'), helper);
  await chmod(join(binDir, 'docker-credential-test'), 0o755);
});

after(async () => {
  await rm(dir, { recursive: true, force: true });
});

function env(extra: Record<string, string> = {}): NodeJS.ProcessEnv {
  return { PATH: `${binDir}:/usr/bin:/bin`, HOME: home, DOCKER_CONFIG: dockerDir, ...extra };
}

async function dockerConfig(config: unknown): Promise<void> {
  await writeFile(join(dockerDir, 'config.json'), JSON.stringify(config));
}

test('explicit options first, then CLIP_USERNAME/CLIP_PASSWORD', async () => {
  await dockerConfig({ auths: { 'r.example.com': { auth: b64('file:pw') } } });
  const e = env({ CLIP_USERNAME: 'envu', CLIP_PASSWORD: 'envp' });
  assert.deepEqual(await findCredentials('r.example.com', 'x', { username: 'u', password: 'p', env: e }), {
    username: 'u',
    password: 'p',
    source: 'command-line options',
  });
  const fromEnv = await findCredentials('r.example.com', 'x', { env: e });
  assert.equal(fromEnv?.username, 'envu');
  assert.equal(fromEnv?.password, 'envp');
  await assert.rejects(
    findCredentials('r.example.com', 'x', { username: 'u', env: e }),
    (err: unknown) => isClipError(err) && err.code === 'BAD_ARGUMENT',
  );
  const fromFile = await findCredentials('r.example.com', 'x', { env: env() });
  assert.equal(fromFile?.username, 'file');
  assert.equal(fromFile?.password, 'pw');
});

test('docker config auths: host keys, URL keys, Docker Hub key, username/password form', async () => {
  await dockerConfig({
    auths: {
      'https://index.docker.io/v1/': { auth: b64('hubuser:hub:pass') },
      'https://r.example.com/v2/': { auth: b64('urluser:p1') },
      'plain.example.com:5000': { username: 'pu', password: 'pp' },
      'empty.example.com': {},
    },
  });
  const hub = await findCredentials('docker.io', 'library/alpine', { env: env() });
  assert.deepEqual([hub?.username, hub?.password], ['hubuser', 'hub:pass']);
  assert.match(hub!.source, /config\.json/);
  const url = await findCredentials('r.example.com', 'a/b', { env: env() });
  assert.deepEqual([url?.username, url?.password], ['urluser', 'p1']);
  const plain = await findCredentials('plain.example.com:5000', 'a', { env: env() });
  assert.deepEqual([plain?.username, plain?.password], ['pu', 'pp']);
  assert.equal(await findCredentials('empty.example.com', 'a', { env: env() }), undefined);
  assert.equal(await findCredentials('other.example.com', 'a', { env: env() }), undefined);
});

test('containers auth.json comes before docker config and may be repository-scoped', async () => {
  await dockerConfig({ auths: { 'q.example.com': { auth: b64('docker:d') } } });
  const authFile = join(dir, 'auth.json');
  await writeFile(
    authFile,
    JSON.stringify({
      auths: {
        'q.example.com/team': { auth: b64('team:t') },
        'q.example.com/team/app': { auth: b64('app:a') },
      },
    }),
  );
  const e = env({ REGISTRY_AUTH_FILE: authFile });
  assert.equal((await findCredentials('q.example.com', 'team/app', { env: e }))?.username, 'app');
  assert.equal((await findCredentials('q.example.com', 'team/other', { env: e }))?.username, 'team');
  assert.equal((await findCredentials('q.example.com', 'solo', { env: e }))?.username, 'docker');

  const runtime = join(dir, 'run');
  await mkdir(join(runtime, 'containers'), { recursive: true });
  await writeFile(join(runtime, 'containers', 'auth.json'), JSON.stringify({ auths: { 'q.example.com': { auth: b64('xdg:x') } } }));
  assert.equal((await findCredentials('q.example.com', 'solo', { env: env({ XDG_RUNTIME_DIR: runtime }) }))?.username, 'xdg');
  assert.deepEqual(credentialFiles(env({ XDG_RUNTIME_DIR: runtime })), [
    join(runtime, 'containers', 'auth.json'),
    join(home, '.config', 'containers', 'auth.json'),
    join(dockerDir, 'config.json'),
  ]);
});

test('credHelpers per registry and credsStore, through docker-credential-<name>', async () => {
  await dockerConfig({
    auths: { 'fallback.example.com': { auth: b64('fb:f') } },
    credHelpers: { 'helper.example.com': 'test', 'broken.example.com': 'test', 'missing.example.com': 'nonexistent' },
    credsStore: 'test',
  });
  const viaHelper = await findCredentials('helper.example.com', 'a', { env: env() });
  assert.deepEqual([viaHelper?.username, viaHelper?.password], ['hu', 'hs']);
  assert.match(viaHelper!.source, /docker-credential-test/);
  const viaStore = await findCredentials('store.example.com', 'a', { env: env() });
  assert.deepEqual([viaStore?.username, viaStore?.password], ['su', 'ss']);
  const hub = await findCredentials('docker.io', 'library/alpine', { env: env() });
  assert.deepEqual([hub?.username, hub?.password], ['hub', 'hubpw']);
  // The store has nothing for it: inline auths still count.
  assert.equal((await findCredentials('fallback.example.com', 'a', { env: env() }))?.username, 'fb');
  assert.equal(await findCredentials('nothing.example.com', 'a', { env: env() }), undefined);
  await assert.rejects(
    findCredentials('broken.example.com', 'a', { env: env() }),
    (e: unknown) => isClipError(e) && e.code === 'UNAUTHORIZED' && /boom/.test(e.message),
  );
  await assert.rejects(
    findCredentials('missing.example.com', 'a', { env: env() }),
    (e: unknown) => isClipError(e) && /docker-credential-nonexistent/.test(e.message),
  );
  // A credsStore whose program is missing (docker-credential-desktop outside Docker Desktop) is skipped.
  await dockerConfig({ auths: { 'x.example.com': { auth: b64('xu:xp') } }, credsStore: 'desktop-missing' });
  assert.equal((await findCredentials('x.example.com', 'a', { env: env() }))?.username, 'xu');
});

test('malformed config files are reported with their path', async () => {
  await writeFile(join(dockerDir, 'config.json'), '{ not json');
  await assert.rejects(
    findCredentials('x.example.com', 'a', { env: env() }),
    (e: unknown) => isClipError(e) && e.message.includes(join(dockerDir, 'config.json')),
  );
  await dockerConfig({ auths: { 'x.example.com': { auth: b64('nocolon') } } });
  await assert.rejects(findCredentials('x.example.com', 'a', { env: env() }), /username:password/);
});
