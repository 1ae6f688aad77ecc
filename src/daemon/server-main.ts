// The serving process of the node daemon, as its supervisor starts it: the
// FUSE connection is inherited (fd 4), the daemon's settings come in the
// environment, the table of images over the IPC channel. It loads, says so,
// and serves once told to (see mount/supervisor.ts for why it waits).

import { createDaemonLog } from './log.js';
import { handedOverMounts, type SupervisorMessage } from '../mount/supervisor.js';
import { DaemonServer, type DaemonRuntime } from './server.js';
import { EMPTY_TABLE, type DaemonTable } from './served-images.js';

const runtime = JSON.parse(process.env['CLIP_DAEMON'] ?? 'null') as DaemonRuntime | null;
if (!runtime || !process.send) {
  process.stderr.write('clip: this is the serving process of clip daemon; start `clip daemon` instead\n');
  process.exit(2);
}
const send = (m: { type: string; [k: string]: unknown }): void => {
  if (process.connected) process.send!(m);
};
const log = createDaemonLog({
  level: runtime.config.logLevel,
  format: runtime.config.logFormat,
  ...(runtime.logFile !== undefined ? { file: runtime.logFile } : {}),
});
const { generation, mounts } = handedOverMounts();
const fuse = mounts[0];
if (!fuse) throw new Error('no FUSE connection handed over');

let server: DaemonServer | undefined;
process.on('message', (m: SupervisorMessage) => {
  if (m.type === 'handover') {
    server = new DaemonServer(runtime, log.child({ generation }), { send }, (m.state as DaemonTable | undefined) ?? EMPTY_TABLE);
    server.load().then(
      () => send({ type: 'loaded' }),
      (e: unknown) => {
        log.fatal({ err: (e as Error).stack }, 'cannot load the served images');
        process.exit(1);
      },
    );
  } else if (m.type === 'upgrade-failed') {
    server?.upgradeFailed(m.reason);
  } else if (m.type === 'serve') {
    server!.serve(fuse.fd, fuse.connection).then(
      () => send({ type: 'serving', pid: process.pid }),
      (e: unknown) => {
        log.fatal({ err: (e as Error).stack }, 'cannot serve');
        process.exit(1);
      },
    );
  }
});
// The supervisor gone: the mounts live on while this process holds the connection; keep serving.
process.on('disconnect', () => {
  // A spare never handed anything, or a server with nothing to serve: nothing to keep up.
  if (!server || server.isIdle()) process.exit(0);
  log.error('the supervisor (clip daemon) is gone: serving on, but a crash of this process now ends the mounts');
});
// SIGTERM to the serving process stops the daemon as SIGTERM to `clip daemon` does.
// A spare (nothing handed over yet) just ends.
for (const signal of ['SIGTERM', 'SIGINT'] as const)
  process.on(signal, () => (server ? void server.stopAll().then(() => process.exit(0)) : process.exit(0)));
