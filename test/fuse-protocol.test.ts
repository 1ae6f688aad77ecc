// The FUSE session against a fake kernel: hand-built requests go in through a
// Channel, replies come out as bytes. Covers INIT negotiation by minor, the
// default answers (EROFS, ENOSYS), xattr size rules, interrupts, forgets,
// error mapping, readdir packing, and the pure helpers (mountinfo, makedev).

import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import * as fsp from 'node:fs/promises';
import {
  type Channel,
  type DirEntry,
  type Entry,
  type FileSystem,
  type RequestContext,
  FuseError,
  FuseSession,
  InitFlag,
  OPCODES,
  OPS,
  WANTED_INIT_FLAGS,
  attr,
  devMajor,
  devMinor,
  errnoOf,
  formatReply,
  formatRequest,
  makedev,
  negotiateInit,
  parseMountInfo,
  unescapeMountField,
} from '../src/fuse/index.js';
import { direntSize } from '../src/fuse/wire.js';
import { encodeInHeader, parseDirents, readAttr } from './helpers/fuse-wire.js';
import { errno } from '../src/fuse/constants.js';

interface Reply {
  unique: bigint;
  error: number;
  payload: Buffer;
}

/** Plays the kernel's side of /dev/fuse. */
class FakeKernel implements Channel {
  private onRequest?: (req: Buffer) => void;
  private onEnd?: (error?: Error) => void;
  private backlog: Buffer[] = [];
  private waiters = new Map<bigint, (r: Reply) => void>();
  private nextUnique = 2n;
  closed = false;
  replies: Reply[] = [];
  /** Uniques whose reply write fails as the kernel fails replies to requests it gave up on. */
  abandoned = new Set<bigint>();

  start(onRequest: (req: Buffer) => void, onEnd: (error?: Error) => void): void {
    this.onRequest = onRequest;
    this.onEnd = onEnd;
    for (const req of this.backlog.splice(0)) this.deliver(req);
  }

  private deliver(req: Buffer): void {
    // Like the reader thread: requests arrive as separate events, in order.
    if (this.onRequest) setImmediate(this.onRequest, req);
    else this.backlog.push(req);
  }

  write(chunks: Buffer[]): void {
    const b = Buffer.concat(chunks);
    assert.equal(b.readUInt32LE(0), b.length, 'out header length matches the write');
    const reply = { unique: b.readBigUInt64LE(8), error: Math.abs(b.readInt32LE(4)), payload: b.subarray(16) };
    if (this.abandoned.has(reply.unique)) throw Object.assign(new Error('ENOENT'), { code: 'ENOENT' });
    this.replies.push(reply);
    this.waiters.get(reply.unique)?.(reply);
  }

  close(): void {
    this.closed = true;
  }

  /** Queues one request; `reply` settles with the session's answer. */
  send(opcode: number, nodeid: number, body: Buffer = Buffer.alloc(0), o: { unique?: bigint; ext?: Buffer } = {}) {
    const unique = o.unique ?? this.nextUnique;
    this.nextUnique += 2n;
    const ext = o.ext ?? Buffer.alloc(0);
    const head = encodeInHeader({ opcode, unique, nodeid, uid: 0, gid: 0, pid: 42, totalExtlen: ext.length / 8 }, body.length + ext.length);
    const reply = new Promise<Reply>((resolve) => this.waiters.set(unique, resolve));
    this.deliver(Buffer.concat([head, body, ext]));
    return { unique, reply };
  }

  async call(opcode: number, nodeid: number, body?: Buffer, o?: { unique?: bigint; ext?: Buffer }): Promise<Reply> {
    return this.send(opcode, nodeid, body, o).reply;
  }

  unmount(): void {
    setImmediate(() => this.onEnd?.());
  }
}

const u32 = (...ns: number[]) => {
  const b = Buffer.alloc(4 * ns.length);
  ns.forEach((n, i) => b.writeUInt32LE(n, i * 4));
  return b;
};
const u64 = (...ns: Array<number | bigint>) => {
  const b = Buffer.alloc(8 * ns.length);
  ns.forEach((n, i) => b.writeBigUInt64LE(BigInt(n), i * 8));
  return b;
};
const cstr = (s: string) => Buffer.concat([Buffer.from(s), Buffer.alloc(1)]);
const readIn = (fh: number, offset: number, size: number) => Buffer.concat([u64(fh, offset), u32(size, 0), u64(0), u32(0, 0)]);

