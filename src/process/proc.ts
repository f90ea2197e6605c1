// SPDX-License-Identifier: Apache-2.0
/** Facts about a process read from /proc, read-only. Parsers are pure; readers never throw on a vanished process. */
import * as fs from 'node:fs';

export interface ProcStat {
  pid: number;
  comm: string;
  state: string;
  ppid: number;
  /** utime + stime, clock ticks. */
  cpuTicks: number;
  /** Start time after boot, clock ticks: with the pid, identifies a process across pid reuse. */
  startTicks: number;
}

/** Parses /proc/PID/stat. The comm field may contain spaces and parentheses: it ends at the last ')'. */
export function parseProcStat(text: string): ProcStat | null {
  const open = text.indexOf('(');
  const close = text.lastIndexOf(')');
  if (open < 0 || close < open) return null;
  const pid = Number(text.slice(0, open).trim());
  const rest = text.slice(close + 2).split(' ');
  // rest[0] is field 3 (state); utime is field 14, stime 15, starttime 22.
  if (!Number.isInteger(pid) || rest.length < 20) return null;
  const num = (field: number): number => Number(rest[field - 3]);
  const stat = {
    pid,
    comm: text.slice(open + 1, close),
    state: rest[0] ?? '',
    ppid: num(4),
    cpuTicks: num(14) + num(15),
    startTicks: num(22),
  };
  return Number.isFinite(stat.ppid) && Number.isFinite(stat.cpuTicks) && Number.isFinite(stat.startTicks) ? stat : null;
}

export function readProcStat(pid: number, procRoot = '/proc'): ProcStat | null {
  try {
    return parseProcStat(fs.readFileSync(`${procRoot}/${pid}/stat`, 'utf8'));
  } catch {
    return null;
  }
}

/** Parses the "Key:\tvalue" lines of /proc/PID/status; the specific readers build on this one. */
export function parseProcStatus(text: string | Buffer): Map<string, string> {
  const s = typeof text === 'string' ? text : text.toString('latin1');
  const out = new Map<string, string>();
  for (const line of s.split('\n')) {
    const i = line.indexOf(':');
    if (i > 0) out.set(line.slice(0, i), line.slice(i + 1).trim());
  }
  return out;
}

/** The thread group (process) id of a task id, or null if the task does not exist. */
export function threadGroupOf(tid: number, procRoot = '/proc'): number | null {
  try {
    const tgid = Number(parseProcStatus(fs.readFileSync(`${procRoot}/${tid}/status`, 'utf8')).get('Tgid'));
    return Number.isInteger(tgid) && tgid > 0 ? tgid : null;
  } catch {
    return null;
  }
}

/** True while the process that had `startTicks` at `pid` is alive (not a zombie, pid not reused). */
export function processAlive(pid: number, startTicks: number, procRoot = '/proc'): boolean {
  const st = readProcStat(pid, procRoot);
  return st !== null && st.startTicks === startTicks && st.state !== 'Z' && st.state !== 'X';
}
