// Octal and GNU base-256 numeric fields, including the edges: empty fields,
// terminators, negative numbers and values past 2^53.

import { it } from 'node:test';
import assert from 'node:assert/strict';
import { readNumber } from '../src/tar/large-numbers.js';

const field = (s: string | number[]): Buffer => (typeof s === 'string' ? Buffer.from(s, 'latin1') : Buffer.from(s));
const read = (s: string | number[]): number => {
  const b = field(s);
  return readNumber(b, 0, b.length);
};

it('reads octal text with the usual terminators and padding', () => {
  assert.equal(read('0000644\0'), 0o644);
  assert.equal(read('000644 \0'), 0o644);
  assert.equal(read('   644 \0'), 0o644);
  assert.equal(read('77777777777\0'), 8 ** 11 - 1);
  assert.equal(read('777777777777'), 8 ** 12 - 1); // no terminator at all
  assert.equal(read('\0\0\0\0\0\0\0\0'), 0);
  assert.equal(read('        '), 0);
  assert.equal(read('0000644\0junk'), 0o644); // only the byte after the digits matters
});

it('rejects non-octal text', () => {
  assert.ok(Number.isNaN(read('0000648\0')));
  assert.ok(Number.isNaN(read('12x\0')));
  assert.ok(Number.isNaN(read('-1\0')));
  assert.ok(Number.isNaN(read([0x81, 0, 0, 0, 0, 0, 0, 1]))); // only 0x80 / 0xff lead base-256
});

it('reads base-256, positive and negative', () => {
  assert.equal(read([0x80, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x01, 0x00]), 256);
  assert.equal(read([0x80, 0, 0, 0, 0xee, 0x6b, 0x28, 0x00]), 4000000000);
  assert.equal(read([0x80, 0, 0, 0, 0, 0x1f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff]), Number.MAX_SAFE_INTEGER);
  assert.equal(read([0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff]), -1);
  assert.equal(read([0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xfc, 0x18]), -1000);
  assert.equal(read([0xff, 0xff, 0xff, 0xff, 0xff, 0xe0, 0, 0, 0, 0, 0, 1]), -Number.MAX_SAFE_INTEGER);
});

it('reports values beyond 2^53 as infinite', () => {
  assert.equal(read([0x80, 0, 0, 0, 0, 0x20, 0, 0, 0, 0, 0, 0]), Infinity);
  assert.equal(read([0x80, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff]), Infinity);
  assert.equal(read([0xff, 0xff, 0xff, 0xff, 0xff, 0xe0, 0, 0, 0, 0, 0, 0]), -Infinity);
  assert.equal(read([0xff, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]), -Infinity);
});
