// Runs the clip CLI (bin/clip.js, built; or the installed command bin/clip,
// its sh wrapper) as a child process and captures exit code, stdout (bytes)
// and stderr.

import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const BIN = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../../bin/clip.js');

export interface CliResult {
  code: number;
  stdout: Buffer;
  stderr: string;
}

let dataDir: string | undefined;

/**
 * A data dir of this test process for commands run without one: `clip index`
 * keeps a copy of each index in the local index store, which must not fill
 * the machine's /var/lib/clip.
 */
function testDataDir(): string {
  if (dataDir === undefined) {
    const dir = mkdtempSync(path.join(tmpdir(), `clip-testdata-${process.pid}-`));
    process.on('exit', () => rmSync(dir, { recursive: true, force: true }));
    dataDir = dir;
  }
  return dataDir;
}

export function runClip(args: string[], opts: { env?: NodeJS.ProcessEnv; input?: string; wrapper?: boolean } = {}): Promise<CliResult> {
  return new Promise((resolve, reject) => {
    const [cmd, argv]: [string, string[]] = opts.wrapper ? [BIN.replace(/\.js$/, ''), args] : [process.execPath, [BIN, ...args]];
    const env = { ...process.env, ...opts.env };
    env['CLIP_DATA_DIR'] ??= testDataDir();
    const child = spawn(cmd, argv, { env, stdio: ['pipe', 'pipe', 'pipe'] });
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    child.stdout.on('data', (b: Buffer) => out.push(b));
    child.stderr.on('data', (b: Buffer) => err.push(b));
    child.on('error', reject);
    child.on('close', (code) => resolve({ code: code ?? -1, stdout: Buffer.concat(out), stderr: Buffer.concat(err).toString('utf8') }));
    child.stdin.end(opts.input ?? '');
  });
}
