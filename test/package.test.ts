// The package as a user gets it: packs a fresh copy of the checkout (no dist/,
// so prepack must build), installs the tarball into an empty prefix, runs the
// `clip` command from /, and uses the library from a new ESM project whose
// code is type-checked against the shipped .d.ts files by the repo's tsc.

import assert from 'node:assert/strict';
import { execFile, execFileSync } from 'node:child_process';
import { copyFile, mkdir, mkdtemp, readFile, rm, stat, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { run } from './helpers/exec.js';
import { buildImage } from './helpers/image-builder.js';
import { unexportedTypes } from './helpers/public-types.js';

const REPO = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const TSC = path.join(REPO, 'node_modules/typescript/bin/tsc');
const NODE_DIR = path.dirname(process.execPath);
const execFileAsync = promisify(execFile);

// npm run by `npm test` exports npm_config_* and lifecycle variables: the
// installs below must see a user's plain environment, not the outer npm's.
function plainEnv(): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(process.env)) if (!/^npm_/i.test(k)) env[k] = v;
  env.PATH = `${NODE_DIR}:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin`;
  return env;
}

async function npm(args: string[], cwd: string): Promise<string> {
  // Dependencies from the npm cache where it has them, the registry otherwise.
  const argv = [...args, '--prefer-offline', '--no-audit', '--no-fund', '--loglevel=error'];
  try {
    const { stdout } = await execFileAsync('npm', argv, { cwd, env: plainEnv(), encoding: 'utf8', timeout: 90_000, maxBuffer: 1 << 26 });
    return stdout;
  } catch (e) {
    throw new Error(`npm ${argv.join(' ')} failed in ${cwd}: ${(e as Error).message}`);
  }
}

/** A fresh checkout: the files git tracks (or would, untracked but not ignored), as they are in the work tree. */
async function copyCheckout(dest: string): Promise<void> {
  const list = execFileSync('git', ['-C', REPO, 'ls-files', '-z', '--cached', '--others', '--exclude-standard'], { encoding: 'utf8' });
  for (const rel of list.split('\0')) {
    if (rel === '' || rel === 'node_modules') continue;
    const from = path.join(REPO, rel);
    const st = await stat(from).catch(() => undefined);
    if (!st?.isFile()) continue; // deleted in the work tree
    await mkdir(path.dirname(path.join(dest, rel)), { recursive: true });
    await copyFile(from, path.join(dest, rel));
  }
  // The dev dependencies prepack's build needs, without another install.
  await symlink(path.join(REPO, 'node_modules'), path.join(dest, 'node_modules'));
}

const CONSUMER = `
import { FileReader, indexImage, isClipError, loadIndex, lookupPath } from '@NAME@';
import type { ClipIndex, IndexOptions, IndexSummary, Node, ReaderOptions } from '@NAME@';

// Never called: these lines only compile if the package's types are real (not any).
export function typesAreReal(): void {
  // @ts-expect-error output is required
  const noOutput: IndexOptions = {};
  // @ts-expect-error cacheBytes is a number
  const badCache: ReaderOptions = { cacheBytes: 'lots' };
  // @ts-expect-error loadIndex takes a path
  void loadIndex(42);
  void noOutput, badCache;
}

const [image, output] = process.argv.slice(2) as [string, string];
const opts: IndexOptions = { output };
const summary: IndexSummary = await indexImage(image, opts);
const index: ClipIndex = await loadIndex(output);
const node: Node = lookupPath(index, '/hello.txt');
const readerOpts: ReaderOptions = {};
const reader = await FileReader.open(index, readerOpts);
let text: string;
try {
  text = (await reader.read(node, 0, 1 << 20)).toString('utf8');
} finally {
  await reader.close();
}
let missing = 'no error';
try {
  await loadIndex(output + '.missing');
} catch (e) {
  missing = isClipError(e) ? 'ClipError' : String(e);
}
process.stdout.write(JSON.stringify({ layers: index.layers.length, summaryType: typeof summary, text, missing }));
`;