function initBody(minor: number, flags: bigint): Buffer {
  const base = u32(7, minor, 131072, Number(flags & 0xffff_ffffn));
  if (minor < 36) return base;
  return Buffer.concat([base, u32(Number(flags >> 32n)), Buffer.alloc(44)]);
}

const ALL_FLAGS = (1n << 43n) - 1n;
const ts = { sec: 1_700_000_000, nsec: 5 };

/** A tiny filesystem: / (1) holds "f" (2, with xattrs) and "slow" (3, whose read waits to be interrupted). */
function toy(overrides: Partial<FileSystem> = {}) {
  const forgets: Array<[number, number]> = [];
  const f = attr({ ino: 2, mode: 0o100644, size: 5, mtime: ts });
  const entryOf = (a: typeof f): Entry => ({ attr: a, entryTimeout: 1.5, attrTimeout: 0.25 });
  const filesystem: FileSystem = {
    lookup(parent, name) {
      if (parent === 1 && name === 'f') return entryOf(f);
      throw new FuseError('ENOENT');
    },
    forget(ino, n) {
      forgets.push([ino, n]);
    },
    getattr(ino) {
      if (ino === 1) return { attr: attr({ ino: 1, mode: 0o40755, nlink: 2 }), timeout: 1 };
      return { attr: f, timeout: 1 };
    },
    async read(ino, _fh, offset, size, ctx: RequestContext) {
      if (ino === 3) {
        await new Promise((_res, rej) => ctx.signal.addEventListener('abort', () => rej(ctx.signal.reason)));
      }
      return Buffer.from('hello').subarray(offset, offset + size + 3); // longer than asked: the session trims
    },
    readdir(_ino, _fh, offset, plus) {
      const all: DirEntry[] = [
        { name: '.', ino: 1, mode: 0o40755, nextOffset: 1, entry: entryOf(f) },
        { name: '..', ino: 1, mode: 0o40755, nextOffset: 2 },
      ];
      for (let i = 0; i < 100; i++) {
        all.push({ name: `file-${i}`, ino: 100 + i, mode: 0o100644, nextOffset: all.length + 1, ...(plus ? { entry: entryOf(f) } : {}) });
      }
      return (function* () {
        yield* all.slice(offset);
      })();
    },
    getxattr(_ino, name) {
      return name === 'user.k' ? Buffer.from('value') : undefined;
    },
    listxattr() {
      return ['user.k', 'user.other'];
    },
    ...overrides,
  };
  return { filesystem, forgets };
}

async function start(filesystem: FileSystem, opts: ConstructorParameters<typeof FuseSession>[2] = {}) {
  const k = new FakeKernel();
  const logs: string[] = [];
  const s = new FuseSession(k, filesystem, { log: (level, m) => logs.push(`${level} ${m}`), ...opts }).start();
  const init = await k.call(OPS.INIT.code, 0, initBody(45, ALL_FLAGS));
  assert.equal(init.error, 0);
  await s.ready;
  return { k, s, logs };
}

