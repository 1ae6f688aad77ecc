// The image's User ("uid", "uid:gid", "name", "name:group") as numbers, names
// looked up in the rootfs's /etc/passwd and /etc/group as runc's callers do.

import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { ClipError } from '../errors.js';

export interface NumericUser {
  uid: number;
  gid: number;
}

const ID = /^\d{1,10}$/;

/** Lines of a colon-separated database in the rootfs ([] when it has none). */
async function table(rootfs: string, file: string): Promise<string[][]> {
  const text = await readFile(path.join(rootfs, file), 'utf8').catch(() => '');
  return text.split('\n').map((l) => l.split(':'));
}

function id(s: string, what: string): number {
  const n = Number(s);
  if (!ID.test(s) || n > 0xffffffff)
    throw new ClipError('BAD_ARGUMENT', `the image's User names ${what} ${JSON.stringify(s)}, not a 32-bit id`);
  return n;
}

export async function resolveUser(rootfs: string, user: string | undefined): Promise<NumericUser> {
  if (user === undefined) return { uid: 0, gid: 0 };
  const [name, group] = user.split(':', 2) as [string, string | undefined];
  let uid: number;
  let gid: number | undefined;
  if (ID.test(name)) uid = id(name, 'uid');
  else {
    const row = (await table(rootfs, 'etc/passwd')).find((r) => r[0] === name && r.length >= 4);
    if (!row) throw new ClipError('BAD_ARGUMENT', `the image's User ${JSON.stringify(name)} is not in its /etc/passwd`);
    uid = id(row[2]!, 'uid');
    gid = id(row[3]!, 'gid');
  }
  if (group !== undefined && group !== '') {
    if (ID.test(group)) gid = id(group, 'gid');
    else {
      const row = (await table(rootfs, 'etc/group')).find((r) => r[0] === group && r.length >= 3);
      if (!row) throw new ClipError('BAD_ARGUMENT', `the image's group ${JSON.stringify(group)} is not in its /etc/group`);
      gid = id(row[2]!, 'gid');
    }
  }
  if (gid === undefined) {
    // A numeric uid: its primary group from passwd when listed, else the same number (as runc does).
    const row = (await table(rootfs, 'etc/passwd')).find((r) => r[2] === String(uid) && r.length >= 4);
    gid = row && ID.test(row[3]!) ? id(row[3]!, 'gid') : uid;
  }
  return { uid, gid };
}
