// A serving child for the takeover test, started by a Supervisor: it serves
// the toy tree (takeover-tree.ts) on every handed-over connection. In the
// generations listed in TAKEOVER_HOLD it never answers READs of the hold file
// and says so on stdout, so that the test kills it with a request in flight.
// Events are JSON lines on stdout.

import { FuseSession, FuseError, UNIQUE_RESEND, attr, type FileSystem, type RequestContext } from '../../src/fuse/index.js';
import { handedOverMounts } from '../../src/mount/supervisor.js';
import { FILES, HOLD, contentOf } from './takeover-tree.js';

const S_IFDIR = 0o040000;
const S_IFREG = 0o100000;

const { generation, mounts } = handedOverMounts();
const holding = new Set((process.env['TAKEOVER_HOLD'] ?? '').split(',').filter(Boolean).map(Number)).has(generation);
const byIno = new Map(FILES.map((f) => [f.ino, f]));
const byName = new Map(FILES.map((f) => [f.name, f]));
let announced = false;

function say(event: string, extra: Record<string, unknown> = {}): void {
  process.stdout.write(`${JSON.stringify({ event, generation, pid: process.pid, ...extra })}\n`);
}

const resent = (ctx: RequestContext) => (ctx.unique & UNIQUE_RESEND) !== 0n;

const rootAttr = attr({ ino: 1, mode: S_IFDIR | 0o755, nlink: 2 });
function fileAttr(ino: number) {
  const f = byIno.get(ino);
  if (!f) throw new FuseError('ENOENT');
  return attr({ ino, mode: S_IFREG | 0o444, size: f.size });
}

const filesystem: FileSystem = {
  lookup(parent, name) {
    const f = parent === 1 ? byName.get(name) : undefined;
    if (!f) throw new FuseError('ENOENT');
    return { attr: fileAttr(f.ino), entryTimeout: 0, attrTimeout: 0 };
  },
  getattr(ino) {
    return { attr: ino === 1 ? rootAttr : fileAttr(ino), timeout: 0 };
  },
  open(ino) {
    return { directIo: byIno.get(ino)?.direct ?? false };
  },
  read(ino, _fh, offset, size, ctx) {
    const f = byIno.get(ino);
    if (!f) throw new FuseError('ENOENT');
    if (f === HOLD && holding) {
      if (!announced) say('holding', { resent: resent(ctx), offset });
      announced = true;
      return new Promise<Buffer>(() => {}); // never answered: this generation is killed with it in flight
    }
    if (resent(ctx)) say('served-resent', { ino, offset });
    return contentOf(f).subarray(offset, offset + size);
  },
  readdir(ino, _fh, offset) {
    if (ino !== 1) throw new FuseError('ENOTDIR');
    // Entry i continues at offset i + 1: a listing resumes where `offset` says.
    return [
      { name: '.', ino: 1, mode: S_IFDIR, nextOffset: 1 },
      { name: '..', ino: 1, mode: S_IFDIR, nextOffset: 2 },
      ...FILES.map((f, i) => ({ name: f.name, ino: f.ino, mode: S_IFREG, nextOffset: 3 + i })),
    ].slice(offset);
  },
};

const sessions = mounts.map((m) =>
  new FuseSession(m.fd, filesystem, {
    resume: m.connection,
    debug: process.env['TAKEOVER_DEBUG'] === '1',
    log: (level, msg) => say('log', { level, msg }),
  }).start(),
);
say('serving', { mounts: mounts.length });
await Promise.allSettled(sessions.map((s) => s.closed));
say('closed', { resentRequests: sessions.reduce((n, s) => n + s.resentRequests, 0) });
process.exit(0);
