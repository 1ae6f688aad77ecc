// A FuseError is an answer to the kernel, not a fault: it carries no stack
// (capturing one per ENOENT cost the daemon measurable CPU), and making one
// leaves stack traces of other errors as they were.

import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { FuseError } from '../src/fuse/errors.js';

describe('FuseError', () => {
  it('has its code and message but no stack frames, and other errors keep theirs', () => {
    const e = new FuseError('ENOENT');
    assert.equal(e.errno, 2);
    assert.equal(e.code, 'ENOENT');
    assert.equal(e.message, 'ENOENT');
    assert.doesNotMatch(e.stack ?? '', /\n\s+at /);
    assert.match(new Error('other').stack ?? '', /\n\s+at /);
    assert.throws(() => new FuseError(0), TypeError);
    assert.match(new Error('after a refused errno').stack ?? '', /\n\s+at /);
  });
});
