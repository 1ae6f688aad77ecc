// What a snapshot's directory takes on disk (containerd's Usage): bytes in
// allocated blocks and inodes, hard links counted once, without leaving the
// directory's filesystem (an image's clip mount is not the node's disk).

import { lstat, readdir } from 'node:fs/promises';
import path from 'node:path';

export async function diskUsage(dir: string): Promise<{ size: number; inodes: number }> {
  const top = await lstat(dir).catch(() => undefined);
  if (!top) return { size: 0, inodes: 0 };
  const seen = new Set<string>();
  let size = 0;
  // An explicit stack: a container may have made its tree arbitrarily deep.
  const stack = [dir];
  while (stack.length > 0) {
    const d = stack.pop()!;
    const names = await readdir(d).catch(() => [] as string[]);
    for (const name of names) {
      const p = path.join(d, name);
      const st = await lstat(p).catch(() => undefined);
      if (!st || st.dev !== top.dev) continue;
      const id = `${st.ino}`;
      if (seen.has(id)) continue;
      seen.add(id);
      size += st.blocks * 512;
      if (st.isDirectory()) stack.push(p);
    }
  }
  return { size, inodes: seen.size };
}
