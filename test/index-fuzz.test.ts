// Fuzz of the .clip decoder, seeded and deterministic: real encoded indexes
// (an image index with windows, a local archive) under bit flips,
// truncations and checksum-correct structural mutations of the inflated
// body (varints, counts, child inodes, digests, names, times, windows,
// checkpoint offsets). Each case either throws a BAD_INDEX ClipError or
// yields an index that an independent walk finds safe and that the
// consumers (ls, inspect, FUSE attributes) take without throwing.

import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import zlib from 'node:zlib';
import { createArchive } from '../src/archive/create-archive.js';
import { ClipError } from '../src/errors.js';
import { attrOf } from '../src/fs/attributes.js';
import { writeAttr } from '../src/fuse/wire.js';
import { spanOutputRange, spanRange } from '../src/gzip/span-reader.js';
import { CHUNK_SIZE, MARK_SPACING, MAX_SPAN_OUTPUT } from '../src/gzip/types.js';
import type { Node } from '../src/image/types.js';
import { decodeIndex } from '../src/index/format.js';
import type { ClipIndex } from '../src/index/types.js';
import { indexImage } from '../src/indexer/index-image.js';
import { inspectIndex, listNode } from '../src/index/inspect.js';
import {
  bytesField,
  intBytes,
  mapBody,
  openClip,
  sealClip,
  splice,
  uintBytes,
  type BodyMap,
  type Field,
  type OpenedClip,
} from './helpers/clip-body.js';
import { buildFixture } from './helpers/fixtures.js';
import type { BuiltImage } from './helpers/image-builder.js';
import { createPrng, type Prng } from './helpers/prng.js';
import { buildSourceTree } from './helpers/source-tree.js';

const CASES_PER_FILE = 1500;
const YEAR_1 = -62135596800;
const YEAR_9999_END = 253402300799;
const DIGEST = /^(sha256:[0-9a-f]{64}|sha512:[0-9a-f]{128})$/;

/** An independent check that an accepted index is safe to serve; returns nothing, throws on a flaw. */
function assertSafe(index: ClipIndex): void {
  const img = index.image;
  assert.match(img.manifestDigest, DIGEST);
  if (img.configDigest !== '' || index.kind === 'oci') assert.match(img.configDigest, DIGEST);
  for (const l of index.layers) {
    assert.match(l.digest, DIGEST);
    assert.match(l.diffId, DIGEST);
    const t = l.spans;
    assert.ok(
      Number.isSafeInteger(t.compressedSize) &&
        t.compressedSize >= 0 &&
        Number.isSafeInteger(t.uncompressedSize) &&
        t.uncompressedSize >= 0,
    );
    assert.ok(t.checkpoints.length >= 1 && t.checkpoints[0]!.out === 0);
    assert.equal(t.digests.length, t.checkpoints.length);
    t.checkpoints.forEach((cp, i) => {
      const next = t.checkpoints[i + 1];
      assert.ok(next === undefined || (next.in > cp.in && next.out > cp.out), `checkpoints ${i}, ${i + 1} in order`);
      assert.ok((next?.out ?? t.uncompressedSize) - cp.out <= MAX_SPAN_OUTPUT, `span ${i} bounded`);
      assert.ok(cp.in <= t.compressedSize && cp.out <= t.uncompressedSize);
      assert.ok(cp.window.length <= 40 * 1024, `window ${i} bounded`);
      assert.ok(!cp.sparse || (cp.window.length > 0 && t.compression === 'gzip'), `a sparse checkpoint ${i} has a window`);
    });
    if (t.fine) {
      // Marks and chunk digests (v6): what a prefix read fetches, verifies and inflates must stay inside its span.
      assert.equal(t.compression, 'gzip');
      assert.equal(t.fine.length, t.checkpoints.length);
      t.fine.forEach((f, i) => {
        const input = spanRange(t, i);
        const output = spanOutputRange(t, i);
        assert.equal(f.chunks.length, Math.ceil((input.end - input.start) / CHUNK_SIZE), `span ${i}: one digest per chunk`);
        let prev = { in: t.checkpoints[i]!.in, out: output.start };
        for (const m of f.marks) {
          assert.ok(m.in > prev.in && m.out - prev.out >= MARK_SPACING, `span ${i}: marks in order and spaced`);
          assert.ok(m.in <= input.end && m.out < output.end, `span ${i}: marks inside the span`);
          prev = m;
        }
      });
    }
  }
  const seen = new Set<Node>();
  const stack: Node[] = [index.root];
  assert.equal(index.root.type, 'dir');
  while (stack.length > 0) {
    const n = stack.pop()!;
    assert.ok(!seen.has(n), `directory ${n.ino} reached twice`);
    seen.add(n);
    assert.ok(seen.size <= index.nodes.length);
    for (const [name, child] of n.children!) {
      assert.ok(
        name !== '' && name !== '.' && name !== '..' && !name.includes('/') && !name.includes('\0'),
        `name ${JSON.stringify(name)}`,
      );
      assert.ok(!name.includes('\uFFFD'), 'no replaced bytes in names');
      assert.equal(index.nodes[child.ino - 1], child);
      for (const t of [child.mtime, child.atime, child.ctime])
        assert.ok(t.sec >= YEAR_1 && t.sec <= YEAR_9999_END && t.nsec >= 0 && t.nsec < 1e9);
      if (child.layer >= 0) {
        assert.equal(child.type, 'file');
        const layer = index.layers[child.layer];
        assert.ok(layer && child.offset + child.size <= layer.spans.uncompressedSize, `inode ${child.ino} data inside its layer`);
      } else if (child.type === 'file') {
        assert.equal(child.size, 0);
      }
      if (child.type === 'dir') stack.push(child);
    }
  }
  // The consumers of an accepted index.
  listNode('', index.root, true);
  inspectIndex(index);
  const b = Buffer.alloc(88);
  for (const n of index.nodes) writeAttr(b, 0, attrOf(n));
}

