// Runs the test files (after `tsc -p .`): `unit`, the pure ones (no root, no
// servers, no mounts; seconds), `integration`, all the others, or `all`: both,
// unit first, in one run (one summary that counts every test).
// A test file is integration unless named below, so a new one is never left out.
//
//   node dist/scripts/run-tests.js unit|integration|all [extra node --test flags]

import { spawnSync } from 'node:child_process';
import { existsSync, readdirSync } from 'node:fs';
import path from 'node:path';

/** Test files that need neither root (mknod, FUSE), nor a server (registry, S3, HTTP), nor external tools' images. */
const UNIT = [
  'gzip',
  'hosts-config',
  'index-format',
  'index-validate',
  'layer-reader',
  'merge',
  'oci-auth',
  'oci-credentials',
  'oci-hostile-manifests',
  'oci-reference',
  'prefetch',
  'span-cache',
  'tar-hostile',
  'tar-large-numbers',
  'tar-normalize-path',
  'tar-pax',
  'unaligned-resume',
];

const root = path.resolve(import.meta.dirname, '..', '..');
const group = process.argv[2];
if (group !== 'unit' && group !== 'integration' && group !== 'all') {
  console.error('usage: run-tests.js unit|integration|all [node --test flags]');
  process.exit(2);
}
// From the sources, not dist/: a compiled file whose test was deleted or renamed must not run.
const names = readdirSync(path.join(root, 'test'))
  .filter((f) => f.endsWith('.test.ts'))
  .map((f) => f.slice(0, -'.test.ts'.length));
const missing = UNIT.filter((n) => !names.includes(n));
if (missing.length > 0) {
  console.error(`run-tests: unit test files not found: ${missing.join(', ')} (renamed? update scripts/run-tests.ts)`);
  process.exit(2);
}
const unit = names.filter((n) => UNIT.includes(n)).sort();
const integration = names.filter((n) => !UNIT.includes(n)).sort();
const chosen = group === 'unit' ? unit : group === 'integration' ? integration : [...unit, ...integration];
const files = chosen.map((n) => path.join(root, 'dist', 'test', `${n}.test.js`));
const stale = files.filter((f) => !existsSync(f));
if (stale.length > 0) {
  console.error(`run-tests: not built: ${stale.join(', ')} (run tsc -p . first)`);
  process.exit(2);
}
const run = spawnSync(process.execPath, ['--test', '--test-concurrency=1', ...process.argv.slice(3), ...files], { stdio: 'inherit' });
process.exit(run.status ?? 1);
