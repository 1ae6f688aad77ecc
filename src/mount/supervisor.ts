// A small, long-lived process that owns FUSE connections and lets the process
// serving them die: it mounts, answers INIT, keeps every /dev/fuse descriptor
// open, and runs the serving program as a child that inherits them. When the
// child dies the mounts stay connected (requests wait in the kernel), and the
// next child resumes each session with the parameters INIT settled and asks the
// kernel to resend what the dead one left unanswered (fuse/takeover.ts).
//
// Measured here (kernel 6.18, test/fuse-takeover.test.ts): SIGKILL of the child
// while a reader had a READ in flight gives the reader no error and no
// ENOTCONN; the next child receives that READ again (unique | 1 << 63) and its
// answer completes the reader's read(2). mount(2) has queued INIT by the time
// mount(8) exits, so answering it here with a blocking read does not wait.
// What the serving program must guarantee: the same inode numbers and file
// handles mean the same files in every generation (the kernel keeps using
// them), and every request may arrive twice (resend repeats the last ones).
// The supervisor itself must stay up: if it and the child both die, the last
// descriptor closes and the mounts fail with ENOTCONN.

import { type ChildProcess, spawn } from 'node:child_process';
import { once } from 'node:events';
import * as fs from 'node:fs';
import {
  type ConnectionInfo,
  type InitOptions,
  type MountOptions,
  acceptInit,
  connectionFromJson,
  connectionToJson,
  mountFuse,
  unmount,
} from '../fuse/index.js';

/** The environment variable that hands the connections to a serving child. */
export const HANDOVER_ENV = 'CLIP_FUSE_HANDOVER';

export interface SupervisedMount {
  mountpoint: string;
  mount?: MountOptions;
  /** INIT parameters (max_write, ...); every child serves with what they settled. */
  init?: InitOptions;
}

export interface SupervisorOptions {
  mounts: SupervisedMount[];
  /** The serving program: a module run with this Node, its arguments and extra environment. */
  server: { module: string; args?: string[]; env?: NodeJS.ProcessEnv };
  /** Lifecycle events (for logs and tests). */
  onEvent?: (e: SupervisorEvent) => void;
}

export type SupervisorEvent =
  | { type: 'mounted'; mountpoint: string; connection: ConnectionInfo }
  | { type: 'server-started'; pid: number; generation: number }
  | { type: 'server-exited'; pid: number; generation: number; code: number | null; signal: NodeJS.Signals | null }
  | { type: 'restart-delayed'; ms: number }
  | { type: 'stopped' };

/** One connection as a serving child receives it. */
export interface HandedOverMount {
  /** The inherited /dev/fuse descriptor. */
  fd: number;
  mountpoint: string;
  connection: ConnectionInfo;
}

/** A child that dies sooner than this after its start counts as a crash loop and is restarted with a delay. */
const QUICK_EXIT_MS = 2000;
const MAX_RESTART_DELAY_MS = 5000;
/** How long a child may keep serving files still open after the unmount at stop. */
const STOP_GRACE_MS = 10_000;

interface Held {
  fd: number;
  mountpoint: string;
  connection: ConnectionInfo;
}

export class Supervisor {
  private readonly held: Held[] = [];
  private child: ChildProcess | undefined;
  private generation = 0;
  private stopping = false;
  private quickExits = 0;
  private restartTimer: NodeJS.Timeout | undefined;
  private resolveDone!: () => void;
  /** Resolves once stop() has unmounted everything and the last child has exited. */
  readonly done = new Promise<void>((res) => (this.resolveDone = res));

  constructor(private readonly opts: SupervisorOptions) {}

  /** The pid of the process serving FUSE requests now (undefined between a crash and the restart). */
  get serverPid(): number | undefined {
    return this.child?.pid;
  }

