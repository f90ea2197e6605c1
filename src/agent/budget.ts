// SPDX-License-Identifier: Apache-2.0
/**
 * The agent's budget: own CPU (percent of one core: the agent process plus the in-kernel run time of
 * its BPF programs where the kernel counts it), resident memory and egress per minute, and the
 * documented order in which the agent gives up service to stay inside it (docs/agent.md):
 *
 *   level 0  everything as configured
 *   level 1  run-queue latency tracing detached (if configured)
 *   level 2  TCP tracing detached too (if configured)
 *   level 3  sampling frequency halved
 *   level 4  sampling frequency quartered
 *   level 5  user-space symbols only for the 20 busiest processes (the rest keep addresses)
 *   level 6  ... only for the 5 busiest processes
 *   level 7  export interval doubled
 *   level 8  export interval quadrupled
 *
 * The tracers go first: they are opt-in additions to the agent's purpose (profiles), and their cost
 * follows the workload's activity (every context switch, every TCP segment), which no other step
 * turns down. A level that would give up nothing (a tracer that is not configured) is stepped over,
 * so an agent without tracing goes from level 0 straight to level 3.
 *
 * A step is taken when any measure is over its limit; one step back when every measure is below
 * half of its limit. After each step the controller waits one measuring window before deciding
 * again, so that the effect of a step is measured before the next. BudgetController is pure (it is
 * given the usage and the time); UsageMeter measures this process.
 */
import type { BudgetConfig } from './config';

export interface DegradationStep {
  level: number;
  /** The configured frequency is divided by this (at least 1 Hz remains). */
  frequencyDivisor: number;
  /** Processes whose user frames are symbolized (the busiest of the previous window); Infinity = all. */
  symbolizedProcesses: number;
  /** The configured export interval is multiplied by this. */
  intervalMultiplier: number;
  /** Run-queue latency tracing is detached at this level. */
  schedOff: boolean;
  /** TCP tracing is detached at this level. */
  tcpOff: boolean;
  /** What this level gives up, for log lines. */
  description: string;
}

export const DEGRADATION_STEPS: readonly DegradationStep[] = [
  { level: 0, frequencyDivisor: 1, symbolizedProcesses: Infinity, intervalMultiplier: 1, schedOff: false, tcpOff: false, description: 'full service' },
  { level: 1, frequencyDivisor: 1, symbolizedProcesses: Infinity, intervalMultiplier: 1, schedOff: true, tcpOff: false, description: 'run-queue latency tracing detached' },
  { level: 2, frequencyDivisor: 1, symbolizedProcesses: Infinity, intervalMultiplier: 1, schedOff: true, tcpOff: true, description: 'tracing detached (run-queue latency and TCP)' },
  { level: 3, frequencyDivisor: 2, symbolizedProcesses: Infinity, intervalMultiplier: 1, schedOff: true, tcpOff: true, description: 'tracing detached, sampling frequency halved' },
  { level: 4, frequencyDivisor: 4, symbolizedProcesses: Infinity, intervalMultiplier: 1, schedOff: true, tcpOff: true, description: 'tracing detached, sampling frequency quartered' },
  { level: 5, frequencyDivisor: 4, symbolizedProcesses: 20, intervalMultiplier: 1, schedOff: true, tcpOff: true, description: 'tracing detached, frequency quartered, symbols for the 20 busiest processes only' },
  { level: 6, frequencyDivisor: 4, symbolizedProcesses: 5, intervalMultiplier: 1, schedOff: true, tcpOff: true, description: 'tracing detached, frequency quartered, symbols for the 5 busiest processes only' },
  { level: 7, frequencyDivisor: 4, symbolizedProcesses: 5, intervalMultiplier: 2, schedOff: true, tcpOff: true, description: 'tracing detached, frequency quartered, symbols for 5 processes, export interval doubled' },
  { level: 8, frequencyDivisor: 4, symbolizedProcesses: 5, intervalMultiplier: 4, schedOff: true, tcpOff: true, description: 'tracing detached, frequency quartered, symbols for 5 processes, export interval quadrupled' },
];

