// Malformed start-up profiles (`--profile FILE`) are refused with a message
// naming the file and the field that is wrong, never a TypeError ("object
// null is not iterable") with a stack trace.

import assert from 'node:assert/strict';
import { readdir, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { buildBusyboxImage } from './helpers/busybox-image.js';
import { runClip } from './helpers/cli.js';
import type { BuiltImage } from './helpers/image-builder.js';
import { clipWorkspace, type ClipWorkspace } from './helpers/mounts.js';

describe('malformed start-up profiles', () => {
  let image: BuiltImage;
  let ws: ClipWorkspace;
  before(async () => {
    image = await buildBusyboxImage();
    ws = await clipWorkspace('profile-shape');
  });
  after(async () => {
    if (image) await rm(image.dir, { recursive: true, force: true });
    if (ws) await rm(ws.dir, { recursive: true, force: true });
  });

  const good = (): Record<string, unknown> => ({
    clipStartupProfile: 2,
    manifestDigest: image.manifestDigest,
    spanSize: 4 << 20,
    spans: [[image.layers[1]!.digest, 0, 4096]],
  });
  const cases: { name: string; body: () => string; message: RegExp }[] = [
    { name: 'not JSON', body: () => '{"clipStartupProfile": 2,', message: /is not a clip start-up profile \(not valid JSON\)/ },
    { name: 'null', body: () => 'null', message: /is not a clip start-up profile/ },
    {
      name: 'a spans entry that is null',
      body: () => JSON.stringify({ ...good(), spans: [null] }),
      message: /"spans"\[0\] is null, not \[layer digest, start offset, end offset, until\?, from\?\]/,
    },
    { name: 'spans that is an object', body: () => JSON.stringify({ ...good(), spans: { a: 1 } }), message: /"spans" is not a list/ },
    {
      name: 'a negative offset',
      body: () =>
        JSON.stringify({
          ...good(),
          spans: [
            [image.layers[1]!.digest, 0, 4096],
            [image.layers[1]!.digest, -1, 4096],
          ],
        }),
      message: /"spans"\[1\] is \[.*,-1,4096\]/,
    },
    {
      name: 'a span that ends where it starts',
      body: () => JSON.stringify({ ...good(), spans: [[image.layers[1]!.digest, 4096, 4096]] }),
      message: /"spans"\[0\] is \[.*,4096,4096\], not \[layer digest, start offset, end offset, until\?, from\?\]/,
    },
    {
      name: 'a format-1 entry (a span number) in a format-2 profile',
      body: () => JSON.stringify({ ...good(), spans: [[image.layers[1]!.digest, 3]] }),
      message: /"spans"\[0\] is \[.*,3\], not \[layer digest, start offset, end offset, until\?, from\?\]/,
    },
    {
      name: 'an until past the end of its span',
      body: () => JSON.stringify({ ...good(), spans: [[image.layers[1]!.digest, 0, 4096, 4097]] }),
      message: /"spans"\[0\] is \[.*,0,4096,4097\], not \[layer digest, start offset, end offset, until\?, from\?\]/,
    },
    {
      name: 'a from at or past its until',
      body: () => JSON.stringify({ ...good(), spans: [[image.layers[1]!.digest, 0, 8192, 4096, 4096]] }),
      message: /"spans"\[0\] is \[.*,0,8192,4096,4096\], not \[layer digest, start offset, end offset, until\?, from\?\]/,
    },
    {
      name: 'a from at the start of its span',
      body: () => JSON.stringify({ ...good(), spans: [[image.layers[1]!.digest, 0, 8192, 4096, 0]] }),
      message: /"spans"\[0\] is \[.*,0,8192,4096,0\], not/,
    },
    {
      name: 'an until at the start of its span',
      body: () => JSON.stringify({ ...good(), spans: [[image.layers[1]!.digest, 0, 4096, 0]] }),
      message: /"spans"\[0\] is \[.*,0,4096,0\], not/,
    },
    {
      name: 'an until that is not a whole number',
      body: () => JSON.stringify({ ...good(), spans: [[image.layers[1]!.digest, 0, 4096, 1e30]] }),
      message: /"spans"\[0\] is \[.*\], not/,
    },
    {
      name: 'a layer that is not a digest',
      body: () => JSON.stringify({ ...good(), spans: [['../../etc', 0, 1]] }),
      message: /"spans"\[0\]/,
    },
    {
      name: 'a format-1 profile (spans by number)',
      body: () => JSON.stringify({ ...good(), clipStartupProfile: 1, spans: [[image.layers[1]!.digest, 2]] }),
      message: /names spans by number \(format 1\).*record it again with this clip \(clip mount --record-profile\)/,
    },
    {
      name: 'an unknown format version',
      body: () => JSON.stringify({ ...good(), clipStartupProfile: 3 }),
      message: /is not a clip start-up profile/,
    },
    {
      name: 'a span size that is a string',
      body: () => JSON.stringify({ ...good(), spanSize: '4M' }),
      message: /"spanSize" is not a positive whole number/,
    },
    {
      name: 'a manifest digest that is a number',
      body: () => JSON.stringify({ ...good(), manifestDigest: 5 }),
      message: /"manifestDigest" is not a sha256 digest/,
    },
  ];
  for (const c of cases) {
    it(`${c.name}: clip index --profile names the file and the field`, async () => {
      const profile = path.join(ws.dir, 'bad-profile.json');
      await writeFile(profile, c.body());
      const out = path.join(ws.dir, 'out.clip');
      const r = await runClip(['index', `oci:${image.dir}:${image.tag}`, '-o', out, '--profile', profile]);
      assert.equal(r.code, 1, r.stderr);
      assert.match(r.stderr, /^clip: /);
      assert.ok(r.stderr.includes(profile), `names the file: ${r.stderr}`);
      assert.match(r.stderr, c.message);
      assert.doesNotMatch(r.stderr, /unexpected error|\n\s+at /);
      assert.ok(!(await readdir(ws.dir)).includes('out.clip'));
    });
  }
});
