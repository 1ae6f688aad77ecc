// Runs one command in a runc container whose rootfs is a given directory
// (runc from Debian), and returns its exit code and output. gVisor's runsc
// speaks the same command line and bundle format, so it runs here too.

import { execFile } from 'node:child_process';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';

const exec = promisify(execFile);

export interface ContainerResult {
  code: number;
  stdout: string;
  stderr: string;
}

export interface RuntimeOptions {
  /** The OCI runtime binary: 'runc' (default) or 'runsc'. */
  runtime?: string;
  /** Global flags before the subcommand (runsc: --platform=ptrace --network=none). */
  flags?: string[];
}

export async function runContainer(rootfs: string, args: string[], opts: RuntimeOptions = {}): Promise<ContainerResult> {
  const runtime = opts.runtime ?? 'runc';
  const flags = opts.flags ?? [];
  const bundle = await mkdtemp(path.join(tmpdir(), 'clip-bundle-'));
  const state = path.join(bundle, 'state');
  const id = `clip-test-${process.pid}-${Date.now()}`;
  try {
    await exec('runc', ['spec'], { cwd: bundle });
    const spec = JSON.parse(await readFile(path.join(bundle, 'config.json'), 'utf8'));
    spec.root = { path: rootfs, readonly: false };
    spec.process.terminal = false;
    spec.process.args = args;
    await writeFile(path.join(bundle, 'config.json'), JSON.stringify(spec));
    try {
      const { stdout, stderr } = await exec(runtime, ['--root', state, ...flags, 'run', '--bundle', bundle, id], { timeout: 60_000 });
      return { code: 0, stdout, stderr };
    } catch (e) {
      const err = e as { code?: number; stdout?: string; stderr?: string };
      return { code: typeof err.code === 'number' ? err.code : -1, stdout: err.stdout ?? '', stderr: err.stderr ?? '' };
    }
  } finally {
    await exec(runtime, ['--root', state, ...flags, 'delete', '--force', id]).catch(() => undefined);
    await rm(bundle, { recursive: true, force: true });
  }
}
