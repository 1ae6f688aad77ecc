// The reader-thread responder at the wire level, without the kernel: requests
// built by hand, replies read back from the file its ReplyWriter appends to.
// What a kernel walk does not reach on its own: small READDIR buffers and
// their continuation offsets, xattr size probes and ERANGE, the negative
// entry's bytes, and the requests it must pass on.

import assert from 'node:assert/strict';
import { closeSync, fstatSync, openSync, readFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { buildIndex, FileReader, writeIndex, loadIndex, type ClipIndex } from '../src/clip.js';
import { ImageFileSystem } from '../src/fs/image-fs.js';
import { createResponder } from '../src/fs/tree-responder.js';
import { ReplyWriter, type ReaderResponder } from '../src/fuse/reader-responder.js';
import { lookupPath } from '../src/image/lookup.js';
import { everythingLayers, EVERYTHING } from './helpers/fixtures.js';
import { buildImage } from './helpers/image-builder.js';

const SLOT = 3;
const BASE = SLOT * 2 ** 32;
const OP = { LOOKUP: 1, GETATTR: 3, OPEN: 14, READ: 15, GETXATTR: 22, LISTXATTR: 23, READDIR: 28, READDIRPLUS: 44 };

let unique = 0n;
/** A request: in-header for (opcode, local inode of slot SLOT) and a body. */
function request(opcode: number, ino: number, body: Buffer = Buffer.alloc(0), high = SLOT): Buffer {
  const b = Buffer.alloc(40 + body.length);
  b.writeUInt32LE(b.length, 0);
  b.writeUInt32LE(opcode, 4);
  b.writeBigUInt64LE(++unique, 8);
  b.writeUInt32LE(ino, 16);
  b.writeUInt32LE(high, 20);
  body.copy(b, 40);
  return b;
}
const cstr = (s: string): Buffer => Buffer.concat([Buffer.from(s), Buffer.alloc(1)]);
function readIn(offset: number, size: number): Buffer {
  const b = Buffer.alloc(40);
  b.writeBigUInt64LE(BigInt(offset), 8);
  b.writeUInt32LE(size, 16);
  return b;
}
function xattrIn(size: number, name?: string): Buffer {
  const b = Buffer.alloc(8);
  b.writeUInt32LE(size, 0);
  return name === undefined ? b : Buffer.concat([b, cstr(name)]);
}

describe('tree responder, on the wire', () => {
  let dir: string;
  let index: ClipIndex;
  let responder: ReaderResponder;
  let fd: number;
  let out: ReplyWriter;
  let file: string;

  /** Sends one request; returns undefined when it was passed on, else the reply's errno and payload. */
  function send(req: Buffer): { errno: number; payload: Buffer } | undefined {
    const before = fstatSync(fd).size;
    const answered = responder.respond(req, req.length, out);
    const b = readFileSync(file).subarray(before);
    if (!answered) {
      assert.equal(b.length, 0, 'nothing written for a request passed on');
      return undefined;
    }
    assert.equal(b.readUInt32LE(0), b.length, 'one reply, its length in its header');
    assert.equal(b.readBigUInt64LE(8), req.readBigUInt64LE(8), 'the reply names the request');
    return { errno: 0 - b.readInt32LE(4), payload: b.subarray(16) };
  }
  const ino = (p: string): number => lookupPath(index, p).ino;

  before(async () => {
    dir = await mkdtemp(path.join(tmpdir(), 'clip-responder-'));
    const image = await buildImage({ dir: path.join(dir, 'layout'), layers: everythingLayers() });
    await writeIndex(path.join(dir, 'image.clip'), await buildIndex(`oci:${image.dir}:latest`));
    index = await loadIndex(path.join(dir, 'image.clip'));
    const fs = new ImageFileSystem(index, await FileReader.open(index), undefined, BASE);
    responder = createResponder({ trees: [[SLOT, fs.sharedTree()]] });
    file = path.join(dir, 'replies');
    fd = openSync(file, 'w+');
    out = new ReplyWriter(fd, 64 * 1024);
  });
  after(async () => {
    if (fd !== undefined) closeSync(fd);
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  it('lists a directory in small pieces, continuing from each last offset, in the index order', () => {
    const root = index.nodes[0]!;
    const names: string[] = [];
    let offset = 0;
    for (let rounds = 0; rounds < 1000; rounds++) {
      const r = send(request(OP.READDIR, 1, readIn(offset, 80)))!;
      assert.equal(r.errno, 0);
      if (r.payload.length === 0) break;
      for (let at = 0; at < r.payload.length;) {
        const namelen = r.payload.readUInt32LE(at + 16);
        names.push(r.payload.subarray(at + 24, at + 24 + namelen).toString());
        offset = Number(r.payload.readBigUInt64LE(at + 8));
        at += (24 + namelen + 7) & ~7;
      }
    }
    assert.deepEqual(names, ['.', '..', ...root.children!.keys()]);
  });

  it('gives READDIRPLUS entries with attributes, and none for "." and ".."', () => {
    const r = send(request(OP.READDIRPLUS, 1, readIn(0, 4096)))!;
    const seen: Array<[string, bigint, bigint]> = [];
    for (let at = 0; at < r.payload.length;) {
      const nodeid = r.payload.readBigUInt64LE(at);
      const attrIno = r.payload.readBigUInt64LE(at + 40);
      const namelen = r.payload.readUInt32LE(at + 128 + 16);
      seen.push([r.payload.subarray(at + 128 + 24, at + 128 + 24 + namelen).toString(), nodeid, attrIno]);
      at += (128 + 24 + namelen + 7) & ~7;
    }
    assert.deepEqual(seen.slice(0, 2), [
      ['.', 0n, 0n],
      ['..', 0n, 0n],
    ]);
    for (const [name, nodeid, attrIno] of seen.slice(2)) {
      const want = BigInt(BASE + index.nodes[0]!.children!.get(name)!.ino);
      assert.equal(nodeid, want, name);
      assert.equal(attrIno, want, name);
    }
  });

  it('answers a missing name with a cached negative entry, a name under a file with ENOTDIR', () => {
    const r = send(request(OP.LOOKUP, 1, cstr('no-such-name')))!;
    assert.equal(r.errno, 0);
    assert.equal(r.payload.length, 128);
    assert.equal(r.payload.readBigUInt64LE(0), 0n, 'nodeid 0: "no such name"');
    assert.equal(r.payload.readBigUInt64LE(16), 86400n, 'entry timeout');
    const file = ino(EVERYTHING.xattrFile);
    assert.equal(send(request(OP.LOOKUP, file, cstr('x')))!.errno, 20);
    const found = send(request(OP.LOOKUP, 1, cstr('data')))!;
    assert.equal(found.payload.readBigUInt64LE(0), BigInt(BASE + ino('data')));
  });

  it('follows the xattr size rules: size 0 asks the length, a short buffer is ERANGE, a missing name ENODATA', () => {
    const f = ino(EVERYTHING.capFile);
    const value = lookupPath(index, EVERYTHING.capFile).xattrs!.get('user.comment')!;
    assert.equal(send(request(OP.GETXATTR, f, xattrIn(0, 'user.comment')))!.payload.readUInt32LE(0), value.length);
    assert.equal(send(request(OP.GETXATTR, f, xattrIn(value.length - 1, 'user.comment')))!.errno, 34);
    assert.deepEqual(send(request(OP.GETXATTR, f, xattrIn(4096, 'user.comment')))!.payload, value);
    assert.equal(send(request(OP.GETXATTR, f, xattrIn(4096, 'trusted.overlay.origin')))!.errno, 61);
    const names = [...lookupPath(index, EVERYTHING.capFile).xattrs!.keys()];
    assert.equal(names.length, 2);
    const list = send(request(OP.LISTXATTR, f, xattrIn(4096)))!
      .payload.toString()
      .split('\0')
      .filter(Boolean);
    assert.deepEqual(list, names);
  });

  it('refuses opens for writing, and passes on READs, resent requests and inodes it does not know', () => {
    const f = ino(EVERYTHING.xattrFile);
    const wronly = Buffer.alloc(8);
    wronly.writeUInt32LE(1, 0);
    assert.equal(send(request(OP.OPEN, f, wronly))!.errno, 30);
    assert.equal(send(request(OP.OPEN, f, Buffer.alloc(8)))!.errno, 0);
    assert.equal(send(request(OP.READ, f, readIn(0, 4096))), undefined);
    assert.equal(send(request(OP.GETATTR, 1, Buffer.alloc(16), SLOT + 1)), undefined, 'another slot');
    assert.equal(send(request(OP.GETATTR, index.nodes.length + 1, Buffer.alloc(16))), undefined, 'beyond the tree');
    const resent = request(OP.GETATTR, 1, Buffer.alloc(16));
    resent.writeUInt32LE((resent.readUInt32LE(12) | 0x8000_0000) >>> 0, 12);
    assert.equal(send(resent), undefined, 'a resent request goes to the session, which counts it');
    const attr = send(request(OP.GETATTR, 1, Buffer.alloc(16)))!;
    assert.equal(attr.payload.readBigUInt64LE(16), BigInt(BASE + 1), 'the root, at the slot');
  });
});
