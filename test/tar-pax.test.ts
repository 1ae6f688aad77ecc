// PAX record parsing and interpretation in isolation: record framing, global
// deletion semantics, exact decimal times.

import { it } from 'node:test';
import assert from 'node:assert/strict';
import { interpretPax, parsePaxRecords, parsePaxTime, type PaxRecords } from '../src/tar/pax.js';

it('parses decimal times exactly, normalising negatives', () => {
  assert.deepEqual(parsePaxTime('0'), { sec: 0, nsec: 0 });
  assert.deepEqual(parsePaxTime('1700000000.123456789'), { sec: 1700000000, nsec: 123456789 });
  assert.deepEqual(parsePaxTime('1700000000.1'), { sec: 1700000000, nsec: 100000000 });
  assert.deepEqual(parsePaxTime('1.'), { sec: 1, nsec: 0 });
  assert.deepEqual(parsePaxTime('0.3'), { sec: 0, nsec: 300000000 }); // not 299999999
  assert.deepEqual(parsePaxTime('1.0000000019'), { sec: 1, nsec: 1 }); // truncated, not rounded
  assert.deepEqual(parsePaxTime('-1.25'), { sec: -2, nsec: 750000000 });
  assert.deepEqual(parsePaxTime('-0.000000001'), { sec: -1, nsec: 999999999 });
  assert.deepEqual(parsePaxTime('-5'), { sec: -5, nsec: 0 });
  assert.deepEqual(parsePaxTime('-0'), { sec: 0, nsec: 0 });
  // Outside years 1..9999 (what the index holds): clamped, however many digits.
  assert.deepEqual(parsePaxTime('253402300799.999999999'), { sec: 253402300799, nsec: 999999999 });
  assert.deepEqual(parsePaxTime('253402300800'), { sec: 253402300799, nsec: 0 });
  assert.deepEqual(parsePaxTime('9007199254740991.5'), { sec: 253402300799, nsec: 0 });
  assert.deepEqual(parsePaxTime('9'.repeat(400)), { sec: 253402300799, nsec: 0 });
  assert.deepEqual(parsePaxTime('-62135596800'), { sec: -62135596800, nsec: 0 });
  assert.deepEqual(parsePaxTime('-62135596800.5'), { sec: -62135596800, nsec: 0 });
  assert.deepEqual(parsePaxTime('-9007199254740991.5'), { sec: -62135596800, nsec: 0 });
  for (const bad of ['', '.5', '1e3', '+1', '1.2.3', ' 1', '1 ', '0x10', '--1', '1.-5']) {
    assert.equal(parsePaxTime(bad), null, bad);
  }
});

it('splits records, keeping raw value bytes (newlines, NULs, "=")', () => {
  const recs: PaxRecords = new Map();
  const payload = Buffer.concat([Buffer.from('30 SCHILY.xattr.user.a=x\n=\0yz\n'), Buffer.from('8 path=\n')]);
  parsePaxRecords(payload, 0, recs, false);
  assert.deepEqual(
    recs,
    new Map([
      ['SCHILY.xattr.user.a', Buffer.from('x\n=\0yz')],
      ['path', Buffer.alloc(0)],
    ]),
  );
  const o = interpretPax(recs, 0);
  assert.equal(o.path, undefined); // empty: use the header's
  assert.deepEqual(o.xattrs, new Map([['user.a', Buffer.from('x\n=\0yz')]]));
});

it('deletes keys given an empty value in a global header', () => {
  const g: PaxRecords = new Map();
  parsePaxRecords(Buffer.from('12 uname=me\n13 gname=grp\n'), 0, g, true);
  parsePaxRecords(Buffer.from('9 uname=\n'), 0, g, true);
  assert.deepEqual([...g.keys()], ['gname']);
});

it('names the offset of a bad record', () => {
  assert.throws(() => parsePaxRecords(Buffer.from('12 path=abc\n99 x=y\n'), 1000, new Map(), false), {
    code: 'BAD_TAR',
    message: /at offset 1012$/,
  });
});
