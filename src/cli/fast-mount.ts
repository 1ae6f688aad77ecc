// The call a container runtime makes for every container, `clip mount FILE
// --rootfs DIR` (or `clip mount FILE DIR`) with no other option, answered
// without loading the CLI: with a daemon already serving the image, the
// daemon needs ~8 ms and Node's own start ~55 ms, and the CLI's modules
// (commander, the settings checks) would add ~40 ms more (bench:daemon).
// Anything else, or anything unusual (not root, no daemon answering, a file
// that cannot be read), goes the full way, which says what is wrong.
// bin/clip starts this call without NODE_EXTRA_CA_CERTS (parsing it is ~60% of
// Node's start here, and a unix socket needs no certificate); the full way gets
// it back in a Node of its own (fullWayWithCerts).

import { spawn } from 'node:child_process';
import { realpathSync } from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { daemonPaths } from '../daemon/paths.js';
import { isIndexFileArgument } from './index-argument.js';
import { stateDir } from '../mount/state-dir.js';

/** The arguments this path takes, or undefined for the full CLI. */
function simpleMount(args: string[]): { index: string; mountpoint?: string; rootfs?: string } | undefined {
  if (args[0] !== 'mount') return undefined;
  const rest = args.slice(1);
  if (rest.length === 3 && rest[1] === '--rootfs') return { index: rest[0]!, rootfs: rest[2]! };
  if (rest.length === 3 && rest[0] === '--rootfs') return undefined;
  if (rest.length === 2 && !rest.some((a) => a.startsWith('-'))) return { index: rest[0]!, mountpoint: rest[1]! };
  return undefined;
}

/**
 * POST /v1/mount over the unix socket, spoken by hand on node:net: loading
 * node:http costs ~8 ms here, a tenth of this path. One request, `Connection:
 * close`: the daemon (node:http) answers with a JSON body and closes.
 */
function post(socketPath: string, body: unknown): Promise<{ status: number; json: { mountpoint?: string; error?: string } } | undefined> {
  return new Promise((resolve) => {
    const data = Buffer.from(JSON.stringify(body));
    const request = `POST /v1/mount HTTP/1.1\r\nHost: clip\r\nContent-Type: application/json\r\nContent-Length: ${data.length}\r\nConnection: close\r\n\r\n`;
    const socket = net.connect(socketPath);
    const chunks: Buffer[] = [];
    socket.on('data', (c: Buffer) => chunks.push(c));
    let connected = false;
    socket.on('connect', () => (connected = true));
    // No daemon, or one between two serving processes: the full way copes with both. Once
    // connected the request may have been acted on: never sent twice.
    socket.on('error', () =>
      resolve(
        connected ? { status: 0, json: { error: 'the clip daemon closed the connection without an answer; see clip ps' } } : undefined,
      ),
    );
    socket.on('end', () => {
      const answer = Buffer.concat(chunks);
      const split = answer.indexOf('\r\n\r\n');
      const head = answer.subarray(0, Math.max(0, split)).toString('latin1');
      const status = /^HTTP\/1\.[01] (\d{3}) /.exec(head);
      try {
        if (split < 0 || !status) throw new Error('not an HTTP answer');
        let payload: Buffer = answer.subarray(split + 4);
        // A daemon of another version may answer in chunks: join them.
        if (/^transfer-encoding:\s*chunked\s*$/im.test(head)) payload = dechunk(payload);
        resolve({ status: Number(status[1]), json: JSON.parse(payload.toString('utf8')) as { mountpoint?: string; error?: string } });
      } catch {
        resolve({ status: 0, json: { error: 'the clip daemon gave no readable answer; see clip ps and its log' } });
      }
    });
    // Not end(): a half-closed request is not answered; the daemon closes after its answer.
    socket.write(Buffer.concat([Buffer.from(request), data]));
  });
}

/** The body of a chunked HTTP answer (sizes count bytes, so this works on bytes). */
function dechunk(body: Buffer): Buffer {
  const parts: Buffer[] = [];
  for (let at = 0; ;) {
    const eol = body.indexOf('\r\n', at);
    const size = eol < 0 ? NaN : parseInt(body.subarray(at, eol).toString('latin1'), 16);
    if (!Number.isSafeInteger(size) || size < 0) throw new Error('bad chunk');
    if (size === 0) return Buffer.concat(parts);
    parts.push(body.subarray(eol + 2, eol + 2 + size));
    at = eol + 2 + size + 2;
  }
}

/** Handles `args` if they are the simple mount and a daemon answers; returns whether it did (and set the exit code). */
export async function fastMount(args: string[]): Promise<boolean> {
  const simple = simpleMount(args);
  if (!simple || (typeof process.geteuid === 'function' && process.geteuid() !== 0)) return false;
  // An image reference goes the full way (it is resolved against the registry).
  if (!isIndexFileArgument(simple.index)) return false;
  let index: string;
  try {
    index = realpathSync(simple.index);
  } catch {
    return false;
  }
  const req = {
    index,
    registry: {},
    image: {},
    daemon: {},
    ...(simple.rootfs !== undefined ? { rootfs: path.resolve(simple.rootfs) } : { mountpoint: path.resolve(simple.mountpoint!) }),
  };
  const r = await post(daemonPaths(stateDir()).socket, req);
  if (!r || r.status === 503) return false;
  if (r.status === 200 && r.json.mountpoint !== undefined) {
    process.stdout.write(`${r.json.mountpoint}\n`);
    return true;
  }
  process.stderr.write(`clip: ${r.json.error ?? `the clip daemon answered ${r.status}`}\n`);
  process.exitCode = 1;
  return true;
}

/**
 * Runs the full CLI in a new Node with NODE_EXTRA_CA_CERTS given back (bin/clip
 * moved it to CLIP_NODE_EXTRA_CA_CERTS), and exits as it exits. Node reads
 * that file only at its start, and the full way may reach a registry over TLS.
 */
export function fullWayWithCerts(args: string[]): Promise<void> {
  const env: NodeJS.ProcessEnv = { ...process.env, NODE_EXTRA_CA_CERTS: process.env['CLIP_NODE_EXTRA_CA_CERTS'] };
  delete env['CLIP_NODE_EXTRA_CA_CERTS'];
  const entry = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../../bin/clip.js');
  const child = spawn(process.execPath, [...process.execArgv, entry, ...args], { stdio: 'inherit', env });
  // A runtime's or a terminal's signal is for the command, which is now the child.
  const forward = (signal: NodeJS.Signals) => child.kill(signal);
  const signals: NodeJS.Signals[] = ['SIGINT', 'SIGTERM', 'SIGHUP'];
  for (const s of signals) process.on(s, forward);
  return new Promise((resolve) => {
    child.on('error', (e) => {
      process.stderr.write(`clip: cannot start ${process.execPath}: ${e.message}\n`);
      process.exitCode = 1;
      resolve();
    });
    child.on('close', (code, signal) => {
      for (const s of signals) process.off(s, forward);
      if (signal) process.kill(process.pid, signal);
      process.exitCode = code ?? 1;
      resolve();
    });
  });
}
