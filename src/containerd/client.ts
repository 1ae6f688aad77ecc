// A small client of containerd's gRPC API (the services `clip pull` needs:
// content, images, snapshots, diff, leases), over its unix socket, every call
// in one namespace and, once a lease is taken, under that lease (so garbage
// collection leaves a pull's content and snapshots alone until it is done).

import * as grpc from '@grpc/grpc-js';
import { ClipError } from '../errors.js';
import { serviceOf } from '../snapshotter/protos.js';

type Req = Record<string, unknown>;
type Reply = Record<string, unknown>;

export const DEFAULT_CONTAINERD_ADDRESS = '/run/containerd/containerd.sock';

/** A gRPC error's code (grpc.status), if it is one. */
export function grpcCode(e: unknown): number | undefined {
  const c = (e as { code?: unknown }).code;
  return typeof c === 'number' ? c : undefined;
}

export interface Descriptor {
  mediaType: string;
  digest: string;
  size: number;
}

export class ContainerdClient {
  private readonly clients: Record<string, grpc.Client> = {};
  private lease: string | undefined;

  constructor(
    readonly address: string,
    readonly namespace: string,
  ) {}

  private client(service: string): grpc.Client {
    const Ctor = serviceOf(`containerd.services.${service}`);
    this.clients[service] ??= new Ctor(`unix://${this.address}`, grpc.credentials.createInsecure(), {
      'grpc.max_send_message_length': 16 * 1024 * 1024,
      'grpc.max_receive_message_length': 16 * 1024 * 1024,
    });
    return this.clients[service];
  }

  private metadata(): grpc.Metadata {
    const md = new grpc.Metadata();
    md.set('containerd-namespace', this.namespace);
    if (this.lease !== undefined) md.set('containerd-lease', this.lease);
    return md;
  }

  /** One unary call, e.g. call('images.v1.Images', 'Create', {...}). */
  call(service: string, method: string, req: Req): Promise<Reply> {
    const c = this.client(service) as unknown as Record<
      string,
      (req: Req, md: grpc.Metadata, opts: grpc.CallOptions, cb: (err: grpc.ServiceError | null, r: Reply) => void) => void
    >;
    return new Promise((resolve, reject) =>
      c[method]!.call(this.client(service), req, this.metadata(), { deadline: Date.now() + 300_000 }, (err, r) =>
        err ? reject(this.explain(err)) : resolve(r),
      ),
    );
  }

  /** A server-streaming call's messages, e.g. stream('snapshots.v1.Snapshots', 'List', {...}). */
  stream(service: string, method: string, req: Req): Promise<Reply[]> {
    const c = this.client(service) as unknown as Record<string, (req: Req, md: grpc.Metadata) => grpc.ClientReadableStream<Reply>>;
    const call = c[method]!.call(this.client(service), req, this.metadata());
    return new Promise((resolve, reject) => {
      const out: Reply[] = [];
      call.on('data', (m: Reply) => out.push(m));
      call.on('error', (e: grpc.ServiceError) => reject(this.explain(e)));
      call.on('end', () => resolve(out));
    });
  }

  private explain(err: grpc.ServiceError): Error {
    if (err.code === grpc.status.UNAVAILABLE) return new ClipError('IO', `cannot reach containerd at ${this.address}: ${err.details}`);
    return err;
  }

  /** Takes a lease every later call runs under (expiring by itself should the pull die). */
  async takeLease(expireSeconds = 3600): Promise<void> {
    const expire = new Date(Date.now() + expireSeconds * 1000).toISOString().replace(/\.\d+Z$/, 'Z');
    const r = await this.call('leases.v1.Leases', 'Create', { labels: { 'containerd.io/gc.expire': expire } });
    this.lease = (r['lease'] as { id: string }).id;
  }

  async releaseLease(): Promise<void> {
    if (this.lease === undefined) return;
    const id = this.lease;
    this.lease = undefined;
    await this.call('leases.v1.Leases', 'Delete', { id });
  }

  /**
   * Writes a blob into the content store (verified against `desc.digest` by
   * containerd) with these labels; content already there gets the labels.
   */
  async writeContent(desc: Descriptor, data: Buffer | AsyncIterable<Buffer>, labels: Record<string, string>): Promise<void> {
    const ref = `clip-pull-${desc.digest}`;
    const stream = (
      this.client('content.v1.Content') as unknown as { Write(md: grpc.Metadata): grpc.ClientDuplexStream<Req, Reply> }
    ).Write(this.metadata());
    const done = new Promise<void>((resolve, reject) => {
      stream.on('data', () => undefined);
      stream.on('error', reject);
      stream.on('end', resolve);
    });
    done.catch(() => undefined); // awaited below; an early failure must not go unhandled meanwhile
    const send = (m: Req): Promise<void> => new Promise((resolve, reject) => stream.write(m, (e?: Error) => (e ? reject(e) : resolve())));
    try {
      let offset = 0;
      const head = { ref, total: desc.size, expected: desc.digest };
      // 1 MiB messages, well under gRPC's bound on one message, also for a whole buffer (a config may be large).
      for await (const chunk of Buffer.isBuffer(data) ? [data] : data) {
        for (let i = 0; i < chunk.length; i += 1 << 20) {
          const part = chunk.subarray(i, i + (1 << 20));
          await send({ ...head, action: 'WRITE', offset, data: part });
          offset += part.length;
        }
      }
      await send({ ...head, action: 'COMMIT', offset, labels });
      stream.end();
      await done;
    } catch (e) {
      stream.cancel();
      if (grpcCode(e) !== grpc.status.ALREADY_EXISTS) throw e;
      await this.labelContent(desc.digest, labels);
    }
  }

  /** Sets labels on content already in the store. */
  async labelContent(digest: string, labels: Record<string, string>): Promise<void> {
    const keys = Object.keys(labels);
    if (keys.length === 0) return;
    await this.call('content.v1.Content', 'Update', {
      info: { digest, labels },
      update_mask: { paths: keys.map((k) => `labels.${k}`) },
    });
  }

  async hasContent(digest: string): Promise<boolean> {
    try {
      await this.call('content.v1.Content', 'Info', { digest });
      return true;
    } catch (e) {
      if (grpcCode(e) === grpc.status.NOT_FOUND) return false;
      throw e;
    }
  }

  close(): void {
    for (const c of Object.values(this.clients)) c.close();
  }
}
