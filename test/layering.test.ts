// The layer order of src/ (README, "How it works"), enforced: a module may
// import from its own folder and from folders in lower layers, never from a
// higher layer nor from another folder of its own layer (those stay
// independent). A folder or root file that is not placed here fails the test,
// so a new one must be given its place.

import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import ts from 'typescript';

/** Lowest first: each entry a layer of folders (or root files) of src/. */
const LAYERS: readonly (readonly string[])[] = [
  ['errors.ts', 'version.ts'],
  ['util'], // atomic writes, locks, output checks, digests
  ['http'], // the HTTP client, range answers, resumable blob streams
  ['tar', 'gzip', 'fuse'], // tar scanning, seekable gzip, the FUSE protocol: no images, no I/O policy
  ['image'], // the merged tree
  ['index'], // the .clip format, inspect, the start-up profile format
  ['oci', 's3'], // registries and OCI layouts; S3
  ['indexer'], // image -> ClipIndex
  ['registry-index'], // indexes as OCI artifacts in the registry, the node's local index store, the lookup
  ['content'], // where bytes come from (sources/), verified range reads, span cache
  ['archive'], // clip archive / extract
  ['fs', 'metrics'], // the image as a FUSE filesystem; mount metrics
  ['mount'], // daemon, rootfs, unmount
  ['snapshotter'], // containerd's snapshots API: the store, lazy layers, the gRPC service
  ['containerd'], // clip pull: containerd's content, images and snapshots through its API
  ['daemon'], // the node daemon: its configuration
  ['trace'], // clip index --trace: runs the image's command on a private daemon's mount
  ['cli'],
  ['clip.ts'], // the library's exports
];

const SRC = fileURLToPath(new URL('../../src', import.meta.url));

interface Violation {
  file: string;
  imports: string;
  why: string;
}

/** The folder (or root file) of src/ a path lies in, or undefined outside src/. */
function unitOf(srcDir: string, file: string): string | undefined {
  const rel = path.relative(srcDir, file);
  if (rel.startsWith('..') || path.isAbsolute(rel)) return undefined;
  return rel.split(path.sep)[0];
}

function tsFiles(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true, recursive: true })
    .filter((e) => e.isFile() && e.name.endsWith('.ts') && !e.name.endsWith('.d.ts'))
    .map((e) => path.join(e.parentPath, e.name));
}

/** Every relative import (static, dynamic, type-only, re-export) of src/**\/*.ts that breaks LAYERS. */
function layerViolations(srcDir: string, layers = LAYERS): Violation[] {
  const rank = new Map<string, number>();
  layers.forEach((units, i) => units.forEach((u) => rank.set(u, i)));
  const out: Violation[] = [];
  for (const file of tsFiles(srcDir)) {
    const name = path.relative(srcDir, file);
    const from = unitOf(srcDir, file)!;
    const fromRank = rank.get(from);
    if (fromRank === undefined) {
      out.push({ file: name, imports: '', why: `${from} has no place in LAYERS` });
      continue;
    }
    const { importedFiles } = ts.preProcessFile(readFileSync(file, 'utf8'), true, true);
    for (const { fileName: spec } of importedFiles) {
      if (!spec.startsWith('.')) continue; // node: and packages
      const target = path.resolve(path.dirname(file), spec);
      const to = unitOf(srcDir, target.replace(/\.js$/, '.ts'));
      if (to === from) continue;
      const toRank = to === undefined ? undefined : rank.get(to);
      if (to === undefined) {
        // package.json (version.ts) is the one file outside src/ a module reads.
        if (path.basename(target) !== 'package.json') out.push({ file: name, imports: spec, why: 'outside src/' });
      } else if (toRank === undefined) out.push({ file: name, imports: spec, why: `${to} has no place in LAYERS` });
      else if (toRank > fromRank) out.push({ file: name, imports: spec, why: `${to} is above ${from}` });
      else if (toRank === fromRank) out.push({ file: name, imports: spec, why: `${to} and ${from} are one layer: they stay independent` });
    }
  }
  return out;
}

describe('layering', () => {
  it('no module of src/ imports from a layer above its own, or a sibling folder', () => {
    const found = layerViolations(SRC);
    assert.deepEqual(
      found.map((v) => `${v.file} -> ${v.imports}: ${v.why}`),
      [],
    );
  });

  it('sees static, dynamic, type-only and re-export imports (not comments or strings), and unplaced folders', async () => {
    const dir = await mkdtemp(path.join(os.tmpdir(), 'clip-layering-'));
    try {
      await mkdir(path.join(dir, 'low'));
      await mkdir(path.join(dir, 'high'));
      await mkdir(path.join(dir, 'stray'));
      await writeFile(path.join(dir, 'high', 'ok.ts'), "import { a } from '../low/a.js';\nimport { b } from './b.js';\n");
      await writeFile(
        path.join(dir, 'low', 'a.ts'),
        [
          "import { x } from '../high/x.js';",
          "import type { Y } from '../high/y.js';",
          "export { z } from '../high/z.js';",
          "const m = await import('../high/m.js');",
          "// import { not } from '../high/comment.js';",
          'const s = \'import("../high/string.js")\';',
        ].join('\n'),
      );
      await writeFile(path.join(dir, 'stray', 's.ts'), '');
      const found = layerViolations(dir, [['low'], ['high']]);
      assert.deepEqual(found.map((v) => `${v.file} ${v.imports} ${v.why}`).sort(), [
        'low/a.ts ../high/m.js high is above low',
        'low/a.ts ../high/x.js high is above low',
        'low/a.ts ../high/y.js high is above low',
        'low/a.ts ../high/z.js high is above low',
        'stray/s.ts  stray has no place in LAYERS',
      ]);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});
