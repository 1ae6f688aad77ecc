// A foreground `clip daemon` of a test workspace (as systemd would run it),
// ready once its containerd snapshotter socket answers; stopped by its pid.

import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { PsReply } from '../../src/daemon/api.js';
import { runClip } from './cli.js';

const BIN = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../../bin/clip.js');

export interface ClipDaemon {
  child: ChildProcess;
  /** $CLIP_STATE_DIR/snapshotter.sock: containerd's [proxy_plugins.clip] address. */
  snapshotterSocket: string;
  /** `clip ps --json` of this daemon. */
  ps(): Promise<PsReply>;
  /** The last of what it wrote to stderr (its log, in the foreground): for failure messages. */
  output(): string;
  stop(): Promise<void>;
}

export async function startClipDaemon(env: NodeJS.ProcessEnv, args: string[] = []): Promise<ClipDaemon> {
  const snapshotterSocket = path.join(env['CLIP_STATE_DIR']!, 'snapshotter.sock');
  const child = spawn(process.execPath, [BIN, 'daemon', ...args], { env: { ...process.env, ...env }, stdio: ['ignore', 'ignore', 'pipe'] });
  let err = '';
  child.stderr.on('data', (b: Buffer) => (err = (err + b.toString()).slice(-20000)));
  const ps = async (): Promise<PsReply> => {
    const r = await runClip(['ps', '--json'], { env });
    if (r.code !== 0) throw new Error(`clip ps: ${r.stderr}`);
    return JSON.parse(r.stdout.toString()) as PsReply;
  };
  const deadline = Date.now() + 30_000;
  while (!existsSync(snapshotterSocket)) {
    if (child.exitCode !== null) throw new Error(`clip daemon exited (${child.exitCode}): ${err}`);
    if (Date.now() > deadline) throw new Error(`clip daemon did not serve the snapshotter in 30 s: ${err}`);
    await new Promise((r) => setTimeout(r, 100));
  }
  return {
    child,
    snapshotterSocket,
    ps,
    output: () => err,
    async stop() {
      if (child.exitCode !== null || child.signalCode !== null) return;
      const exited = new Promise((r) => child.once('exit', r));
      child.kill('SIGTERM');
      await exited;
    },
  };
}
