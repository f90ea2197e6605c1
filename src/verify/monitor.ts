// SPDX-License-Identifier: Apache-2.0
/**
 * What `verify` watches while a phase runs:
 *  - the target, every 250 ms: every thread's TracerPid (a ptrace attach can be over before the
 *    phase ends: gdb attaches, injects, detaches) and the threads that exist;
 *  - the profiler, every second: its process tree (the processes of its session, so a shell
 *    wrapper and what it starts count), CPU time, resident memory, bytes written (/proc/PID/io
 *    wchar: sockets, pipes and files, an upper bound of its network egress) and capabilities of
 *    every thread.
 * Reads /proc only.
 */
import * as fs from 'node:fs';
import { parseProcStat, parseProcStatus } from '../process/proc';
import { capabilityNames, parseCapabilities } from '../system/capabilities';
import { CLOCK_TICKS_PER_SECOND, readThreads, type ThreadInfo } from './snapshot';

export interface TracerSighting {
  tid: number;
  tracerPid: number;
  tracerComm: string;
  tracerCmdline: string;
  firstSeenMs: number;
}

export interface TargetWatch {
  tracers: TracerSighting[];
  /** Every thread seen: tid -> comm. */
  threadsSeen: Map<number, string>;
  samples: number;
}

export interface ProfilerProcess {
  pid: number;
  comm: string;
  cmdline: string;
  uid: number | null;
  /** Union over the samples and the process's threads. */
  effective: string[];
  permitted: string[];
  ambient: string[];
  bounding: string[];
  /** NoNewPrivs of the main thread at the last sample. */
  noNewPrivs: boolean | null;
  /** Effective capabilities before the measured window (start-up: reported, not judged). */
  startupEffective: string[];
}

export interface ProfilerSample {
  atMs: number;
  /** utime + stime of the tree, ticks, including processes that exited since (their last value). */
  cpuTicks: number;
  rssBytes: number;
  /** wchar of the tree, bytes, cumulative like cpuTicks. */
  writtenBytes: number;
  processes: number;
}

export interface ProfilerUsage {
  /** Samples of the measured window (after the warm-up). */
  samples: ProfilerSample[];
  processes: ProfilerProcess[];
  /** CPU time the profiler used before the measured window (start-up and warm-up), seconds. */
  warmupCpuSeconds: number | null;
  /** CPU of one core, percent, over the whole watch. */
  cpuAvgPercent: number | null;
  /** Highest average over any `peakWindowMs` of the watch, percent. */
  cpuPeakPercent: number | null;
  /** Highest resident size of the tree, over the warm-up and the measured window. */
  rssMaxMiB: number | null;
  writtenMiBPerMinute: number | null;
  durationMs: number;
}

function read(file: string, enc: BufferEncoding = 'latin1'): string | null {
  try {
    return fs.readFileSync(file, enc);
  } catch {
    return null;
  }
}

/** Watches the target's threads and tracers. */
export class TargetWatcher {
  private timer: NodeJS.Timeout | null = null;
  readonly watch: TargetWatch = { tracers: [], threadsSeen: new Map(), samples: 0 };

  constructor(
    private readonly pid: number,
    private readonly intervalMs = 250,
  ) {}

  start(): this {
    this.sample();
    this.timer = setInterval(() => this.sample(), this.intervalMs);
    return this;
  }

  sample(): void {
    const threads: ThreadInfo[] = readThreads(this.pid);
    this.watch.samples++;
    for (const t of threads) {
      if (!this.watch.threadsSeen.has(t.tid)) this.watch.threadsSeen.set(t.tid, t.comm);
      if (t.tracerPid !== 0 && !this.watch.tracers.some((s) => s.tid === t.tid && s.tracerPid === t.tracerPid)) {
        this.watch.tracers.push({
          tid: t.tid,
          tracerPid: t.tracerPid,
          tracerComm: (read(`/proc/${t.tracerPid}/comm`) ?? '?').trim(),
          tracerCmdline: (read(`/proc/${t.tracerPid}/cmdline`) ?? '').split('\0').filter(Boolean).join(' '),
          firstSeenMs: Date.now(),
        });
      }
    }
  }

  stop(): TargetWatch {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
    this.sample();
    return this.watch;
  }
}

interface ProcState {
  ticks: number;
  written: number;
  info: ProfilerProcess;
}

/** The pids of `sessionId`'s session and of descendants of `rootPid` (double forks that left the session). */
export function profilerTree(rootPid: number, procRoot = '/proc'): number[] {
  const parent = new Map<number, number>();
  const session: number[] = [];
  for (const name of fs.readdirSync(procRoot)) {
    const pid = Number(name);
    if (!Number.isInteger(pid)) continue;
    const text = read(`${procRoot}/${pid}/stat`);
    if (text === null) continue;
    const st = parseProcStat(text);
    if (!st || st.state === 'Z') continue;
    parent.set(pid, st.ppid);
    // field 6 (session) right after pgrp: parseProcStat does not keep it; read it here.
    const rest = text.slice(text.lastIndexOf(')') + 2).split(' ');
    if (Number(rest[3]) === rootPid) session.push(pid);
  }
  const out = new Set<number>(session);
  if (parent.has(rootPid)) out.add(rootPid);
  let grew = true;
  while (grew) {
    grew = false;
    for (const [pid, ppid] of parent) {
      if (!out.has(pid) && out.has(ppid)) {
        out.add(pid);
        grew = true;
      }
    }
  }
  return [...out].sort((a, b) => a - b);
}

/** Watches the profiler's process tree: CPU, memory, bytes written, capabilities. */
export class ProfilerWatcher {
  private timer: NodeJS.Timeout | null = null;
  private readonly procs = new Map<number, ProcState>();
  private readonly samples: ProfilerSample[] = [];
  private windowStart = 0;
  private windowStarted = false;