const NUMBER_KINDS = new Set([
  'cp-count',
  'mark-count',
  'mark-in',
  'mark-out',
  'cp-in',
  'cp-out',
  'node-count',
  'mode',
  'uid',
  'gid',
  'size',
  'nlink',
  'nsec',
  'dev',
  'xattr-count',
  'data-layer',
  'data-offset',
  'dir-count',
  'child',
]);

function interestingUint(p: Prng, old: number): Buffer {
  const choices = [
    0,
    1,
    2,
    127,
    128,
    0xffff,
    2 ** 31,
    2 ** 32 - 1,
    2 ** 32,
    2 ** 53 - 1,
    old + 1,
    Math.max(0, old - 1),
    old * 2,
    p.int(1 << 20),
  ];
  if (p.int(20) === 0) return Buffer.alloc(10, 0xff); // a varint that never ends
  return uintBytes(p.pick(choices));
}

const BAD_NAMES = [
  Buffer.from(''),
  Buffer.from('.'),
  Buffer.from('..'),
  Buffer.from('a/b'),
  Buffer.from('x\0'),
  Buffer.from([0x61, 0xff]),
  Buffer.from([0xc3]),
  Buffer.from('ok-name'),
  Buffer.alloc(300, 0x61),
];
const BAD_DIGESTS: unknown[] = [
  'sha256:../../../../tmp/x',
  `sha256:${'A'.repeat(64)}`,
  'sha256:abc',
  '',
  'md5:00',
  `sha512:${'0'.repeat(64)}`,
  7,
  null,
  `sha256:${'e'.repeat(64)}`,
];
const BAD_VALUES: unknown[] = [-1, 1.5, 2 ** 60, '12', null, {}, [], 0, 'zstd', true];

