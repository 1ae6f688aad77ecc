// Throwaway certificates made with openssl: a CA, a server certificate for
// 127.0.0.1 / localhost signed by it, and a client certificate (clientAuth)
// signed by it. EC P-256 keys: quick to make.

import { writeFile } from 'node:fs/promises';
import path from 'node:path';
import { run } from './exec.js';

export interface TestCerts {
  dir: string;
  /** CA certificate (PEM). */
  ca: string;
  serverCert: string;
  serverKey: string;
  clientCert: string;
  clientKey: string;
}

const KEY = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes'];

async function signed(dir: string, name: string, cn: string, ext: string): Promise<void> {
  const extFile = path.join(dir, `${name}.ext`);
  await writeFile(extFile, ext);
  await run('openssl', [
    'req',
    ...KEY,
    '-keyout',
    path.join(dir, `${name}-key.pem`),
    '-out',
    path.join(dir, `${name}.csr`),
    '-subj',
    `/CN=${cn}`,
  ]);
  await run('openssl', [
    'x509',
    '-req',
    '-in',
    path.join(dir, `${name}.csr`),
    '-CA',
    path.join(dir, 'ca.pem'),
    '-CAkey',
    path.join(dir, 'ca-key.pem'),
    '-CAcreateserial',
    '-days',
    '2',
    '-out',
    path.join(dir, `${name}.pem`),
    '-extfile',
    extFile,
  ]);
}

/** Makes the certificates in `dir` (which must exist). */
export async function makeTestCerts(dir: string): Promise<TestCerts> {
  await run('openssl', [
    'req',
    '-x509',
    ...KEY,
    '-keyout',
    path.join(dir, 'ca-key.pem'),
    '-out',
    path.join(dir, 'ca.pem'),
    '-days',
    '2',
    '-subj',
    '/CN=clip test CA',
  ]);
  await signed(dir, 'server', '127.0.0.1', 'subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n');
  await signed(dir, 'client', 'clip test client', 'extendedKeyUsage=clientAuth\n');
  return {
    dir,
    ca: path.join(dir, 'ca.pem'),
    serverCert: path.join(dir, 'server.pem'),
    serverKey: path.join(dir, 'server-key.pem'),
    clientCert: path.join(dir, 'client.pem'),
    clientKey: path.join(dir, 'client-key.pem'),
  };
}
