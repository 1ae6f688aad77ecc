// The node daemon's one log: JSON lines with string levels and ISO times, the
// text format, stderr when no file is given, and a file that stays bounded
// (FILE rolled to FILE.1) with its newest lines in FILE.

import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, statSync } from 'node:fs';
import { mkdtemp, readFile, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { createDaemonLog } from '../src/daemon/log.js';
import { ClipError } from '../src/errors.js';

const ISO = /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/;

async function lines(file: string): Promise<string[]> {
  return (await readFile(file, 'utf8')).split('\n').filter((l) => l !== '');
}

describe('daemon log', () => {
  let dir: string;
  before(async () => {
    dir = await mkdtemp(path.join(tmpdir(), 'clip-daemon-log-'));
  });
  after(async () => {
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  it('writes JSON lines with a string level and an ISO time, owner-only, above the level only', async () => {
    const file = path.join(dir, 'json', 'logs', 'clip.log');
    const log = createDaemonLog({ level: 'info', format: 'json', file });
    log.debug('not at info');
    log.info({ image: 'r/a@sha256:abc' }, 'mounted');
    const got = (await lines(file)).map((l) => JSON.parse(l) as Record<string, unknown>);
    assert.equal(got.length, 1, 'debug is below info');
    const rec = got[0]!;
    assert.equal(rec.level, 'info');
    assert.match(String(rec.time), ISO);
    assert.ok(Math.abs(Date.parse(String(rec.time)) - Date.now()) < 3_600_000, 'the time is now, not an epoch number');
    assert.equal(rec.msg, 'mounted');
    assert.equal(rec.image, 'r/a@sha256:abc');
    assert.equal(rec.pid, process.pid);
    assert.equal(statSync(file).mode & 0o777, 0o600);
    assert.equal(statSync(path.dirname(file)).mode & 0o777, 0o700);
  });

  it('writes one human line per record in the text format, control characters escaped', async () => {
    const file = path.join(dir, 'text.log');
    const log = createDaemonLog({ level: 'debug', format: 'text', file });
    log.debug({ layer: 'sha256:1', note: 'two words' }, 'fetched');
    log.warn('bad name \x1b[31mred\x9b');
    const [first, second, ...rest] = await lines(file);
    assert.equal(rest.length, 0);
    const m = /^(\S+) DEBUG fetched pid=(\d+) layer=sha256:1 note="two words"$/.exec(first!);
    assert.ok(m, first);
    assert.match(m[1]!, ISO);
    assert.equal(Number(m[2]), process.pid);
    assert.match(second!, /^\S+Z WARN bad name \\u001b\[31mred\\u009b pid=\d+$/);
    assert.ok(!/[\x00-\x1f\x7f-\x9f]/.test(await readFile(file, 'utf8').then((t) => t.replaceAll('\n', ''))), 'no raw control character');
  });

  it('writes to stderr when no file is given', () => {
    const mod = new URL('../src/daemon/log.js', import.meta.url).href;
    const code = `import { createDaemonLog } from ${JSON.stringify(mod)}; createDaemonLog({ level: 'info', format: 'json' }).warn('on stderr');`;
    const r = spawnSync(process.execPath, ['--input-type=module', '-e', code], { encoding: 'utf8' });
    assert.equal(r.status, 0, r.stderr);
    assert.equal(r.stdout, '');
    const rec = JSON.parse(r.stderr.trim()) as Record<string, unknown>;
    assert.equal(rec.level, 'warn');
    assert.equal(rec.msg, 'on stderr');
    assert.match(String(rec.time), ISO);
  });

  it('keeps the file bounded: rolls FILE to FILE.1, replacing the older one, newest lines in FILE', async () => {
    const file = path.join(dir, 'bounded.log');
    const maxBytes = 4096;
    const log = createDaemonLog({ level: 'info', format: 'json', file, maxBytes });
    const pad = 'x'.repeat(60);
    let longest = 0;
    const count = 150; // about 3.5 x maxBytes: two rolls at least
    for (let i = 0; i < count; i++) log.info({ seq: i, pad }, 'line');
    const now = await lines(file);
    const older = await lines(`${file}.1`);
    for (const l of [...older, ...now]) longest = Math.max(longest, Buffer.byteLength(l) + 1);
    const size = statSync(file).size + statSync(`${file}.1`).size;
    assert.ok(size <= 2 * maxBytes + longest, `FILE + FILE.1 = ${size} bytes, bound ${2 * maxBytes} + one line`);
    assert.ok(statSync(file).size <= maxBytes && statSync(`${file}.1`).size <= maxBytes);
    const seqs = (ls: string[]) => ls.map((l) => (JSON.parse(l) as { seq: number }).seq);
    assert.equal(seqs(now).at(-1), count - 1, 'the newest line is in FILE');
    assert.deepEqual(
      [...seqs(older), ...seqs(now)],
      [...Array(older.length + now.length).keys()].map((k) => count - older.length - now.length + k),
      'FILE.1 then FILE hold the latest lines in order, none torn',
    );
    assert.ok(seqs(older)[0]! > 0, 'the first FILE.1 was replaced by the second roll');
    assert.equal(statSync(`${file}.1`).mode & 0o777, 0o600);
  });

  it('counts what an existing file already holds, and refuses a symlink or a bad bound', async () => {
    const file = path.join(dir, 'existing.log');
    await writeFile(file, 'y'.repeat(1000) + '\n', { mode: 0o644 });
    const log = createDaemonLog({ level: 'info', format: 'json', file, maxBytes: 1000 });
    assert.equal(statSync(file).mode & 0o777, 0o600, 'an older wider mode is narrowed');
    log.info('first');
    assert.equal((await lines(`${file}.1`))[0], 'y'.repeat(1000), 'the full file was rolled before the new line');
    assert.equal((JSON.parse((await lines(file))[0]!) as { msg: string }).msg, 'first');

    const link = path.join(dir, 'link.log');
    await symlink(path.join(dir, 'target.log'), link);
    assert.throws(
      () => createDaemonLog({ level: 'info', format: 'json', file: link }),
      (e: unknown) => {
        assert.ok(e instanceof ClipError);
        assert.match(e.message, /link\.log: too many levels of symbolic links/);
        return true;
      },
    );
    assert.ok(!existsSync(path.join(dir, 'target.log')), 'nothing written through the link');
    assert.throws(() => createDaemonLog({ level: 'info', format: 'json', file, maxBytes: 0 }), ClipError);
  });
});
