// clip index IMAGE -o FILE: index an image into a .clip file.

import { Command } from 'commander';
import { checkOutputFile } from '../util/output-file.js';
import { DEFAULT_SPAN_SIZE, DEFAULT_WINDOW_EVERY } from '../indexer/span-size.js';
import { formatBytes, parseSize } from './format.js';
import { addRegistryOptions, registryOptions } from './registry-options.js';

export function indexCommand(): Command {
  const cmd = new Command('index')
    .description('index an image (registry reference or oci:DIR[:TAG]) into a metadata-only .clip file')
    .argument('<image>', 'image reference, e.g. alpine:3.20, localhost:5000/app@sha256:..., oci:./layout:tag')
    .requiredOption('-o, --output <file>', 'where to write the .clip index')
    .option('--platform <os/arch[/variant]>', 'platform to pick from a multi-platform image (default: this host)')
    .option('--span-size <bytes>', `minimum uncompressed bytes between checkpoints: what one read fetches at least (default ${formatBytes(DEFAULT_SPAN_SIZE)})`, parseSize)
    .option('--window-every <bytes>', `keep the 32 KiB window of checkpoints this far apart only; the others resume from the span before (default ${formatBytes(DEFAULT_WINDOW_EVERY)})`, parseSize)
    .option('--profile <file>', 'start-up profile (clip mount --record-profile, same --span-size): also keep windows where its reads begin')
    .option('--json', 'print the summary as JSON');
  addRegistryOptions(cmd);
  return cmd.action(async (image: string, o) => {
    // Before any work: `-o /dev/null` must not replace the device after a long indexing run.
    await checkOutputFile(o.output);
    // Loaded here, not at start-up: the registry client is most of clip's start-up time.
    const [{ indexImage }, { byteProgress }] = await Promise.all([import('../indexer/index-image.js'), import('./progress.js')]);
    const progress = byteProgress('indexing');
    let summary;
    try {
      summary = await indexImage(image, {
        ...(await registryOptions(o)),
        output: o.output,
        ...(o.spanSize !== undefined ? { spanSize: o.spanSize } : {}),
        ...(o.windowEvery !== undefined ? { windowEvery: o.windowEvery } : {}),
        ...(o.profile !== undefined ? { profile: o.profile } : {}),
        onProgress: (read, total) => progress.update(read, total),
      });
    } finally {
      progress.stop();
    }
    if (o.json) {
      process.stdout.write(JSON.stringify(summary, null, 2) + '\n');
      return;
    }
    const pct = ((100 * summary.indexBytes) / Math.max(1, summary.compressedBytes)).toFixed(2);
    process.stdout.write(
      [
        `indexed ${summary.reference} (${summary.manifestDigest})`,
        `  layers:  ${summary.layers} (${formatBytes(summary.compressedBytes)} compressed, ${formatBytes(summary.uncompressedBytes)} uncompressed)`,
        `  entries: ${summary.entries} (${summary.files} files, ${summary.directories} directories)`,
        `  spans:   ${summary.checkpoints}`,
        `  index:   ${summary.output}, ${formatBytes(summary.indexBytes)} (${pct}% of the compressed image)`,
        `  time:    ${summary.seconds.toFixed(2)} s`,
      ].join('\n') + '\n',
    );
  });
}
