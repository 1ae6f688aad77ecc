// A byte progress bar on stderr when it is a terminal; silent in pipes and CI.

import cliProgress from 'cli-progress';
import { formatBytes } from './format.js';

export interface Progress {
  update(done: number, total: number): void;
  stop(): void;
}

export function byteProgress(label: string): Progress {
  if (!process.stderr.isTTY || process.env['CI']) return { update() {}, stop() {} };
  const bar = new cliProgress.SingleBar(
    {
      stream: process.stderr,
      format: `${label} [{bar}] {percentage}% {done}/{all}`,
      hideCursor: true,
      clearOnComplete: true,
      fps: 10,
    },
    cliProgress.Presets.shades_classic,
  );
  let started = false;
  return {
    update(done, total) {
      const payload = { done: formatBytes(done), all: formatBytes(total) };
      if (!started) {
        bar.start(total, done, payload);
        started = true;
      } else bar.update(done, payload);
    },
    stop() {
      if (started) bar.stop();
    },
  };
}
