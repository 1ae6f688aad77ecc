// Registry authentication: parses WWW-Authenticate challenges, answers Basic
// ones with credentials and Bearer ones with tokens from the realm (anonymous
// or with credentials), cached per scope and fetched again when refused.

import type { Dispatcher } from 'undici';
import { ClipError } from '../errors.js';
import type { Credentials } from './credentials.js';
import { discard, header, readBody, sendFollowingRedirects } from '../http/client.js';

export interface Challenge {
  /** Lowercase scheme: "bearer", "basic", ... */
  scheme: string;
  /** Lowercase parameter names: realm, service, scope, error, ... */
  params: Record<string, string>;
  token68?: string;
}

const TOKEN = /[!#$%&'*+.^_`|~0-9A-Za-z-]+/y;
const TOKEN68 = /[A-Za-z0-9._~+/-]+=*/y;
const QUOTED = /"((?:[^"\\]|\\.)*)"/y;
/** Unquoted values: a token, leniently anything up to a comma or space ("realm=https://x/token"). */
const BARE_VALUE = /[^\s,"]+/y;

/** Parses one or more WWW-Authenticate header values (RFC 7235) into challenges. */
export function parseWwwAuthenticate(value: string | string[] | undefined): Challenge[] {
  if (value === undefined) return [];
  if (Array.isArray(value)) return value.flatMap((v) => parseWwwAuthenticate(v));
  const s = value;
  let i = 0;
  const match = (re: RegExp): string | undefined => {
    re.lastIndex = i;
    const m = re.exec(s);
    if (!m) return undefined;
    i = re.lastIndex;
    return m[0];
  };
  const spaces = () => {
    while (s[i] === ' ' || s[i] === '\t') i++;
  };
  const param = (): [string, string] | undefined => {
    const start = i;
    spaces();
    const name = match(TOKEN);
    spaces();
    if (name === undefined || s[i] !== '=') return void (i = start);
    i++;
    spaces();
    let v: string | undefined;
    if (s[i] === '"') {
      QUOTED.lastIndex = i;
      const m = QUOTED.exec(s);
      if (m) {
        v = m[1]!.replace(/\\(.)/g, '$1');
        i = QUOTED.lastIndex;
      } else {
        v = s.slice(i + 1); // unterminated quote: take the rest
        i = s.length;
      }
    } else {
      v = match(BARE_VALUE);
    }
    if (v === undefined) return void (i = start);
    return [name.toLowerCase(), v];
  };

  const out: Challenge[] = [];
  while (i < s.length) {
    while (s[i] === ' ' || s[i] === '\t' || s[i] === ',') i++;
    if (i >= s.length) break;
    const scheme = match(TOKEN);
    if (scheme === undefined) {
      i++;
      continue;
    }
    const challenge: Challenge = { scheme: scheme.toLowerCase(), params: {} };
    out.push(challenge);
    spaces();
    const save = i;
    const t68 = match(TOKEN68);
    spaces();
    if (t68 !== undefined && (i >= s.length || s[i] === ',')) {
      challenge.token68 = t68;
      continue;
    }
    i = save;
    for (;;) {
      const p = param();
      if (!p) break;
      challenge.params[p[0]] = p[1];
      spaces();
      if (s[i] !== ',') break;
      i++;
    }
  }
  return out;
}

export interface AuthenticatorOptions {
  /** Registry as docker names it, for messages ("docker.io"). */
  registry: string;
  repository: string;
  dispatcher: Dispatcher;
  /** Looked up once, at the first challenge. */
  credentials: () => Promise<Credentials | undefined>;
}

interface Token {
  value: string;
  expiresAt: number;
  generation: number;
}

/** The authentication state of one registry client: its challenge, credentials and tokens per scope. */
export class Authenticator {
  private scheme: 'basic' | 'bearer' | undefined;
  private bearer: { realm: URL; service: string | undefined } | undefined;
  private creds: Promise<Credentials | undefined> | undefined;
  private readonly tokens = new Map<string, Token>();
  private readonly pending = new Map<string, Promise<Token>>();
  private generation = 0;

  constructor(private readonly opts: AuthenticatorOptions) {}

  /** A counter that grows with every token fetched; see unauthorized(). */
  get currentGeneration(): number {
    return this.generation;
  }

  /** The Authorization header for `scope`, or undefined while no challenge has been seen. */
  async authorization(scope: string): Promise<string | undefined> {
    if (this.scheme === 'basic') {
      const c = await this.credentials();
      return c ? basic(c) : undefined;
    }
    if (this.scheme === 'bearer') {
      const cached = this.tokens.get(scope);
      if (cached && cached.expiresAt > Date.now()) return `Bearer ${cached.value}`;
      let p = this.pending.get(scope);
      if (!p) {
        p = this.fetchToken(scope).finally(() => this.pending.delete(scope));
        this.pending.set(scope, p);
      }
      return `Bearer ${(await p).value}`;
    }
    return undefined;
  }

  /**
   * Takes a 401 for a request that sent `sent` and started when the token
   * generation was `startGeneration`. Returns if another try can succeed
   * (challenge learned, stale token dropped); throws UNAUTHORIZED otherwise.
   */
  async unauthorized(
    scope: string,
    wwwAuthenticate: string[],
    sent: string | undefined,
    startGeneration: number,
    detail = '',
  ): Promise<void> {
    const challenges = parseWwwAuthenticate(wwwAuthenticate);
    const bearer = challenges.find((c) => c.scheme === 'bearer' && c.params['realm']);
    const basicChallenge = challenges.find((c) => c.scheme === 'basic');
    if (bearer) {
      const token = this.tokens.get(scope);
      if (sent !== undefined && token && `Bearer ${token.value}` === sent) {
        // Refused the token fetched for this very request: the answer is no.
        if (token.generation > startGeneration) throw await this.denied(detail);
        this.tokens.delete(scope); // expired or revoked since; fetch another
      }
      // (A token already replaced by a concurrent request is simply retried.)
      let realm: URL;
      try {
        realm = new URL(bearer.params['realm']!);
      } catch {
        throw new ClipError('REGISTRY', `${this.opts.registry} sent an invalid token realm ${JSON.stringify(bearer.params['realm'])}`);
      }
      if (realm.protocol !== 'https:' && realm.protocol !== 'http:') {
        throw new ClipError('REGISTRY', `${this.opts.registry} sent a token realm with unsupported scheme ${realm.protocol}`);
      }
      this.bearer = { realm, service: bearer.params['service'] };
      this.scheme = 'bearer';
      return;
    }
    if (basicChallenge) {
      if (sent?.startsWith('Basic ') || !(await this.credentials())) throw await this.denied(detail);
      this.scheme = 'basic';
      return;
    }
    const offered = challenges.map((c) => c.scheme).join(', ');
    throw new ClipError(
      'UNAUTHORIZED',
      `${this.opts.registry}/${this.opts.repository}: registry requires authentication` +
        (offered ? ` with an unsupported scheme (${offered})` : ' but sent no WWW-Authenticate challenge'),
    );
  }

  private credentials(): Promise<Credentials | undefined> {
    this.creds ??= this.opts.credentials();
    return this.creds;
  }

  private async denied(detail: string): Promise<ClipError> {
    const { registry, repository } = this.opts;
    const c = await this.credentials();
    const suffix = detail ? ` (${detail})` : '';
    if (c) {
      return new ClipError(
        'UNAUTHORIZED',
        `access to ${registry}/${repository} denied for user "${c.username}" (credentials from ${c.source})${suffix}`,
      );
    }
    return new ClipError(
      'UNAUTHORIZED',
      `access to ${registry}/${repository} denied without credentials: the repository may not exist or may need a login ` +
        `(set CLIP_USERNAME/CLIP_PASSWORD, pass a username, or log in with docker/podman)${suffix}`,
    );
  }

  private async fetchToken(scope: string): Promise<Token> {
    const { realm, service } = this.bearer!;
    const c = await this.credentials();
    const url = new URL(realm);
    let res;
    if (c && c.username === '<token>') {
      // An identity token (docker's OAuth refresh token): exchange it by POST.
      const form = new URLSearchParams({ grant_type: 'refresh_token', refresh_token: c.password, client_id: 'clip', scope });
      if (service) form.set('service', service);
      res = await sendFollowingRedirects(this.opts.dispatcher, url, {
        method: 'POST',
        headers: { 'content-type': 'application/x-www-form-urlencoded' },
        body: form.toString(),
      });
    } else {
      if (service) url.searchParams.set('service', service);
      url.searchParams.append('scope', scope);
      res = await sendFollowingRedirects(this.opts.dispatcher, url, {
        headers: { accept: 'application/json' },
        ...(c ? { authorization: { origin: url.origin, value: basic(c) } } : {}),
      });
    }
    if (res.status === 401 || res.status === 403) {
      await discard(res.body);
      if (c) {
        throw new ClipError(
          'UNAUTHORIZED',
          `${this.opts.registry} rejected the credentials of user "${c.username}" (from ${c.source}) for ${this.opts.repository}`,
        );
      }
      throw await this.denied(`token server ${url.host} answered ${res.status}`);
    }
    if (res.status !== 200) {
      await discard(res.body);
      throw new ClipError('REGISTRY', `token server ${url.host} for ${this.opts.registry} answered HTTP ${res.status}`);
    }
    const body = await readBody(res, 1 << 20, 'token');
    let json: { token?: unknown; access_token?: unknown; expires_in?: unknown };
    try {
      json = JSON.parse(body.toString('utf8')) as typeof json;
    } catch {
      throw new ClipError(
        'REGISTRY',
        `token server ${url.host} answered something that is not JSON (${header(res.headers, 'content-type') ?? 'no content type'})`,
      );
    }
    const value = typeof json.token === 'string' && json.token ? json.token : json.access_token;
    if (typeof value !== 'string' || value === '') {
      throw new ClipError('REGISTRY', `token server ${url.host} answered without a token`);
    }
    const lifetime = typeof json.expires_in === 'number' && json.expires_in > 60 ? json.expires_in : 60;
    const token = { value, expiresAt: Date.now() + lifetime * 900, generation: ++this.generation };
    this.tokens.set(scope, token);
    return token;
  }
}

function basic(c: Credentials): string {
  return `Basic ${Buffer.from(`${c.username}:${c.password}`, 'utf8').toString('base64')}`;
}
