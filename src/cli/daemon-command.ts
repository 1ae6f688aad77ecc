// clip daemon [--config FILE] [flags]: the node's clip service, in the
// foreground (for systemd, or `setsid clip daemon &`). --check-config loads
// and validates the settings and prints the effective ones (TOML, or --json);
// --upgrade has the running daemon replace its serving process; --stop stops
// it (unmounting everything it serves).

import { Command, Option } from 'commander';
import {
  CONFIG_KEYS,
  DEFAULT_CONFIG_PATH,
  loadDaemonConfig,
  type DaemonConfig,
  type DaemonFlags,
  type LoadedConfig,
} from '../daemon/config.js';
import path from 'node:path';
import { ClipError } from '../errors.js';
import { requireRoot } from './require-root.js';
import { formatBytes } from './format.js';

interface Flags extends DaemonFlags {
  checkConfig?: boolean;
  json?: boolean;
  upgrade?: boolean;
  stop?: boolean;
  idleExit?: boolean;
  logFile?: string;
}

/** The value of a key as the config file would spell it (undefined metrics address: ""). */
function valueOf(c: DaemonConfig, field: keyof DaemonConfig): string | number | boolean {
  return c[field] ?? '';
}

/** The effective settings as a config file that would give them, sizes in bytes with a readable comment. */
function asToml(l: LoadedConfig): string {
  const lines = [
    `# effective settings of clip daemon (${l.file !== undefined ? `from ${l.file}` : `no ${DEFAULT_CONFIG_PATH}: defaults`})`,
  ];
  for (const k of CONFIG_KEYS) {
    const v = valueOf(l.config, k.field);
    const comment = k.kind === 'size' ? `  # ${formatBytes(v as number)}` : '';
    lines.push(`${k.key} = ${typeof v === 'string' ? JSON.stringify(v) : String(v)}${comment}`);
  }
  return lines.join('\n') + '\n';
}

function asJson(l: LoadedConfig): string {
  const settings: Record<string, string | number | boolean | null> = {};
  for (const k of CONFIG_KEYS) settings[k.key] = l.config[k.field] ?? null;
  return JSON.stringify({ file: l.file ?? null, settings }, null, 2) + '\n';
}

export function daemonCommand(): Command {
  const cmd = new Command('daemon')
    .description('the clip service of a node: serves every clip mount and rootfs (foreground; logs to stderr)')
    .option('--config <file>', `TOML settings file (default ${DEFAULT_CONFIG_PATH}, if it exists); flags override it`)
    .option('--check-config', 'load and validate the settings, print the effective ones, and exit')
    .option('--json', 'with --check-config: print them as JSON')
    .option(
      '--upgrade',
      'have the running daemon hand its mounts to a new serving process (the clip installed now); containers notice nothing',
    )
    .option('--stop', 'stop the running daemon: it unmounts everything it serves, then exits')
    .addOption(new Option('--idle-exit', 'end once the last mount is gone (a daemon clip mount started)').hideHelp())
    .addOption(new Option('--log-file <file>', 'log to this size-bounded file instead of stderr').hideHelp());
  for (const k of CONFIG_KEYS) {
    if (k.kind === 'bool') {
      cmd.addOption(new Option(k.flag, `${k.help} (config ${k.key}, default ${k.defaultText})`));
      cmd.addOption(new Option(`--no-${k.flag.slice(2)}`, `do not ${k.help}`));
    } else {
      const arg = k.kind === 'size' ? '<bytes>' : k.kind === 'path' ? '<dir>' : k.kind === 'addr' ? '<host:port>' : '<value>';
      cmd.addOption(new Option(`${k.flag} ${arg}`, `${k.help} (config ${k.key}, default ${k.defaultText})`));
    }
  }
  return cmd.action(async (o: Flags) => {
    if (o.json && !o.checkConfig) throw new ClipError('BAD_ARGUMENT', '--json goes with --check-config');
    if ([o.checkConfig, o.upgrade, o.stop].filter(Boolean).length > 1)
      throw new ClipError('BAD_ARGUMENT', 'give one of --check-config, --upgrade and --stop');
    const loaded = await loadDaemonConfig(o);
    if (o.checkConfig) {
      process.stdout.write(o.json ? asJson(loaded) : asToml(loaded));
      return;
    }
    requireRoot('daemon');
    const { stateDir } = loaded.config;
    if (o.upgrade || o.stop) {
      const { upgradeDaemon, stopDaemon } = await import('../daemon/control.js');
      if (o.upgrade) process.stdout.write(`${await upgradeDaemon(stateDir)}\n`);
      else await stopDaemon(stateDir);
      return;
    }
    const { runService } = await import('../daemon/service.js');
    await runService({
      config: loaded.config,
      idleExit: o.idleExit === true,
      ...(o.logFile !== undefined ? { logFile: path.resolve(o.logFile) } : {}),
    });
  });
}
