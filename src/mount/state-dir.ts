// Where clip keeps its state: $CLIP_STATE_DIR, else /run/clip (gone at a
// reboot, as the mounts are). Alone in its module: the CLI's fast path loads it.

export function stateDir(): string {
  return process.env['CLIP_STATE_DIR'] ?? '/run/clip';
}