describe('npm package', () => {
  it(
    'packs from a fresh checkout, installs into an empty prefix, runs clip and imports the typed library',
    { timeout: 180_000 },
    async () => {
      const pkg = JSON.parse(await readFile(path.join(REPO, 'package.json'), 'utf8')) as { name: string; version: string };
      assert.notEqual(pkg.name, 'clip', 'the name clip is taken on npm');
      const root = await mkdtemp(path.join(tmpdir(), 'clip-package-'));
      try {
        const checkout = path.join(root, 'checkout');
        await copyCheckout(checkout);
        await assert.rejects(stat(path.join(checkout, 'dist')), 'the copy starts without a build');

        // Pack: prepack builds; only the library, the command and the documents ship.
        const packed = JSON.parse(await npm(['pack', '--json', '--pack-destination', root], checkout)) as Array<{
          filename: string;
          files: Array<{ path: string }>;
        }>;
        const tarball = path.join(root, packed[0]!.filename);
        const files = packed[0]!.files.map((f) => f.path).sort();
        for (const f of [
          'LICENSE',
          'README.md',
          'package.json',
          'bin/clip',
          'bin/clip.js',
          'dist/src/clip.js',
          'dist/src/clip.d.ts',
          'dist/src/cli/main.js',
          // containerd's API definitions, loaded at run time by the snapshotter and clip pull.
          'proto/github.com/containerd/containerd/api/services/snapshots/v1/snapshots.proto',
        ]) {
          assert.ok(files.includes(f), `the package has ${f}`);
        }
        const stray = files.filter(
          (f) =>
            !/^dist\/src\/.*\.(js|d\.ts)$/.test(f) &&
            !/^proto\/.*\.proto$/.test(f) &&
            !['LICENSE', 'README.md', 'package.json', 'bin/clip', 'bin/clip.js'].includes(f),
        );
        assert.deepEqual(stray, [], 'nothing but the built library, its protos, the command and the documents');

        // Global install into an empty prefix; the command is named clip and runs from anywhere.
        const prefix = path.join(root, 'prefix');
        await npm(['install', '-g', '--prefix', prefix, tarball], root);
        const clip = path.join(prefix, 'bin/clip');
        const help = execFileSync(clip, ['--help'], { cwd: '/', env: plainEnv(), encoding: 'utf8' });
        assert.match(help, /^Usage: clip /);
        for (const command of ['index', 'mount', 'archive', 'cat']) assert.match(help, new RegExp(`^  ${command} `, 'm'));
        const version = execFileSync(clip, ['--version'], { cwd: '/', env: plainEnv(), encoding: 'utf8' });
        assert.match(version, new RegExp(pkg.version.replaceAll('.', '\\.')));
        const installed = path.join(prefix, 'lib/node_modules', pkg.name);
        await assert.rejects(stat(path.join(installed, 'dist/test')), 'no tests installed');

        // Every type the public API takes or returns can be named by a caller.
        assert.deepEqual(unexportedTypes(path.join(installed, 'dist/src/clip.d.ts'), installed), []);

        // A new ESM project depends on the tarball, type-checks its code against it, and runs it.
        const app = path.join(root, 'app');
        await mkdir(app);
        await writeFile(path.join(app, 'package.json'), JSON.stringify({ name: 'app', private: true, type: 'module' }));
        await npm(['install', tarball], app);
        await mkdir(path.join(app, 'node_modules/@types'), { recursive: true });
        // The repo's Node types (the app may have others already: protobufjs, under @grpc/proto-loader, depends on them).
        await rm(path.join(app, 'node_modules/@types/node'), { recursive: true, force: true });
        await symlink(path.join(REPO, 'node_modules/@types/node'), path.join(app, 'node_modules/@types/node'));
        await writeFile(
          path.join(app, 'tsconfig.json'),
          JSON.stringify({
            compilerOptions: { target: 'ES2022', module: 'NodeNext', moduleResolution: 'NodeNext', strict: true, types: ['node'] },
            files: ['main.ts'],
          }),
        );
        await writeFile(path.join(app, 'main.ts'), CONSUMER.replaceAll('@NAME@', pkg.name));
        await run(process.execPath, [TSC, '-p', app]).catch((e: Error) => assert.fail(`the consumer does not type-check:\n${e.message}`));

        const image = await buildImage({
          dir: path.join(root, 'image'),
          layers: [{ entries: [{ type: 'file', path: 'hello.txt', data: 'hello from the package\n' }] }],
        });
        const out = execFileSync(process.execPath, ['main.js', `oci:${image.dir}:${image.tag}`, path.join(root, 'app.clip')], {
          cwd: app,
          env: plainEnv(),
          encoding: 'utf8',
        });
        assert.deepEqual(JSON.parse(out), { layers: 1, summaryType: 'object', text: 'hello from the package\n', missing: 'ClipError' });
      } finally {
        await rm(root, { recursive: true, force: true });
      }
    },
  );
});