/** Which tracers are configured: a level that only detaches tracers that are not running gives up nothing. */
export interface ConfiguredTracers {
  tcp: boolean;
  sched: boolean;
}

/** What `level` gives up with these tracers configured, for log lines ("full service" at 0). */
export function describeLevel(level: number, tracers: ConfiguredTracers): string {
  const step = DEGRADATION_STEPS[level];
  if (!step || level === 0) return 'full service';
  const parts: string[] = [];
  const sched = tracers.sched && step.schedOff;
  const tcp = tracers.tcp && step.tcpOff;
  if (sched && tcp) parts.push('tracing detached (run-queue latency and TCP)');
  else if (sched) parts.push('run-queue latency tracing detached');
  else if (tcp) parts.push('TCP tracing detached');
  if (step.frequencyDivisor === 2) parts.push('sampling frequency halved');
  else if (step.frequencyDivisor === 4) parts.push('sampling frequency quartered');
  if (Number.isFinite(step.symbolizedProcesses)) parts.push(`symbols for the ${step.symbolizedProcesses} busiest processes only`);
  if (step.intervalMultiplier === 2) parts.push('export interval doubled');
  else if (step.intervalMultiplier === 4) parts.push('export interval quadrupled');
  return parts.length > 0 ? parts.join(', ') : 'nothing more than the level below (no tracer configured)';
}

/** Whether `level` gives up something the level below it does not, with these tracers configured. */
export function levelApplies(level: number, tracers: ConfiguredTracers): boolean {
  const step = DEGRADATION_STEPS[level];
  const below = DEGRADATION_STEPS[level - 1];
  if (!step || !below) return level === 0;
  return (
    step.frequencyDivisor !== below.frequencyDivisor ||
    step.symbolizedProcesses !== below.symbolizedProcesses ||
    step.intervalMultiplier !== below.intervalMultiplier ||
    (tracers.sched && step.schedOff !== below.schedOff) ||
    (tracers.tcp && step.tcpOff !== below.tcpOff)
  );
}

export const MAX_LEVEL = DEGRADATION_STEPS.length - 1;
/** Every measure must be below this fraction of its limit before a step back is taken. */
export const RECOVER_FRACTION = 0.5;

export interface Usage {
  /** CPU, % of one core: for a measured usage, processCpuPercent + bpfCpuPercent. */
  cpuPercent: number;
  rssMiB: number;
  egressMiBPerMinute: number;
}

/** What UsageMeter measures: the CPU with its two parts. */
export interface MeasuredUsage extends Usage {
  /** utime + stime of the agent process, % of one core. */
  processCpuPercent: number;
  /** Run time of the agent's BPF programs (charged to the tasks they interrupt), % of one core; 0 when the kernel does not count it. */
  bpfCpuPercent: number;
}

export type BudgetDecision =
  | { change: 'degrade'; level: number; over: string[] }
  | { change: 'recover'; level: number }
  | { change: 'none'; level: number; over: string[] };

/** Which measures are over their limit, as "cpu 4.2% > 3%" phrases. */
export function overBudget(usage: Usage, budget: BudgetConfig): string[] {
  const over: string[] = [];
  if (usage.cpuPercent > budget.cpuPercent) over.push(`cpu ${usage.cpuPercent.toFixed(2)}% > ${budget.cpuPercent}%`);
  if (usage.rssMiB > budget.rssMiB) over.push(`rss ${usage.rssMiB.toFixed(1)} MiB > ${budget.rssMiB} MiB`);
  if (usage.egressMiBPerMinute > budget.egressMiBPerMinute) over.push(`egress ${usage.egressMiBPerMinute.toFixed(3)} MiB/min > ${budget.egressMiBPerMinute} MiB/min`);
  return over;
}

function comfortablyUnder(usage: Usage, budget: BudgetConfig): boolean {
  return (
    usage.cpuPercent < budget.cpuPercent * RECOVER_FRACTION &&
    usage.rssMiB < budget.rssMiB * RECOVER_FRACTION &&
    usage.egressMiBPerMinute < budget.egressMiBPerMinute * RECOVER_FRACTION
  );
}

