// AWS credentials and region for S3. Credentials come from the AWS SDK's
// default chain for Node (@aws-sdk/credential-providers): environment, shared
// config and credentials files (AWS_PROFILE, SSO, credential_process, assumed
// roles), web identity (IRSA), ECS/EKS container credentials, then EC2
// instance metadata. AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY win over
// AWS_PROFILE, as they always did here (the SDK alone would pick the profile).
// The region is still read by hand: the SDK's region lookup is not part of
// that package, and it is a few lines of INI.

import { readFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { ClipError } from '../errors.js';

export interface AwsCredentials {
  accessKeyId: string;
  secretAccessKey: string;
  sessionToken?: string;
  /** When temporary credentials stop working; none for long-term keys. */
  expiration?: Date;
  /** Where they came from, for messages ("environment", "credential_process of profile dev"). */
  source: string;
}

/** The SDK's credentials as it returns them: $source names the providers that took part. */
interface SdkCredentials {
  accessKeyId: string;
  secretAccessKey: string;
  sessionToken?: string;
  expiration?: Date;
  $source?: Record<string, string>;
}

/** What each feature mark of the SDK says about where credentials came from, most specific first. */
const SOURCES: [feature: string, name: (profile: string) => string][] = [
  ['CREDENTIALS_PROFILE_PROCESS', (p) => `credential_process of profile ${p}`],
  ['CREDENTIALS_PROCESS', (p) => `credential_process of profile ${p}`],
  ['CREDENTIALS_PROFILE_SSO', (p) => `SSO of profile ${p}`],
  ['CREDENTIALS_PROFILE_SSO_LEGACY', (p) => `SSO of profile ${p}`],
  ['CREDENTIALS_SSO', (p) => `SSO of profile ${p}`],
  ['CREDENTIALS_SSO_LEGACY', (p) => `SSO of profile ${p}`],
  ['CREDENTIALS_PROFILE_STS_WEB_ID_TOKEN', (p) => `web identity token of profile ${p}`],
  ['CREDENTIALS_ENV_VARS_STS_WEB_ID_TOKEN', () => 'web identity token (AWS_WEB_IDENTITY_TOKEN_FILE)'],
  ['CREDENTIALS_STS_ASSUME_ROLE_WEB_ID', () => 'web identity token'],
  ['CREDENTIALS_STS_ASSUME_ROLE', (p) => `role assumed by profile ${p}`],
  ['CREDENTIALS_HTTP', () => 'container credentials (AWS_CONTAINER_CREDENTIALS_*_URI)'],
  ['CREDENTIALS_IMDS', () => 'EC2 instance metadata'],
  ['CREDENTIALS_PROFILE', (p) => `profile ${p} in the shared AWS files`],
  ['CREDENTIALS_ENV_VARS', () => 'environment (AWS_ACCESS_KEY_ID)'],
];

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

function profileOf(env: NodeJS.ProcessEnv): { profile: string; explicit: boolean } {
  const asked = env['AWS_PROFILE'] || env['AWS_DEFAULT_PROFILE'];
  return { profile: asked || 'default', explicit: !!asked };
}

function sharedFiles(env: NodeJS.ProcessEnv): { credentials: string; config: string } {
  const home = env['HOME'] ?? os.homedir();
  return {
    credentials: env['AWS_SHARED_CREDENTIALS_FILE'] || path.join(home, '.aws', 'credentials'),
    config: env['AWS_CONFIG_FILE'] || path.join(home, '.aws', 'config'),
  };
}

/** The profile's section of the config file ("[default]" or "[profile NAME]"). */
function configSection(ini: Ini | undefined, profile: string): Map<string, string> | undefined {
  return ini?.get(profile === 'default' ? 'default' : `profile ${profile}`) ?? ini?.get(profile);
}

/** AWS_NO_SIGN_REQUEST=true (as GDAL and the AWS CLI's --no-sign-request): anonymous requests, for public buckets. */
export function anonymousAccess(env: NodeJS.ProcessEnv = process.env): boolean {
  return /^(1|true|yes)$/i.test(env['AWS_NO_SIGN_REQUEST'] ?? '');
}

/** Every source the chain looks at, for the message when none gave credentials. */
function triedSources(env: NodeJS.ProcessEnv): string {
  const { profile } = profileOf(env);
  const files = sharedFiles(env);
  return [
    'the environment (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY)',
    `profile ${JSON.stringify(profile)} in ${files.credentials} and ${files.config} (keys, SSO, credential_process, role)`,
    'a web identity token (AWS_WEB_IDENTITY_TOKEN_FILE)',
    'container credentials (AWS_CONTAINER_CREDENTIALS_FULL_URI or _RELATIVE_URI)',
    /^(1|true)$/i.test(env['AWS_EC2_METADATA_DISABLED'] ?? '')
      ? 'not EC2 instance metadata (AWS_EC2_METADATA_DISABLED)'
      : 'EC2 instance metadata',
  ].join(', ');
}

/** What the SDK's providers say when they are simply not set up: left out of messages (the list of sources says it). */
const NOT_SET_UP = [
  /^Unable to find environment variable credentials/,
  /^AWS_PROFILE is set, skipping fromEnv/,
  /^Skipping SSO provider/,
  /^Profile \S+ could not be found/,
  /^Could not resolve credentials using profile/,
  /^Web identity configuration not specified/,
  /^EC2 Instance Metadata Service access disabled/,
  /not set in env, checking config file next/,
  /^Could not load credentials from any providers/,
];

/** Why the chain gave nothing, " (...)": what its providers said beyond "not set up" (a failing credential_process, a refused token). */
function reasons(said: string[], error: unknown): string {
  const out = new Set<string>();
  for (const m of said) {
    const text = m.replace(/\s+/g, ' ').trim();
    if (text !== '' && !NOT_SET_UP.some((re) => re.test(text))) out.add(text.length > 300 ? `${text.slice(0, 300)}...` : text);
  }
  // Not a provider's "not set up": say what it was.
  if (said.length === 0 && !(error instanceof Error && NOT_SET_UP.some((re) => re.test(error.message))))
    out.add(((error as Error)?.message ?? String(error)).split('\n')[0]!);
  return out.size > 0 ? ` (${[...out].join('; ')})` : '';
}

/**
 * One fresh lookup of the credentials: a new chain that reads the shared
 * files again (credential-cache.ts keeps what it returns and decides when to
 * look again). Throws a ClipError naming what was tried when no source gives any.
 */
export async function loadCredentials(env: NodeJS.ProcessEnv = process.env): Promise<AwsCredentials> {
  const id = env['AWS_ACCESS_KEY_ID'];
  const secret = env['AWS_SECRET_ACCESS_KEY'];
  if (id && secret) {
    const c: AwsCredentials = { accessKeyId: id, secretAccessKey: secret, source: 'environment (AWS_ACCESS_KEY_ID)' };
    if (env['AWS_SESSION_TOKEN']) c.sessionToken = env['AWS_SESSION_TOKEN'];
    return c;
  }
  // Loaded on first use: most commands never sign a request.
  const { fromNodeProviderChain } = await import('@aws-sdk/credential-providers');
  // The providers say why they passed only to a logger; kept for the message.
  const said: string[] = [];
  const note = (...args: unknown[]): void => {
    const text = args.map(String).join(' ');
    const m = /^@smithy\/property-provider (?:->|\(!\)) ([\s\S]*)$/.exec(text);
    if (m) said.push(m[1]!);
  };
  const logger = { debug: note, info: () => undefined, warn: note, error: note };
  const { profile, explicit } = profileOf(env);
  let sdk: SdkCredentials;
  try {
    sdk = await fromNodeProviderChain({ logger, ignoreCache: true })();
  } catch (e) {
    const why = reasons(said, e);
    if (explicit) {
      const files = sharedFiles(env);
      throw new ClipError(
        'UNAUTHORIZED',
        `AWS profile ${JSON.stringify(profile)} has no credentials in ${files.credentials} or ${files.config}${why}`,
        {
          cause: e,
        },
      );
    }
    throw new ClipError(
      'UNAUTHORIZED',
      `no AWS credentials found${why}; looked at ${triedSources(env)}. For a public bucket set AWS_NO_SIGN_REQUEST=true`,
      { cause: e },
    );
  }
  if (typeof sdk?.accessKeyId !== 'string' || typeof sdk.secretAccessKey !== 'string' || sdk.accessKeyId === '')
    throw new ClipError('UNAUTHORIZED', 'the AWS credential chain returned credentials without an access key');
  const marks = sdk.$source ?? {};
  const named = SOURCES.find(([feature]) => feature in marks);
  const c: AwsCredentials = {
    accessKeyId: sdk.accessKeyId,
    secretAccessKey: sdk.secretAccessKey,
    source: named ? named[1](profile) : 'the AWS default credential chain',
  };
  if (sdk.sessionToken) c.sessionToken = sdk.sessionToken;
  if (sdk.expiration instanceof Date && !Number.isNaN(sdk.expiration.getTime())) c.expiration = sdk.expiration;
  return c;
}

/** The region to use when none is given: AWS_REGION, AWS_DEFAULT_REGION, the profile's region, else us-east-1. */
export async function defaultRegion(env: NodeJS.ProcessEnv = process.env): Promise<string> {
  const fromEnv = env['AWS_REGION'] || env['AWS_DEFAULT_REGION'];
  if (fromEnv) return fromEnv;
  return configSection(await readIni(sharedFiles(env).config), profileOf(env).profile)?.get('region') ?? 'us-east-1';
}

/** An S3-compatible endpoint from the environment (AWS_ENDPOINT_URL_S3, AWS_ENDPOINT_URL), if any. */
export function endpointFromEnv(env: NodeJS.ProcessEnv = process.env): string | undefined {
  return env['AWS_ENDPOINT_URL_S3'] || env['AWS_ENDPOINT_URL'] || undefined;
}
