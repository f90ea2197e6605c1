// SPDX-License-Identifier: Apache-2.0
/**
 * What every benchmark script measures the same way: command-line numbers, a process's CPU ticks and
 * peak RSS from /proc, a BPF program's run-time stats from bpftool, medians.
 */
import { ChildProcess, execFileSync, spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import { setTimeout as sleep } from 'node:timers/promises';

export const CLK_TCK = Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim());

/** `--name N` from the command line, else `fallback`. */
export function arg(name: string, fallback: number): number {
  const i = process.argv.indexOf(name);
  return i > 0 ? Number(process.argv[i + 1]) : fallback;
}

export function argString(name: string): string | undefined {
  const i = process.argv.indexOf(name);
  return i > 0 ? process.argv[i + 1] : undefined;
}

/** utime + stime of a process in clock ticks, or null when it is gone. */
export function cpuTicks(pid: number): number | null {
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return Number(f[11]) + Number(f[12]);
  } catch {
    return null;
  }
}

/** Peak RSS (VmHWM) in KiB, or null when the process is gone. */
export function hwmKiB(pid: number): number | null {
  try {
    const m = /VmHWM:\s+(\d+) kB/.exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m ? Number(m[1]) : null;
  } catch {
    return null;
  }
}

/** Polls a process until it exits; returns its last CPU ticks and peak RSS (KiB). */
export async function watchUntilExit(child: ChildProcess): Promise<{ ticks: number; hwm: number }> {
  let ticks = 0;
  let hwm = 0;
  const exited = new Promise<void>((resolve) => (child.exitCode !== null ? resolve() : child.once('exit', () => resolve())));
  let done = false;
  void exited.then(() => (done = true));
  while (!done) {
    ticks = cpuTicks(child.pid!) ?? ticks;
    hwm = Math.max(hwm, hwmKiB(child.pid!) ?? 0);
    await Promise.race([sleep(20), exited]);
  }
  return { ticks, hwm };
}

/** Summed run time and run count of the loaded BPF programs called `names` (needs bpf_stats_enabled). */
export function bpfProgramStats(names: readonly string[]): { ns: number; runs: number } | null {
  const r = spawnSync('bpftool', ['prog', 'show', '-j'], { encoding: 'utf8', maxBuffer: 64 << 20 });
  if (r.status !== 0) return null;
  const progs = JSON.parse(r.stdout) as Array<{ name?: string; run_time_ns?: number; run_cnt?: number }>;
  let ns = 0;
  let runs = 0;
  for (const p of progs) {
    if (p.name !== undefined && names.includes(p.name)) {
      ns += p.run_time_ns ?? 0;
      runs += p.run_cnt ?? 0;
    }
  }
  return runs > 0 ? { ns, runs } : null;
}

/** ns per run of the programs between two bpfProgramStats() readings, or null. */
export function nsPerRun(before: { ns: number; runs: number } | null, after: { ns: number; runs: number } | null): number | null {
  return after && after.runs > (before?.runs ?? 0) ? (after.ns - (before?.ns ?? 0)) / (after.runs - (before?.runs ?? 0)) : null;
}

/** Turns kernel.bpf_stats_enabled on for `body`, and back to what it was. */
export async function withBpfStats<T>(body: () => Promise<T>): Promise<T> {
  const file = '/proc/sys/kernel/bpf_stats_enabled';
  const before = fs.readFileSync(file, 'utf8').trim();
  fs.writeFileSync(file, '1');
  try {
    return await body();
  } finally {
    fs.writeFileSync(file, before);
  }
}

export function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
}

export function fmt(n: number, digits = 2): string {
  return n.toFixed(digits);
}

/** "median (min–max)". */
export function spread(xs: number[], digits = 2): string {
  return `${fmt(median(xs), digits)} (${fmt(Math.min(...xs), digits)}–${fmt(Math.max(...xs), digits)})`;
}
