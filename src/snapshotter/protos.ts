// containerd's own API definitions (vendored .proto files of containerd 1.6
// under proto/, with the gogo options they import), loaded at run time by
// proto-loader: no generated code to keep in step.

import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

/** The package's proto/ dir: from dist/src/snapshotter/ (built) three levels up. */
export const PROTO_DIR = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../../proto');

const API = 'github.com/containerd/containerd/api';
export const PROTO_FILES = {
  snapshots: `${API}/services/snapshots/v1/snapshots.proto`,
  content: `${API}/services/content/v1/content.proto`,
  images: `${API}/services/images/v1/images.proto`,
  diff: `${API}/services/diff/v1/diff.proto`,
  leases: `${API}/services/leases/v1/leases.proto`,
} as const;

let loaded: grpc.GrpcObject | undefined;

/** All of containerd's services clip uses, loaded once. */
export function containerdApi(): grpc.GrpcObject {
  loaded ??= grpc.loadPackageDefinition(
    protoLoader.loadSync(Object.values(PROTO_FILES), {
      includeDirs: [PROTO_DIR],
      keepCase: true,
      longs: Number,
      enums: String,
      defaults: true,
      oneofs: true,
    }),
  );
  return loaded;
}

/** A service constructor of the loaded API by its full name, e.g. "containerd.services.snapshots.v1.Snapshots". */
export function serviceOf(fullName: string): grpc.ServiceClientConstructor {
  let node: unknown = containerdApi();
  for (const part of fullName.split('.')) node = (node as Record<string, unknown>)[part];
  if (typeof node !== 'function') throw new Error(`no service ${fullName} in the vendored protos`);
  return node as grpc.ServiceClientConstructor;
}