export class BudgetController {
  private level = 0;
  private lastChangeMs: number;
  private tracers: ConfiguredTracers = { tcp: false, sched: false };

  constructor(
    private budget: BudgetConfig,
    startMs: number,
  ) {
    // The first window includes start-up (kallsyms, first symbol loads): judge only after it.
    this.lastChangeMs = startMs;
  }

  get currentLevel(): number {
    return this.level;
  }

  setBudget(budget: BudgetConfig): void {
    this.budget = budget;
  }

  /** The tracers configured now: levels that would only detach others are stepped over. */
  setTracers(tracers: ConfiguredTracers): void {
    this.tracers = { ...tracers };
  }

  /** The next level up that gives up something, or the current one at the top. */
  private nextUp(): number {
    for (let l = this.level + 1; l <= MAX_LEVEL; l++) if (levelApplies(l, this.tracers)) return l;
    return this.level;
  }

  /** One step back: the level below, or the lowest level that gives the same service as it. */
  private nextDown(): number {
    let l = this.level - 1;
    while (l > 0 && !levelApplies(l, this.tracers)) l--;
    return Math.max(0, l);
  }

  /** Given the usage measured at `nowMs`, whether to take a step (and which). */
  decide(usage: Usage, nowMs: number): BudgetDecision {
    const over = overBudget(usage, this.budget);
    const settled = nowMs - this.lastChangeMs >= this.budget.windowMs;
    const up = this.nextUp();
    if (over.length > 0 && up > this.level && settled) {
      this.level = up;
      this.lastChangeMs = nowMs;
      return { change: 'degrade', level: this.level, over };
    }
    if (over.length === 0 && this.level > 0 && settled && comfortablyUnder(usage, this.budget)) {
      this.level = this.nextDown();
      this.lastChangeMs = nowMs;
      return { change: 'recover', level: this.level };
    }
    return { change: 'none', level: this.level, over };
  }
}

interface Reading {
  t: number;
  cpuMicros: number;
  bpfNs: number;
  egressBytes: number;
}

/**
 * This process's usage: CPU and egress averaged over the last `windowMs` (from readings taken at
 * each check), RSS as it is now. CPU includes the in-kernel run time of the agent's BPF programs
 * (`bpfNs`, cumulative): the tracers' hooks run in the context of the tasks they observe, so that
 * cost never shows in the agent's own utime+stime.
 */
export class UsageMeter {
  private readings: Reading[] = [];

  constructor(
    private windowMs: number,
    private readonly egressBytes: () => number,
    private readonly bpfNs: () => number = () => 0,
    private readonly now: () => number = Date.now,
  ) {
    this.read();
  }

  setWindow(windowMs: number): void {
    this.windowMs = windowMs;
  }

  private read(): Reading {
    const u = process.cpuUsage();
    const r = { t: this.now(), cpuMicros: u.user + u.system, bpfNs: this.bpfNs(), egressBytes: this.egressBytes() };
    this.readings.push(r);
    return r;
  }

  measure(): MeasuredUsage {
    const last = this.read();
    // Keep one reading at or before the window's start, so the window is fully covered.
    while (this.readings.length > 2 && this.readings[1]!.t <= last.t - this.windowMs) this.readings.shift();
    const first = this.readings[0]!;
    const dt = Math.max(1, last.t - first.t);
    const processCpuPercent = ((last.cpuMicros - first.cpuMicros) / 1000 / dt) * 100;
    // A program closed and reopened (a tracer toggled) restarts its counter: never negative.
    const bpfCpuPercent = (Math.max(0, last.bpfNs - first.bpfNs) / 1e6 / dt) * 100;
    return {
      cpuPercent: processCpuPercent + bpfCpuPercent,
      processCpuPercent,
      bpfCpuPercent,
      rssMiB: process.memoryUsage.rss() / 1048576,
      egressMiBPerMinute: ((last.egressBytes - first.egressBytes) / 1048576) * (60_000 / dt),
    };
  }
}
