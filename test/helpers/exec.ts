// Run an external command for test helpers: resolves with its output, rejects
// with the command line, exit status and stderr in the message.

import { execFile } from 'node:child_process';

export interface RunResult {
  stdout: Buffer;
  stderr: string;
}

export function run(cmd: string, args: string[], opts: { env?: NodeJS.ProcessEnv; timeoutMs?: number } = {}): Promise<RunResult> {
  return new Promise((res, rej) => {
    execFile(
      cmd,
      args,
      { encoding: 'buffer', maxBuffer: 1 << 28, env: opts.env ?? process.env, timeout: opts.timeoutMs ?? 120_000 },
      (err, stdout, stderr) => {
        if (err) {
          rej(new Error(`${cmd} ${args.join(' ')} failed: ${err.message}\n${stderr.toString()}`));
        } else {
          res({ stdout, stderr: stderr.toString() });
        }
      },
    );
  });
}
