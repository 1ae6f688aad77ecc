// What a trace runs: the exec-form command given with --trace-cmd, else the
// image's Entrypoint + Cmd, with the image's Env, WorkingDir and User, as a
// container runtime would run it. Pure: parsing and the image config only.

import { ClipError } from '../errors.js';

export interface TraceProcess {
  args: string[];
  env: string[];
  cwd: string;
  /** The image's User ("uid[:gid]" or names looked up in the rootfs, user.ts); undefined: root. */
  user?: string;
}

/** What runc's default spec sets when the image names no PATH. */
const DEFAULT_PATH = 'PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin';

/** --trace-cmd: a JSON array of strings, the first the program (exec form, no shell). */
export function parseTraceCmd(json: string): string[] {
  let v: unknown;
  try {
    v = JSON.parse(json);
  } catch {
    throw new ClipError(
      'BAD_ARGUMENT',
      `bad --trace-cmd ${JSON.stringify(json)}: not JSON; give an exec-form array, e.g. '["/bin/sh","-c","..."]'`,
    );
  }
  if (!Array.isArray(v) || v.length === 0 || !v.every((a) => typeof a === 'string') || v[0] === '')
    throw new ClipError(
      'BAD_ARGUMENT',
      `bad --trace-cmd ${JSON.stringify(json)}: expected a non-empty JSON array of strings, the program first`,
    );
  if (v.some((a: string) => a.includes('\0'))) throw new ClipError('BAD_ARGUMENT', 'bad --trace-cmd: an argument holds a NUL byte');
  return v;
}

function strings(v: unknown): string[] | undefined {
  return Array.isArray(v) && v.every((s) => typeof s === 'string') ? v : undefined;
}

/** The process of a trace: `command` (replacing Entrypoint and Cmd) or the image's own. */
export function traceProcess(config: Record<string, unknown>, command?: string[]): TraceProcess {
  // The OCI image config keeps the runtime settings under "config".
  const c = (typeof config['config'] === 'object' && config['config'] !== null ? config['config'] : {}) as Record<string, unknown>;
  const args = command ?? [...(strings(c['Entrypoint']) ?? []), ...(strings(c['Cmd']) ?? [])];
  if (args.length === 0 || args[0] === '')
    throw new ClipError('BAD_ARGUMENT', 'the image has no Entrypoint or Cmd to trace: give the command with --trace-cmd');
  const env = strings(c['Env']) ?? [];
  const cwd = typeof c['WorkingDir'] === 'string' && c['WorkingDir'].startsWith('/') ? c['WorkingDir'] : '/';
  const user = typeof c['User'] === 'string' && c['User'] !== '' ? c['User'] : undefined;
  return {
    args,
    env: env.some((e) => e.startsWith('PATH=')) ? env : [DEFAULT_PATH, ...env],
    cwd,
    ...(user !== undefined ? { user } : {}),
  };
}
