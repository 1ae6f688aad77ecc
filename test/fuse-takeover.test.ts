// Crash survival of a FUSE mount: a Supervisor (src/mount/supervisor.ts) holds
// the /dev/fuse descriptor and restarts the serving child; a reader process
// checks every byte while the test SIGKILLs the child twice, each time with a
// READ in flight that the child never answers (takeover-server.ts holds it).
// Only the kernel resending that READ to the next child lets the reader go on.
// Needs root and /dev/fuse; everything runs in child processes, so a hung
// mount never blocks this process.

import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { type ChildProcessWithoutNullStreams, spawn } from 'node:child_process';
import { once } from 'node:events';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { createInterface } from 'node:readline';
import { forceUnmount, isMounted } from '../src/fuse/index.js';
import { alive, clipWorkspace, sweepClipMounts } from './helpers/mounts.js';
import { HOLD, FILES, contentOf } from './helpers/takeover-tree.js';

const canMount = process.getuid?.() === 0 && fs.existsSync('/dev/fuse');
const skip = canMount ? false : 'needs root and /dev/fuse';
const helper = (name: string) => new URL(`./helpers/${name}`, import.meta.url).pathname;

type Line = Record<string, unknown>;

/** A child whose stdout is JSON lines; `next` waits for the first line (seen or to come) that matches. */
class JsonChild {
  readonly lines: Line[] = [];
  private waiters: Array<{ match: (l: Line) => boolean; resolve: (l: Line) => void }> = [];
  readonly exited: Promise<[number | null, NodeJS.Signals | null]>;
  stderr = '';

  constructor(readonly proc: ChildProcessWithoutNullStreams) {
    this.exited = once(proc, 'exit') as Promise<[number | null, NodeJS.Signals | null]>;
    proc.stderr.setEncoding('utf8').on('data', (d: string) => (this.stderr += d));
    createInterface({ input: proc.stdout }).on('line', (text) => {
      let l: Line;
      try {
        l = JSON.parse(text) as Line;
      } catch {
        l = { event: 'text', text };
      }
      this.lines.push(l);
      this.waiters = this.waiters.filter((w) => (w.match(l) ? (w.resolve(l), false) : true));
    });
  }

  next(match: (l: Line) => boolean): Promise<Line> {
    const seen = this.lines.find(match);
    if (seen) return Promise.resolve(seen);
    return new Promise((resolve) => this.waiters.push({ match, resolve }));
  }

  event(name: string, extra: Line = {}): Promise<Line> {
    return this.next((l) => l['event'] === name && Object.entries(extra).every(([k, v]) => l[k] === v));
  }

  get running(): boolean {
    return this.proc.exitCode === null && this.proc.signalCode === null;
  }
}

function startSupervisor(mountpoint: string, hold: string): JsonChild {
  return new JsonChild(
    spawn(process.execPath, [helper('takeover-supervisor.js'), mountpoint], {
      env: { ...process.env, TAKEOVER_HOLD: hold },
      stdio: ['ignore', 'pipe', 'pipe'],
    }) as unknown as ChildProcessWithoutNullStreams,
  );
}

/** Stops what a test started, whatever state it is in: reader, supervisor (SIGTERM unmounts), leftovers. */
async function cleanUp(mountpoint: string, sup: JsonChild | undefined, reader?: JsonChild): Promise<void> {
  if (reader?.running) {
    reader.proc.kill('SIGKILL');
    await reader.exited;
  }
  if (sup?.running) {
    sup.proc.kill('SIGTERM');
    await sup.exited;
  }
  for (const l of sup?.lines ?? []) {
    const pid = l['event'] === 'server-started' ? (l['pid'] as number) : undefined;
    if (pid !== undefined && alive(pid)) process.kill(pid, 'SIGKILL');
  }
  if (isMounted(mountpoint)) await forceUnmount(mountpoint);
}

