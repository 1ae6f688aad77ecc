// Registry flags shared by every command that talks to a registry.

import { Command, Option } from 'commander';
import { ClipError } from '../errors.js';
import type { Platform, RegistryOptions } from '../oci/types.js';

export function addRegistryOptions(cmd: Command): Command {
  return cmd
    .option('--plain-http', 'use plain HTTP (automatic for localhost and 127.0.0.0/8)')
    .option('--username <name>', 'registry user name (or CLIP_USERNAME)')
    .addOption(new Option('--password <secret>', 'registry password (or CLIP_PASSWORD)'))
    .option('--password-stdin', 'read the registry password from stdin');
}

export function parsePlatform(s: string): Platform {
  const parts = s.split('/');
  if (parts.length < 2 || parts.length > 3 || parts.some((p) => p === '')) {
    throw new ClipError('BAD_ARGUMENT', `bad platform "${s}": expected os/arch[/variant], e.g. linux/amd64`);
  }
  const [os, architecture, variant] = parts as [string, string, string | undefined];
  return variant ? { os, architecture, variant } : { os, architecture };
}

async function readStdin(): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const c of process.stdin) chunks.push(c as Buffer);
  return Buffer.concat(chunks).toString('utf8').replace(/\r?\n$/, '');
}

export async function registryOptions(o: {
  plainHttp?: boolean;
  username?: string;
  password?: string;
  passwordStdin?: boolean;
  platform?: string;
}): Promise<RegistryOptions> {
  const opts: RegistryOptions = {};
  if (o.plainHttp) opts.plainHttp = true;
  if (o.username !== undefined) opts.username = o.username;
  if (o.password !== undefined) opts.password = o.password;
  if (o.passwordStdin) opts.password = await readStdin();
  if (o.platform) opts.platform = parsePlatform(o.platform);
  return opts;
}
