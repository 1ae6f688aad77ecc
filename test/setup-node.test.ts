// scripts/setup.sh refuses a Node.js older than undici 7 needs (Debian 12's
// own nodejs is 18) with a clear message, before it installs anything. Fake
// commands on PATH play node (any version) and record every other tool called.

import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { chmod, copyFile, mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';

const REPO = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const MIN = '20.18.1';

describe('setup.sh Node.js version check', () => {
  let root: string;
  before(async () => {
    root = await mkdtemp(path.join(tmpdir(), 'clip-setup-node-'));
    // A copy of the scripts: setup.sh must never run npm ci or apt-get on the real checkout here.
    await mkdir(path.join(root, 'repo/scripts'), { recursive: true });
    for (const f of ['setup.sh', 'check-node.sh']) await copyFile(path.join(REPO, 'scripts', f), path.join(root, 'repo/scripts', f));
  });
  after(async () => {
    if (root) await rm(root, { recursive: true, force: true });
  });

  /** A bin directory whose `node --version` says `version` (none: no node), and whose other tools only log their name. */
  async function fakeBin(name: string, version: string | undefined): Promise<{ bin: string; log: string }> {
    const bin = path.join(root, name);
    const log = path.join(root, `${name}.log`);
    await mkdir(bin);
    const tools = ['npm', 'npx', 'dpkg-query', 'apt-get', 'sudo', 'systemctl', 'id'];
    if (version !== undefined) tools.push('node');
    for (const tool of tools) {
      const reply = tool === 'node' ? `echo ${version}\n` : 'exit 1\n';
      await writeFile(path.join(bin, tool), `#!/bin/sh\necho "\${0##*/} $*" >> ${log}\n${reply}`);
      await chmod(path.join(bin, tool), 0o755);
    }
    return { bin, log };
  }

  function check(bin: string, script = 'check-node.sh'): { status: number | null; stderr: string } {
    // Only the fake tools and the basics a shell script needs (dirname, grep).
    const r = spawnSync('/bin/bash', [path.join(root, 'repo/scripts', script)], {
      env: { PATH: `${bin}:/usr/bin:/bin` },
      encoding: 'utf8',
    });
    return { status: r.status, stderr: r.stderr };
  }

  it('agrees with engines in package.json', async () => {
    const pkg = JSON.parse(await readFile(path.join(REPO, 'package.json'), 'utf8')) as { engines: { node: string } };
    assert.equal(pkg.engines.node, `>=${MIN}`);
    assert.match(await readFile(path.join(REPO, 'scripts/check-node.sh'), 'utf8'), new RegExp(`^MIN=${MIN.replaceAll('.', '\\.')}$`, 'm'));
  });

  for (const [i, version] of ['v18.19.0', 'v20.9.0', 'v20.18.0', 'v19.99.99'].entries()) {
    it(`refuses ${version}`, async () => {
      const { bin } = await fakeBin(`old${i}`, version);
      const r = check(bin);
      assert.equal(r.status, 1);
      assert.match(
        r.stderr,
        new RegExp(
          `^setup: clip needs Node\\.js >= 20\\.18\\.1 .*is ${version.replaceAll('.', '\\.')}\\. Debian 12's nodejs package is 18`,
        ),
      );
      assert.equal(r.stderr.trim().split('\n').length, 1, 'one line');
    });
  }

  for (const [i, version] of ['v20.18.1', 'v20.19.5', 'v22.3.0', 'v100.0.0'].entries()) {
    it(`accepts ${version}`, async () => {
      const { bin } = await fakeBin(`new${i}`, version);
      const r = check(bin);
      assert.equal(r.status, 0, r.stderr);
      assert.equal(r.stderr, '');
    });
  }

  it('says so when there is no node at all', async () => {
    const { bin } = await fakeBin('none', undefined);
    // No /usr/bin here: the real node may live there.
    const r = spawnSync('/bin/bash', [path.join(root, 'repo/scripts/check-node.sh')], { env: { PATH: bin }, encoding: 'utf8' });
    assert.equal(r.status, 1);
    assert.match(r.stderr, /^setup: clip needs Node\.js >= 20\.18\.1 and there is no node on PATH\./);
  });

  it('setup.sh stops on Debian 12 nodejs before installing anything', async () => {
    const { bin, log } = await fakeBin('debian12', 'v18.19.0');
    const r = check(bin, 'setup.sh');
    assert.equal(r.status, 1);
    assert.match(r.stderr, /^setup: clip needs Node\.js >= 20\.18\.1 .*is v18\.19\.0\./);
    const called = (await readFile(log, 'utf8')).trim().split('\n');
    assert.deepEqual(called, ['node --version'], 'nothing but node was run');
  });
});
