// AWS credentials and region, found the way the AWS CLI and SDKs find them:
// the environment (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY,
// AWS_SESSION_TOKEN, AWS_REGION / AWS_DEFAULT_REGION), then the shared
// credentials and config files (AWS_SHARED_CREDENTIALS_FILE, AWS_CONFIG_FILE,
// default ~/.aws/) for the profile AWS_PROFILE (default "default"). Instance
// and container roles are not looked up: this machine has no metadata service.

import { readFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { ClipError } from '../errors.js';

export interface AwsCredentials {
  accessKeyId: string;
  secretAccessKey: string;
  sessionToken?: string;
  /** Where they came from, for messages ("environment", "profile dev in ~/.aws/credentials"). */
  source: string;
}

type Ini = Map<string, Map<string, string>>;

/** INI as the AWS files use it: [section], key = value, # and ; comments. */
export function parseIni(text: string): Ini {
  const out: Ini = new Map();
  let section: Map<string, string> | undefined;
  for (const raw of text.split(/\r?\n/)) {
    const line = raw.trim();
    if (line === '' || line.startsWith('#') || line.startsWith(';')) continue;
    const header = /^\[\s*(.+?)\s*\]$/.exec(line);
    if (header) {
      section = out.get(header[1]!) ?? new Map();
      out.set(header[1]!, section);
      continue;
    }
    const eq = line.indexOf('=');
    if (eq < 0 || !section) continue;
    section.set(line.slice(0, eq).trim().toLowerCase(), line.slice(eq + 1).trim());
  }
  return out;
}

async function readIni(file: string): Promise<Ini | undefined> {
  try {
    return parseIni(await readFile(file, 'utf8'));
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw new ClipError('IO', `cannot read AWS file ${file}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`);
  }
}

function files(env: NodeJS.ProcessEnv): { credentials: string; config: string; profile: string; explicit: boolean } {
  const home = env['HOME'] ?? os.homedir();
  return {
    credentials: env['AWS_SHARED_CREDENTIALS_FILE'] ?? path.join(home, '.aws', 'credentials'),
    config: env['AWS_CONFIG_FILE'] ?? path.join(home, '.aws', 'config'),
    profile: env['AWS_PROFILE'] ?? env['AWS_DEFAULT_PROFILE'] ?? 'default',
    explicit: (env['AWS_PROFILE'] ?? env['AWS_DEFAULT_PROFILE']) !== undefined,
  };
}

/** The profile's section of the config file ("[default]" or "[profile NAME]"). */
function configSection(ini: Ini | undefined, profile: string): Map<string, string> | undefined {
  return ini?.get(profile === 'default' ? 'default' : `profile ${profile}`) ?? ini?.get(profile);
}

/** Credentials from the environment or the shared files; undefined when there are none (anonymous requests). */
export async function resolveCredentials(env: NodeJS.ProcessEnv = process.env): Promise<AwsCredentials | undefined> {
  const id = env['AWS_ACCESS_KEY_ID'];
  const secret = env['AWS_SECRET_ACCESS_KEY'];
  if (id && secret) {
    const c: AwsCredentials = { accessKeyId: id, secretAccessKey: secret, source: 'environment (AWS_ACCESS_KEY_ID)' };
    if (env['AWS_SESSION_TOKEN']) c.sessionToken = env['AWS_SESSION_TOKEN'];
    return c;
  }
  const f = files(env);
  for (const [file, section] of [
    [f.credentials, (await readIni(f.credentials))?.get(f.profile)],
    [f.config, configSection(await readIni(f.config), f.profile)],
  ] as const) {
    const key = section?.get('aws_access_key_id');
    const sec = section?.get('aws_secret_access_key');
    if (key && sec) {
      const c: AwsCredentials = { accessKeyId: key, secretAccessKey: sec, source: `profile ${f.profile} in ${file}` };
      const token = section!.get('aws_session_token');
      if (token) c.sessionToken = token;
      return c;
    }
  }
  if (f.explicit) {
    throw new ClipError('UNAUTHORIZED', `AWS profile ${JSON.stringify(f.profile)} has no credentials in ${f.credentials} or ${f.config}`);
  }
  return undefined;
}

/** The region to use when none is given: AWS_REGION, AWS_DEFAULT_REGION, the profile's region, else us-east-1. */
export async function defaultRegion(env: NodeJS.ProcessEnv = process.env): Promise<string> {
  const fromEnv = env['AWS_REGION'] ?? env['AWS_DEFAULT_REGION'];
  if (fromEnv) return fromEnv;
  const f = files(env);
  return configSection(await readIni(f.config), f.profile)?.get('region') ?? 'us-east-1';
}

/** An S3-compatible endpoint from the environment (AWS_ENDPOINT_URL_S3, AWS_ENDPOINT_URL), if any. */
export function endpointFromEnv(env: NodeJS.ProcessEnv = process.env): string | undefined {
  return env['AWS_ENDPOINT_URL_S3'] ?? env['AWS_ENDPOINT_URL'] ?? undefined;
}
