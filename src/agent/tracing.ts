// SPDX-License-Identifier: Apache-2.0
/**
 * The agent's tracing: TCP and run-queue latency collection next to profiling, exported as OTLP
 * metrics every export window. The collectors are the CLI's (src/telemetry/tracing-session.ts over
 * bpf/tcp.bpf.c and bpf/runqlat.bpf.c); this module decides which are attached (the configuration,
 * less what the budget took away), attaches and detaches them while the agent runs, turns each window
 * into ResourceMetrics with the agent's resource attributes, and reports what they cost and lost.
 *
 * Cost: the tracers' hooks run in the context of the tasks they observe (every context switch for
 * run-queue latency, every TCP state change and received segment for TCP), so their cost never shows
 * in the agent's own CPU time. While a tracer is attached the agent keeps the kernel's per-program
 * run-time accounting on (BPF_ENABLE_STATS, needs CAP_SYS_ADMIN; or kernel.bpf_stats_enabled=1 set
 * by the operator) so that the budget sees it; without either it is not counted, which /status and
 * ebpfprof_agent_bpf_run_time_counted say.
 *
 * Calls must not overlap: the agent runs them on its serialized task chain.
 */
import * as fs from 'node:fs';
import type { ResourceMetrics } from '@opentelemetry/sdk-metrics';
import type { Attributes } from '../encode/otlp/semconv';
import { errorMessage, isSystemError } from '../errors';
import { loadAddon } from '../native/addon';
import { buildResourceMetrics, type ProcessResourceOf } from '../telemetry/otlp-metrics';
import { TracingCollector, TracingSession, TracingSessionStats, TracingWindow } from '../telemetry/tracing-session';
import type { HookStatus } from '../trace/attach';
import type { TcpEvent } from '../trace/tcp-records';
import type { MetricPoint } from './metrics';

export interface TracingWanted {
  tcp: boolean;
  sched: boolean;
}

export interface AgentTracingOptions {
  log: (line: string) => void;
  /**
   * The TCP event that opens each row of a window: every process's first event, while it lives (the
   * agent reads the process's resource attributes then). Not called for every event.
   */
  onTcpRow?: (e: TcpEvent) => void;
}

/** Per collector: attached or not, and why not. */
export interface CollectorStatus {
  /** Wanted by the configuration. */
  configured: boolean;
  /** Attached now. */
  attached: boolean;
  /** Why it is not attached although configured: the budget, or the attach error. */
  detachedBecause: string | null;
  hooks: HookStatus[];
}

const COLLECTORS: readonly TracingCollector[] = ['sched', 'tcp'];
const NAMES: Record<TracingCollector, string> = { tcp: 'TCP tracing', sched: 'run-queue latency tracing' };

export class AgentTracing {
  private session: TracingSession | null = null;
  private configured: TracingWanted = { tcp: false, sched: false };
  private readonly budgetOff: TracingWanted = { tcp: false, sched: false };
  private readonly attachError: Record<TracingCollector, string | null> = { tcp: null, sched: null };
  private readonly lastHooks: Record<TracingCollector, HookStatus[]> = { tcp: [], sched: [] };
  private statsFd: number | null = null;
  private statsNote: string | null = null;
  attachFailures = 0;
  /** Traced processes whose metrics the process filter left out. */
  processesFiltered = 0;

  constructor(private readonly options: AgentTracingOptions) {}

