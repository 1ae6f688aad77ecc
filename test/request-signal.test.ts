// A FUSE request's abort signal is made only when a handler asks for it, and
// an interrupt is never lost: before the handler asks or after.

import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { RequestSignal } from '../src/fuse/request-signal.js';

describe('request signal', () => {
  it('an interrupt before anyone asked makes the signal aborted, with its reason', () => {
    const r = new RequestSignal();
    const reason = new Error('interrupted');
    r.abort(reason);
    assert.equal(r.signal.aborted, true);
    assert.equal(r.signal.reason, reason);
  });

  it('an interrupt after the handler asked fires the abort event once, with the first reason', () => {
    const r = new RequestSignal();
    const signal = r.signal;
    assert.equal(signal.aborted, false);
    assert.equal(r.signal, signal, 'one signal per request');
    let fired = 0;
    signal.addEventListener('abort', () => fired++);
    const first = new Error('first');
    r.abort(first);
    r.abort(new Error('second'));
    assert.equal(fired, 1);
    assert.equal(signal.reason, first);
  });
});
