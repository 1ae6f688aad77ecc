// clip ls INDEX [PATH]: list the image's tree from the index (no network for a
// .clip file; an image reference is looked up as clip mount looks it up).

import { Command } from 'commander';
import { loadIndex } from '../index/load.js';
import { lookupPath } from '../image/lookup.js';
import { listNode, type ListEntry } from '../index/inspect.js';
import { modeString } from './format.js';
import { addImageIndexOptions, indexForArgument, type ImageIndexFlags } from './image-index.js';
import { addRegistryOptions, registryOptions } from './registry-options.js';

type RegistryFlags = Parameters<typeof registryOptions>[0];

/** ls shows names inside the listed directory; a recursive listing shows paths. */
function displayName(e: ListEntry, recursive: boolean): string {
  return recursive ? e.path : e.path.slice(e.path.lastIndexOf('/') + 1) || '/';
}

function longLine(e: ListEntry, recursive: boolean): string {
  const size = e.rdev ? `${e.rdev.major}, ${e.rdev.minor}` : String(e.size);
  const name = e.target !== undefined ? `${displayName(e, recursive)} -> ${e.target}` : displayName(e, recursive);
  return `${modeString(e.type, e.mode)} ${String(e.nlink).padStart(3)} ${String(e.uid).padStart(6)} ${String(e.gid).padStart(6)} ${size.padStart(10)} ${e.mtime} ${name}`;
}

export function lsCommand(): Command {
  const cmd = new Command('ls')
    .description('list files of an indexed image')
    .argument('<index>', '.clip index file, or an image reference (its index is found in the local store or the registry)')
    .argument('[path]', 'directory or file in the image', '/')
    .option('-l, --long', 'long listing (mode, links, owner, size, mtime)')
    .option('-R, --recursive', 'list subdirectories recursively')
    .option('--json', 'print as JSON');
  addImageIndexOptions(cmd);
  addRegistryOptions(cmd);
  return cmd.action(
    async (file: string, path: string, o: { long?: boolean; recursive?: boolean; json?: boolean } & ImageIndexFlags & RegistryFlags) => {
      const index = await loadIndex(await indexForArgument(file, o, await registryOptions(o)));
      // Like ls: a symlink named last is listed itself, unless the path ends in "/".
      const node = lookupPath(index, path, path.endsWith('/'));
      const clean = path
        .split('/')
        .filter((p) => p !== '' && p !== '.')
        .join('/');
      const entries = listNode(clean, node, o.recursive);
      if (o.json) {
        process.stdout.write(JSON.stringify(entries, null, 2) + '\n');
        return;
      }
      const recursive = o.recursive === true;
      const lines = entries.map((e) => (o.long ? longLine(e, recursive) : displayName(e, recursive)));
      if (lines.length > 0) process.stdout.write(lines.join('\n') + '\n');
    },
  );
}
