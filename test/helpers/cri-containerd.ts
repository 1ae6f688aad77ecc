// Debian's containerd 1.6 with its CRI plugin on, for tests that play
// kubelet: its own root, state and sockets under one temp dir, loopback
// registries as plain-HTTP mirrors, a chosen snapshotter (a proxy plugin such
// as clip's, or containerd's own overlayfs) and a pause image from a registry.
// Host-network pods only: the CRI sets up no network for them, so no CNI
// plugin or config is needed (an empty conf dir of its own keeps /etc/cni out).

import { spawn, type ChildProcess } from 'node:child_process';
import { openSync, closeSync, readdirSync, readFileSync } from 'node:fs';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { readMounts } from '../../src/fuse/index.js';
import { criClient } from './cri.js';
import { run } from './exec.js';

export interface CriContainerdOptions {
  /** Registries ("127.0.0.1:PORT") pulled from over plain HTTP. */
  registries: string[];
  /** The sandbox ("pause") image, e.g. 127.0.0.1:PORT/pause:1. */
  sandboxImage: string;
  /** CRI's snapshotter (default overlayfs). */
  snapshotter?: string;
  /** Proxy snapshotter plugins: name -> unix socket. */
  proxySnapshotters?: Record<string, string>;
}

export interface CriContainerd {
  dir: string;
  /** containerd's gRPC socket (CRI and containerd's own API). */
  socket: string;
  logFile: string;
  pid: number;
  /** Runs `ctr` against this containerd (namespace k8s.io, where the CRI keeps its images). */
  ctr(args: string[]): Promise<string>;
  stop(): Promise<void>;
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

function configToml(dir: string, o: CriContainerdOptions): string {
  const cri = '[plugins."io.containerd.grpc.v1.cri"]';
  const lines = [
    'version = 2',
    `root = "${dir}/root"`,
    `state = "${dir}/state"`,
    '[grpc]',
    `  address = "${dir}/containerd.sock"`,
    '[ttrpc]',
    `  address = "${dir}/containerd.sock.ttrpc"`,
    cri,
    `  sandbox_image = "${o.sandboxImage}"`,
    // A random port: parallel containerds would all want the default 10010.
    '  stream_server_address = "127.0.0.1"',
    '  stream_server_port = "0"',
    // The sandbox asks for oom_score_adj -998, which needs CAP_SYS_RESOURCE (which CI machines in containers may lack).
    '  restrict_oom_score_adj = true',
    `${cri.slice(0, -1)}.containerd]`,
    `  snapshotter = "${o.snapshotter ?? 'overlayfs'}"`,
    // The labels (cri.image-ref, cri.layer-digest, ...) that remote snapshotters need on Prepare.
    '  disable_snapshot_annotations = false',
    `${cri.slice(0, -1)}.cni]`,
    `  bin_dir = "${dir}/cni/bin"`,
    `  conf_dir = "${dir}/cni/net.d"`,
    ...o.registries.flatMap((host) => [`${cri.slice(0, -1)}.registry.mirrors."${host}"]`, `  endpoint = ["http://${host}"]`]),
    ...Object.entries(o.proxySnapshotters ?? {}).flatMap(([name, socket]) => [
      `[proxy_plugins.${name}]`,
      '  type = "snapshot"',
      `  address = "${socket}"`,
    ]),
    '',
  ];
  return lines.join('\n');
}

/** Shims this containerd started (they outlive it): processes whose command line names its socket. */
function shimsOf(socket: string): number[] {
  const pids: number[] = [];
  for (const e of readdirSync('/proc')) {
    if (!/^\d+$/.test(e)) continue;
    try {
      const argv = readFileSync(`/proc/${e}/cmdline`, 'utf8').split('\0');
      if (path.basename(argv[0] ?? '').startsWith('containerd-shim') && argv.includes(socket)) pids.push(Number(e));
    } catch {
      /* gone */
    }
  }
  return pids;
}

async function killAndWait(pid: number, ms = 10_000): Promise<void> {
  const alive = (): boolean => {
    try {
      process.kill(pid, 0);
      return true;
    } catch {
      return false;
    }
  };
  try {
    process.kill(pid, 'SIGTERM');
  } catch {
    return;
  }
  for (let waited = 0; alive() && waited < ms; waited += 50) await sleep(50);
  if (alive()) process.kill(pid, 'SIGKILL');
}

export async function startCriContainerd(o: CriContainerdOptions): Promise<CriContainerd> {
  const dir = await mkdtemp(path.join(tmpdir(), 'containerd-cri-'));
  await mkdir(path.join(dir, 'cni', 'net.d'), { recursive: true });
  await mkdir(path.join(dir, 'cni', 'bin'), { recursive: true });
  const configFile = path.join(dir, 'containerd.toml');
  await writeFile(configFile, configToml(dir, o));
  const socket = path.join(dir, 'containerd.sock');
  const logFile = path.join(dir, 'containerd.log');
  const logFd = openSync(logFile, 'a');
  const child: ChildProcess = spawn('containerd', ['--config', configFile, '--log-level', 'info'], { stdio: ['ignore', logFd, logFd] });
  closeSync(logFd);
  const pid = child.pid!;

  const stop = async (): Promise<void> => {
    await killAndWait(pid);
    for (const shim of shimsOf(socket)) await killAndWait(shim, 5000);
    // What containerd left mounted (sandbox shm, rootfs overlays), deepest first.
    const left = readMounts()
      .map((m) => m.mountPoint)
      .filter((mp) => mp.startsWith(`${dir}/`))
      .sort((a, b) => b.length - a.length);
    for (const mp of left) await run('umount', ['-l', mp]).catch(() => undefined);
    await rm(dir, { recursive: true, force: true });
  };

  // Up when the CRI answers (the CRI plugin can fail to load while containerd itself runs).
  const cri = criClient(socket);
  try {
    for (let waited = 0; ; waited += 200) {
      if (child.exitCode !== null) throw new Error(`containerd exited with ${child.exitCode}`);
      const up = await cri.version().then(
        (v) => v.runtime_api_version === 'v1',
        (e: Error) => (/code 12/.test(e.message) ? Promise.reject(e) : false), // UNIMPLEMENTED: no CRI plugin
      );
      if (up) break;
      if (waited > 30_000) throw new Error('the CRI did not answer within 30 s');
      await sleep(200);
    }
  } catch (e) {
    const log = await readFile(logFile, 'utf8').catch(() => '');
    await stop();
    throw new Error(`containerd with the CRI did not start: ${(e as Error).message}\n${log.split('\n').slice(-20).join('\n')}`);
  } finally {
    cri.close();
  }

  let stopped = false;
  return {
    dir,
    socket,
    logFile,
    pid,
    async ctr(args) {
      const r = await run('ctr', ['--address', socket, '--namespace', 'k8s.io', ...args]);
      return r.stdout.toString('utf8');
    },
    async stop() {
      if (stopped) return;
      stopped = true;
      await stop();
    },
  };
}
