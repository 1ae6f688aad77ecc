// The node daemon's one log: pino with string levels and ISO times, as JSON
// lines or one human line per record; on stderr in the foreground, else
// appended to a file that is kept below a size (FILE, and the previous FILE.1).
// Writes are synchronous, so the lines before a SIGKILL are on disk.

import { closeSync, constants, fchmodSync, fstatSync, mkdirSync, openSync, renameSync, writeSync } from 'node:fs';
import path from 'node:path';
import { pino, type DestinationStream, type Logger } from 'pino';
import { ClipError } from '../errors.js';
import type { MountLogLevel } from '../mount/settings.js';
import { pathProblem } from '../util/path-errors.js';
import type { LogFormat } from './config.js';

export const DEFAULT_LOG_MAX_BYTES = 10 * 1024 * 1024;

export interface DaemonLogOptions {
  level: MountLogLevel;
  format: LogFormat;
  /** Append here instead of stderr. */
  file?: string;
  /** FILE is renamed to FILE.1 before a line would take it past this. */
  maxBytes?: number;
}

/** C0, DEL and C1 characters, which a terminal would act on. */
const CONTROLS = /[\x00-\x1f\x7f-\x9f]/g;
const escapeControls = (s: string): string => s.replace(CONTROLS, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`);

function textValue(v: unknown): string {
  if (typeof v === 'string' && /^[^\s"=\\]+$/.test(v)) return escapeControls(v);
  return escapeControls(JSON.stringify(v) ?? 'undefined');
}

/** One pino JSON line -> `TIME LEVEL message k=v ...`. */
export function textLine(json: string): string {
  const { time, level, msg, ...rest } = JSON.parse(json) as Record<string, unknown>;
  let line = `${String(time)} ${String(level).toUpperCase()}`;
  if (msg !== undefined) line += ` ${escapeControls(typeof msg === 'string' ? msg : JSON.stringify(msg))}`;
  for (const [k, v] of Object.entries(rest)) line += ` ${escapeControls(k)}=${textValue(v)}`;
  return line + '\n';
}

/** Opens FILE for appending, owner-only; never through a symlink, never a FIFO or device. */
function openLogFile(file: string): number {
  let fd: number;
  try {
    mkdirSync(path.dirname(file), { recursive: true, mode: 0o700 });
    const flags = constants.O_WRONLY | constants.O_APPEND | constants.O_CREAT | constants.O_NOFOLLOW | constants.O_NONBLOCK;
    fd = openSync(file, flags, 0o600);
  } catch (e) {
    throw new ClipError('IO', `cannot open log file ${file}: ${pathProblem(file, e)}`, { cause: e });
  }
  if (!fstatSync(fd).isFile()) {
    closeSync(fd);
    throw new ClipError('IO', `cannot open log file ${file}: not a regular file`);
  }
  fchmodSync(fd, 0o600); // an older file may have been made with a wider mode
  return fd;
}

/** A pino destination that appends to FILE and rolls it to FILE.1 at maxBytes, counting what it writes. */
class BoundedFile implements DestinationStream {
  private fd: number;
  private bytes: number;
  private warned = false;

  constructor(
    private readonly file: string,
    private readonly maxBytes: number,
  ) {
    this.fd = openLogFile(file);
    this.bytes = fstatSync(this.fd).size;
  }

  write(s: string): void {
    const buf = Buffer.from(s);
    try {
      if (this.bytes > 0 && this.bytes + buf.length > this.maxBytes) this.roll();
      for (let off = 0; off < buf.length;) off += writeSync(this.fd, buf, off);
      this.bytes += buf.length;
    } catch (e) {
      // A full disk must not take the daemon down with it: say so once, keep serving.
      if (!this.warned) process.stderr.write(`clip: cannot write log ${this.file}: ${String(e)}\n`);
      this.warned = true;
    }
  }

  private roll(): void {
    this.bytes = 0; // on failure, try again after another maxBytes rather than on every line
    try {
      renameSync(this.file, `${this.file}.1`);
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw e; // deleted under us: just start a new one
    }
    const fd = openLogFile(this.file);
    closeSync(this.fd);
    this.fd = fd;
  }
}

export function createDaemonLog(opts: DaemonLogOptions): Logger {
  const maxBytes = opts.maxBytes ?? DEFAULT_LOG_MAX_BYTES;
  if (!Number.isSafeInteger(maxBytes) || maxBytes < 1)
    throw new ClipError('BAD_ARGUMENT', `log size bound: expected a whole number of bytes, at least 1, got ${maxBytes}`);
  const dest: DestinationStream = opts.file ? new BoundedFile(opts.file, maxBytes) : pino.destination({ fd: 2, sync: true });
  return pino(
    {
      level: opts.level,
      base: { pid: process.pid },
      timestamp: pino.stdTimeFunctions.isoTime,
      formatters: { level: (label) => ({ level: label }) },
      ...(opts.format === 'text' ? { hooks: { streamWrite: textLine } } : {}),
    },
    dest,
  );
}
