// Who a process is, beyond its pid: pids are reused, so a recorded pid names
// clip's daemon only while the process there has the same start time (field
// 22 of /proc/PID/stat, in clock ticks since boot), boot and command line.

import { readFileSync } from 'node:fs';

export interface ProcessIdentity {
  /** /proc/PID/stat field 22: when the process started, in clock ticks since boot. */
  startTime: string;
  /** /proc/sys/kernel/random/boot_id: start times count from this boot. */
  bootId: string;
  /** /proc/PID/cmdline, arguments joined by NUL. */
  cmdline: string;
}

/** The /proc/PID/stat fields after "(comm)", which may itself hold spaces and parentheses. */
function statFields(pid: number): string[] | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  } catch {
    return undefined;
  }
}

/** The identity of a live (not zombie) process, or undefined when there is none at that pid. */
export function processIdentity(pid: number): ProcessIdentity | undefined {
  const fields = statFields(pid);
  // fields[0] is field 3 (state), so field 22 (starttime) is fields[19].
  if (!fields || fields[0] === 'Z' || fields[0] === 'X' || fields[19] === undefined) return undefined;
  try {
    const cmdline = readFileSync(`/proc/${pid}/cmdline`, 'utf8');
    const bootId = readFileSync('/proc/sys/kernel/random/boot_id', 'utf8').trim();
    return { startTime: fields[19], bootId, cmdline };
  } catch {
    return undefined; // exited meanwhile
  }
}

/** Whether `pid` is still the process `id` describes: same start time, boot and command line, not a zombie. */
export function isSameProcess(pid: number, id: ProcessIdentity | undefined): boolean {
  if (!id || !Number.isSafeInteger(pid) || pid <= 0) return false;
  const now = processIdentity(pid);
  return now !== undefined && now.startTime === id.startTime && now.bootId === id.bootId && now.cmdline === id.cmdline;
}
