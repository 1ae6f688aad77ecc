// A CRI client for tests, playing kubelet: the ImageService and RuntimeService
// of the CRI v1 API over a runtime's unix socket, and the container log files
// that the runtime writes in the CRI log format. The .proto is loaded at run
// time from test/ (test-only: the package ships proto/, this is not for it).

import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';
import { readFile } from 'node:fs/promises';
import path from 'node:path';

const PROTO = path.resolve(import.meta.dirname, '../../../test/proto/cri/api.proto');

/** NamespaceOption with the network, pid and ipc namespaces of the node: a host-network pod needs no CNI plugin. */
const HOST_NAMESPACES = { network: 'NODE', pid: 'CONTAINER', ipc: 'POD' };

export interface PodSpec {
  name: string;
  /** Directory (created by the runtime) where the containers' log files go. */
  logDirectory: string;
}

export interface ContainerSpec {
  name: string;
  image: string;
  command: string[];
  /** Relative to the pod's log directory. */
  logPath: string;
}

export interface ContainerStatus {
  id: string;
  state: 'CONTAINER_CREATED' | 'CONTAINER_RUNNING' | 'CONTAINER_EXITED' | 'CONTAINER_UNKNOWN';
  exit_code: number;
  reason: string;
  message: string;
  log_path: string;
  image_ref: string;
}

type Callback = (err: grpc.ServiceError | null, res: unknown) => void;
type Service = grpc.Client & Record<string, (req: unknown, meta: grpc.Metadata, opts: grpc.CallOptions, cb: Callback) => void>;

export interface CriClient {
  version(): Promise<{ runtime_name: string; runtime_version: string; runtime_api_version: string }>;
  /** PullImage; resolves with the image ref the runtime stored (a digest). */
  pullImage(image: string): Promise<string>;
  removeImage(image: string): Promise<void>;
  /** RunPodSandbox of a host-network pod; resolves with the sandbox id. */
  runPodSandbox(pod: PodSpec): Promise<string>;
  stopPodSandbox(id: string): Promise<void>;
  removePodSandbox(id: string): Promise<void>;
  /** CreateContainer in a sandbox made by runPodSandbox(pod); resolves with the container id. */
  createContainer(sandboxId: string, pod: PodSpec, c: ContainerSpec): Promise<string>;
  startContainer(id: string): Promise<void>;
  containerStatus(id: string): Promise<ContainerStatus>;
  /** Polls ContainerStatus until the container has exited (or `timeoutMs`). */
  waitExited(id: string, timeoutMs?: number): Promise<ContainerStatus>;
  stopContainer(id: string, timeoutSec?: number): Promise<void>;
  removeContainer(id: string): Promise<void>;
  close(): void;
}

function podConfig(pod: PodSpec): Record<string, unknown> {
  return {
    metadata: { name: pod.name, uid: `${pod.name}-uid`, namespace: 'default', attempt: 0 },
    log_directory: pod.logDirectory,
    linux: { security_context: { namespace_options: HOST_NAMESPACES } },
  };
}

export function criClient(socket: string): CriClient {
  const def = protoLoader.loadSync(PROTO, { keepCase: true, longs: Number, enums: String, defaults: true, oneofs: true });
  const pkg = grpc.loadPackageDefinition(def) as unknown as {
    runtime: { v1: Record<string, new (addr: string, creds: grpc.ChannelCredentials, opts?: grpc.ChannelOptions) => Service> };
  };
  const address = `unix://${socket}`;
  const opts = { 'grpc.max_receive_message_length': 16 << 20 };
  const runtime = new pkg.runtime.v1.RuntimeService!(address, grpc.credentials.createInsecure(), opts);
  const images = new pkg.runtime.v1.ImageService!(address, grpc.credentials.createInsecure(), opts);

  const call = <T>(svc: Service, method: string, req: unknown, timeoutMs = 120_000): Promise<T> =>
    new Promise((resolve, reject) => {
      svc[method]!(req, new grpc.Metadata(), { deadline: Date.now() + timeoutMs }, (err, res) => {
        if (err) reject(new Error(`CRI ${method}: ${err.details || err.message} (code ${err.code})`));
        else resolve(res as T);
      });
    });

  const client: CriClient = {
    version: () => call(runtime, 'Version', { version: 'v1' }),
    async pullImage(image) {
      const r = await call<{ image_ref: string }>(images, 'PullImage', { image: { image } }, 300_000);
      return r.image_ref;
    },
    async removeImage(image) {
      await call(images, 'RemoveImage', { image: { image } });
    },
    async runPodSandbox(pod) {
      const r = await call<{ pod_sandbox_id: string }>(runtime, 'RunPodSandbox', { config: podConfig(pod) }, 300_000);
      return r.pod_sandbox_id;
    },
    async stopPodSandbox(id) {
      await call(runtime, 'StopPodSandbox', { pod_sandbox_id: id });
    },
    async removePodSandbox(id) {
      await call(runtime, 'RemovePodSandbox', { pod_sandbox_id: id });
    },
    async createContainer(sandboxId, pod, c) {
      const config = {
        metadata: { name: c.name, attempt: 0 },
        image: { image: c.image },
        command: c.command,
        log_path: c.logPath,
        linux: { security_context: { namespace_options: HOST_NAMESPACES } },
      };
      const r = await call<{ container_id: string }>(runtime, 'CreateContainer', {
        pod_sandbox_id: sandboxId,
        config,
        sandbox_config: podConfig(pod),
      });
      return r.container_id;
    },
    async startContainer(id) {
      await call(runtime, 'StartContainer', { container_id: id });
    },
    async containerStatus(id) {
      const r = await call<{ status: ContainerStatus }>(runtime, 'ContainerStatus', { container_id: id });
      return r.status;
    },
    async waitExited(id, timeoutMs = 60_000) {
      const until = Date.now() + timeoutMs;
      for (;;) {
        const s = await client.containerStatus(id);
        if (s.state === 'CONTAINER_EXITED') return s;
        if (Date.now() > until) throw new Error(`container ${id} still ${s.state} after ${timeoutMs} ms`);
        await new Promise((r) => setTimeout(r, 100));
      }
    },
    async stopContainer(id, timeoutSec = 10) {
      await call(runtime, 'StopContainer', { container_id: id, timeout: timeoutSec });
    },
    async removeContainer(id) {
      await call(runtime, 'RemoveContainer', { container_id: id });
    },
    close() {
      runtime.close();
      images.close();
    },
  };
  return client;
}

export interface LogLine {
  stream: 'stdout' | 'stderr';
  text: string;
}

/**
 * A CRI container log file, parsed: each line is `TIMESTAMP STREAM TAG TEXT`,
 * TAG `F` (a full line) or `P` (a partial one, continued by the next line of that stream).
 */
export async function readCriLog(file: string): Promise<LogLine[]> {
  const out: LogLine[] = [];
  const partial: Record<string, string> = { stdout: '', stderr: '' };
  for (const line of (await readFile(file, 'utf8')).split('\n')) {
    if (line === '') continue;
    const m = /^\S+ (stdout|stderr) ([FP]) (.*)$/.exec(line);
    if (!m) throw new Error(`not a CRI log line in ${file}: ${JSON.stringify(line)}`);
    const stream = m[1] as 'stdout' | 'stderr';
    partial[stream] += m[3]!;
    if (m[2] === 'F') {
      out.push({ stream, text: partial[stream]! });
      partial[stream] = '';
    }
  }
  return out;
}
