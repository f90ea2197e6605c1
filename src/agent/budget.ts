// SPDX-License-Identifier: Apache-2.0
/**
 * The agent's budget: own CPU (percent of one core), resident memory and egress per minute, and the
 * documented order in which the agent gives up service to stay inside it (docs/agent.md):
 *
 *   level 0  everything as configured
 *   level 1  sampling frequency halved
 *   level 2  sampling frequency quartered
 *   level 3  user-space symbols only for the 20 busiest processes (the rest keep addresses)
 *   level 4  ... only for the 5 busiest processes
 *   level 5  export interval doubled
 *   level 6  export interval quadrupled
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
  /** What this level gives up, for log lines. */
  description: string;
}

export const DEGRADATION_STEPS: readonly DegradationStep[] = [
  { level: 0, frequencyDivisor: 1, symbolizedProcesses: Infinity, intervalMultiplier: 1, description: 'full service' },
  { level: 1, frequencyDivisor: 2, symbolizedProcesses: Infinity, intervalMultiplier: 1, description: 'sampling frequency halved' },
  { level: 2, frequencyDivisor: 4, symbolizedProcesses: Infinity, intervalMultiplier: 1, description: 'sampling frequency quartered' },
  { level: 3, frequencyDivisor: 4, symbolizedProcesses: 20, intervalMultiplier: 1, description: 'frequency quartered, symbols for the 20 busiest processes only' },
  { level: 4, frequencyDivisor: 4, symbolizedProcesses: 5, intervalMultiplier: 1, description: 'frequency quartered, symbols for the 5 busiest processes only' },
  { level: 5, frequencyDivisor: 4, symbolizedProcesses: 5, intervalMultiplier: 2, description: 'frequency quartered, symbols for 5 processes, export interval doubled' },
  { level: 6, frequencyDivisor: 4, symbolizedProcesses: 5, intervalMultiplier: 4, description: 'frequency quartered, symbols for 5 processes, export interval quadrupled' },
];

export const MAX_LEVEL = DEGRADATION_STEPS.length - 1;
/** Every measure must be below this fraction of its limit before a step back is taken. */
export const RECOVER_FRACTION = 0.5;

export interface Usage {
  cpuPercent: number;
  rssMiB: number;
  egressMiBPerMinute: number;
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

  /** Given the usage measured at `nowMs`, whether to take a step (and which). */
  decide(usage: Usage, nowMs: number): BudgetDecision {
    const over = overBudget(usage, this.budget);
    const settled = nowMs - this.lastChangeMs >= this.budget.windowMs;
    if (over.length > 0 && this.level < MAX_LEVEL && settled) {
      this.level++;
      this.lastChangeMs = nowMs;
      return { change: 'degrade', level: this.level, over };
    }
    if (over.length === 0 && this.level > 0 && settled && comfortablyUnder(usage, this.budget)) {
      this.level--;
      this.lastChangeMs = nowMs;
      return { change: 'recover', level: this.level };
    }
    return { change: 'none', level: this.level, over };
  }
}

interface Reading {
  t: number;
  cpuMicros: number;
  egressBytes: number;
}

/**
 * This process's usage: CPU and egress averaged over the last `windowMs` (from readings taken at
 * each check), RSS as it is now.
 */
export class UsageMeter {
  private readings: Reading[] = [];

  constructor(
    private windowMs: number,
    private readonly egressBytes: () => number,
    private readonly now: () => number = Date.now,
  ) {
    this.read();
  }

  setWindow(windowMs: number): void {
    this.windowMs = windowMs;
  }

  private read(): Reading {
    const u = process.cpuUsage();
    const r = { t: this.now(), cpuMicros: u.user + u.system, egressBytes: this.egressBytes() };
    this.readings.push(r);
    return r;
  }

  measure(): Usage {
    const last = this.read();
    // Keep one reading at or before the window's start, so the window is fully covered.
    while (this.readings.length > 2 && this.readings[1]!.t <= last.t - this.windowMs) this.readings.shift();
    const first = this.readings[0]!;
    const dt = Math.max(1, last.t - first.t);
    return {
      cpuPercent: ((last.cpuMicros - first.cpuMicros) / 1000 / dt) * 100,
      rssMiB: process.memoryUsage.rss() / 1048576,
      egressMiBPerMinute: ((last.egressBytes - first.egressBytes) / 1048576) * (60_000 / dt),
    };
  }
}
