// The memory cache's default bound: a share of RAM within a floor and a ceiling.

import assert from 'node:assert/strict';
import { totalmem } from 'node:os';
import { describe, it } from 'node:test';
import { DEFAULT_MEMORY_CACHE } from '../src/content/layer-reader.js';
import { defaultMemoryBound } from '../src/content/memory-bound.js';

const MiB = 1024 * 1024;
const GiB = 1024 * MiB;

describe('memory cache default', () => {
  it('is 1/8 of RAM, at least 256 MiB, at most 4 GiB', () => {
    assert.equal(defaultMemoryBound(1 * GiB), 256 * MiB);
    assert.equal(defaultMemoryBound(8 * GiB), 1 * GiB);
    assert.equal(defaultMemoryBound(24 * GiB), 3 * GiB);
    assert.equal(defaultMemoryBound(256 * GiB), 4 * GiB);
    assert.equal(defaultMemoryBound(8 * GiB + 12345) % MiB, 0, 'whole MiB');
  });

  it("is what readers use, and holds an ML start-up's working set on a machine of 8 GiB or more", () => {
    assert.equal(DEFAULT_MEMORY_CACHE, defaultMemoryBound(totalmem()));
    // torch's import touches ~640 MB of inflated spans (bench:ml); a machine with 8 GiB of RAM or more holds them.
    if (totalmem() >= 8 * GiB) assert.ok(DEFAULT_MEMORY_CACHE >= 1 * GiB);
  });
});
