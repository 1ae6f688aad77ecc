#!/usr/bin/env node
import process from 'node:process';

// `clip mount FILE --rootfs DIR` to a running daemon, the call a runtime makes
// per container, skips loading the CLI (dist/src/cli/fast-mount.js says why).
const fast = process.argv[2] === 'mount' && (await import('../dist/src/cli/fast-mount.js'));
if (!(fast && (await fast.fastMount(process.argv.slice(2))))) {
  // Started by bin/clip without NODE_EXTRA_CA_CERTS: the full way runs in a Node that has it.
  if (fast && process.env.CLIP_NODE_EXTRA_CA_CERTS !== undefined) await fast.fullWayWithCerts(process.argv.slice(2));
  else await import('../dist/src/cli/main.js');
}
