// clip mount FILE MOUNTPOINT | clip mount FILE --rootfs DIR: asks the node
// daemon to serve the image (starting one in the background when none runs).

import { Command } from 'commander';
import { realpath } from 'node:fs/promises';
import path from 'node:path';
import { ClipError } from '../errors.js';
import { pathProblem } from '../util/path-errors.js';
import { askedSettings, DEFAULT_CACHE_BYTES, DEFAULT_PREFETCH_RATE, LOG_LEVELS, type MountFlags } from '../mount/settings.js';
import { stateDir } from '../mount/state.js';
import { addRegistryOptions, registryOptions } from './registry-options.js';
import { addImageIndexOptions, indexForArgument, type ImageIndexFlags } from './image-index.js';
import { requireRoot } from './require-root.js';
import { formatBytes, parseSize } from './format.js';
import { checkOutputFile } from '../util/output-file.js';
import type { AskedDaemonSettings, MountReply, MountRequest } from '../daemon/api.js';
import type { ImageSettings } from '../daemon/served-images.js';

interface Flags extends MountFlags, ImageIndexFlags {
  rootfs?: string;
  upperDir?: string;
  workDir?: string;
  plainHttp?: boolean;
  username?: string;
  password?: string;
  passwordStdin?: boolean;
  platform?: string;
}

export function mountCommand(): Command {
  const cmd = new Command('mount')
    .description('mount an indexed image read-only (FUSE), or a writable container rootfs over it (--rootfs)')
    .argument('<index>', '.clip index file, or an image reference (its index is found in the local store or the registry)')
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
    .option('--log-level <level>', `${LOG_LEVELS.join(', ')} (default info)`);
  addImageIndexOptions(cmd);
  addRegistryOptions(cmd);
  return cmd.action(async (file: string, mountpoint: string | undefined, o: Flags) => {
    // Every setting is checked here, before a daemon starts: the daemon would find out only later (at unmount, or in a log).
    const asked = askedSettings(o);
    requireRoot('mount');
    if (o.recordProfile !== undefined) await checkOutputFile(o.recordProfile, 'start-up profile');
    if (o.rootfs !== undefined && mountpoint !== undefined)
      throw new ClipError('BAD_ARGUMENT', 'give either a mountpoint or --rootfs, not both');
    if (o.rootfs === undefined && mountpoint === undefined) throw new ClipError('BAD_ARGUMENT', 'missing mountpoint (or --rootfs DIR)');
    if (o.rootfs === undefined && (o.upperDir !== undefined || o.workDir !== undefined))
      throw new ClipError('BAD_ARGUMENT', '--upper-dir and --work-dir go with --rootfs');
    const registry = await registryOptions(o);
    const indexFile = await indexForArgument(file, o, registry);
    const index = await realpath(indexFile).catch((e: unknown) => {
      throw new ClipError('IO', `cannot read index ${indexFile}: ${pathProblem(indexFile, e)}`);
    });
    const daemon: AskedDaemonSettings = {};
    const flags: string[] = [];
    if (asked.logLevel !== undefined) flags.push('--log-level', (daemon.logLevel = asked.logLevel));
    if (asked.cacheDir !== undefined) flags.push('--cache-dir', (daemon.cacheDir = asked.cacheDir));
    if (asked.cacheBytes !== undefined) flags.push('--cache-size', String((daemon.cacheBytes = asked.cacheBytes)));
    if (asked.metricsAddr !== undefined) flags.push('--metrics-addr', (daemon.metricsAddr = asked.metricsAddr));
    const image: ImageSettings = {};
    if (asked.prefetchRate !== undefined) image.prefetchRate = asked.prefetchRate;
    if (asked.profile !== undefined) image.profile = asked.profile;
    if (asked.recordProfile !== undefined) image.recordProfile = asked.recordProfile;
    const req: MountRequest = {
      index,
      registry,
      image,
      daemon,
      // The daemon's working directory is not ours: every path goes absolute.
      ...(o.rootfs !== undefined ? { rootfs: path.resolve(o.rootfs) } : { mountpoint: path.resolve(mountpoint!) }),
      ...(o.upperDir !== undefined ? { upperDir: path.resolve(o.upperDir) } : {}),
      ...(o.workDir !== undefined ? { workDir: path.resolve(o.workDir) } : {}),
    };
    const { callDaemon, ensureDaemon, DaemonUnreachable } = await import('../daemon/client.js');
    const state = stateDir();
    let r: MountReply;
    try {
      // The daemon usually runs: ask at once (a health check first would cost a round trip).
      r = await callDaemon<MountReply>(state, 'POST', '/v1/mount', req, { startIfNone: true });
    } catch (e) {
      if (!(e instanceof DaemonUnreachable)) throw e;
      await ensureDaemon(state, flags);
      r = await callDaemon<MountReply>(state, 'POST', '/v1/mount', req);
    }
    process.stdout.write(`${r.mountpoint}\n`);
  });
}
