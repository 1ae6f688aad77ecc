// SIGINT and SIGTERM during a command that writes temp files (archive,
// extract): the first signal aborts the work, whose own error paths remove
// what it made, then clip exits 130 or 143 as shells expect (128 + signal
// number). A second signal exits at once.

import { ClipError } from '../errors.js';

const CODES = { SIGINT: 130, SIGTERM: 143 } as const;
type Signal = keyof typeof CODES;

export interface Interrupt {
  signal: AbortSignal;
  /** Runs `work`; when a signal aborted it, reports that and exits with 128 + the signal number. */
  run<T>(work: (signal: AbortSignal) => Promise<T>): Promise<T>;
}

export function interruptOnSignals(): Interrupt {
  const controller = new AbortController();
  let received: Signal | undefined;
  const handlers = new Map<Signal, () => void>();
  for (const name of Object.keys(CODES) as Signal[]) {
    const handler = (): void => {
      if (received !== undefined) process.exit(CODES[received]);
      received = name;
      controller.abort(new ClipError('IO', `interrupted by ${name}`));
    };
    handlers.set(name, handler);
    process.on(name, handler);
  }
  const release = (): void => {
    for (const [name, handler] of handlers) process.off(name, handler);
  };
  return {
    signal: controller.signal,
    async run(work) {
      try {
        return await work(controller.signal);
      } catch (e) {
        if (received === undefined) throw e;
        // The work has cleaned up after itself (its error paths ran): say so and leave.
        process.stderr.write(`clip: interrupted by ${received}; temporary files removed\n`);
        process.exit(CODES[received]);
      } finally {
        release();
      }
    },
  };
}
