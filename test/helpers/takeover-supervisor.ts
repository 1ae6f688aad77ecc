// Entry point of the takeover test's supervisor: mounts argv[2] with the
// Supervisor, serves it with takeover-server.js, prints every lifecycle event
// as a JSON line, and unmounts on SIGTERM.

import { Supervisor } from '../../src/mount/supervisor.js';

const mountpoint = process.argv[2]!;
const supervisor = new Supervisor({
  mounts: [{ mountpoint, mount: { fsname: 'takeover' } }],
  server: { module: new URL('./takeover-server.js', import.meta.url).pathname },
  onEvent: (e) => {
    const line = e.type === 'mounted' ? { ...e, connection: { minor: e.connection.minor, maxWrite: e.connection.maxWrite } } : e;
    process.stdout.write(`${JSON.stringify({ event: e.type, supervisor: process.pid, ...line, type: undefined })}\n`);
  },
});
supervisor.stopOnSignals();
try {
  await supervisor.start();
} catch (e) {
  process.stderr.write(`supervisor: ${(e as Error).message}\n`);
  process.exit(1);
}