/** One checksum-correct structural mutation of the body. */
function mutateBody(p: Prng, c: OpenedClip, map: BodyMap): Buffer {
  const raw = c.raw;
  const pickField = (pred: (f: Field) => boolean): Field | undefined => {
    const fs = map.fields.filter(pred);
    return fs.length === 0 ? undefined : p.pick(fs);
  };
  switch (p.int(10)) {
    case 0: {
      // Any number field, to an edge value.
      const f = pickField((x) => NUMBER_KINDS.has(x.kind))!;
      return splice(raw, f, interestingUint(p, f.value as number));
    }
    case 1: {
      // A child inode number: the root, its own directory, an ancestor, another directory (shared), out of range.
      const f = pickField((x) => x.kind === 'child')!;
      const dirs = [...map.parents.keys()];
      const ancestors: number[] = [];
      for (let d = f.ino!; d > 0; d = map.parents.get(d) ?? 0) ancestors.push(d);
      const to = p.pick([1, f.ino!, p.pick(ancestors), p.pick(dirs), 0, map.nodeCount + 1, p.range(1, map.nodeCount)]);
      return splice(raw, f, uintBytes(to));
    }
    case 2: {
      const f = pickField((x) => x.kind === 'name')!;
      const siblings = map.fields.filter((x) => x.kind === 'name' && x.ino === f.ino);
      const name = p.int(3) === 0 ? Buffer.from(p.pick(siblings).value as string) : p.pick(BAD_NAMES);
      return splice(raw, f, bytesField(name));
    }
    case 3: {
      // Times: out of range, at the edges, nanoseconds too big.
      const f = pickField((x) => x.kind === 'sec' || x.kind === 'nsec')!;
      if (f.kind === 'nsec') return splice(raw, f, uintBytes(p.pick([999_999_999, 1e9, 2 ** 40])));
      return splice(raw, f, intBytes(p.pick([1e13, -1e13, YEAR_1, YEAR_1 - 1, YEAR_9999_END, YEAR_9999_END + 1, 2 ** 52, -(2 ** 52)])));
    }
    case 4: {
      // The metadata JSON: digests, sizes, compression, types of the image record.
      const meta = structuredClone(map.meta);
      const layer = meta.layers.length > 0 ? p.pick(meta.layers) : undefined;
      const what = p.int(4);
      if (what === 0 && layer) layer[p.pick(['digest', 'diffId'])] = p.pick(BAD_DIGESTS);
      else if (what === 1) meta.image[p.pick(['manifestDigest', 'configDigest'])] = p.pick(BAD_DIGESTS);
      else if (what === 2 && layer) layer[p.pick(['compressedSize', 'uncompressedSize', 'compression', 'mediaType'])] = p.pick(BAD_VALUES);
      else meta.image[p.pick(['spanSize', 'config', 'platform', 'location', 'reference', 'indexedAt'])] = p.pick(BAD_VALUES);
      const f = map.fields.find((x) => x.kind === 'json')!;
      return splice(raw, f, bytesField(Buffer.from(JSON.stringify(meta))));
    }
    case 5: {
      // A window: empty, oversized, garbage, or of the wrong inflated size; or its sparse flag.
      if (p.int(3) === 0) {
        const flag = pickField((x) => x.kind === 'cp-sparse');
        if (flag) return splice(raw, flag, Buffer.from([p.pick([0, 1, 2, 0x80, 0xff])]));
      }
      const f = pickField((x) => x.kind === 'window');
      if (!f) return raw;
      const wrongSize = zlib.deflateRawSync(Buffer.alloc(p.pick([1, 1000, 32 * 1024 - 1, 32 * 1024 + 1])));
      return splice(raw, f, bytesField(p.pick([Buffer.alloc(0), Buffer.alloc(40 * 1024 + 1), p.bytes(p.int(64)), wrongSize])));
    }
    case 6: {
      // Marks and chunk digests (v6): the flag, a mark's deltas, a mark count, a chunk digest.
      if (p.int(2) === 0) {
        const f = pickField((x) => ['fine-flag', 'mark-count', 'mark-in', 'mark-out', 'chunk-digest'].includes(x.kind));
        if (f?.kind === 'fine-flag') return splice(raw, f, Buffer.from([p.pick([0, 1, 2, 0xff])]));
        if (f?.kind === 'chunk-digest') return splice(raw, f, p.pick([Buffer.alloc(0), Buffer.alloc(32), Buffer.alloc(64, 7)]));
        if (f) return splice(raw, f, uintBytes(p.pick([0, 1, (f.value as number) + 1, MARK_SPACING - 1, MAX_SPAN_OUTPUT + 1, 2 ** 40])));
      }
      // Checkpoint offsets (deltas): zero, huge, shifted.
      const f = pickField((x) => x.kind === 'cp-in' || x.kind === 'cp-out')!;
      return splice(raw, f, uintBytes(p.pick([0, 1, (f.value as number) + 1, MAX_SPAN_OUTPUT + 1, 2 ** 40])));
    }
    case 7: {
      // Flags and types of a node.
      const f = pickField((x) => x.kind === 'flags' || x.kind === 'type')!;
      return splice(raw, f, Buffer.from([p.int(f.kind === 'type' ? 8 : 64)]));
    }
    case 8: {
      // Random bit flips inside the body.
      const out = Buffer.from(raw);
      for (let k = p.range(1, 4); k > 0; k--) out[p.int(out.length)]! ^= 1 << p.int(8);
      return out;
    }
    default:
      // A truncated or extended body.
      return p.int(2) === 0 ? raw.subarray(0, p.int(raw.length)) : Buffer.concat([raw, p.bytes(p.range(1, 40))]);
  }
}

/** Whole-file damage: bit flips and truncations of the sealed file. */
function damageFile(p: Prng, file: Buffer): Buffer {
  if (p.int(2) === 0) return file.subarray(0, p.int(file.length));
  const out = Buffer.from(file);
  for (let k = p.range(1, 3); k > 0; k--) out[p.int(out.length)]! ^= 1 << p.int(8);
  return out;
}

interface Tally {
  refused: number;
  accepted: number;
}

function runCase(file: Buffer, tally: Tally, label: string): void {
  let index: ClipIndex;
  try {
    index = decodeIndex(file);
  } catch (e) {
    if (e instanceof ClipError && e.code === 'BAD_INDEX') {
      tally.refused++;
      return;
    }
    throw new Error(`${label}: not a BAD_INDEX ClipError: ${e instanceof Error ? e.stack : String(e)}`);
  }
  try {
    assertSafe(index);
  } catch (e) {
    throw new Error(`${label}: accepted an unsafe index: ${(e as Error).message}`);
  }
  tally.accepted++;
}