  /** Mounts every mount, answers INIT on each and starts the first serving child. A failure unmounts what was mounted. */
  async start(): Promise<void> {
    try {
      for (const m of this.opts.mounts) {
        const mounted = await mountFuse(m.mountpoint, m.mount);
        let connection: ConnectionInfo;
        try {
          connection = acceptInit(mounted.fd, m.init);
        } catch (e) {
          await mounted.unmount().catch(() => {});
          fs.closeSync(mounted.fd);
          throw e;
        }
        this.held.push({ fd: mounted.fd, mountpoint: mounted.mountpoint, connection });
        this.emit({ type: 'mounted', mountpoint: mounted.mountpoint, connection });
      }
    } catch (e) {
      await this.release();
      throw e;
    }
    this.spawnServer();
  }

  /** SIGTERM and SIGINT stop the supervisor (unmounting everything), then the process exits. */
  stopOnSignals(): void {
    const onSignal = () => {
      this.stop().then(
        () => process.exit(0),
        () => process.exit(1),
      );
    };
    process.once('SIGTERM', onSignal);
    process.once('SIGINT', onSignal);
  }

  /**
   * Unmounts every mount (lazily where busy), lets the child finish (its reads
   * end with ENODEV), and closes the descriptors. Idempotent.
   */
  async stop(): Promise<void> {
    if (this.stopping) return this.done;
    this.stopping = true;
    clearTimeout(this.restartTimer);
    await this.release();
    this.emit({ type: 'stopped' });
    this.resolveDone();
  }

  private async release(): Promise<void> {
    for (const h of this.held) await unmount(h.mountpoint).catch(() => {});
    const child = this.child;
    if (child && child.exitCode === null && child.signalCode === null) {
      const timer = setTimeout(() => child.kill('SIGKILL'), STOP_GRACE_MS);
      await once(child, 'exit');
      clearTimeout(timer);
    }
    for (const h of this.held.splice(0)) fs.closeSync(h.fd);
  }

  private spawnServer(): void {
    const generation = ++this.generation;
    // The child's fd 3 + i is held[i] (child_process dup2s each descriptor into place).
    const handover = {
      generation,
      mounts: this.held.map((h, i) => ({ fd: 3 + i, mountpoint: h.mountpoint, connection: connectionToJson(h.connection) })),
    };
    const child = spawn(process.execPath, [this.opts.server.module, ...(this.opts.server.args ?? [])], {
      stdio: ['ignore', 'inherit', 'inherit', ...this.held.map((h) => h.fd)],
      env: { ...process.env, ...this.opts.server.env, [HANDOVER_ENV]: JSON.stringify(handover) },
    });
    const startedAt = Date.now();
    this.child = child;
    child.on('error', () => {}); // spawn failures also end in 'exit'
    child.once('exit', (code, signal) => {
      if (this.child === child) this.child = undefined;
      this.emit({ type: 'server-exited', pid: child.pid ?? 0, generation, code, signal });
      if (this.stopping) return;
      this.quickExits = Date.now() - startedAt < QUICK_EXIT_MS ? this.quickExits + 1 : 0;
      // A server that keeps dying at once is retried more slowly; requests wait in the kernel meanwhile.
      const delay = this.quickExits <= 1 ? 0 : Math.min(MAX_RESTART_DELAY_MS, 100 * 2 ** this.quickExits);
      if (delay > 0) this.emit({ type: 'restart-delayed', ms: delay });
      this.restartTimer = setTimeout(() => this.spawnServer(), delay);
    });
    if (child.pid !== undefined) this.emit({ type: 'server-started', pid: child.pid, generation });
  }

  private emit(e: SupervisorEvent): void {
    this.opts.onEvent?.(e);
  }
}

/** In a serving child: the connections its supervisor handed over, and which start of the server this is. */
export function handedOverMounts(env: NodeJS.ProcessEnv = process.env): { generation: number; mounts: HandedOverMount[] } {
  const text = env[HANDOVER_ENV];
  if (!text) throw new Error(`${HANDOVER_ENV} is not set: this program is started by a FUSE supervisor`);
  const o = JSON.parse(text) as { generation: number; mounts: { fd: number; mountpoint: string; connection: string }[] };
  return {
    generation: o.generation,
    mounts: o.mounts.map((m) => ({ fd: m.fd, mountpoint: m.mountpoint, connection: connectionFromJson(m.connection) })),
  };
}
