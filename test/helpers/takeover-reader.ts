// The reader of the takeover test: argv[2] is the mount point. Several loops
// read the toy tree (takeover-tree.ts) over and over, checking the listing and
// every byte; loop 0 also reads the file the servers hold. Commands on stdin:
// "report" prints the counts so far, "stop" finishes the passes under way and
// prints them. Every failure is recorded, never thrown.

import * as fsp from 'node:fs/promises';
import * as path from 'node:path';
import { createInterface } from 'node:readline';
import { FILES, HOLD, contentOf } from './takeover-tree.js';

const mountpoint = process.argv[2]!;
const LOOPS = 3;
let stopping = false;
let passes = 0;
let bytes = 0;
let holdReads = 0;
let errorCount = 0;
/** The first failures, for the report (a broken mount would fail every read). */
const errors: string[] = [];
const names = FILES.map((f) => f.name).sort();

async function readWhole(file: string, size: number): Promise<Buffer> {
  // Reads of 64 KiB: a direct_io file gets one FUSE READ per call.
  const h = await fsp.open(file, 'r');
  try {
    const out = Buffer.alloc(size);
    let at = 0;
    for (;;) {
      const { bytesRead } = await h.read(out, at, Math.min(65_536, size - at), at);
      if (bytesRead === 0) break;
      at += bytesRead;
      if (at === size) {
        const extra = await h.read(Buffer.alloc(1), 0, 1, at);
        if (extra.bytesRead !== 0) throw new Error(`${file}: longer than ${size} bytes`);
        break;
      }
    }
    if (at !== size) throw new Error(`${file}: ${at} bytes, expected ${size}`);
    return out;
  } finally {
    await h.close();
  }
}

async function loop(n: number): Promise<void> {
  let turn = n;
  while (!stopping) {
    try {
      const listed = (await fsp.readdir(mountpoint)).sort();
      if (listed.join() !== names.join()) throw new Error(`listing: ${listed.join()}`);
      const order = FILES.filter((f) => f !== HOLD || n === 0);
      // Each loop starts at another file each pass: a changing mix of files is in flight.
      for (let i = 0; i < order.length; i++) {
        const f = order[(i + turn) % order.length]!;
        const got = await readWhole(path.join(mountpoint, f.name), f.size);
        if (!got.equals(contentOf(f))) throw new Error(`${f.name}: wrong bytes`);
        bytes += got.length;
        if (f === HOLD) holdReads++;
      }
      passes++;
    } catch (e) {
      if (errorCount++ < 20) errors.push(`${(e as NodeJS.ErrnoException).code ?? 'ERROR'}: ${(e as Error).message}`);
    }
    turn++;
  }
}

const report = (event: string) => process.stdout.write(`${JSON.stringify({ event, passes, bytes, holdReads, errorCount, errors })}\n`);
const loops = Array.from({ length: LOOPS }, (_, i) => loop(i));
for await (const line of createInterface({ input: process.stdin })) {
  if (line === 'report') report('report');
  if (line === 'stop') break;
}
stopping = true;
await Promise.all(loops);
report('done');
process.exit(0); // stdin may still be open
