// The daemon's structured log (pino) on stderr: a terminal in --foreground,
// the mount's log file when started in the background.

import { pino, type Logger } from 'pino';

export type { Logger } from 'pino';

export function createLogger(level: string): Logger {
  return pino({ level, base: { pid: process.pid } }, pino.destination({ fd: 2, sync: true }));
}
