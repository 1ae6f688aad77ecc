// TLS settings of one registry host as Node's socket options: extra CAs
// (trusted on top of the bundled roots, as containerd appends to the system
// pool), client certificate pairs, and whether to verify at all. Every file is
// checked on load, so a bad one is reported by name before any connection.

import { createPrivateKey, X509Certificate } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { connect, rootCertificates, type ConnectionOptions } from 'node:tls';
import { ClipError } from '../errors.js';

export interface TlsFiles {
  ca: string[];
  client: { cert: string; key: string }[];
  /** true: accept any certificate (--tls-verify=false, skip_verify). */
  skipVerify?: boolean;
}

const MAX_PEM_BYTES = 1024 * 1024;

/** The socket options for `files` (undefined when they change nothing), and a key naming them for connection sharing. */
export async function loadTlsOptions(files: TlsFiles): Promise<{ options?: ConnectionOptions; key: string }> {
  const key = JSON.stringify([files.ca, files.client, files.skipVerify ?? false]);
  if (files.ca.length === 0 && files.client.length === 0 && !files.skipVerify) return { key };
  const options: ConnectionOptions = {};
  if (files.skipVerify) options.rejectUnauthorized = false;
  if (files.ca.length > 0) {
    const extra: string[] = [];
    for (const f of files.ca) extra.push(...certificates(await readPem(f, 'CA certificate'), f, 'CA certificate'));
    options.ca = [...rootCertificates, ...extra];
  }
  if (files.client.length > 0) {
    const certs: string[] = [];
    const keys: string[] = [];
    for (const pair of files.client) {
      const certPem = await readPem(pair.cert, 'client certificate');
      const certList = certificates(certPem, pair.cert, 'client certificate');
      const keyPem = pair.key === pair.cert ? certPem : await readPem(pair.key, 'client key');
      try {
        createPrivateKey(keyPem);
      } catch {
        throw new ClipError('BAD_ARGUMENT', `${pair.key}: no private key in PEM form for client certificate ${pair.cert}`);
      }
      certs.push(certList.join('\n'));
      keys.push(keyPem);
    }
    options.cert = certs;
    options.key = keys;
  }
  return { options, key };
}

async function readPem(file: string, what: string): Promise<string> {
  let bytes: Buffer;
  try {
    bytes = await readFile(file);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    throw new ClipError('IO', `cannot read ${what} ${file}: ${code === 'ENOENT' ? 'no such file' : (e as Error).message}`);
  }
  if (bytes.length > MAX_PEM_BYTES) throw new ClipError('BAD_ARGUMENT', `${what} ${file} is larger than ${MAX_PEM_BYTES} bytes`);
  return bytes.toString('latin1');
}

/** The PEM certificates in `pem`, each parsed (so a damaged one is named now, not at the handshake). */
function certificates(pem: string, file: string, what: string): string[] {
  const blocks = pem.match(/-----BEGIN CERTIFICATE-----[\s\S]*?-----END CERTIFICATE-----/g) ?? [];
  if (blocks.length === 0) throw new ClipError('BAD_ARGUMENT', `${what} ${file} holds no PEM certificate`);
  for (const b of blocks) {
    try {
      new X509Certificate(b);
    } catch {
      throw new ClipError('BAD_ARGUMENT', `${what} ${file} holds a certificate that does not parse`);
    }
  }
  return blocks;
}

const UNTRUSTED = new Set([
  'SELF_SIGNED_CERT_IN_CHAIN',
  'DEPTH_ZERO_SELF_SIGNED_CERT',
  'UNABLE_TO_VERIFY_LEAF_SIGNATURE',
  'UNABLE_TO_GET_ISSUER_CERT_LOCALLY',
  'UNABLE_TO_GET_ISSUER_CERT',
  'CERT_UNTRUSTED',
]);

/** True for the error of a TLS client that got a plain HTTP answer (the server speaks HTTP). */
export function isPlainHttpAnswer(e: unknown): boolean {
  const code = (e as NodeJS.ErrnoException | undefined)?.code ?? '';
  return code === 'ERR_SSL_WRONG_VERSION_NUMBER' || code === 'ERR_SSL_PACKET_LENGTH_TOO_LONG' || code === 'ERR_SSL_HTTP_REQUEST';
}

/** A sentence on what to do about a TLS failure, or undefined when `e` is none. */
export function tlsHint(e: unknown): string | undefined {
  const code = (e as NodeJS.ErrnoException | undefined)?.code ?? '';
  if (isPlainHttpAnswer(e)) {
    return 'server gave HTTP response to HTTPS client: the registry speaks plain HTTP (use --plain-http, or an http:// server in hosts.toml)';
  }
  if (UNTRUSTED.has(code)) {
    return `certificate not trusted (${code}): give its CA with ca in hosts.toml, a ca.crt in its certs.d directory or --cert-dir, or use --tls-verify=false`;
  }
  if (code === 'ERR_TLS_CERT_ALTNAME_INVALID') return 'the certificate does not name this host (--tls-verify=false skips the check)';
  if (code === 'CERT_HAS_EXPIRED' || code === 'CERT_NOT_YET_VALID') return `the certificate is not valid now (${code})`;
  if (/ALERT_(CERTIFICATE_REQUIRED|BAD_CERTIFICATE|UNKNOWN_CA|HANDSHAKE_FAILURE)/.test(code)) {
    return `the registry refused the TLS handshake (${code}): it may want a client certificate (client in hosts.toml, client.cert + client.key in certs.d or --cert-dir)`;
  }
  return undefined;
}

const DIAGNOSE_MS = 5000;

/**
 * Why a TLS server at `url` closed the connection, when undici only saw it
 * close: with TLS 1.3 a refused client certificate arrives as an alert after
 * the handshake, which undici reports as "other side closed". One direct
 * connection with the same options reads the alert. undefined: no TLS reason found.
 */
export function diagnoseTlsClose(url: URL, options: ConnectionOptions = {}): Promise<string | undefined> {
  return new Promise((resolve) => {
    const port = Number(url.port) || 443;
    const host = url.hostname.replace(/^\[|\]$/g, '');
    const socket = connect({ ...options, host, port, servername: /^[\d.]+$|:/.test(host) ? '' : host });
    const done = (why: string | undefined): void => {
      clearTimeout(timer);
      socket.destroy();
      resolve(why);
    };
    const timer = setTimeout(() => done(undefined), DIAGNOSE_MS).unref();
    socket.once('secureConnect', () => socket.write(`GET /v2/ HTTP/1.1\r\nHost: ${url.host}\r\nConnection: close\r\n\r\n`));
    socket.once('error', (e) => done(tlsHint(e)));
    socket.once('data', () => done(undefined));
    socket.once('close', () => done(undefined));
  });
}
