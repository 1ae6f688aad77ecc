// SigV4 request signing for S3. The signer is aws4 (a small, widely used,
// dependency-free module that follows the AWS signing spec and its test
// vectors), not the AWS SDK: requests then go through clip's own HTTP layer
// (src/http/client.ts) and get the same retries, backoff, stall timeouts and
// fault handling as registry reads, and start-up stays fast.

import aws4 from 'aws4';
import type { AwsCredentials } from './credentials.js';

export interface SignInput {
  method: string;
  url: URL;
  headers?: Record<string, string>;
  body?: string | Buffer;
  region: string;
  /** Fixed signing time (tests); default now. */
  date?: string;
}

/** The headers to send: the given ones plus Host, X-Amz-Date, X-Amz-Content-Sha256 (hash of the body) and Authorization. */
export function signRequest(input: SignInput, credentials: AwsCredentials | undefined): Record<string, string> {
  const headers: Record<string, string> = { ...input.headers };
  // The payload hash is signed and checked by S3: a part that changes on the way is refused.
  if (!credentials) return headers;
  if (input.date) headers['X-Amz-Date'] = input.date;
  const signed = aws4.sign(
    {
      host: input.url.host,
      path: input.url.pathname + input.url.search,
      method: input.method,
      service: 's3',
      region: input.region,
      headers,
      body: input.body ?? '',
    },
    {
      accessKeyId: credentials.accessKeyId,
      secretAccessKey: credentials.secretAccessKey,
      ...(credentials.sessionToken ? { sessionToken: credentials.sessionToken } : {}),
    },
  );
  const out: Record<string, string> = {};
  for (const [k, v] of Object.entries(signed.headers ?? {})) if (v !== undefined) out[k.toLowerCase()] = String(v);
  return out;
}