  /**
   * Attaches and detaches collectors so that those configured and not given up by the budget run.
   * An attach failure is logged and counted, never thrown: profiling goes on, and the next change
   * (reload, control endpoint, budget recovery) tries again.
   */
  async apply(configured: TracingWanted, budgetOff: TracingWanted, reason: string): Promise<void> {
    this.configured = { ...configured };
    Object.assign(this.budgetOff, budgetOff);
    const session = await this.ensureSession();
    for (const c of COLLECTORS) {
      const want = configured[c] && !budgetOff[c];
      const have = session.enabled[c];
      if (want && !have) {
        try {
          if (c === 'tcp') await session.enable('tcp', this.options.onTcpRow ? { onNewRow: this.options.onTcpRow } : {});
          else await session.enable('sched');
          this.attachError[c] = null;
          this.lastHooks[c] = session.hooks()[c] ?? [];
          this.options.log(`${reason}: ${NAMES[c]} attached (${this.lastHooks[c].map((h) => `${h.hook} via ${h.method ?? 'nothing'}`).join(', ')})`);
        } catch (e) {
          this.attachFailures++;
          this.attachError[c] = errorMessage(e).split('\n')[0]!;
          this.options.log(`${reason}: ${NAMES[c]} cannot be attached, profiling goes on without it: ${this.attachError[c]}`);
        }
      } else if (!want && have) {
        await session.disable(c);
        this.options.log(`${reason}: ${NAMES[c]} detached${configured[c] ? ' (budget)' : ''}`);
      }
      if (!configured[c]) this.attachError[c] = null;
    }
    this.runTimeStats(session.enabled.tcp || session.enabled.sched);
  }

  private async ensureSession(): Promise<TracingSession> {
    this.session ??= await TracingSession.start({});
    return this.session;
  }

  /** Keeps the kernel's run-time accounting on while a tracer is attached (see the module comment). */
  private runTimeStats(on: boolean): void {
    if (on && this.statsFd === null) {
      try {
        this.statsFd = loadAddon().enableRunTimeStats();
        this.statsNote = null;
      } catch (e) {
        if (kernelCountsRunTime()) this.statsNote = null;
        else if (this.statsNote === null) {
          this.statsNote = `the in-kernel cost of the tracers is not counted in the CPU budget: BPF_ENABLE_STATS failed (${isSystemError(e) ? e.code : errorMessage(e)}; it needs CAP_SYS_ADMIN) and kernel.bpf_stats_enabled is 0 (sysctl -w kernel.bpf_stats_enabled=1 turns it on)`;
          this.options.log(this.statsNote);
        }
      }
    } else if (!on && this.statsFd !== null) {
      loadAddon().closeFd(this.statsFd);
      this.statsFd = null;
    }
  }

  /** Whether the kernel counts the run time of BPF programs now. */
  get runTimeCounted(): boolean {
    return this.statsFd !== null || kernelCountsRunTime();
  }

  /** What the collectors saw since the previous window (null when nothing is or was attached). */
  async takeWindow(): Promise<TracingWindow | null> {
    if (!this.session) return null;
    const w = await this.session.takeWindow();
    return w.cpus.length + w.processes.length + w.tcp.length > 0 ? w : null;
  }

  /**
   * The window as OTLP ResourceMetrics: the node's per-CPU run-queue latency under `host`, each
   * process under `processResource` (null leaves it out: counted in processesFiltered).
   */
  build(w: TracingWindow, host: Attributes, processResource: ProcessResourceOf): ResourceMetrics[] {
    return buildResourceMetrics(w, host, (p) => {
      const a = processResource(p);
      if (a === null) this.processesFiltered++;
      return a;
    });
  }

  /** The collectors' counters, summed over every attach (null before the first). */
  stats(): TracingSessionStats | null {
    return this.session?.stats() ?? null;
  }

  /** In-kernel run time of the collectors' programs since the agent started, ns (0 when not counted). */
  runTimeNs(): { tcp: number; sched: number } {
    return this.session?.runTimeNs() ?? { tcp: 0, sched: 0 };
  }

  status(): Record<TracingCollector, CollectorStatus> & { runTimeCounted: boolean; runTimeNote: string | null } {
    const enabled = this.session?.enabled ?? { tcp: false, sched: false };
    const one = (c: TracingCollector): CollectorStatus => ({
      configured: this.configured[c],
      attached: enabled[c],
      detachedBecause: this.configured[c] && !enabled[c] ? (this.budgetOff[c] ? 'budget' : (this.attachError[c] ?? 'not attached yet')) : null,
      hooks: enabled[c] ? (this.session?.hooks()[c] ?? []) : [],
    });
    return { tcp: one('tcp'), sched: one('sched'), runTimeCounted: this.runTimeCounted, runTimeNote: this.runTimeCounted ? null : this.statsNote };
  }

