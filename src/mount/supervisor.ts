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
//
// With `handshake`, a child talks to it over an IPC channel: it is handed the
// state its predecessor reported ('state' messages), says when it has loaded
// it ('loaded'), and starts serving only when told ('serve'). That is how a
// planned upgrade stalls requests for one kill and one resend rather than a
// whole start: the new child loads while the old one still serves, then the
// old one is killed and only then the new one asks for the resend (asked
// earlier, a request the old one read afterwards would be lost).

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
  setReadAheadKb,
  unmount,
} from '../fuse/index.js';

/** The environment variable that hands the connections to a serving child. */
export const HANDOVER_ENV = 'CLIP_FUSE_HANDOVER';

export interface SupervisedMount {
  mountpoint: string;
  mount?: MountOptions;
  /** INIT parameters (max_write, ...); every child serves with what they settled. */
  init?: InitOptions;
  /** The kernel's readahead window for the mount, set after INIT (fuse/read-ahead-kb.ts); default: the kernel's. */
  readAheadKb?: number;
}

export interface SupervisorOptions {
  mounts: SupervisedMount[];
  /** The serving program: a module run with this Node, its arguments and extra environment. */
  server: { module: string; args?: string[]; env?: NodeJS.ProcessEnv; stdout?: number | 'inherit'; stderr?: number | 'inherit' };
  /** Talk to each child over IPC: hand over state, wait for 'loaded', then send 'serve' (see above). */
  handshake?: boolean;
  /**
   * With `handshake`: keep a spare child started (its modules loaded, nothing
   * else) to take over at once when the serving one dies, instead of starting
   * one then: the stall of a crash becomes the load of the table.
   */
  spare?: boolean;
  /** Lifecycle events (for logs and tests). */
  onEvent?: (e: SupervisorEvent) => void;
  /** Messages from the serving child other than the handshake's own. */
  onMessage?: (m: ChildMessage) => void;
  /** Run by stop() before the mounts are released (e.g. unmount what is stacked on them). */
  beforeRelease?: () => Promise<void>;
}

/** What a serving child sends its supervisor. */
export type ChildMessage =
  { type: 'state'; state: unknown } | { type: 'loaded' } | { type: 'upgrade' } | { type: 'stop' } | { type: string; [k: string]: unknown };

/** What a supervisor sends a serving child. */
export type SupervisorMessage =
  { type: 'handover'; generation: number; state: unknown } | { type: 'serve' } | { type: 'upgrade-failed'; reason: string };

export type SupervisorEvent =
  | { type: 'mounted'; mountpoint: string; connection: ConnectionInfo }
  | { type: 'server-started'; pid: number; generation: number }
  | { type: 'server-exited'; pid: number; generation: number; code: number | null; signal: NodeJS.Signals | null }
  | { type: 'restart-delayed'; ms: number }
  | { type: 'upgraded'; pid: number; generation: number; stallMs: number }
  | { type: 'warning'; message: string }
  | { type: 'stopped' };

/** One connection as a serving child receives it. */
export interface HandedOverMount {
  /** The inherited /dev/fuse descriptor. */
  fd: number;
  mountpoint: string;
  connection: ConnectionInfo;
}

