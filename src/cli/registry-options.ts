// Registry flags shared by every command that talks to a registry.

import path from 'node:path';
import { Command, InvalidArgumentError, Option } from 'commander';
import { parsePlatform } from '../oci/platform.js';
import type { RegistryOptions } from '../oci/types.js';

export function addRegistryOptions(cmd: Command): Command {
  return cmd
    .option('--plain-http', 'allow plain HTTP when the registry answers TLS with HTTP (always allowed for localhost and 127.0.0.0/8)')
    .option(
      '--hosts-dir <dir>',
      'registry host settings, containerd layout DIR/HOST/hosts.toml or docker certs.d (or CLIP_HOSTS_DIR; default /etc/clip/certs.d)',
    )
    .option('--cert-dir <dir>', 'CA (*.crt) and client certificate (*.cert + *.key) files for the registry, as skopeo takes them')
    .addOption(
      new Option(
        '--tls-verify [bool]',
        "verify the registry's certificate; --tls-verify=false accepts any, and allows plain HTTP",
      ).argParser(parseBool),
    )
    .option('--username <name>', 'registry user name (or CLIP_USERNAME)')
    .addOption(new Option('--password <secret>', 'registry password (or CLIP_PASSWORD)'))
    .option('--password-stdin', 'read the registry password from stdin');
}

function parseBool(v: string): boolean {
  if (v === 'true') return true;
  if (v === 'false') return false;
  throw new InvalidArgumentError('expected true or false');
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
  hostsDir?: string;
  certDir?: string;
  tlsVerify?: boolean;
}): Promise<RegistryOptions> {
  const opts: RegistryOptions = {};
  if (o.plainHttp) opts.plainHttp = true;
  // Absolute: the daemon that reads them runs elsewhere.
  const hostsDir = o.hostsDir ?? (process.env['CLIP_HOSTS_DIR'] || undefined);
  if (hostsDir !== undefined) opts.hostsDir = path.resolve(hostsDir);
  if (o.certDir !== undefined) opts.certDir = path.resolve(o.certDir);
  if (o.tlsVerify === false) opts.tlsVerify = false;
  if (o.username !== undefined) opts.username = o.username;
  if (o.password !== undefined) opts.password = o.password;
  if (o.passwordStdin) opts.password = await readStdin();
  if (o.platform) opts.platform = parsePlatform(o.platform);
  return opts;
}
