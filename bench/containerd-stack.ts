// containerd 1.6 with the stargz and SOCI snapshotters as proxy plugins, for
// bench:peers, in a private mount namespace of its own: SOCI 0.4.1 writes to
// /var/lib/soci-snapshotter-grpc and /run/containerd/containerd.sock whatever
// its flags say, and containerd keeps shim sockets and fifos under
// /run/containerd; both paths are bind-mounted there from the stack's own dir,
// so nothing of the machine's is touched and every mount dies with the stack.
// A `sleep` holds the namespace; every daemon and command enters it (nsenter).
// The clip daemon, when asked for, runs in that namespace too (its FUSE mounts
// must be where containerd mounts the snapshots), as [proxy_plugins.clip].

import { readMounts } from '../src/fuse/index.js';
import { isAlive } from '../src/util/process.js';
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { existsSync, readFileSync, readdirSync, readlinkSync } from 'node:fs';
import { mkdir, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { promisify } from 'node:util';

const exec = promisify(execFile);
const RUN_DIR = '/run/containerd';
const SOCI_DIR = '/var/lib/soci-snapshotter-grpc';

export type Snapshotter = 'stargz' | 'soci' | 'clip';

export interface StackOptions {
  /** A new directory for everything the stack keeps (content, snapshots, caches, sockets). */
  dir: string;
  snapshotters: Snapshotter[];
  /** The emulated link every snapshotter reads through (plain HTTP). */
  linkHost: string;
  /** SOCI: its HTTPS front (SOCI fetches its index over HTTPS only) and that front's certificate. */
  tlsHost?: string;
  cert?: string;
  stargzBin?: string;
  sociBinDir?: string;
  /** clip: bin/clip.js, run by this node. */
  clipBin?: string;
}

export interface ContainerdStack {
  /** clip's state and data dirs (CLIP_STATE_DIR, CLIP_DATA_DIR) when the stack runs its daemon. */
  clipEnv: NodeJS.ProcessEnv;
  /** Runs a command inside the stack's namespace (ctr, ctr-remote, soci). */
  run(cmd: string, args: string[], opts?: { env?: NodeJS.ProcessEnv; timeoutMs?: number }): Promise<{ stdout: string; stderr: string }>;
  stop(): Promise<void>;
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

function mountNs(pid: number): string {
  return readlinkSync(`/proc/${pid}/ns/mnt`);
}

/** Processes in the namespace of `holder` (the daemons, shims left behind), by pid. */
function processesIn(holder: number): number[] {
  const ns = mountNs(holder);
  const out: number[] = [];
  for (const e of readdirSync('/proc')) {
    const pid = Number(e);
    if (!pid || pid === holder) continue;
    try {
      if (readlinkSync(`/proc/${pid}/ns/mnt`) === ns) out.push(pid);
    } catch {
      /* gone */
    }
  }
  return out;
}

async function killAndWait(pid: number, ms = 10_000): Promise<void> {
  try {
    process.kill(pid, 'SIGTERM');
  } catch {
    return;
  }
  for (let waited = 0; isAlive(pid) && waited < ms; waited += 50) await sleep(50);
  if (isAlive(pid)) process.kill(pid, 'SIGKILL');
}

export async function startContainerdStack(o: StackOptions): Promise<ContainerdStack> {
  const d = o.dir;
  for (const sub of ['run', 'soci', 'root', 'state', 'stargz-root', 'clip-state', 'clip-data'])
    await mkdir(path.join(d, sub), { recursive: true });
  const clipEnv = { ...process.env, CLIP_STATE_DIR: path.join(d, 'clip-state'), CLIP_DATA_DIR: path.join(d, 'clip-data') };
  const clipSocket = path.join(d, 'clip-state', 'snapshotter.sock');
  // Mount points only: the machine's directories stay empty.
  await mkdir(RUN_DIR, { recursive: true });
  await mkdir(SOCI_DIR, { recursive: true });
  await writeFile(
    path.join(d, 'containerd.toml'),
    [
      'version = 2',
      `root = "${d}/root"`,
      `state = "${d}/state"`,
      'disabled_plugins = ["io.containerd.grpc.v1.cri"]',
      '[grpc]',
      `  address = "${RUN_DIR}/containerd.sock"`,
      '[proxy_plugins.stargz]',
      '  type = "snapshot"',
      `  address = "${d}/stargz.sock"`,
      '[proxy_plugins.soci]',
      '  type = "snapshot"',
      `  address = "${d}/soci.sock"`,
      '[proxy_plugins.clip]',
      '  type = "snapshot"',
      `  address = "${clipSocket}"`,
      '',
    ].join('\n'),
  );
  // Registry hosts are plain HTTP on loopback; SOCI's index host is the TLS front, its layers the plain link.
  const mirror = (host: string, to: string): string => `[[resolver.host."${host}".mirrors]]\n  host = "${to}"\n  insecure = true\n`;
  await writeFile(path.join(d, 'stargz.toml'), mirror(o.linkHost, o.linkHost));
  await writeFile(path.join(d, 'soci.toml'), (o.tlsHost ? mirror(o.tlsHost, o.linkHost) : '') + mirror(o.linkHost, o.linkHost));

  const holder = spawn(
    'unshare',
    [
      '-m',
      '--propagation',
      'private',
      'sh',
      '-c',
      `mount --bind "${d}/run" ${RUN_DIR} && mount --bind "${d}/soci" ${SOCI_DIR} && exec sleep 86400`,
    ],
    { stdio: ['ignore', 'ignore', 'inherit'] },
  );
  const hpid = holder.pid!;
  const daemons: { name: string; child: ChildProcess; log: string[] }[] = [];
  const enter = (cmd: string, args: string[]): string[] => ['-t', String(hpid), '-m', '--', cmd, ...args];
  const stack: ContainerdStack = {
    clipEnv,
    async run(cmd, args, opts = {}) {
      try {
        const r = await exec('nsenter', enter(cmd, args), {
          env: opts.env ?? process.env,
          timeout: opts.timeoutMs ?? 300_000,
          maxBuffer: 64 << 20,
        });
        return { stdout: r.stdout, stderr: r.stderr };
      } catch (e) {
        const err = e as { stderr?: string; message: string };
        // The first line names the command and says what went wrong (its last line of stderr); the rest is context.
        const lines = (err.stderr ?? '').trim().split('\n');
        const what = `${path.basename(cmd)} ${args.slice(0, 2).join(' ')}`;
        throw new Error(`${what}: ${lines.at(-1) || err.message}\n${lines.slice(-12).join('\n')}`);
      }
    },
    async stop() {
      if (holder.exitCode !== null) return;
      for (const dmn of daemons.reverse()) if (dmn.child.exitCode === null) await killAndWait(dmn.child.pid!);
      for (const pid of processesIn(hpid)) await killAndWait(pid, 2000);
      // What the daemons left mounted (snapshots, FUSE layers), deepest first, before the namespace goes.
      const mounts = readMounts(`/proc/${hpid}/mountinfo`)
        .map((m) => m.mountPoint)
        .filter((m) => m.startsWith(`${d}/`) || m.startsWith(`${RUN_DIR}/`) || m.startsWith(`${SOCI_DIR}/`));
      for (const m of mounts.reverse()) await exec('nsenter', enter('umount', ['-l', m])).catch(() => undefined);
      await killAndWait(hpid);
      await rm(d, { recursive: true, force: true });
    },
  };
  const daemon = async (
    name: string,
    cmd: string,
    args: string[],
    ready: () => Promise<boolean>,
    env?: NodeJS.ProcessEnv,
  ): Promise<void> => {
    const child = spawn('nsenter', enter(cmd, args), { stdio: ['ignore', 'ignore', 'pipe'], env: env ?? process.env });
    const log: string[] = [];
    child.stderr.on('data', (b: Buffer) => log.push(b.toString()) > 50 && log.shift());
    daemons.push({ name, child, log });
    for (let waited = 0; !(await ready()); waited += 100) {
      if (child.exitCode !== null || waited > 30_000)
        throw new Error(`${name} did not start: ${log.join('').trim().split('\n').slice(-5).join(' ')}`);
      await sleep(100);
    }
  };
  try {
    for (let waited = 0; !readFileSync(`/proc/${hpid}/mountinfo`, 'utf8').includes(` ${SOCI_DIR} `); waited += 20) {
      if (holder.exitCode !== null || waited > 10_000) throw new Error('cannot make the mount namespace for containerd');
      await sleep(20);
    }
    if (o.snapshotters.includes('stargz')) {
      const bin = o.stargzBin ?? 'containerd-stargz-grpc';
      await daemon(
        'containerd-stargz-grpc',
        bin,
        ['--address', `${d}/stargz.sock`, '--root', `${d}/stargz-root`, '--config', `${d}/stargz.toml`, '--log-level', 'warn'],
        async () => existsSync(`${d}/stargz.sock`),
      );
    }
    if (o.snapshotters.includes('soci')) {
      const bin = path.join(o.sociBinDir ?? '/usr/bin', 'soci-snapshotter-grpc');
      await daemon(
        'soci-snapshotter-grpc',
        bin,
        ['-address', `${d}/soci.sock`, '-root', SOCI_DIR, '-config', `${d}/soci.toml`, '-log-level', 'warn'],
        async () => existsSync(`${d}/soci.sock`),
        o.cert ? { ...process.env, SSL_CERT_FILE: o.cert } : undefined,
      );
    }
    if (o.snapshotters.includes('clip')) {
      await daemon(
        'clip daemon',
        process.execPath,
        [o.clipBin ?? path.resolve('bin/clip.js'), 'daemon', '--log-level', 'warn'],
        async () => existsSync(clipSocket),
        clipEnv,
      );
    }
    await daemon('containerd', 'containerd', ['--config', `${d}/containerd.toml`, '--log-level', 'warn'], () =>
      stack.run('ctr', ['version'], { timeoutMs: 5000 }).then(
        () => true,
        () => false,
      ),
    );
  } catch (e) {
    await stack.stop();
    throw e;
  }
  return stack;
}
