// clip push FILE.clip [REPOSITORY]: store an image's .clip index in its
// registry as an OCI artifact that refers to the indexed image manifest.

import { Command } from 'commander';
import { addRegistryOptions, registryOptions } from './registry-options.js';

export function pushCommand(): Command {
  const cmd = new Command('push')
    .description("store a .clip index in the image's repository (an OCI artifact whose subject is the indexed manifest)")
    .argument('<file>', '.clip index of an image')
    .argument('[repository]', 'repository to push to (host/name) instead of the one the index was made from; it must hold the image')
    .option('--json', 'print the result as JSON');
  addRegistryOptions(cmd);
  return cmd.action(async (file: string, repository: string | undefined, o) => {
    const { pushIndex } = await import('../registry-index/push-index.js');
    const pushed = await pushIndex(file, { registry: await registryOptions(o), ...(repository !== undefined ? { repository } : {}) });
    if (o.json) {
      process.stdout.write(JSON.stringify(pushed, null, 2) + '\n');
      return;
    }
    const how =
      pushed.referrers === 'api'
        ? 'the registry lists it (referrers API)'
        : pushed.referrers === 'tag'
          ? 'listed in the referrers tag'
          : 'already listed among its referrers (nothing pushed)';
    process.stdout.write(`pushed ${pushed.reference} for ${pushed.subject.digest}: ${how}\n`);
  });
}
