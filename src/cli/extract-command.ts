// clip extract FILE DIR: write the tree of a .clip file (any kind) to disk.

import { Command } from 'commander';
import { formatBytes } from './format.js';
import { addRegistryOptions, registryOptions } from './registry-options.js';

export function extractCommand(): Command {
  const cmd = new Command('extract')
    .description(
      'write the tree of a .clip file (image index, local or S3 archive) to a directory, exactly (owners, modes, ns times, xattrs, devices)',
    )
    .argument('<file>', '.clip file')
    .argument('<dir>', 'directory to create (or an empty one)');
  addRegistryOptions(cmd);
  return cmd.action(async (file: string, dir: string, o) => {
    const [{ extractArchive }, { byteProgress }, { interruptOnSignals }] = await Promise.all([
      import('../archive/extract.js'),
      import('./progress.js'),
      import('./interrupt.js'),
    ]);
    const interrupt = interruptOnSignals();
    const progress = byteProgress('extracting');
    let summary;
    try {
      summary = await interrupt.run(async (signal) =>
        extractArchive(file, dir, { ...(await registryOptions(o)), signal, onProgress: (done, total) => progress.update(done, total) }),
      );
    } finally {
      progress.stop();
    }
    process.stdout.write(
      `extracted ${summary.entries} entries (${formatBytes(summary.fileBytes)} in files) to ${summary.dir} in ${summary.seconds.toFixed(2)} s\n`,
    );
  });
}
