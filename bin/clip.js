#!/usr/bin/env node
import process from 'node:process';

// `clip mount FILE --rootfs DIR` to a running daemon, the call a runtime makes
// per container, skips loading the CLI (dist/src/cli/fast-mount.js says why).
const fast = process.argv[2] === 'mount' && (await import('../dist/src/cli/fast-mount.js')).fastMount(process.argv.slice(2));
if (!(await fast)) await import('../dist/src/cli/main.js');
