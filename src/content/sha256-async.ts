// sha256 of span-sized buffers off the main thread. The read path hashes
// every fetched span (against the index) and every disk-cache write and hit;
// done with createHash on the main thread it took 3.3 CPU-s of the daemon's
// main thread on the torch start-up (bench:ml), during which no FUSE request
// was answered. WebCrypto's digest runs in libuv's threadpool (so on both
// cores, next to zlib), at the cost of one copy of the input.

import { webcrypto } from 'node:crypto';

/** The sha256 of `data`, computed in the threadpool. */
export async function sha256(data: Uint8Array): Promise<Buffer> {
  return Buffer.from(await webcrypto.subtle.digest('SHA-256', data));
}