describe('FUSE INIT negotiation', () => {
  it('answers a 7.45 kernel with 7.38, the wanted flags it offers, and a 64-byte reply', async () => {
    const k = new FakeKernel();
    const s = new FuseSession(k, toy().filesystem).start();
    const r = await k.call(OPS.INIT.code, 0, initBody(45, ALL_FLAGS));
    assert.equal(r.error, 0);
    assert.equal(r.payload.length, 64);
    assert.equal(r.payload.readUInt32LE(0), 7);
    assert.equal(r.payload.readUInt32LE(4), 38);
    assert.equal(r.payload.readUInt32LE(8), 131072, 'max_readahead as offered');
    const flags = BigInt(r.payload.readUInt32LE(12)) | (BigInt(r.payload.readUInt32LE(32)) << 32n);
    assert.equal(flags, WANTED_INIT_FLAGS);
    assert.ok(!(flags & InitFlag.READDIRPLUS_AUTO) && !(flags & InitFlag.ATOMIC_O_TRUNC));
    assert.equal(r.payload.readUInt32LE(20), 1024 * 1024, 'max_write');
    assert.equal(r.payload.readUInt32LE(24), 1, 'time_gran');
    assert.equal(r.payload.readUInt16LE(28), 256, 'max_pages');
    const conn = await s.ready;
    assert.equal(conn.minor, 38);
    assert.equal(conn.kernelMinor, 45);
    k.unmount();
    await s.closed;
  });

  it('takes only offered flags, and no flags2 from kernels before 7.36', () => {
    const d = negotiateInit({
      major: 7,
      minor: 31,
      maxReadahead: 65536,
      flags: InitFlag.ASYNC_READ | InitFlag.MAX_PAGES | InitFlag.POSIX_LOCKS,
    });
    assert.equal(d.kind, 'ready');
    if (d.kind !== 'ready') return;
    assert.equal(d.out.minor, 31);
    assert.equal(d.out.flags, InitFlag.ASYNC_READ | InitFlag.MAX_PAGES);
    assert.equal(d.out.maxPages, 256);
  });

  it('sizes fuse_init_out for old minors (24 bytes before 7.23) and refuses kernels older than 7.12', async () => {
    const k = new FakeKernel();
    const s = new FuseSession(k, toy().filesystem).start();
    const r = await k.call(OPS.INIT.code, 0, u32(7, 19, 4096, Number(InitFlag.ASYNC_READ | InitFlag.BIG_WRITES)));
    assert.equal(r.error, 0);
    assert.equal(r.payload.length, 24);
    assert.equal(r.payload.readUInt32LE(4), 19);
    assert.equal(r.payload.readUInt32LE(12), Number(InitFlag.ASYNC_READ | InitFlag.BIG_WRITES));
    k.unmount();
    await s.closed;

    const k2 = new FakeKernel();
    const s2 = new FuseSession(k2, toy().filesystem).start();
    const old = await k2.call(OPS.INIT.code, 0, u32(7, 8, 4096, 0));
    assert.equal(old.error, errno.EPROTO);
    await assert.rejects(s2.ready, /older than/);
    k2.unmount();
    await s2.closed;
  });

  it('answers requests that come before INIT with EIO', async () => {
    const k = new FakeKernel();
    const s = new FuseSession(k, toy().filesystem).start();
    assert.equal((await k.call(OPS.GETATTR.code, 1, Buffer.alloc(16))).error, errno.EIO);
    k.unmount();
    await s.closed;
    await assert.rejects(s.ready);
  });
});

