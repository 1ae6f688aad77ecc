// The .clip format: round trips keep every field; corrupt, truncated or
// foreign files are refused with a clear error.

import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { ClipError } from '../src/errors.js';
import { lookupPath } from '../src/image/lookup.js';
import { mergeLayers } from '../src/image/merge.js';
import { decodeIndex, encodeIndex, encodeIndexParts } from '../src/index/format.js';
import type { ClipIndex } from '../src/index/types.js';
import type { TarEntry } from '../src/tar/types.js';
import { tarEntry } from './helpers/tar-entry.js';

const entry = tarEntry;

function sample(files = 3): ClipIndex {
  const entries: TarEntry[] = [
    entry('bin', { type: 'dir', mode: 0o755, mtime: { sec: -5, nsec: 999_999_999 } }),
    entry('bin/su', {
      mode: 0o4755,
      uid: 0,
      gid: 0,
      size: 1000,
      dataOffset: 512,
      xattrs: new Map([['security.capability', Buffer.from([1, 0, 0, 2, 0, 4])]]),
    }),
    entry('bin/sh', { type: 'hardlink', linkname: 'bin/su' }),
    entry('dev/null', { type: 'char', devmajor: 1, devminor: 3, mode: 0o666 }),
    entry('fifo', { type: 'fifo', uid: 123456, gid: 65534, atime: { sec: 3, nsec: 4 }, ctime: { sec: 2 ** 37, nsec: 1 } }),
    entry('héllo-世界', { type: 'symlink', linkname: '/bin/su' }),
  ];
  for (let i = 0; i < files; i++) entries.push(entry(`many/f${i}`, { size: 7, dataOffset: 2048 + i * 512 }));
  const tree = mergeLayers([entries]);
  return {
    kind: 'oci',
    image: {
      location: 'docker://127.0.0.1:5000/test',
      reference: '127.0.0.1:5000/test:latest',
      manifestDigest: 'sha256:' + 'a'.repeat(64),
      manifestMediaType: 'application/vnd.oci.image.manifest.v1+json',
      configDigest: 'sha256:' + 'b'.repeat(64),
      platform: { os: 'linux', architecture: 'amd64' },
      config: { config: { Cmd: ['/bin/sh'] } },
      indexedAt: '2026-01-01T00:00:00.000Z',
      indexedBy: 'clip test',
      spanSize: 1 << 20,
    },
    layers: [
      {
        digest: 'sha256:' + 'c'.repeat(64),
        mediaType: 'application/vnd.oci.image.layer.v1.tar+gzip',
        diffId: 'sha256:' + 'd'.repeat(64),
        spans: {
          compression: 'gzip',
          compressedSize: 5000,
          uncompressedSize: 2048 + files * 512 + 512,
          checkpoints: [
            { in: 10, out: 0, window: Buffer.alloc(0) },
            { in: 3000, out: 1500, window: Buffer.from('window bytes') },
          ],
          digests: [Buffer.alloc(32, 1), Buffer.alloc(32, 2)],
        },
      },
    ],
    ...tree,
  };
}