/** The first handed-over descriptor in a child (0-2 are stdio, 3 the IPC channel). */
const FIRST_FD = 4;
/** A child that dies sooner than this after its start counts as a crash loop and is restarted with a delay. */
const QUICK_EXIT_MS = 2000;
const MAX_RESTART_DELAY_MS = 5000;
/** How long after a child began serving its spare is started. */
const SPARE_DELAY_MS = 1000;
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
  /** A child started by upgrade() that loads while `child` still serves. */
  private standby: ChildProcess | undefined;
  /** A child waiting, unhanded, to replace `child` if it dies (opts.spare), and its generation. */
  private spare: { child: ChildProcess; generation: number } | undefined;
  private spareTimer: NodeJS.Timeout | undefined;
  private generation = 0;
  /** The latest state a child reported; the next child is handed it. */
  private state: unknown;
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

  /** The connections held, in the order children receive them. */
  get connections(): { mountpoint: string; connection: ConnectionInfo }[] {
    return this.held.map((h) => ({ mountpoint: h.mountpoint, connection: h.connection }));
  }

  /** The latest state a child reported. */
  get currentState(): unknown {
    return this.state;
  }

  /** Sets the state handed to the next child (before start(): what a restarted daemon found). */
  setState(state: unknown): void {
    this.state = state;
  }

  /**
   * Replaces the serving child with a new one (from the program as installed
   * now); with `handshake`, the old one serves until the new one has loaded.
   * Resolves with the new child's pid once it serves.
   */
  upgrade(): Promise<number> {
    if (this.stopping) return Promise.reject(new Error('the supervisor is stopping'));
    if (!this.opts.handshake) return Promise.reject(new Error('upgrades need the handshake'));
    if (this.standby) return Promise.reject(new Error('an upgrade is already under way'));
    return new Promise((resolve, reject) => {
      const onEvent = (e: SupervisorEvent): void => {
        if (e.type === 'upgraded') resolve(e.pid);
      };
      this.upgradeWaiters.push({ onEvent, reject });
      // The spare runs the program as it was: the upgrade is for what is installed now.
      this.dropSpare();
      this.spawnServer('standby');
    });
  }
  private upgradeWaiters: { onEvent: (e: SupervisorEvent) => void; reject: (e: Error) => void }[] = [];
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
        if (m.readAheadKb !== undefined) {
          try {
            setReadAheadKb(mounted.mountpoint, m.readAheadKb);
          } catch (e) {
            // Slower sequential reads, nothing wrong: the kernel's window stays.
            this.emit({ type: 'warning', message: `cannot set readahead of ${mounted.mountpoint}: ${(e as Error).message}` });
          }
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
    for (const w of this.upgradeWaiters.splice(0)) w.reject(new Error('the supervisor stopped'));
    this.standby?.kill('SIGKILL');
    this.dropSpare();
    if (this.opts.beforeRelease) await this.opts.beforeRelease().catch(() => {});
    await this.release();
    this.emit({ type: 'stopped' });
    this.resolveDone();
  }

  private async release(): Promise<void> {
    for (const h of this.held) await unmount(h.mountpoint).catch(() => {});
    const child = this.child;
    if (child && child.exitCode === null && child.signalCode === null) {
      // A handshake child keeps its IPC channel open: it is told to end (a toy child ends on ENODEV).
      if (this.opts.handshake) child.kill('SIGTERM');
      const timer = setTimeout(() => child.kill('SIGKILL'), STOP_GRACE_MS);
      await once(child, 'exit');
      clearTimeout(timer);
    }
    for (const h of this.held.splice(0)) fs.closeSync(h.fd);
  }

  private spawnServer(role: 'serve' | 'standby' | 'spare' = 'serve'): void {
    const generation = ++this.generation;
    // The child's fd 4 + i is held[i] (child_process dup2s each descriptor into place; fd 3 is the IPC channel).
    const handover = {
      generation,
      mounts: this.held.map((h, i) => ({ fd: FIRST_FD + i, mountpoint: h.mountpoint, connection: connectionToJson(h.connection) })),
    };
    const { server } = this.opts;
    const child = spawn(process.execPath, [server.module, ...(server.args ?? [])], {
      stdio: ['ignore', server.stdout ?? 'inherit', server.stderr ?? 'inherit', 'ipc', ...this.held.map((h) => h.fd)],
      env: { ...process.env, ...server.env, [HANDOVER_ENV]: JSON.stringify(handover) },
    });
    const startedAt = Date.now();
    if (role === 'standby') this.standby = child;
    else if (role === 'spare') this.spare = { child, generation };
    else this.child = child;
    child.on('error', () => {}); // spawn failures also end in 'exit'
    child.on('message', (m: ChildMessage) => this.onChildMessage(child, generation, m));
    if (this.opts.handshake && role !== 'spare') this.sendTo(child, { type: 'handover', generation, state: this.state });
    child.once('exit', (code, signal) => {
      const wasServing = this.child === child;
      if (wasServing) this.child = undefined;
      if (this.spare?.child === child) this.spare = undefined;
      if (this.standby === child) {
        this.standby = undefined;
        const reason = `the new serving process exited (${code ?? signal}) before it served`;
        for (const w of this.upgradeWaiters.splice(0)) w.reject(new Error(reason));
        // The old one serves on, and may take changes again.
        if (this.child && !this.stopping) this.sendTo(this.child, { type: 'upgrade-failed', reason });
      }
      this.emit({ type: 'server-exited', pid: child.pid ?? 0, generation, code, signal });
      if (this.stopping || !wasServing || this.retiring.delete(child)) return;
      this.quickExits = Date.now() - startedAt < QUICK_EXIT_MS ? this.quickExits + 1 : 0;
      // A server that keeps dying at once is retried more slowly; requests wait in the kernel meanwhile.
      const delay = this.quickExits <= 1 ? 0 : Math.min(MAX_RESTART_DELAY_MS, 100 * 2 ** this.quickExits);
      if (delay > 0) this.emit({ type: 'restart-delayed', ms: delay });
      else if (this.takeSpare()) return;
      this.restartTimer = setTimeout(() => this.spawnServer(), delay);
    });
    if (child.pid !== undefined) this.emit({ type: 'server-started', pid: child.pid, generation });
  }

  /** The serving child died: the spare, already started, takes over (it is handed the state now). */
  private takeSpare(): boolean {
    const spare = this.spare;
    if (!spare || spare.child.exitCode !== null || spare.child.signalCode !== null || !spare.child.connected) return false;
    this.spare = undefined;
    this.child = spare.child;
    this.sendTo(spare.child, { type: 'handover', generation: spare.generation, state: this.state });
    return true;
  }

  /** Starts a spare a moment after a child began serving (not while it loads: they would share the CPU). */
  private keepSpare(): void {
    if (!this.opts.spare || !this.opts.handshake || this.stopping || this.spare || this.spareTimer) return;
    this.spareTimer = setTimeout(() => {
      this.spareTimer = undefined;
      if (!this.stopping && !this.spare && !this.standby) this.spawnServer('spare');
    }, SPARE_DELAY_MS);
    this.spareTimer.unref();
  }

  private dropSpare(): void {
    clearTimeout(this.spareTimer);
    this.spareTimer = undefined;
    this.spare?.child.kill('SIGKILL');
    this.spare = undefined;
  }

  /** Children being replaced by an upgrade: their exit starts no new child. */
  private readonly retiring = new Set<ChildProcess>();

  private onChildMessage(child: ChildProcess, generation: number, m: ChildMessage): void {
    if (m.type === 'state') {
      // Only the serving child's word counts; a standby's table is what it was handed.
      if (child === this.child) this.state = (m as { state: unknown }).state;
    } else if (m.type === 'loaded') {
      if (child === this.standby) void this.promote(child, generation);
      else if (child === this.child) {
        this.sendTo(child, { type: 'serve' });
        this.keepSpare();
      }
    } else if (m.type === 'upgrade') {
      this.upgrade().catch(() => {});
    } else if (m.type === 'stop') {
      void this.stop();
    } else {
      this.opts.onMessage?.(m);
    }
  }

  /** The standby child has loaded: kill the serving one, wait for it to be gone, then let the new one serve. */
  private async promote(next: ChildProcess, generation: number): Promise<void> {
    const started = performance.now();
    const old = this.child;
    if (old && old.exitCode === null && old.signalCode === null) {
      this.retiring.add(old);
      const gone = once(old, 'exit');
      old.kill('SIGKILL');
      await gone;
    }
    if (this.stopping || this.standby !== next) return;
    this.standby = undefined;
    this.child = next;
    this.sendTo(next, { type: 'serve' });
    this.keepSpare();
    const e: SupervisorEvent = { type: 'upgraded', pid: next.pid ?? 0, generation, stallMs: performance.now() - started };
    this.emit(e);
    for (const w of this.upgradeWaiters.splice(0)) w.onEvent(e);
  }

  private sendTo(child: ChildProcess, m: SupervisorMessage): void {
    if (child.connected) child.send(m, (e) => void e);
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
