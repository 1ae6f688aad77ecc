#!/usr/bin/env node
// FUSE reads each hold a libuv threadpool thread; the pool size must be set
// before the pool first starts, so before anything else is loaded.
process.env.UV_THREADPOOL_SIZE ??= '16';
await import('../dist/src/cli/main.js');