describe('.clip format', () => {
  it('round-trips image, layers, spans and every node field', () => {
    const index = sample();
    const back = decodeIndex(encodeIndex(index));
    assert.deepEqual(back.image, index.image);
    assert.deepEqual(back.layers, index.layers);
    assert.equal(back.nodes.length, index.nodes.length);
    for (let i = 0; i < index.nodes.length; i++) {
      const { children: ca, ...a } = index.nodes[i]!;
      const { children: cb, ...b } = back.nodes[i]!;
      assert.deepEqual(b, a, `inode ${i + 1}`);
      assert.deepEqual(
        [...(cb ?? new Map()).entries()].map(([k, v]) => [k, v.ino]),
        [...(ca ?? new Map()).entries()].map(([k, v]) => [k, v.ino]),
      );
    }
    const su = lookupPath(back, 'bin/su');
    assert.equal(su, lookupPath(back, 'bin/sh'), 'hardlinks stay one node');
    assert.equal(su.nlink, 2);
    assert.equal(su.mode, 0o4755);
  });

  it('refuses foreign, truncated and corrupted files', () => {
    const good = encodeIndex(sample());
    const bad = (buf: Buffer, re: RegExp): void =>
      assert.throws(
        () => decodeIndex(buf),
        (e: unknown) => e instanceof ClipError && e.code === 'BAD_INDEX' && re.test(e.message),
      );
    bad(Buffer.from('hello world, this is not an index at all, not at all, no'.repeat(2)), /bad magic/);
    bad(good.subarray(0, 5), /too short/);
    bad(good.subarray(0, good.length - 1), /truncated/);
    bad(Buffer.concat([good, Buffer.from([0])]), /unexpected bytes/);
    for (const at of [70, good.length >> 1, good.length - 1]) {
      const c = Buffer.from(good);
      c[at]! ^= 0x01;
      bad(c, /checksum/);
    }
    const v = Buffer.from(good);
    v.writeUInt16LE(99, 8);
    bad(v, /version 99/);
  });

  it('archives: header, data, body; kinds and versions; old readers keep reading image indexes', () => {
    const oci = encodeIndex(sample());
    assert.ok(oci.readUInt16LE(8) <= 2, 'an image index stays readable by clips that know versions 1-2');
    const index: ClipIndex = { ...sample(), kind: 'archive' };
    index.image = { ...index.image, location: 'archive:' };
    index.layers[0]!.spans.compression = 'gzip-flushed';
    const data = Buffer.alloc(index.layers[0]!.spans.compressedSize, 7);
    const { header, body } = encodeIndexParts(index);
    assert.equal(header.readUInt16LE(8), 3);
    const file = Buffer.concat([header, data, body]);
    const back = decodeIndex(file);
    assert.equal(back.kind, 'archive');
    assert.equal(back.layers[0]!.spans.compression, 'gzip-flushed');
    assert.throws(() => decodeIndex(file.subarray(0, file.length - 10)), /clip archive is truncated: \d+ bytes, its header promises \d+/);
    assert.throws(() => encodeIndex(index), /encodeIndexParts/);
    const s3 = decodeIndex(encodeIndex({ ...sample(), kind: 's3' }));
    assert.equal(s3.kind, 's3');
  });

  it('loads a 100k-entry index with memory proportional to entries', () => {
    const big = encodeIndex(sample(100_000));
    const back = decodeIndex(big);
    assert.equal(back.nodes.length, sample(0).nodes.length + 100_000 + 1);
    assert.ok(big.length < 100_000 * 40, `index is ${big.length} bytes for 100k files`);
  });

  it('registry settings: round-trip when present, absent stays absent, a wrong type or an index that reads no registry is refused', () => {
    const index = sample();
    for (const plainHttp of [true, false])
      assert.deepEqual(decodeIndex(encodeIndex({ ...index, registry: { plainHttp } })).registry, { plainHttp });
    assert.equal(decodeIndex(encodeIndex(index)).registry, undefined);
    const refused = (bad: ClipIndex, re: RegExp) =>
      assert.throws(
        () => decodeIndex(encodeIndex(bad)),
        (e: unknown) => e instanceof ClipError && e.code === 'BAD_INDEX' && re.test(e.message),
      );
    refused({ ...index, registry: { plainHttp: 'yes' as unknown as boolean } }, /registry\.plainHttp is not true or false/);
    refused({ ...index, registry: {} as unknown as { plainHttp: boolean } }, /registry\.plainHttp is not true or false/);
    refused(
      { ...index, registry: { plainHttp: true }, image: { ...index.image, location: 'oci:/layout' } },
      /registry settings on an index whose data is not in a registry \(oci:\/layout\)/,
    );
    refused(
      { ...index, kind: 's3', registry: { plainHttp: true }, image: { ...index.image, location: 's3://b/k' } },
      /registry settings on an index/,
    );
  });
});
