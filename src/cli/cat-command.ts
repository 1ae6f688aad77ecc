// clip cat FILE PATH: a file's bytes, fetched lazily from the registry.

import { Command } from 'commander';
import { pipeline } from 'node:stream/promises';
import { loadIndex } from '../index/load.js';
import { ClipError } from '../errors.js';
import { lookupPath } from '../image/lookup.js';
import { addRegistryOptions, registryOptions } from './registry-options.js';
import { addImageIndexOptions, indexForArgument } from './image-index.js';

export function catCommand(): Command {
  const cmd = new Command('cat')
    .description('write a file of an indexed image to stdout (only the spans it needs are fetched)')
    .argument('<index>', '.clip index file, or an image reference (its index is found in the local store or the registry)')
    .argument('<path>', 'file in the image (symlinks are followed inside the image)');
  addImageIndexOptions(cmd);
  addRegistryOptions(cmd);
  return cmd.action(async (file: string, path: string, o) => {
    const registry = await registryOptions(o);
    const index = await loadIndex(await indexForArgument(file, o, registry));
    const node = lookupPath(index, path, true);
    if (node.type !== 'file')
      throw new ClipError('BAD_ARGUMENT', `${path} is a ${node.type === 'dir' ? 'directory' : node.type}, not a regular file`);
    // Loaded here, not at start-up: the registry client is most of clip's start-up time.
    const { FileReader } = await import('../content/file-reader.js');
    const reader = await FileReader.open(index, registry);
    try {
      await pipeline(reader.stream(node), process.stdout);
    } finally {
      await reader.close();
    }
  });
}
