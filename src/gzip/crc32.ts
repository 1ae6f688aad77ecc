// CRC-32 (the gzip trailer's) over chunks: Node's native zlib.crc32 where it
// exists (Node >= 20.15), a table-driven fallback otherwise. Empty chunks are
// skipped: Node 20's native crc32 of an empty buffer can return 0.

import zlib from 'node:zlib';

const native = (zlib as unknown as { crc32?: (data: Buffer, value?: number) => number }).crc32;

let table: Uint32Array | undefined;
function makeTable(): Uint32Array {
  const t = new Uint32Array(256);
  for (let n = 0; n < 256; n++) {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
    t[n] = c >>> 0;
  }
  return t;
}

/** The CRC-32 of everything so far (`crc`) extended by `data`. */
export function crc32(data: Buffer, crc = 0): number {
  if (data.length === 0) return crc;
  if (native) return native(data, crc) >>> 0;
  table ??= makeTable();
  let c = (crc ^ 0xffffffff) >>> 0;
  for (let i = 0; i < data.length; i++) c = table[(c ^ data[i]!) & 0xff]! ^ (c >>> 8);
  return (c ^ 0xffffffff) >>> 0;
}
