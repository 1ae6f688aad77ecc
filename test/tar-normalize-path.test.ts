// Path normalisation: every spelling of a path maps to one canonical form,
// and ".." or NUL never get through.

import { it } from 'node:test';
import assert from 'node:assert/strict';
import { normalizePath } from '../src/tar/normalize-path.js';

it('canonicalises', () => {
  const cases: Array<[string, string]> = [
    ['usr/bin/env', 'usr/bin/env'],
    ['./usr/bin/env', 'usr/bin/env'],
    ['/usr/bin/env', 'usr/bin/env'],
    ['///usr//bin/./env/', 'usr/bin/env'],
    ['././a/./', 'a'],
    ['./', ''],
    ['/', ''],
    ['.', ''],
    ['', ''],
    ['.hidden', '.hidden'],
    ['a/.b/..c/...', 'a/.b/..c/...'],
    ['a/b..', 'a/b..'],
    ['héllo/世界', 'héllo/世界'],
    ['a\\..\\b', 'a\\..\\b'], // backslash is an ordinary byte on Linux
  ];
  for (const [raw, want] of cases) assert.equal(normalizePath(raw, 0), want, raw);
});

it('refuses ".." and NUL', () => {
  for (const raw of ['..', '../a', 'a/..', 'a/../b', '/..', './../x', 'a/b/../../..', 'a//..//b']) {
    assert.throws(
      () => normalizePath(raw, 7),
      {
        code: 'BAD_TAR',
        message: new RegExp(`${JSON.stringify(raw).replace(/[.*+?^${}()|[\]\\/]/g, '\\$&')} at offset 7 has a "\\.\\." component`),
      },
      raw,
    );
  }
  assert.throws(() => normalizePath('a\0b', 0), { code: 'BAD_TAR', message: /NUL byte/ });
});
