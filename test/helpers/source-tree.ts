// Builds a directory tree with every kind of entry an archive must keep:
// files (empty, multi-span, setuid/setgid), hard links, symlinks (relative,
// absolute, long, dangling, with an xattr), char and block devices, a fifo,
// a socket (to be skipped), xattrs (user, trusted, security.capability with
// binary bytes, a value with a newline), long non-ASCII names, owners beyond
// what ustar holds, and nanosecond (and negative) mtimes set last, deepest
// first. Needs root (mknod, chown, trusted.* xattrs).

import { spawnSync } from 'node:child_process';
import { chmod, chown, link, mkdir, symlink, writeFile } from 'node:fs/promises';
import net from 'node:net';
import path from 'node:path';
import { capabilityV2, CAP_NET_BIND_SERVICE } from './fixtures.js';
import { createPrng } from './prng.js';

export const BIG_FILE = 'data/big.bin';
export const BIG_SIZE = 3 * 1024 * 1024 + 12345;
export const SOCKET = 'run/app.sock';
export const LONG_NAME = `names/${'é'.repeat(70)}-long.txt`;

function sh(cmd: string, args: string[]): void {
  const r = spawnSync(cmd, args, { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`${cmd} ${args.join(' ')} failed: ${r.stderr}`);
}

export interface SourceTree {
  root: string;
  /** The bytes of the big multi-span file. */
  big: Buffer;
  /** Stops the socket's listener (after the comparisons: closing may unlink it). */
  close(): Promise<void>;
}

export async function buildSourceTree(root: string): Promise<SourceTree> {
  const p = (rel: string): string => path.join(root, rel);
  await mkdir(root, { recursive: true });
  for (const d of ['bin', 'data', 'empty', 'ro', 'sticky', 'deep/a/b/c', 'links', 'dev', 'run', 'names', 'owned'])
    await mkdir(p(d), { recursive: true });
  const big = createPrng(42).bytes(BIG_SIZE);
  await writeFile(p(BIG_FILE), big);
  await writeFile(p('data/text.txt'), 'some text\n'.repeat(5000));
  await writeFile(p('empty.txt'), '');
  await writeFile(p('bin/tool'), '#!/bin/sh\necho tool\n');
  await writeFile(p('bin/sgid'), 'sgid\n');
  await writeFile(p('deep/a/b/c/leaf.txt'), 'leaf\n');
  await writeFile(p(LONG_NAME), 'long name\n');
  await writeFile(p('owned/file'), 'owned\n');
  await writeFile(p('owned/big-ids'), 'big ids\n');
  await link(p('data/text.txt'), p('links/hard1'));
  await link(p('data/text.txt'), p('links/hard2'));
  await symlink('../data/text.txt', p('links/rel'));
  await symlink('/etc/hostname', p('links/abs'));
  await symlink('x'.repeat(200), p('links/long'));
  await symlink('nowhere', p('links/dangling'));
  sh('mknod', [p('dev/null'), 'c', '1', '3']);
  sh('mknod', [p('dev/loop0'), 'b', '7', '0']);
  sh('mknod', [p('dev/wide'), 'c', '259', '1048575']);
  sh('mkfifo', [p('run/fifo')]);
  const server = net.createServer();
  await new Promise<void>((r) => server.listen(p(SOCKET), r));
  await chown(p('owned/file'), 4242, 4343);
  await chown(p('owned/big-ids'), 3_000_000, 4_000_000);
  await chmod(p('bin/tool'), 0o4755);
  await chmod(p('bin/sgid'), 0o2711);
  await chmod(p('sticky'), 0o1777);
  await chmod(p('dev/null'), 0o666);
  sh('setfattr', ['-n', 'user.comment', '-v', '0x68656c6c6f0a776f726c64', p('data/text.txt')]);
  sh('setfattr', ['-n', 'security.capability', '-v', '0x' + capabilityV2([CAP_NET_BIND_SERVICE]).toString('hex'), p('bin/tool')]);
  sh('setfattr', ['-n', 'trusted.note', '-v', '0x00ff00', p('data')]);
  sh('setfattr', ['-h', '-n', 'trusted.sym', '-v', 'on-a-symlink', p('links/rel')]);
  // Times last (creating entries moves their parents' mtimes), deepest first.
  const times: [string, string][] = [
    [BIG_FILE, '1700000000.123456789'],
    ['data/text.txt', '1600000000.000000001'],
    ['empty.txt', '-100.25'],
    ['links/rel', '1500000000.5'],
    ['links/long', '1234567890.987654321'],
    ['dev/null', '1000000000.1'],
    ['run/fifo', '1111111111.111111111'],
    [LONG_NAME, '1222222222.222222222'],
    ['deep/a/b/c/leaf.txt', '1333333333.333333333'],
    ['deep/a/b/c', '1444444444.444444444'],
    ['deep/a/b', '1444444444.1'],
    ['deep/a', '1444444444.2'],
    ['deep', '1444444444.3'],
    ['ro', '1555555555.555555555'],
    ['data', '1666666666.666666666'],
    ['', '1777777777.777777777'],
  ];
  for (const [rel, t] of times) sh('touch', ['-h', '-d', `@${t}`, p(rel)]);
  await chmod(p('ro'), 0o555);
  return { root, big, close: () => new Promise((r) => server.close(() => r())) };
}
