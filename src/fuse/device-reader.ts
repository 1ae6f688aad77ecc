// Worker thread that reads requests from /dev/fuse with blocking reads. Its
// own thread, not the libuv pool: a process that uses its own mount can never
// starve the reader. With a responder (reader-responder.ts) it answers what
// it can on the spot, writing the reply from this thread; everything else is
// posted (copied, transferred) to the session on the main thread.

import * as fs from 'node:fs';
import { type MessagePort, parentPort, receiveMessageOnPort, workerData } from 'node:worker_threads';
import {
  type ReaderLink,
  type ReaderResponder,
  type ResponderFactory,
  READER_CONNECTED,
  READER_UPDATES,
  ReplyWriter,
  OpTally,
} from './reader-responder.js';

/** What the worker posts when it stops reading: the read's error code ('ENODEV' after unmount). */
export interface ReaderEnd {
  end: string;
  message: string;
}

export interface ReaderData {
  fd: number;
  size: number;
  link?: ReaderLink;
}

async function loadResponder(link: ReaderLink): Promise<ReaderResponder> {
  const mod = (await import(link.module)) as { createResponder: ResponderFactory };
  return mod.createResponder(link.init);
}

async function run(): Promise<void> {
  const { fd, size, link } = workerData as ReaderData;
  const port = parentPort!;
  const buf = Buffer.allocUnsafe(size);
  let responder: ReaderResponder | undefined;
  let control: MessagePort | undefined;
  let state: Int32Array | undefined;
  let seenUpdates = 0;
  let writer: ReplyWriter | undefined;
  let tally: OpTally | undefined;
  if (link) {
    try {
      responder = await loadResponder(link);
      control = link.control;
      state = new Int32Array(link.state);
      writer = new ReplyWriter(fd, size);
      if (link.observe) tally = new OpTally((batch) => port.postMessage(batch, [batch.buffer as ArrayBuffer]));
    } catch (e) {
      // Serving everything on the main thread is slower, never wrong.
      port.postMessage({ log: `reader thread serves nothing itself: ${(e as Error).message}` });
      responder = undefined;
    }
  }
  for (;;) {
    let n: number;
    try {
      n = fs.readSync(fd, buf, 0, size, null);
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code ?? 'EIO';
      if (code === 'EINTR' || code === 'EAGAIN') continue;
      tally?.flush();
      port.postMessage({ end: code, message: (e as Error).message } satisfies ReaderEnd);
      return;
    }
    if (responder && state && Atomics.load(state, READER_CONNECTED) !== 0) {
      // Updates (images served or gone) are applied before the request that may need them.
      const updates = Atomics.load(state, READER_UPDATES);
      if (updates !== seenUpdates) {
        for (let m = receiveMessageOnPort(control!); m; m = receiveMessageOnPort(control!)) responder.update?.(m.message);
        seenUpdates = updates;
      }
      const started = tally ? performance.now() : 0;
      let answered = false;
      try {
        answered = responder.respond(buf, n, writer!);
      } catch (e) {
        port.postMessage({ log: `reader thread passes on a request it failed on: ${(e as Error).stack}` });
      }
      if (answered) {
        if (tally) tally.add(buf.readUInt32LE(4), (performance.now() - started) / 1000, writer!.lastError, writer!.lastLength);
        continue;
      }
      // What the main thread observes next comes after what this thread answered.
      tally?.flush();
    }
    const copy = new ArrayBuffer(n);
    buf.copy(new Uint8Array(copy), 0, 0, n);
    port.postMessage(copy, [copy]);
  }
}

if (parentPort) void run();
