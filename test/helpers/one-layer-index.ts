// A one-layer ClipIndex around a span table (a root directory only, made-up
// image and layer digests): for tests of how the .clip format encodes tables.

import type { SpanTable } from '../../src/gzip/types.js';
import type { ClipIndex } from '../../src/index/types.js';

export function oneLayerIndex(spans: SpanTable, spanSize: number): ClipIndex {
  const t = { sec: 0, nsec: 0 };
  const root = {
    ino: 1,
    type: 'dir' as const,
    mode: 0o755,
    uid: 0,
    gid: 0,
    size: 0,
    nlink: 2,
    mtime: t,
    atime: t,
    ctime: t,
    devmajor: 0,
    devminor: 0,
    layer: -1,
    offset: 0,
    children: new Map(),
  };
  const image = {
    location: 'oci:/x',
    reference: 'x',
    manifestDigest: `sha256:${'a'.repeat(64)}`,
    manifestMediaType: 'm',
    configDigest: `sha256:${'b'.repeat(64)}`,
    platform: { os: 'linux', architecture: 'amd64' },
    config: {},
    indexedAt: '',
    indexedBy: '',
    spanSize,
  };
  const layer = {
    digest: `sha256:${'c'.repeat(64)}`,
    diffId: `sha256:${'d'.repeat(64)}`,
    mediaType: 'application/vnd.oci.image.layer.v1.tar+gzip',
    spans,
  };
  return { kind: 'oci', image, layers: [layer], root, nodes: [root] };
}
