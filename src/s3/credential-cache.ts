// Credentials kept for as long as they are good, looked up again before they
// expire: temporary credentials (container, instance, SSO, assumed roles)
// last minutes to hours, and a mount can outlive many of them. One lookup at
// a time; a failed early refresh keeps the credentials that still work.

import type { AwsCredentials } from './credentials.js';

/** Refresh this long before expiry, or at half the lifetime for credentials that live less than twice that. */
export const REFRESH_MARGIN_MS = 5 * 60_000;
/** After a failed early refresh, wait this long before trying again (the old credentials still work). */
const RETRY_AFTER_MS = 5_000;

export class CredentialCache {
  private current: AwsCredentials | undefined;
  private refreshAt = 0;
  private pending: Promise<AwsCredentials> | undefined;

  constructor(
    private readonly lookup: () => Promise<AwsCredentials>,
    private readonly now: () => number = Date.now,
  ) {}

  /** The credentials to sign with now: the kept ones, or fresh ones when those are due. */
  async get(): Promise<AwsCredentials> {
    const c = this.current;
    if (c && this.now() < this.refreshAt) return c;
    try {
      return await this.refresh();
    } catch (e) {
      // Early refresh failed: the kept credentials are still good for a while.
      if (c && !expired(c, this.now())) {
        this.refreshAt = Math.min(this.now() + RETRY_AFTER_MS, c.expiration!.getTime());
        return c;
      }
      throw e;
    }
  }

  /** Looks the credentials up again now (S3 said they expired or are unknown); concurrent callers share one lookup. */
  refresh(): Promise<AwsCredentials> {
    this.pending ??= this.lookup()
      .then((c) => {
        const fetched = this.now();
        this.current = c;
        this.refreshAt = refreshTime(c, fetched);
        return c;
      })
      .finally(() => {
        this.pending = undefined;
      });
    return this.pending;
  }

  /** The credentials last handed out, if any (for messages). */
  get last(): AwsCredentials | undefined {
    return this.current;
  }
}

function expired(c: AwsCredentials, now: number): boolean {
  return c.expiration !== undefined && c.expiration.getTime() <= now;
}

/** When to look again: never for long-term keys; else before expiry by the margin, or by half the lifetime when shorter. */
export function refreshTime(c: AwsCredentials, fetchedAt: number): number {
  if (c.expiration === undefined) return Infinity;
  const expires = c.expiration.getTime();
  const lifetime = Math.max(0, expires - fetchedAt);
  return expires - Math.min(REFRESH_MARGIN_MS, lifetime / 2);
}
