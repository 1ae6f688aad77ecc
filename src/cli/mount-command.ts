// clip mount FILE MOUNTPOINT | clip mount FILE --rootfs DIR

import { Command, Option } from 'commander';
import { realpath } from 'node:fs/promises';
import { ClipError } from '../errors.js';
import { startBackgroundMount } from '../mount/background.js';
import { pathProblem } from '../util/path-errors.js';
import { mountRootfs } from '../mount/rootfs.js';
import { askedSettings, DEFAULT_CACHE_BYTES, DEFAULT_PREFETCH_RATE, LOG_LEVELS, withDefaults, type MountFlags } from '../mount/settings.js';
import { addRegistryOptions, registryOptions } from './registry-options.js';
import { requireRoot } from './require-root.js';
import { formatBytes, parseSize } from './format.js';
import { checkOutputFile } from '../util/output-file.js';

interface Flags extends MountFlags {
  rootfs?: string;
  upperDir?: string;
  workDir?: string;
  foreground?: boolean;
  readyFd?: string;
  shared?: string;
  plainHttp?: boolean;
  username?: string;
  password?: string;
  passwordStdin?: boolean;
}

export function mountCommand(): Command {
  const cmd = new Command('mount')
    .description('mount an indexed image read-only (FUSE), or a writable container rootfs over it (--rootfs)')
    .argument('<file>', '.clip index')
    .argument('[mountpoint]', 'directory to mount the image on (read-only)')
    .option('--rootfs <dir>', 'mount a writable rootfs (overlayfs over the read-only image) on this directory')
    .option('--upper-dir <dir>', 'with --rootfs: where writes go (default: under /var/lib/clip/rootfs, removed at umount)')
    .option('--work-dir <dir>', 'with --rootfs: overlayfs work directory (same filesystem as the upper dir)')
    .option(
      '--cache-dir <dir>',
      'where inflated spans are cached, shared by mounts of images with the same layers (default /var/lib/clip/cache)',
    )
    .option(
      '--cache-size <bytes>',
      `bound on the span cache directory (all mounts using it); least recently used spans are evicted (default ${formatBytes(DEFAULT_CACHE_BYTES)})`,
      parseSize,
    )
    .option('--prefetch', 'after mount, fetch the rest of the image into the cache in the background (yields to reads)')
    .option(
      '--prefetch-rate <bytes>',
      `prefetch bandwidth per second, at least 1 (default ${formatBytes(DEFAULT_PREFETCH_RATE)})`,
      parseSize,
    )
    .option('--metrics-addr <host:port>', 'serve Prometheus metrics at http://HOST:PORT/metrics')
    .option('--profile <file>', 'start-up profile (from --record-profile): fetch the spans it lists right after mounting, all together')
    .option('--record-profile <file>', 'write the spans read, in first-read order, to this start-up profile at unmount')
    .option('--foreground', 'stay attached and log to stderr (for systemd and debugging)')
    .option('--log-level <level>', `${LOG_LEVELS.join(', ')} (default info)`)
    .addOption(new Option('--ready-fd <fd>').hideHelp())
    .addOption(new Option('--shared <key>').hideHelp());
  addRegistryOptions(cmd);
  return cmd.action(async (file: string, mountpoint: string | undefined, o: Flags) => {
    // Every setting is checked here, before a daemon starts: the daemon would find out only later (at unmount, or in a log).
    const asked = askedSettings(o);
    requireRoot('mount');
    if (o.recordProfile !== undefined) await checkOutputFile(o.recordProfile, 'start-up profile');
    const registry = await registryOptions(o);
    if (o.rootfs !== undefined) {
      if (mountpoint !== undefined) throw new ClipError('BAD_ARGUMENT', 'give either a mountpoint or --rootfs, not both');
      const r = await mountRootfs({
        index: file,
        rootfs: o.rootfs,
        registry,
        settings: asked,
        ...(o.upperDir !== undefined ? { upperDir: o.upperDir } : {}),
        ...(o.workDir !== undefined ? { workDir: o.workDir } : {}),
      });
      process.stdout.write(`${r.mountpoint}\n`);
      return;
    }
    if (mountpoint === undefined) throw new ClipError('BAD_ARGUMENT', 'missing mountpoint (or --rootfs DIR)');
    let mp: string;
    try {
      mp = await realpath(mountpoint);
    } catch (e) {
      const hint = (e as NodeJS.ErrnoException).code === 'ENOENT' ? ' (create the directory first)' : '';
      throw new ClipError('BAD_ARGUMENT', `mount point ${mountpoint}: ${pathProblem(mountpoint, e)}${hint}`);
    }
    const index = await realpath(file).catch((e: unknown) => {
      throw new ClipError('IO', `cannot read index ${file}: ${pathProblem(file, e)}`);
    });
    if (o.foreground) {
      const { runDaemon } = await import('../mount/daemon.js');
      await runDaemon({
        index,
        mountpoint: mp,
        registry,
        settings: withDefaults(asked),
        ...(o.readyFd !== undefined ? { readyFd: Number(o.readyFd) } : {}),
        ...(o.shared !== undefined ? { shared: o.shared } : {}),
      });
      return;
    }
    const m = await startBackgroundMount({ index, mountpoint: mp, registry, settings: withDefaults(asked) });
    process.stdout.write(`${m.mountpoint}\n`);
  });
}
