// clip pull IMAGE: makes an image runnable lazily by containerd through clip's
// snapshotter (like `ctr-remote image rpull`): manifest and config into
// containerd's content store, layers prepared with the remote-snapshot
// labels, the image record created; then `ctr run --snapshotter clip IMAGE`.

import { Command } from 'commander';
import { addRegistryOptions, registryOptions } from './registry-options.js';

export function pullCommand(): Command {
  return addRegistryOptions(
    new Command('pull')
      .description("make IMAGE runnable by containerd through clip's snapshotter, lazily when clip has an index of it")
      .argument('<image>', 'image reference (registry/repository:tag or @digest)')
      .option('--namespace <ns>', 'containerd namespace (or CONTAINERD_NAMESPACE)')
      .option('--address <socket>', "containerd's socket (or CONTAINERD_ADDRESS)")
      .option('--snapshotter <name>', "the clip snapshotter's name in containerd's config", 'clip')
      .option('--platform <os/arch[/variant]>', 'platform to pull (default: this machine)'),
  ).action(
    async (
      ref: string,
      o: {
        namespace?: string;
        address?: string;
        snapshotter: string;
        platform?: string;
        plainHttp?: boolean;
        username?: string;
        password?: string;
        passwordStdin?: boolean;
      },
    ) => {
      const { pullImage } = await import('../containerd/pull.js');
      const { DEFAULT_CONTAINERD_ADDRESS } = await import('../containerd/client.js');
      const r = await pullImage(ref, {
        address: o.address ?? process.env['CONTAINERD_ADDRESS'] ?? DEFAULT_CONTAINERD_ADDRESS,
        namespace: o.namespace ?? process.env['CONTAINERD_NAMESPACE'] ?? 'default',
        snapshotter: o.snapshotter,
        registry: await registryOptions(o),
        log: (line) => process.stderr.write(`${line}\n`),
      });
      const how =
        r.unpackedLayers === 0 ? 'lazily' : r.remoteLayers === 0 && r.existingLayers === 0 ? 'unpacked (no clip index)' : 'partly unpacked';
      process.stdout.write(
        `${r.name}@${r.manifestDigest}: ${how} (${r.remoteLayers} lazy, ${r.unpackedLayers} unpacked, ${r.existingLayers} already there)\n`,
      );
    },
  );
}