describe('FUSE session dispatch', () => {
  it('answers LOOKUP and GETATTR with entry_out/attr_out built from plain attributes', async () => {
    const { k, s } = await start(toy().filesystem);
    const r = await k.call(OPS.LOOKUP.code, 1, cstr('f'));
    assert.equal(r.error, 0);
    assert.equal(r.payload.length, 128);
    assert.equal(r.payload.readBigUInt64LE(0), 2n, 'nodeid');
    assert.equal(r.payload.readBigUInt64LE(16), 1n, 'entry_valid seconds');
    assert.equal(r.payload.readUInt32LE(32), 500_000_000, 'entry_valid_nsec');
    assert.equal(r.payload.readUInt32LE(36), 250_000_000, 'attr_valid_nsec');
    const a = readAttr(r.payload, 40);
    assert.equal(a.mode, 0o100644);
    assert.deepEqual(a.mtime, ts);
    assert.equal((await k.call(OPS.LOOKUP.code, 1, cstr('nope'))).error, errno.ENOENT);
    const g = await k.call(OPS.GETATTR.code, 1, Buffer.alloc(16));
    assert.equal(g.payload.length, 104);
    assert.equal(readAttr(g.payload, 16).mode, 0o40755);
    k.unmount();
    await s.closed;
  });

  it('skips request extensions (total_extlen) when decoding', async () => {
    const { k, s } = await start(toy().filesystem);
    const r = await k.call(OPS.LOOKUP.code, 1, cstr('f'), { ext: Buffer.alloc(16, 0xee) });
    assert.equal(r.error, 0);
    k.unmount();
    await s.closed;
  });

  it('answers every write-type opcode with EROFS and unknown ones with ENOSYS', async () => {
    const { k, s } = await start(toy().filesystem);
    const writes = Object.values(OPS).filter((o) => o.mutates);
    assert.ok(writes.length >= 16);
    for (const o of writes) {
      const r = await k.call(o.code, 1, Buffer.alloc(128, 0x61));
      assert.equal(r.error, errno.EROFS, `opcode ${o.code}`);
    }
    for (const code of [OPS.FSYNC.code, OPS.LSEEK.code, OPS.IOCTL.code, OPS.STATX.code, OPS.GETLK.code, 999, 4096]) {
      assert.equal((await k.call(code, 1, Buffer.alloc(64))).error, errno.ENOSYS, `opcode ${code}`);
    }
    // Opening for writing and access(W_OK) are refused too; read-only opens and access(R_OK) pass.
    assert.equal((await k.call(OPS.OPEN.code, 2, u32(1, 0))).error, errno.EROFS);
    assert.equal((await k.call(OPS.OPEN.code, 2, u32(2, 0))).error, errno.EROFS);
    assert.equal((await k.call(OPS.OPEN.code, 2, u32(0, 0))).error, 0);
    assert.equal((await k.call(OPS.ACCESS.code, 2, u32(2, 0))).error, errno.EROFS);
    assert.equal((await k.call(OPS.ACCESS.code, 2, u32(4, 0))).error, 0);
    k.unmount();
    await s.closed;
  });

  it('follows the xattr size rules: 0 asks for the size, too small is ERANGE, missing is ENODATA', async () => {
    const { k, s } = await start(toy().filesystem);
    const size = await k.call(OPS.GETXATTR.code, 2, Buffer.concat([u32(0, 0), cstr('user.k')]));
    assert.equal(size.payload.length, 8);
    assert.equal(size.payload.readUInt32LE(0), 5);
    assert.equal((await k.call(OPS.GETXATTR.code, 2, Buffer.concat([u32(4, 0), cstr('user.k')]))).error, errno.ERANGE);
    const val = await k.call(OPS.GETXATTR.code, 2, Buffer.concat([u32(5, 0), cstr('user.k')]));
    assert.equal(val.payload.toString(), 'value');
    assert.equal((await k.call(OPS.GETXATTR.code, 2, Buffer.concat([u32(64, 0), cstr('user.none')]))).error, errno.ENODATA);
    const lsize = await k.call(OPS.LISTXATTR.code, 2, u32(0, 0));
    assert.equal(lsize.payload.readUInt32LE(0), 'user.k\0user.other\0'.length);
    assert.equal((await k.call(OPS.LISTXATTR.code, 2, u32(10, 0))).error, errno.ERANGE);
    assert.equal((await k.call(OPS.LISTXATTR.code, 2, u32(100, 0))).payload.toString(), 'user.k\0user.other\0');
    k.unmount();
    await s.closed;
  });

  it('trims READ replies to the size asked', async () => {
    const { k, s } = await start(toy().filesystem);
    const r = await k.call(OPS.READ.code, 2, readIn(0, 1, 2));
    assert.equal(r.payload.toString(), 'el');
    k.unmount();
    await s.closed;
  });

  it('sends no reply to FORGET and BATCH_FORGET, and passes the counts on', async () => {
    const t = toy();
    const { k, s } = await start(t.filesystem);
    const before = k.replies.length;
    k.send(OPS.FORGET.code, 2, u64(3));
    k.send(OPS.BATCH_FORGET.code, 0, Buffer.concat([u32(2, 0), u64(2, 1, 7, 4)]));
    await k.call(OPS.STATFS.code, 1); // a later request's reply proves the earlier ones were handled
    assert.equal(k.replies.length, before + 1);
    assert.deepEqual(t.forgets, [
      [2, 3],
      [2, 1],
      [7, 4],
    ]);
    k.unmount();
    await s.closed;
  });

  it('aborts an interrupted request (EINTR) and asks the kernel to retry interrupts it cannot match', async () => {
    const { k, s } = await start(toy().filesystem);
    const slow = k.send(OPS.READ.code, 3, readIn(0, 0, 4096));
    const fast = await k.call(OPS.LOOKUP.code, 1, cstr('f'));
    assert.equal(fast.error, 0, 'a pending READ does not hold up a LOOKUP');
    assert.equal(s.inFlight, 1);
    k.send(OPS.INTERRUPT.code, 0, u64(slow.unique), { unique: slow.unique | 1n });
    assert.equal((await slow.reply).error, errno.EINTR);
    const unknown = await k.call(OPS.INTERRUPT.code, 0, u64(1000n), { unique: 1001n });
    assert.equal(unknown.error, errno.EAGAIN);
    k.unmount();
    await s.closed;
  });

  it('survives replies the kernel refuses (ENOENT for abandoned requests)', async () => {
    const { k, s, logs } = await start(toy().filesystem);
    const r = k.send(OPS.READ.code, 3, readIn(0, 0, 10));
    k.abandoned.add(r.unique);
    k.send(OPS.INTERRUPT.code, 0, u64(r.unique), { unique: r.unique | 1n });
    assert.equal((await k.call(OPS.GETATTR.code, 2, Buffer.alloc(16))).error, 0);
    while (s.inFlight > 0) await new Promise((res) => setImmediate(res));
    assert.ok(!k.replies.some((x) => x.unique === r.unique));
    assert.ok(!logs.some((l) => l.startsWith('error')), logs.join('\n'));
    k.unmount();
    await s.closed;
  });

  it('maps thrown errors: FuseError, Node fs errors, codes; anything else is EIO and logged', async () => {
    let thrown: unknown;
    const { k, s, logs } = await start(
      toy({
        getattr: async () => {
          throw thrown;
        },
      }).filesystem,
    );
    const cases: Array<[unknown, number]> = [
      [new FuseError('EACCES'), errno.EACCES],
      [await fsp.stat('/nonexistent/clip-test').catch((e: unknown) => e), errno.ENOENT],
      [Object.assign(new Error('x'), { code: 'ENOTDIR' }), errno.ENOTDIR],
      [new DOMException('gone', 'AbortError'), errno.EINTR],
      [new FuseError(9999), errno.EIO],
      [new TypeError('bug in the filesystem'), errno.EIO],
      ['a string', errno.EIO],
    ];
    for (const [e, want] of cases) {
      thrown = e;
      assert.equal((await k.call(OPS.GETATTR.code, 2, Buffer.alloc(16))).error, want, String(e));
    }
    assert.ok(
      logs.some((l) => l.startsWith('error GETATTR') && l.includes('bug in the filesystem')),
      logs.join('\n'),
    );
    assert.equal(errnoOf(new FuseError('ENOENT')), 2);
    k.unmount();
    await s.closed;
  });

  it('answers an undecodable (truncated) request with EIO and keeps going', async () => {
    const { k, s } = await start(toy().filesystem);
    assert.equal((await k.call(OPS.READ.code, 2, Buffer.alloc(8))).error, errno.EIO);
    assert.equal((await k.call(OPS.READ.code, 2, readIn(0, 0, 5))).payload.toString(), 'hello');
    k.unmount();
    await s.closed;
  });

  it('caches failed lookups when asked (nodeid 0 with an entry timeout)', async () => {
    const { k, s } = await start(toy().filesystem, { negativeTimeout: 30 });
    const r = await k.call(OPS.LOOKUP.code, 1, cstr('nope'));
    assert.equal(r.error, 0);
    assert.equal(r.payload.readBigUInt64LE(0), 0n);
    assert.equal(r.payload.readBigUInt64LE(16), 30n);
    k.unmount();
    await s.closed;
  });

  it('packs READDIR and READDIRPLUS into the kernel buffer, 8-byte aligned, resuming at offsets', async () => {
    const { k, s } = await start(toy().filesystem);
    for (const plus of [false, true]) {
      const code = plus ? OPS.READDIRPLUS.code : OPS.READDIR.code;
      const names: string[] = [];
      let offset = 0;
      let calls = 0;
      for (;;) {
        const r = await k.call(code, 1, readIn(0, offset, 1024));
        assert.equal(r.error, 0);
        assert.ok(r.payload.length <= 1024 && r.payload.length % 8 === 0);
        const ds = parseDirents(r.payload, plus);
        if (ds.length === 0) break;
        calls++;
        for (const d of ds) {
          names.push(d.name.toString());
          if (plus) {
            const dots = d.name.toString() === '.' || d.name.toString() === '..';
            assert.equal(d.nodeid, dots ? 0 : 2, `nodeid of ${d.name.toString()}`);
          }
        }
        offset = ds[ds.length - 1]!.nextOffset;
      }
      assert.equal(names.length, 102);
      assert.deepEqual(names.slice(0, 3), ['.', '..', 'file-0']);
      assert.equal(names[101], 'file-99');
      assert.ok(calls > 3, `several buffers for plus=${plus}`);
    }
    assert.equal(direntSize(1, false), 32);
    assert.equal(direntSize(8, false), 32);
    assert.equal(direntSize(9, true), 152 + 16);
    k.unmount();
    await s.closed;
  });

  it('ends on ENODEV: closes the channel, resolves closed, emits close', async () => {
    const { k, s } = await start(toy().filesystem);
    let emitted = false;
    s.on('close', () => (emitted = true));
    k.unmount();
    await s.closed;
    assert.ok(k.closed && emitted);
  });

  it('prints each request and reply on one line from the table', async () => {
    const { k, s, logs } = await start(toy().filesystem, { debug: true });
    await k.call(OPS.LOOKUP.code, 1, cstr('f'));
    await k.call(OPS.LOOKUP.code, 1, cstr('zz'));
    assert.ok(
      logs.some((l) => /^debug <- \d+ LOOKUP n1 \{name:"f"\} uid=0 gid=0 pid=42$/.test(l)),
      logs.join('\n'),
    );
    assert.ok(
      logs.some((l) => /^debug -> \d+ LOOKUP OK \{attr:\{ino:2,mode:0o100644,/.test(l)),
      logs.join('\n'),
    );
    assert.ok(logs.some((l) => /^debug -> \d+ LOOKUP ENOENT$/.test(l)));
    assert.ok(logs.some((l) => /^debug -> \d+ INIT OK .*flags:ASYNC_READ\|BIG_WRITES/.test(l)));
    assert.ok(logs.every((l) => !l.includes('\n')));
    assert.equal(formatRequest({ unique: 7n, opcode: 77, nodeid: 1, uid: 0, gid: 0, pid: 1 }, {}), '<- 7 OPCODE_77 n1 uid=0 gid=0 pid=1');
    assert.equal(formatReply({ unique: 7n, opcode: 15 }, 0, Buffer.alloc(65536)), '-> 7 READ OK <65536 bytes>');
    assert.equal(formatReply({ unique: 7n, opcode: 1 }, errno.ENOENT), '-> 7 LOOKUP ENOENT');
    k.unmount();
    await s.closed;
  });

  it('has one table entry per opcode number', () => {
    assert.equal(OPCODES.size, Object.keys(OPS).length);
    assert.equal(OPCODES.get(26)?.name, 'INIT');
    assert.equal(OPCODES.get(44)?.name, 'READDIRPLUS');
    for (const n of ['FORGET', 'BATCH_FORGET', 'INTERRUPT'] as const) assert.ok(OPS[n].noReply);
  });
});

describe('FUSE helpers', () => {
  it('parses mountinfo, undoing octal escapes', () => {
    const text =
      '27 1 0:25 / / rw,relatime shared:1 - ext4 /dev/sda1 rw\n' +
      '42 27 0:39 / /tmp/a\\040b\\011c\\134d\\012e rw,nosuid master:3 - fuse.clip my\\040src ro,user_id=0\n' +
      '43 27 0:40 / /tmp/caf\xc3\xa9 rw - fuse.clip clip rw\n' +
      'garbage line\n';
    const ms = parseMountInfo(text);
    assert.equal(ms.length, 3);
    assert.equal(ms[1]!.mountPoint, '/tmp/a b\tc\\d\ne');
    assert.equal(ms[1]!.fsType, 'fuse.clip');
    assert.equal(ms[1]!.source, 'my src');
    assert.equal(ms[1]!.device, '0:39');
    assert.equal(ms[2]!.mountPoint, '/tmp/café');
    assert.equal(unescapeMountField('x\\040y'), 'x y');
  });

  it('encodes device numbers as st_rdev does', () => {
    assert.equal(makedev(1, 3), 0x103);
    assert.equal(makedev(8, 300), (8 << 8) | (300 & 0xff) | ((300 & ~0xff) << 12));
    for (const [ma, mi] of [
      [1, 3],
      [259, 65543],
      [4095, 1048575],
    ] as const) {
      assert.equal(devMajor(makedev(ma, mi)), ma);
      assert.equal(devMinor(makedev(ma, mi)), mi);
    }
  });
});
