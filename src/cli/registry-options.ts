// Registry flags shared by every command that talks to a registry.

import { Command, Option } from 'commander';
import { parsePlatform } from '../oci/platform.js';
import type { RegistryOptions } from '../oci/types.js';

export function addRegistryOptions(cmd: Command): Command {
  return cmd
    .option('--plain-http', 'use plain HTTP (default: as the .clip file records; automatic for localhost and 127.0.0.0/8)')
    .option('--no-plain-http', 'use HTTPS, also where plain HTTP would be the default (a loopback registry, a .clip file that says so)')
    .option('--username <name>', 'registry user name (or CLIP_USERNAME)')
    .addOption(new Option('--password <secret>', 'registry password (or CLIP_PASSWORD)'))
    .option('--password-stdin', 'read the registry password from stdin');
}

async function readStdin(): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const c of process.stdin) chunks.push(c as Buffer);
  return Buffer.concat(chunks)
    .toString('utf8')
    .replace(/\r?\n$/, '');
}

export async function registryOptions(o: {
  plainHttp?: boolean;
  username?: string;
  password?: string;
  passwordStdin?: boolean;
  platform?: string;
}): Promise<RegistryOptions> {
  const opts: RegistryOptions = {};
  if (o.plainHttp !== undefined) opts.plainHttp = o.plainHttp;
  if (o.username !== undefined) opts.username = o.username;
  if (o.password !== undefined) opts.password = o.password;
  if (o.passwordStdin) opts.password = await readStdin();
  if (o.platform) opts.platform = parsePlatform(o.platform);
  return opts;
}
