// Extended attributes of a whole directory tree. Node has no xattr calls, so
// one `getfattr -R` (Debian package attr) reads them all, without following
// symlinks and without opening any file (fifos and sockets cannot block it).

import { spawn } from 'node:child_process';
import path from 'node:path';
import { ClipError } from '../errors.js';

/** Absolute path -> xattr name -> value, for every entry that has any. */
export type XattrMap = Map<string, Map<string, Buffer>>;

/** getfattr escapes odd bytes as \ooo (in the C locale); back to the raw bytes. */
function unescape(s: Buffer): Buffer {
  const out: number[] = [];
  for (let i = 0; i < s.length; i++) {
    if (s[i] === 0x5c && i + 3 < s.length + 0 && /^[0-7]{3}$/.test(s.toString('latin1', i + 1, i + 4))) {
      out.push(parseInt(s.toString('latin1', i + 1, i + 4), 8));
      i += 3;
    } else out.push(s[i]!);
  }
  return Buffer.from(out);
}

/** Parses `getfattr -d -m - -e hex --absolute-names` output. */
export function parseGetfattr(stdout: Buffer): XattrMap {
  const result: XattrMap = new Map();
  let current: Map<string, Buffer> | undefined;
  let start = 0;
  while (start < stdout.length) {
    let end = stdout.indexOf(0x0a, start);
    if (end < 0) end = stdout.length;
    const line = stdout.subarray(start, end);
    start = end + 1;
    if (line.length === 0) continue;
    if (line.toString('latin1', 0, 8) === '# file: ') {
      current = new Map();
      result.set(unescape(line.subarray(8)).toString('utf8'), current);
      continue;
    }
    if (!current) continue;
    const eq = line.indexOf(0x3d);
    const name = unescape(eq < 0 ? line : line.subarray(0, eq)).toString('utf8');
    const raw = eq < 0 ? '' : line.toString('latin1', eq + 1);
    let value: Buffer;
    if (raw.startsWith('0x')) value = Buffer.from(raw.slice(2), 'hex');
    else if (raw.startsWith('0s')) value = Buffer.from(raw.slice(2), 'base64');
    else value = unescape(Buffer.from(raw.replace(/^"|"$/g, ''), 'latin1'));
    current.set(name, value);
  }
  for (const [k, v] of result) if (v.size === 0) result.delete(k);
  return result;
}

/** Every xattr under `root` (root included). Entries getfattr cannot read are left out (the directory walk reports those). */
export async function readTreeXattrs(root: string): Promise<XattrMap> {
  const abs = path.resolve(root);
  const chunks: Buffer[] = [];
  const errors: Buffer[] = [];
  await new Promise<void>((resolve, reject) => {
    const child = spawn('getfattr', ['-R', '-d', '-m', '-', '-e', 'hex', '--absolute-names', '-h', abs], {
      env: { ...process.env, LC_ALL: 'C' },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    child.stdout.on('data', (b: Buffer) => chunks.push(b));
    child.stderr.on('data', (b: Buffer) => errors.push(b));
    child.on('error', (e: NodeJS.ErrnoException) =>
      reject(
        e.code === 'ENOENT'
          ? new ClipError(
              'UNSUPPORTED',
              'reading extended attributes needs getfattr (Debian package attr); install it, or pass --no-xattrs',
            )
          : e,
      ),
    );
    // A non-zero exit only means some entries could not be read; what it printed is still right.
    child.on('close', () => resolve());
  });
  return parseGetfattr(Buffer.concat(chunks));
}
