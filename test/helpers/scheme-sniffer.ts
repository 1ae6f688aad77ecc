// A TCP front on 127.0.0.1 that tells, per connection, whether the client
// began with a TLS ClientHello (first byte 0x16, a TLS handshake record) or
// with plain HTTP; plain connections are passed through to the target (a
// plain-HTTP registry), TLS ones are closed. Shows which scheme a client
// chose without depending on how it treats loopback addresses.

import net from 'node:net';

export interface SchemeSniffer {
  /** "127.0.0.1:PORT" */
  host: string;
  /** One entry per connection, in order. */
  seen: ('tls' | 'http')[];
  close(): Promise<void>;
}

export async function startSchemeSniffer(target: string): Promise<SchemeSniffer> {
  const [targetHost, targetPort] = target.split(':') as [string, string];
  const seen: SchemeSniffer['seen'] = [];
  const sockets = new Set<net.Socket>();
  const server = net.createServer((client) => {
    sockets.add(client);
    client.on('close', () => sockets.delete(client));
    client.on('error', () => client.destroy());
    client.once('data', (first: Buffer) => {
      if (first[0] === 0x16) {
        seen.push('tls');
        client.destroy();
        return;
      }
      seen.push('http');
      const upstream = net.connect(Number(targetPort), targetHost);
      sockets.add(upstream);
      upstream.on('close', () => sockets.delete(upstream));
      upstream.on('error', () => client.destroy());
      client.on('close', () => upstream.destroy());
      upstream.on('close', () => client.destroy());
      upstream.write(first);
      client.pipe(upstream);
      upstream.pipe(client);
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return {
    host: `127.0.0.1:${(server.address() as net.AddressInfo).port}`,
    seen,
    close: () =>
      new Promise<void>((r) => {
        for (const s of sockets) s.destroy();
        server.close(() => r());
      }),
  };
}
