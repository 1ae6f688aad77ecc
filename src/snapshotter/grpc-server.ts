// The snapshotter on the wire: containerd's snapshots.v1.Snapshots service on
// a unix socket (containerd's [proxy_plugins] dial it), each call handed to
// the Snapshotter and its errors turned into the gRPC codes containerd maps
// back to its errdefs (NotFound, AlreadyExists, FailedPrecondition, ...).

import * as grpc from '@grpc/grpc-js';
import { chmod, mkdir, rm } from 'node:fs/promises';
import path from 'node:path';
import { isClipError } from '../errors.js';
import { serviceOf } from './protos.js';
import { SnapshotError, type Mount, type SnapshotInfo, type Snapshotter, type SnapshotterLog } from './snapshotter.js';
import type { SnapshotKind } from './store.js';

const CODES: Record<SnapshotError['code'], grpc.status> = {
  NotFound: grpc.status.NOT_FOUND,
  AlreadyExists: grpc.status.ALREADY_EXISTS,
  FailedPrecondition: grpc.status.FAILED_PRECONDITION,
  InvalidArgument: grpc.status.INVALID_ARGUMENT,
};

const KINDS: Record<SnapshotKind, string> = { view: 'VIEW', active: 'ACTIVE', committed: 'COMMITTED' };
/** Infos per List message (containerd's own server sends them in batches too). */
const LIST_BATCH = 100;

interface Timestamp {
  seconds: number;
  nanos: number;
}

function timestamp(d: Date): Timestamp {
  const ms = d.getTime();
  return { seconds: Math.floor(ms / 1000), nanos: (ms % 1000) * 1_000_000 };
}

function wireInfo(i: SnapshotInfo): Record<string, unknown> {
  return {
    name: i.name,
    parent: i.parent,
    kind: KINDS[i.kind],
    labels: i.labels,
    created_at: timestamp(i.created),
    updated_at: timestamp(i.updated),
  };
}

function wireMounts(ms: Mount[]): Record<string, unknown>[] {
  return ms.map((m) => ({ type: m.type, source: m.source, target: '', options: m.options }));
}

type Req = Record<string, unknown>;
const str = (v: unknown): string => (typeof v === 'string' ? v : '');
const labelsOf = (v: unknown): Record<string, string> => {
  const out: Record<string, string> = {};
  if (typeof v === 'object' && v !== null) for (const [k, x] of Object.entries(v)) if (typeof x === 'string') out[k] = x;
  return out;
};

export interface SnapshotServer {
  socket: string;
  close(): Promise<void>;
}

/** Serves `sn` on `socket` (a stale socket file is replaced; mode 0600: containerd runs as root). */
export async function serveSnapshotter(sn: Snapshotter, socket: string, log: SnapshotterLog): Promise<SnapshotServer> {
  const server = new grpc.Server();
  const unary =
    (name: string, fn: (req: Req) => unknown) =>
    (call: grpc.ServerUnaryCall<Req, unknown>, done: grpc.sendUnaryData<unknown>): void => {
      Promise.resolve()
        .then(() => fn(call.request))
        .then(
          (reply) => done(null, reply),
          (e: unknown) => done(toStatus(name, call.request, e, log)),
        );
    };
  server.addService(serviceOf('containerd.services.snapshots.v1.Snapshots').service, {
    Prepare: unary('Prepare', async (r) => ({
      mounts: wireMounts(await sn.prepare(str(r['key']), str(r['parent']), labelsOf(r['labels']))),
    })),
    View: unary('View', async (r) => ({ mounts: wireMounts(await sn.view(str(r['key']), str(r['parent']), labelsOf(r['labels']))) })),
    Mounts: unary('Mounts', (r) => ({ mounts: wireMounts(sn.mounts(str(r['key']))) })),
    Commit: unary('Commit', async (r) => {
      await sn.commit(str(r['name']), str(r['key']), labelsOf(r['labels']));
      return {};
    }),
    Remove: unary('Remove', async (r) => {
      await sn.remove(str(r['key']));
      return {};
    }),
    Stat: unary('Stat', (r) => ({ info: wireInfo(sn.stat(str(r['key']))) })),
    Update: unary('Update', async (r) => {
      const i = (r['info'] ?? {}) as Req;
      const mask = (r['update_mask'] as { paths?: string[] } | null | undefined)?.paths ?? [];
      return { info: wireInfo(await sn.update(str(i['name']), labelsOf(i['labels']), mask)) };
    }),
    Usage: unary('Usage', async (r) => sn.usage(str(r['key']))),
    Cleanup: unary('Cleanup', async () => {
      await sn.cleanup();
      return {};
    }),
    List: (call: grpc.ServerWritableStream<Req, unknown>) => {
      try {
        const filters = Array.isArray(call.request['filters']) ? (call.request['filters'] as unknown[]).map(str) : [];
        const infos = sn.walk(filters).map(wireInfo);
        for (let i = 0; i < infos.length; i += LIST_BATCH) call.write({ info: infos.slice(i, i + LIST_BATCH) });
        call.end();
      } catch (e) {
        call.destroy(Object.assign(new Error(), toStatus('List', call.request, e, log)));
      }
    },
  });
  await mkdir(path.dirname(socket), { recursive: true, mode: 0o700 });
  await rm(socket, { force: true });
  await new Promise<void>((resolve, reject) =>
    server.bindAsync(`unix://${socket}`, grpc.ServerCredentials.createInsecure(), (err) => (err ? reject(err) : resolve())),
  );
  await chmod(socket, 0o600);
  return {
    socket,
    close: () =>
      new Promise<void>((resolve) => {
        // Calls in flight get a moment; then the rest are cut (the next serving process answers them again).
        const timer = setTimeout(() => server.forceShutdown(), 2000);
        server.tryShutdown(() => {
          clearTimeout(timer);
          resolve();
        });
      }),
  };
}

function toStatus(call: string, req: Req, e: unknown, log: SnapshotterLog): Partial<grpc.StatusObject> {
  if (e instanceof SnapshotError) return { code: CODES[e.code], details: e.message };
  // Bad input the daemon caught (an index that cannot be served, ...): the caller's problem, said as such.
  if (isClipError(e)) {
    log.warn({ call, key: req['key'], err: e.message }, 'snapshotter call refused');
    return { code: grpc.status.FAILED_PRECONDITION, details: e.message };
  }
  log.error({ call, key: req['key'], err: (e as Error).stack }, 'snapshotter call failed');
  return { code: grpc.status.UNKNOWN, details: (e as Error).message };
}