  constructor(
    private readonly rootPid: number,
    private readonly intervalMs = 1000,
    private readonly peakWindowMs = 5000,
  ) {}

  start(): this {
    this.sample();
    this.timer = setInterval(() => this.sample(), this.intervalMs);
    return this;
  }

  sample(): void {
    let rss = 0;
    let alive = 0;
    for (const pid of profilerTree(this.rootPid)) {
      const stat = read(`/proc/${pid}/stat`);
      const st = stat === null ? null : parseProcStat(stat);
      if (!st) continue;
      alive++;
      const status = read(`/proc/${pid}/status`) ?? '';
      const fields = parseProcStatus(status);
      rss += Number((fields.get('VmRSS') ?? '0 kB').split(/\s+/)[0]) * 1024 || 0;
      const io = parseProcStatus(read(`/proc/${pid}/io`) ?? '');
      const written = Number(io.get('wchar') ?? 0) || 0;
      let s = this.procs.get(pid);
      if (!s) {
        s = {
          ticks: 0,
          written: 0,
          info: { pid, comm: st.comm, cmdline: (read(`/proc/${pid}/cmdline`) ?? '').split('\0').filter(Boolean).join(' '), uid: null, effective: [], permitted: [], ambient: [], bounding: [], noNewPrivs: null, startupEffective: [] },
        };
        this.procs.set(pid, s);
      }
      s.ticks = st.cpuTicks;
      s.written = written;
      s.info.comm = st.comm;
      this.addCapabilities(pid, s.info);
    }
    const total = (k: 'ticks' | 'written'): number => [...this.procs.values()].reduce((a, p) => a + p[k], 0);
    this.samples.push({ atMs: Date.now(), cpuTicks: total('ticks'), rssBytes: rss, writtenBytes: total('written'), processes: alive });
  }

  private addCapabilities(pid: number, info: ProfilerProcess): void {
    let tids: string[];
    try {
      tids = fs.readdirSync(`/proc/${pid}/task`);
    } catch {
      return;
    }
    const union = (a: string[], b: string[]): string[] => [...new Set([...a, ...b])].sort();
    for (const t of tids) {
      const text = read(`/proc/${pid}/task/${t}/status`);
      if (text === null) continue;
      let caps;
      try {
        caps = parseCapabilities(text);
      } catch {
        continue;
      }
      if (!this.windowStarted) {
        info.startupEffective = union(info.startupEffective, capabilityNames(caps.effective));
        continue;
      }
      info.effective = union(info.effective, capabilityNames(caps.effective));
      info.permitted = union(info.permitted, capabilityNames(caps.permitted));
      info.ambient = union(info.ambient, capabilityNames(caps.ambient ?? 0n));
      info.bounding = union(info.bounding, capabilityNames(caps.bounding ?? 0n));
      if (t === String(pid)) {
        info.noNewPrivs = caps.noNewPrivs ?? null;
        if (caps.uids) info.uid = Math.min(caps.uids.real, caps.uids.effective, caps.uids.saved);
      }
    }
  }

  /** Starts the measured window: CPU and egress are judged from here (the warm-up before is not). */
  markWindow(): void {
    this.windowStarted = true;
    this.sample();
    this.windowStart = this.samples.length - 1;
  }

  stop(): ProfilerUsage {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
    this.sample();
    const window = this.samples.slice(this.windowStart);
    const usage = usageOf(window, [...this.procs.values()].map((p) => p.info), this.peakWindowMs, window.length > 0 ? window[window.length - 1]!.atMs - window[0]!.atMs : 0);
    const first = this.samples[0];
    return {
      ...usage,
      warmupCpuSeconds: first && window[0] ? (window[0].cpuTicks - first.cpuTicks) / CLOCK_TICKS_PER_SECOND : null,
      rssMaxMiB: this.samples.length > 0 ? Math.max(...this.samples.map((x) => x.rssBytes)) / 1048576 : null,
    };
  }
}

/** Averages and peaks from cumulative samples (pure: tested with tables). */
export function usageOf(samples: readonly ProfilerSample[], processes: ProfilerProcess[], peakWindowMs: number, durationMs: number): ProfilerUsage {
  const first = samples[0];
  const last = samples[samples.length - 1];
  if (!first || !last || last.atMs <= first.atMs) {
    return { samples: [...samples], processes, warmupCpuSeconds: null, cpuAvgPercent: null, cpuPeakPercent: null, rssMaxMiB: null, writtenMiBPerMinute: null, durationMs };
  }
  const pct = (a: ProfilerSample, b: ProfilerSample): number => ((b.cpuTicks - a.cpuTicks) / CLOCK_TICKS_PER_SECOND / ((b.atMs - a.atMs) / 1000)) * 100;
  let peak = 0;
  for (let i = 0; i < samples.length; i++) {
    // The shortest span of at least peakWindowMs starting here (or the rest, if shorter).
    let j = i + 1;
    while (j < samples.length - 1 && samples[j]!.atMs - samples[i]!.atMs < peakWindowMs) j++;
    if (j >= samples.length) break;
    peak = Math.max(peak, pct(samples[i]!, samples[j]!));
    if (samples[j]!.atMs - samples[i]!.atMs < peakWindowMs) break;
  }
  return {
    samples: [...samples],
    processes,
    warmupCpuSeconds: null,
    cpuAvgPercent: pct(first, last),
    cpuPeakPercent: peak,
    rssMaxMiB: Math.max(...samples.map((s) => s.rssBytes)) / 1048576,
    writtenMiBPerMinute: (last.writtenBytes - first.writtenBytes) / 1048576 / ((last.atMs - first.atMs) / 60000),
    durationMs,
  };
}
