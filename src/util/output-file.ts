// The rule for every file clip writes at a path a user gave (-o, --record-profile):
// it may be absent or a regular file, which is then replaced whole (temp file +
// rename). Anything else is refused before any work: a device (`-o /dev/null`
// would be replaced by a regular file), a directory, a FIFO, a socket, and a
// symbolic link. A link is refused rather than followed because clip runs as
// root: a link planted in a shared directory must not steer a root write
// elsewhere, and replacing the link itself would surprise whoever made it.

import { lstat, readlink, stat } from 'node:fs/promises';
import path from 'node:path';
import type { Stats } from 'node:fs';
import { ClipError } from '../errors.js';
import { pathProblem } from './path-errors.js';

function kind(st: Stats): string {
  if (st.isDirectory()) return 'a directory';
  if (st.isCharacterDevice()) return 'a character device';
  if (st.isBlockDevice()) return 'a block device';
  if (st.isFIFO()) return 'a FIFO';
  if (st.isSocket()) return 'a socket';
  return 'not a regular file';
}

/** Throws a ClipError unless `file` can be written under the rule above. */
export async function checkOutputFile(file: string, what = 'output'): Promise<void> {
  let st: Stats;
  try {
    st = await lstat(file);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code !== 'ENOENT') throw new ClipError('IO', `cannot write ${what} ${file}: ${pathProblem(file, e)}`);
    const dir = path.dirname(path.resolve(file));
    if (!(await stat(dir).catch(() => undefined))?.isDirectory())
      throw new ClipError('NOT_FOUND', `cannot write ${what} ${file}: ${dir} is not a directory`);
    return;
  }
  if (st.isFile()) return;
  if (st.isSymbolicLink()) {
    const target = await readlink(file).catch(() => '?');
    throw new ClipError(
      'BAD_ARGUMENT',
      `refusing to write ${what} ${file}: it is a symbolic link (to ${target}); give the path of a regular file`,
    );
  }
  throw new ClipError('BAD_ARGUMENT', `refusing to write ${what} ${file}: it is ${kind(st)}, not a regular file`);
}
