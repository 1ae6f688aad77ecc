// clip daemon --check-config [--config FILE] [flags]: loads and validates the
// daemon's settings and prints the effective ones (as TOML, or --json). The
// daemon itself is not there yet (issue 12), and says so.

import { Command, Option } from 'commander';
import {
  CONFIG_KEYS,
  DEFAULT_CONFIG_PATH,
  loadDaemonConfig,
  type DaemonConfig,
  type DaemonFlags,
  type LoadedConfig,
} from '../daemon/config.js';
import { ClipError } from '../errors.js';
import { formatBytes } from './format.js';

interface Flags extends DaemonFlags {
  checkConfig?: boolean;
  json?: boolean;
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
    .description('the clip service of a node (not available yet: issue 12); --check-config validates its settings')
    .option('--config <file>', `TOML settings file (default ${DEFAULT_CONFIG_PATH}, if it exists); flags override it`)
    .option('--check-config', 'load and validate the settings, print the effective ones, and exit')
    .option('--json', 'with --check-config: print them as JSON');
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
    if (!o.checkConfig) {
      if (o.json) throw new ClipError('BAD_ARGUMENT', '--json goes with --check-config');
      throw new ClipError('UNSUPPORTED', 'clip daemon is not available yet (issue 12): use clip mount');
    }
    const loaded = await loadDaemonConfig(o);
    process.stdout.write(o.json ? asJson(loaded) : asToml(loaded));
  });
}
