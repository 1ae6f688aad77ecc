// Worker thread that reads requests from /dev/fuse with blocking reads and
// posts each one (copied, transferred) to the session. Its own thread, not the
// libuv pool: a process that uses its own mount can never starve the reader.

import * as fs from 'node:fs';
import { parentPort, workerData } from 'node:worker_threads';

/** What the worker posts when it stops reading: the read's error code ('ENODEV' after unmount). */
export interface ReaderEnd {
  end: string;
  message: string;
}

function run(): void {
  const { fd, size } = workerData as { fd: number; size: number };
  const port = parentPort!;
  const buf = Buffer.allocUnsafe(size);
  for (;;) {
    let n: number;
    try {
      n = fs.readSync(fd, buf, 0, size, null);
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code ?? 'EIO';
      if (code === 'EINTR' || code === 'EAGAIN') continue;
      port.postMessage({ end: code, message: (e as Error).message } satisfies ReaderEnd);
      return;
    }
    const copy = new ArrayBuffer(n);
    buf.copy(new Uint8Array(copy), 0, 0, n);
    port.postMessage(copy, [copy]);
  }
}

if (parentPort) run();