describe('.clip decoder fuzz', () => {
  let image: BuiltImage;
  let dir: string;
  const files: { name: string; bytes: Buffer }[] = [];
  before(async () => {
    dir = await mkdtemp(path.join(os.tmpdir(), 'clip-fuzz-'));
    image = await buildFixture('everything');
    const indexFile = path.join(dir, 'everything.clip');
    // 256 KiB spans: room for marks (64 KiB apart) inside them.
    await indexImage(`oci:${image.dir}:${image.tag}`, { output: indexFile, spanSize: 256 * 1024, windowEvery: 512 * 1024 });
    files.push({ name: 'image index', bytes: await readFile(indexFile) });
    const tree = await buildSourceTree(path.join(dir, 'src'));
    try {
      const archiveFile = path.join(dir, 'tree.clip');
      await createArchive(path.join(dir, 'src'), { output: archiveFile, spanSize: 64 * 1024 });
      files.push({ name: 'archive', bytes: await readFile(archiveFile) });
    } finally {
      await tree.close();
    }
  });
  after(async () => {
    if (image) await rm(image.dir, { recursive: true, force: true });
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  it('hostile marks and chunk digests are refused with a message naming them', () => {
    const clip = openClip(files[0]!.bytes);
    const map = mapBody(clip.raw, clip.version);
    const first = (kind: string): Field => map.fields.find((f) => f.kind === kind)!;
    const marksOf = map.fields.filter((f) => f.kind === 'mark-in');
    const cases: [string, Buffer, RegExp][] = [
      ['flag 2', splice(clip.raw, first('fine-flag'), Buffer.from([2])), /chunk digests flag 2/],
      ['a mark that does not advance', splice(clip.raw, first('mark-in'), uintBytes(0)), /mark 0 of span \d+ does not come/],
      ['marks closer than 64 KiB', splice(clip.raw, first('mark-out'), uintBytes(MARK_SPACING - 1)), /does not come 65536 bytes after/],
      ['a mark past its span', splice(clip.raw, first('mark-out'), uintBytes(2 ** 40)), /(outside its span|more than one per)/],
      ['a mark count beyond the body', splice(clip.raw, first('mark-count'), uintBytes(2 ** 40)), /marks of span 0/],
      ['a missing chunk digest', splice(clip.raw, first('chunk-digest'), Buffer.alloc(0)), /corrupt/],
    ];
    assert.ok(marksOf.length > 1);
    for (const [what, raw, message] of cases) {
      assert.throws(
        () => decodeIndex(sealClip(clip, raw)),
        (e: unknown) => e instanceof ClipError && e.code === 'BAD_INDEX' && message.test(e.message),
        what,
      );
    }
  });

  it('every mutation is refused with BAD_INDEX or decodes to a safe index', { timeout: 120_000 }, () => {
    assert.equal(files.length, 2);
    for (const [n, { name, bytes }] of files.entries()) {
      const clip = openClip(bytes);
      const map = mapBody(clip.raw, clip.version);
      assert.ok(
        map.fields.some((f) => f.kind === 'window' && (f.value as string).length > 0) || name === 'archive',
        'the image index keeps windows',
      );
      if (name === 'image index') {
        assert.ok(
          map.fields.some((f) => f.kind === 'cp-sparse' && f.value === 1),
          'with sparse windows',
        );
        assert.ok(
          map.fields.some((f) => f.kind === 'mark-in'),
          'with marks',
        );
      }
      assertSafe(decodeIndex(bytes));
      const structural: Tally = { refused: 0, accepted: 0 };
      const damaged: Tally = { refused: 0, accepted: 0 };
      for (let i = 0; i < CASES_PER_FILE; i++) {
        const seed = 1000 * (n + 1) + i;
        const p = createPrng(seed);
        if (p.int(5) === 0) {
          runCase(damageFile(p, bytes), damaged, `${name}, seed ${seed} (file damage)`);
        } else {
          const raw = mutateBody(p, clip, map);
          // Stored deflate: sealing costs a copy, not a compression (the decoder does not care).
          runCase(sealClip(clip, raw, zlib.deflateRawSync(raw, { level: 0 })), structural, `${name}, seed ${seed}`);
        }
      }
      // Both outcomes occur: the mutations reach past the checksum, and not everything is refused.
      assert.ok(structural.refused > CASES_PER_FILE / 4, `${name}: ${structural.refused} structural mutations refused`);
      assert.ok(structural.accepted > 10, `${name}: ${structural.accepted} structural mutations accepted`);
      assert.ok(damaged.refused > 0, `${name}: damaged files refused`);
    }
  });
});
