// An S3-compatible server for tests: s3rver (npm) in its own process on a
// random 127.0.0.1 port, with one bucket, its data in a temp dir; stopped by
// process id. It accepts the access key S3RVER (secret S3RVER).

import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { request } from 'node:http';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { freePort } from './registry.js';

const S3RVER = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../../node_modules/s3rver/bin/s3rver.js');

export const S3_KEY = { AWS_ACCESS_KEY_ID: 'S3RVER', AWS_SECRET_ACCESS_KEY: 'S3RVER' };

export interface S3Server {
  host: string;
  bucket: string;
  dir: string;
  /** GET of an object straight from the server (no signing needed for s3rver). */
  get(key: string): Promise<{ status: number; body: Buffer }>;
  stop(): Promise<void>;
}

function get(host: string, pathname: string): Promise<{ status: number; body: Buffer }> {
  return new Promise((resolve, reject) => {
    const [h, p] = host.split(':');
    const req = request({ host: h, port: Number(p), path: pathname }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks) }));
      res.on('error', reject);
    });
    req.on('error', reject);
    req.end();
  });
}

export async function startS3Server(bucket = 'clip-test'): Promise<S3Server> {
  const dir = await mkdtemp(path.join(tmpdir(), 'clip-s3rver-'));
  for (let attempt = 0; attempt < 5; attempt++) {
    const port = await freePort();
    const host = `127.0.0.1:${port}`;
    const child: ChildProcess = spawn(
      process.execPath,
      [S3RVER, '-d', dir, '-a', '127.0.0.1', '-p', String(port), '--silent', '--no-vhost-buckets', '--configure-bucket', bucket],
      { stdio: 'ignore' },
    );
    const deadline = Date.now() + 15_000;
    let up = false;
    while (!up && Date.now() < deadline && child.exitCode === null) {
      up = await get(host, '/').then(
        () => true,
        () => false,
      );
      if (!up) await new Promise((r) => setTimeout(r, 100));
    }
    if (!up) {
      child.kill('SIGKILL');
      continue; // e.g. the port was taken between freePort() and listen
    }
    return {
      host,
      bucket,
      dir,
      get: (key) => get(host, `/${bucket}/${key}`),
      stop: async () => {
        if (child.exitCode === null) {
          const exited = new Promise((r) => child.once('exit', r));
          child.kill('SIGTERM');
          await exited;
        }
        await rm(dir, { recursive: true, force: true });
      },
    };
  }
  await rm(dir, { recursive: true, force: true });
  throw new Error('s3rver did not start');
}