describe('FUSE takeover through a supervisor', { skip, timeout: 120_000 }, () => {
  let root: string;

  before(async () => {
    sweepClipMounts();
    root = (await clipWorkspace('takeover')).dir;
  });

  after(() => {
    fs.rmSync(root, { recursive: true, force: true });
  });

  it('SIGKILL of the serving process twice while reading: no read error, every byte right, still mounted', async () => {
    const mp = path.join(root, 'kill');
    fs.mkdirSync(mp);
    // Generations 1 and 2 each hold a READ of the hold file unanswered; generation 3 serves everything.
    const sup = startSupervisor(mp, '1,2');
    let reader: JsonChild | undefined;
    try {
      await sup.event('serving', { generation: 1 });
      reader = new JsonChild(spawn(process.execPath, [helper('takeover-reader.js'), mp], { stdio: ['pipe', 'pipe', 'pipe'] }));

      const held1 = await sup.event('holding', { generation: 1 });
      process.kill(held1['pid'] as number, 'SIGKILL');
      // The READ the first server had read reaches the second one again, marked as resent.
      const held2 = await sup.event('holding', { generation: 2 });
      assert.equal(held2['resent'], true, 'the second server got the held READ again, flagged FUSE_UNIQUE_RESEND');
      process.kill(held2['pid'] as number, 'SIGKILL');
      const served = await sup.event('served-resent', { generation: 3, ino: HOLD.ino });
      assert.equal(served['offset'], held1['offset'], 'the third server answered the very READ the first one held');

      // The reader carries on through the third server: more whole passes, the hold file read again.
      reader.proc.stdin.write('report\n');
      const before = (await reader.event('report'))['passes'] as number;
      let progress: Line;
      do {
        const n = reader.lines.length;
        reader.proc.stdin.write('report\n');
        progress = await reader.next((l) => l['event'] === 'report' && reader!.lines.indexOf(l) >= n);
      } while ((progress['passes'] as number) < before + 6 || (progress['holdReads'] as number) < 2);
      reader.proc.stdin.write('stop\n');
      const done = await reader.event('done');
      await reader.exited;

      assert.deepEqual(done['errors'], [], 'no read failed (no EIO, no ENOTCONN, no wrong byte)');
      assert.equal(done['errorCount'], 0);
      assert.ok((done['holdReads'] as number) >= 2, 'the held file was read whole, through and after both kills');
      assert.ok(isMounted(mp), 'still mounted');
      assert.deepEqual(fs.readdirSync(mp).sort(), FILES.map((f) => f.name).sort());
      assert.ok(fs.readFileSync(path.join(mp, HOLD.name)).equals(contentOf(HOLD)));

      const exits = sup.lines.filter((l) => l['event'] === 'server-exited');
      assert.deepEqual(
        exits.map((l) => [l['generation'], l['signal']]),
        [
          [1, 'SIGKILL'],
          [2, 'SIGKILL'],
        ],
      );
      const third = await sup.event('server-started', { generation: 3 });
      assert.ok(alive(third['pid'] as number), 'the third server is serving');
      assert.ok(sup.running, 'the supervisor is still up');
    } finally {
      await cleanUp(mp, sup, reader);
    }
  });

  it('SIGTERM to the supervisor unmounts and ends the serving process', async () => {
    const mp = path.join(root, 'term');
    fs.mkdirSync(mp);
    const sup = startSupervisor(mp, '');
    try {
      const started = await sup.event('server-started', { generation: 1 });
      await sup.event('serving', { generation: 1 });
      const f = FILES[7]!;
      assert.ok(fs.readFileSync(path.join(mp, f.name)).equals(contentOf(f)));

      sup.proc.kill('SIGTERM');
      const [code, signal] = await sup.exited;
      assert.deepEqual([code, signal], [0, null], sup.stderr);
      assert.equal(isMounted(mp), false, 'unmounted');
      assert.equal(alive(started['pid'] as number), false, 'the serving process has exited');
      const exit = await sup.event('server-exited', { generation: 1 });
      assert.deepEqual([exit['code'], exit['signal']], [0, null], 'the server ended on its own (ENODEV), not killed');
      assert.ok(sup.lines.some((l) => l['event'] === 'stopped'));
    } finally {
      await cleanUp(mp, sup);
    }
  });
});
