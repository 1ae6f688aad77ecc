// Summarises an indexed image the way tree-walk.ts summarises a directory, so
// the two can be compared entry by entry; file bytes are read through clip.

import { createHash } from 'node:crypto';
import type { FileReader } from '../../src/content/file-reader.js';
import { walk } from '../../src/image/lookup.js';
import type { ClipIndex } from '../../src/index/types.js';
import type { EntrySummary, TreeSummary } from './tree-walk.js';

export async function summarizeIndex(index: ClipIndex, reader?: FileReader): Promise<TreeSummary> {
  const out: TreeSummary = new Map();
  for (const [path, n] of walk(index)) {
    const e: EntrySummary = {
      type: n.type,
      mode: n.mode,
      uid: n.uid,
      gid: n.gid,
      size: n.type === 'file' || n.type === 'symlink' ? n.size : 0,
      mtimeNs: BigInt(n.mtime.sec) * 1_000_000_000n + BigInt(n.mtime.nsec),
      nlink: n.nlink,
      xattrs: Object.fromEntries([...(n.xattrs ?? new Map<string, Buffer>())].map(([k, v]) => [k, v.toString('hex')])),
    };
    if (n.type === 'symlink') e.target = n.target!;
    if (n.type === 'char' || n.type === 'block') e.rdev = { major: n.devmajor, minor: n.devminor };
    if (n.type === 'file' && reader) {
      const h = createHash('sha256');
      for await (const chunk of reader.stream(n)) h.update(chunk as Buffer);
      e.sha256 = h.digest('hex');
    }
    out.set(path, e);
  }
  return out;
}
