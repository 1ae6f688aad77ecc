// Registry flags shared by every command that talks to a registry.

import path from 'node:path';
import { Command, Option } from 'commander';
import { ClipError } from '../errors.js';
import { parsePlatform } from '../oci/platform.js';
import type { RegistryOptions } from '../oci/types.js';

export function addRegistryOptions(cmd: Command): Command {
  return cmd
    .option(
      '--plain-http',
      'use plain HTTP (default: as the .clip file records; TLS first, then plain HTTP, for localhost and 127.0.0.0/8)',
    )
    .option('--no-plain-http', 'use HTTPS only, also where plain HTTP would be allowed (a loopback registry, a .clip file that says so)')
    .option(
      '--hosts-dir <dir>',
      'registry host settings, containerd layout DIR/HOST/hosts.toml or docker certs.d (or CLIP_HOSTS_DIR; default /etc/clip/certs.d)',
    )
    .option('--cert-dir <dir>', 'CA (*.crt) and client certificate (*.cert + *.key) files for the registry, as skopeo takes them')
    .option('--tls-verify [bool]', "verify the registry's certificate; --tls-verify=false accepts any, and allows plain HTTP")
    .option('--username <name>', 'registry user name (or CLIP_USERNAME)')
    .addOption(new Option('--password <secret>', 'registry password (or CLIP_PASSWORD)'))
    .option('--password-stdin', 'read the registry password from stdin');
}

/** skopeo's spelling: --tls-verify, --tls-verify=true, --tls-verify=false. */
function tlsVerify(v: string | boolean | undefined): boolean | undefined {
  if (v === undefined || v === true || v === 'true') return v === undefined ? undefined : true;
  if (v === 'false') return false;
  throw new ClipError('BAD_ARGUMENT', `--tls-verify: expected true or false, got ${JSON.stringify(v)}`);
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
  tlsVerify?: string | boolean;
}): Promise<RegistryOptions> {
  const opts: RegistryOptions = {};
  if (o.plainHttp !== undefined) opts.plainHttp = o.plainHttp;
  // Absolute: the daemon that reads them runs elsewhere.
  const hostsDir = o.hostsDir ?? (process.env['CLIP_HOSTS_DIR'] || undefined);
  if (hostsDir !== undefined) opts.hostsDir = path.resolve(hostsDir);
  if (o.certDir !== undefined) opts.certDir = path.resolve(o.certDir);
  if (tlsVerify(o.tlsVerify) === false) opts.tlsVerify = false;
  if (o.username !== undefined) opts.username = o.username;
  if (o.password !== undefined) opts.password = o.password;
  if (o.passwordStdin) opts.password = await readStdin();
  if (o.platform) opts.platform = parsePlatform(o.platform);
  return opts;
}