  /** Self-metrics (ebpfprof_agent_tracing_*): attached, events, what was lost and why, in-kernel cost. */
  metricPoints(p: (name: string, type: MetricPoint['type'], help: string, value: number, labels?: Record<string, string>) => MetricPoint): MetricPoint[] {
    const st = this.session?.stats();
    const enabled = this.session?.enabled ?? { tcp: false, sched: false };
    const ns = this.runTimeNs();
    const tcp = st?.tcp;
    const sched = st?.sched;
    const lost = 'Records or measurements the tracers could not keep, by collector and reason';
    return [
      p('tracing_attached', 'gauge', 'Whether a tracer is attached now (1) or not (0)', enabled.tcp ? 1 : 0, { collector: 'tcp' }),
      p('tracing_attached', 'gauge', 'Whether a tracer is attached now (1) or not (0)', enabled.sched ? 1 : 0, { collector: 'sched' }),
      p('tracing_attach_failures_total', 'counter', 'Attempts to attach a configured tracer that failed (logged)', this.attachFailures),
      p('tracing_events_total', 'counter', 'TCP connects, failed connects and closes seen', (tcp?.connects ?? 0) + (tcp?.connectFailures ?? 0) + (tcp?.closes ?? 0), { collector: 'tcp' }),
      p('tracing_events_total', 'counter', 'Run-queue latencies measured', sched?.latencies ?? 0, { collector: 'sched' }),
      p('tracing_lost_total', 'counter', lost, tcp?.ringBufferFull ?? 0, { collector: 'tcp', reason: 'ring_buffer_full' }),
      p('tracing_lost_total', 'counter', lost, (tcp?.droppedRecords ?? 0) + (tcp?.recordsMalformed ?? 0), { collector: 'tcp', reason: 'records_dropped' }),
      p('tracing_lost_total', 'counter', lost, tcp?.socksFull ?? 0, { collector: 'tcp', reason: 'connection_map_full' }),
      p('tracing_lost_total', 'counter', lost, sched?.startFull ?? 0, { collector: 'sched', reason: 'start_map_full' }),
      p('tracing_lost_total', 'counter', lost, sched?.procFull ?? 0, { collector: 'sched', reason: 'process_map_full' }),
      p('tracing_lost_total', 'counter', lost, sched?.cpuOutOfRange ?? 0, { collector: 'sched', reason: 'cpu_out_of_range' }),
      p('tracing_untracked_connections_total', 'counter', 'TCP connections closed that were opened before the tracer attached (no latency or lifetime)', tcp?.untracked ?? 0),
      p('tracing_bpf_cpu_seconds_total', 'counter', 'In-kernel run time of the tracers\' BPF programs (counted while run-time statistics are on)', ns.tcp / 1e9, { collector: 'tcp' }),
      p('tracing_bpf_cpu_seconds_total', 'counter', 'In-kernel run time of the tracers\' BPF programs (counted while run-time statistics are on)', ns.sched / 1e9, { collector: 'sched' }),
      p('tracing_processes_filtered_total', 'counter', 'Traced processes whose metrics the process filter left out', this.processesFiltered),
    ];
  }

  /** Detaches every collector; returns what they saw since the last window. */
  async close(): Promise<TracingWindow | null> {
    if (!this.session) return null;
    const w = await this.session.stopWindow();
    this.runTimeStats(false);
    return w.cpus.length + w.processes.length + w.tcp.length > 0 ? w : null;
  }
}

function kernelCountsRunTime(): boolean {
  try {
    return fs.readFileSync('/proc/sys/kernel/bpf_stats_enabled', 'utf8').trim() === '1';
  } catch {
    return false;
  }
}
