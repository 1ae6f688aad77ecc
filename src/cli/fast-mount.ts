// The call a container runtime makes for every container, `clip mount FILE
// --rootfs DIR` (or `clip mount FILE DIR`) with no other option, answered
// without loading the CLI: with a daemon already serving the image, the
// daemon needs ~8 ms and Node's own start ~55 ms, and the CLI's modules
// (commander, the settings checks) would add ~40 ms more (bench:daemon).
// Anything else, or anything unusual (not root, no daemon answering, a file
// that cannot be read), goes the full way, which says what is wrong.

import { realpathSync } from 'node:fs';
import http from 'node:http';
import path from 'node:path';
import { daemonPaths } from '../daemon/paths.js';
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

function post(socketPath: string, body: unknown): Promise<{ status: number; json: { mountpoint?: string; error?: string } } | undefined> {
  return new Promise((resolve) => {
    const data = Buffer.from(JSON.stringify(body));
    const req = http.request(
      { socketPath, path: '/v1/mount', method: 'POST', headers: { 'content-type': 'application/json', 'content-length': data.length } },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => {
          try {
            resolve({ status: res.statusCode ?? 0, json: JSON.parse(Buffer.concat(chunks).toString('utf8')) as { mountpoint?: string } });
          } catch {
            resolve(undefined);
          }
        });
        res.on('error', () => resolve(undefined));
      },
    );
    // No daemon, or one between two serving processes: the full way copes with both.
    req.on('error', () => resolve(undefined));
    req.end(data);
  });
}

/** Handles `args` if they are the simple mount and a daemon answers; returns whether it did (and set the exit code). */
export async function fastMount(args: string[]): Promise<boolean> {
  const simple = simpleMount(args);
  if (!simple || (typeof process.geteuid === 'function' && process.geteuid() !== 0)) return false;
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
