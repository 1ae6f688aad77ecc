// The index for the first argument of clip mount/ls/cat: the file itself, or
// for an image reference the index findImageIndex finds (local store, the
// image's referrers) or builds. Flags: --platform, --index-only, --build.

import { Command } from 'commander';
import { ClipError } from '../errors.js';
import type { RegistryOptions } from '../oci/types.js';
import { isIndexFileArgument } from './index-argument.js';

export interface ImageIndexFlags {
  indexOnly?: boolean;
  build?: boolean;
}

export function addImageIndexOptions(cmd: Command): Command {
  return cmd
    .option(
      '--platform <os/arch[/variant]>',
      'with an image reference: the platform to pick from a multi-platform image (default: this host)',
    )
    .option('--index-only', 'with an image reference: use an existing index (local store or registry) only; fail if there is none')
    .option('--build', 'with an image reference: index the image here when no index is found (the default; reads the whole image once)');
}

/** The .clip file to use for `arg` (a file, or an image reference resolved through the local store and the registry). */
export async function indexForArgument(arg: string, flags: ImageIndexFlags, registry: RegistryOptions): Promise<string> {
  if (isIndexFileArgument(arg)) {
    if (flags.indexOnly || flags.build)
      throw new ClipError('BAD_ARGUMENT', '--index-only and --build go with an image reference, not a .clip file');
    return arg;
  }
  if (flags.indexOnly && flags.build) throw new ClipError('BAD_ARGUMENT', 'give either --index-only or --build, not both');
  const [{ findImageIndex }, { byteProgress }] = await Promise.all([import('../registry-index/find-index.js'), import('./progress.js')]);
  const download = byteProgress('downloading index');
  const build = byteProgress('indexing');
  try {
    const { platform, ...rest } = registry;
    const found = await findImageIndex({
      reference: arg,
      registry: rest,
      ...(platform ? { platform } : {}),
      build: !flags.indexOnly,
      onNotice: (m) => process.stderr.write(`clip: ${m}\n`),
      onProgress: (p) => (p.stage === 'download' ? download : build).update(p.done, p.total),
    });
    return found.path;
  } finally {
    download.stop();
    build.stop();
  }
}
