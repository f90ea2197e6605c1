// SPDX-License-Identifier: Apache-2.0
/**
 * A snapshot of the target process as /proc shows it: identity (pid, start time, executable),
 * command line and environment, file-backed mappings, threads with their tracers, open file
 * descriptors. `verify` takes one at the end of each phase and compares them. The parsers are pure
 * functions over the files' bytes; takeSnapshot() is the reading wrapper (it needs ptrace-read
 * access to the target: root, or the target's own user).
 */
import * as fs from 'node:fs';
import { parseProcStat, parseProcStatus } from '../process/proc';
import { parseProcMaps } from '../symbolize/proc-maps';

export interface MappedFile {
  path: string;
  /** "fe:01" as /proc/PID/maps prints the device. */
  dev: string;
  inode: number;
  /** Mapped with execute permission anywhere (code, not only data). */
  executable: boolean;
  deleted: boolean;
}

export interface ThreadInfo {
  tid: number;
  comm: string;
  /** Pid of the process ptrace-attached to this thread; 0 when none. */
  tracerPid: number;
}

export interface TargetSnapshot {
  pid: number;
  /** False when the pid no longer exists (or is a zombie). */
  alive: boolean;
  /** Start time after boot in clock ticks: with the pid, the process's identity. */
  startTicks: number | null;
  exe: string | null;
  cmdline: string[];
  environ: string[];
  /** Unique file-backed mappings (path + inode). */
  files: MappedFile[];
  /** Kernel pseudo-mappings: [vdso], [vvar], [uprobes], ... */
  specials: string[];
  threads: ThreadInfo[];
  fds: number;
  takenAtMs: number;
}

/** Splits a NUL-separated /proc file (cmdline, environ); a trailing NUL ends the last entry. */
export function splitNul(buf: Buffer): string[] {
  if (buf.length === 0) return [];
  const parts = buf.toString('utf8').split('\0');
  if (parts[parts.length - 1] === '') parts.pop();
  return parts;
}

/** File-backed mappings merged per (path, inode), and the special [..] mappings. */
export function mappedFiles(mapsText: string): { files: MappedFile[]; specials: string[] } {
  const byKey = new Map<string, MappedFile>();
  const specials = new Set<string>();
  for (const e of parseProcMaps(mapsText).entries) {
    if (e.path.startsWith('[')) {
      specials.add(e.path);
      continue;
    }
    if (e.kind !== 'file' && e.kind !== 'memfd') continue;
    const dev = `${e.devMajor.toString(16).padStart(2, '0')}:${e.devMinor.toString(16).padStart(2, '0')}`;
    const key = `${e.path}\0${e.inode}`;
    const known = byKey.get(key);
    if (known) known.executable ||= e.executable;
    else byKey.set(key, { path: e.path, dev, inode: e.inode, executable: e.executable, deleted: e.deleted });
  }
  return { files: [...byKey.values()].sort((a, b) => a.path.localeCompare(b.path)), specials: [...specials].sort() };
}

/** Name and TracerPid of a thread from its status file. */
export function parseThreadStatus(tid: number, text: string): ThreadInfo {
  const f = parseProcStatus(text);
  return { tid, comm: f.get('Name') ?? '', tracerPid: Number(f.get('TracerPid') ?? 0) || 0 };
}

function readOr<T>(fn: () => T, fallback: T): T {
  try {
    return fn();
  } catch {
    return fallback;
  }
}

/** The threads of `pid` with their tracers (a ptrace attach is per thread). */
export function readThreads(pid: number, procRoot = '/proc'): ThreadInfo[] {
  const tids = readOr(() => fs.readdirSync(`${procRoot}/${pid}/task`), [] as string[]);
  const out: ThreadInfo[] = [];
  for (const t of tids) {
    const text = readOr(() => fs.readFileSync(`${procRoot}/${pid}/task/${t}/status`, 'latin1'), null);
    if (text !== null) out.push(parseThreadStatus(Number(t), text));
  }
  return out.sort((a, b) => a.tid - b.tid);
}

export function takeSnapshot(pid: number, procRoot = '/proc'): TargetSnapshot {
  const dir = `${procRoot}/${pid}`;
  const stat = readOr(() => parseProcStat(fs.readFileSync(`${dir}/stat`, 'latin1')), null);
  const alive = stat !== null && stat.state !== 'Z' && stat.state !== 'X';
  const maps = readOr(() => mappedFiles(fs.readFileSync(`${dir}/maps`, 'latin1')), { files: [], specials: [] });
  return {
    pid,
    alive,
    startTicks: stat?.startTicks ?? null,
    exe: readOr(() => fs.readlinkSync(`${dir}/exe`), null),
    cmdline: readOr(() => splitNul(fs.readFileSync(`${dir}/cmdline`)), []),
    environ: readOr(() => splitNul(fs.readFileSync(`${dir}/environ`)), []),
    files: maps.files,
    specials: maps.specials,
    threads: alive ? readThreads(pid, procRoot) : [],
    fds: alive ? readOr(() => fs.readdirSync(`${dir}/fd`).length, 0) : 0,
    takenAtMs: Date.now(),
  };
}

/**
 * After the target vanished: a process running the same executable with the same command line
 * that started after `sinceTicks` (a restart by whoever killed it), or null.
 */
export function findReplacement(before: TargetSnapshot, sinceTicks: number, procRoot = '/proc'): TargetSnapshot | null {
  if (before.exe === null) return null;
  for (const name of readOr(() => fs.readdirSync(procRoot), [] as string[])) {
    const pid = Number(name);
    if (!Number.isInteger(pid) || pid === before.pid) continue;
    const exe = readOr(() => fs.readlinkSync(`${procRoot}/${pid}/exe`), null);
    if (exe !== before.exe) continue;
    const stat = readOr(() => parseProcStat(fs.readFileSync(`${procRoot}/${pid}/stat`, 'latin1')), null);
    if (stat === null || stat.startTicks < sinceTicks) continue;
    const cmdline = readOr(() => splitNul(fs.readFileSync(`${procRoot}/${pid}/cmdline`)), []);
    if (cmdline.join('\0') !== before.cmdline.join('\0')) continue;
    return takeSnapshot(pid, procRoot);
  }
  return null;
}

/** Ticks since boot now (for comparing start times), from /proc/uptime and USER_HZ = 100. */
export function nowTicks(procRoot = '/proc'): number {
  const up = Number(readOr(() => fs.readFileSync(`${procRoot}/uptime`, 'latin1').split(' ')[0], '0'));
  return Math.floor(up * CLOCK_TICKS_PER_SECOND);
}

/** USER_HZ: the unit of /proc/PID/stat times; 100 on every Linux architecture ebpfprof supports. */
export const CLOCK_TICKS_PER_SECOND = 100;
