// The emulated registry link of bench:peers: ../shared/peers/linkproxy.py (one
// token bucket, one round trip per request, body bytes and responses counted)
// in front of a loopback registry, and tlsfront.py for the peer that speaks only
// HTTPS. Every method's traffic goes through the same emulator, so bytes,
// requests and the link itself are counted and shaped the same way.

import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { createConnection } from 'node:net';
import path from 'node:path';
import { promisify } from 'node:util';
import { freePort } from '../test/helpers/registry.js';

const exec = promisify(execFile);
/** The steering repo's shared/peers: beside the checkout, or two levels up from a worktree under wt/. */
export const PEERS_TOOLS =
  process.env['CLIP_PEERS_TOOLS'] ??
  [path.resolve('../shared/peers'), path.resolve('../../shared/peers')].find((d) => existsSync(path.join(d, 'linkproxy.py'))) ??
  path.resolve('../shared/peers');

export interface LinkEmulator {
  /** "127.0.0.1:PORT", plain HTTP. */
  host: string;
  /** Body bytes served since the count was last set to 0. */
  bytes: number;
  /** Responses since `bytes` was last set to 0. */
  readonly requests: number;
  stop(): Promise<void>;
}

export interface TlsFront {
  host: string;
  cert: string;
  stop(): Promise<void>;
}

function readCount(file: string): number {
  try {
    return Number(readFileSync(file, 'utf8').trim()) || 0;
  } catch {
    return 0; // nothing served yet
  }
}

async function listening(port: number, child: ChildProcess, what: string): Promise<void> {
  for (let waited = 0; waited < 10_000; waited += 50) {
    if (child.exitCode !== null) throw new Error(`${what} exited ${child.exitCode}`);
    const up = await new Promise<boolean>((r) => {
      const s = createConnection(port, '127.0.0.1', () => (s.end(), r(true)));
      s.on('error', () => r(false));
    });
    if (up) return;
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`${what} is not listening on ${port}`);
}

function stopChild(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve();
  return new Promise((r) => {
    child.once('exit', () => r());
    process.kill(child.pid!, 'SIGTERM');
  });
}

/** linkproxy.py from a free port to `upstream` ("127.0.0.1:PORT"), `rate` bytes/s, `rttMs` per request. */
export async function startLinkEmulator(upstream: string, rate: number, rttMs: number, countFile: string): Promise<LinkEmulator> {
  const port = await freePort();
  const child = spawn(
    'python3',
    [
      path.join(PEERS_TOOLS, 'linkproxy.py'),
      String(port),
      upstream.split(':')[1]!,
      '--mbps',
      String(rate / 1e6),
      '--rtt-ms',
      String(rttMs),
      '--count-file',
      countFile,
    ],
    { stdio: ['ignore', 'ignore', 'inherit'] },
  );
  await listening(port, child, 'linkproxy.py');
  let bytesBase = 0;
  let requestsBase = 0;
  return {
    host: `127.0.0.1:${port}`,
    get bytes() {
      return readCount(countFile) - bytesBase;
    },
    set bytes(v: number) {
      bytesBase = readCount(countFile) - v;
      requestsBase = readCount(`${countFile}.requests`);
    },
    get requests() {
      return readCount(`${countFile}.requests`) - requestsBase;
    },
    stop: () => stopChild(child),
  };
}

/** tlsfront.py in front of `upstream`, with a self-signed certificate for 127.0.0.1 written into `dir`. */
export async function startTlsFront(upstream: string, dir: string): Promise<TlsFront> {
  const cert = path.join(dir, 'front.crt');
  const key = path.join(dir, 'front.key');
  await exec('openssl', [
    'req',
    '-x509',
    '-newkey',
    'rsa:2048',
    '-nodes',
    '-days',
    '2',
    '-subj',
    '/CN=127.0.0.1',
    '-addext',
    'subjectAltName=IP:127.0.0.1',
    '-keyout',
    key,
    '-out',
    cert,
  ]);
  const port = await freePort();
  const child = spawn('python3', [path.join(PEERS_TOOLS, 'tlsfront.py'), String(port), upstream.split(':')[1]!, cert, key], {
    stdio: ['ignore', 'ignore', 'inherit'],
  });
  await listening(port, child, 'tlsfront.py');
  return { host: `127.0.0.1:${port}`, cert, stop: () => stopChild(child) };
}
