// SPDX-License-Identifier: Apache-2.0
/**
 * TCP and scheduler collection as one running session, for a long-lived caller (the continuous
 * agent, issue 4) or the CLI's --otlp-endpoint: start it next to profiling, call collect() every
 * export interval, send what it returns, stop() at the end.
 *
 *   const session = await TracingSession.start({ tcp: {}, sched: {} });
 *   every interval: await exporter.export(await session.collect());
 *   at the end:     await exporter.export(await session.stop());
 *
 * Each collect() is a delta window (the kernel histograms are drained, TCP rows restart), turned
 * into OTLP ResourceMetrics by buildResourceMetrics(). Per-process state is freed when a window is
 * taken, so exited processes are not carried.
 *
 * A long-lived caller turns collectors on and off while running (enable/disable): a detached
 * collector's last data goes into the next window, and its counters carry over, so that counters
 * stay monotonic across attach cycles. Calls must not overlap (the agent serializes them).
 */
import type { Attributes } from '@opentelemetry/api';
import type { ResourceMetrics } from '@opentelemetry/sdk-metrics';
import * as os from 'node:os';
import type { AttachMethod } from '../system/kernel-features';
import type { HookStatus } from '../trace/attach';
import { cloneHistogram, mergeHistogram } from '../trace/histogram';
import { CpuRunqueue, ProcessRunqueue, RunqueueTracer, RunqueueWindow } from '../trace/runqlat';
import { RunqlatStats } from '../trace/runqlat-records';
import { TcpTracer, TcpTracerStats } from '../trace/tcp';
import { TcpAggregator, TcpRow } from '../trace/tcp-aggregate';
import type { TcpEvent } from '../trace/tcp-records';
import { buildResourceMetrics, MetricsWindow } from './otlp-metrics';

export interface TcpCollectionOptions {
  pid?: number;
  prefer?: AttachMethod;
  /** Every event, decoded (costs a decoding per event: `tcp --json`/`--events`). */
  onEvent?: (e: TcpEvent) => void;
  /** The event that opens each row of a window (TcpAggregator's onNewRow): every process, cheaply. */
  onNewRow?: (e: TcpEvent) => void;
}

export interface TracingSessionOptions {
  /** TCP collection; `pid` limits it to one process. */
  tcp?: TcpCollectionOptions;
  /** Run-queue latency collection; `pid` limits it to one process. */
  sched?: { pid?: number; prefer?: AttachMethod };
  /** Attributes of every resource (host.name by default; the agent adds k8s.* and the like). */
  resource?: Attributes;
}

export interface TracingWindow extends MetricsWindow {
  cpus: CpuRunqueue[];
  processes: ProcessRunqueue[];
  tcp: TcpRow[];
}

export interface TracingSessionStats {
  /** Counters of every TCP tracer this session attached (the current one and detached ones). */
  tcp?: TcpTracerStats;
  /** Likewise for run-queue latency. */
  sched?: RunqlatStats;
  windows: number;
  /** Attaches done per collector (a toggled collector counts each time). */
  attaches: { tcp: number; sched: number };
}

export type TracingCollector = 'tcp' | 'sched';

function addCounters<T extends object>(a: T | undefined, b: T): T {
  if (a === undefined) return { ...b };
  const out = { ...a } as Record<string, number>;
  for (const [k, v] of Object.entries(b) as Array<[string, number]>) out[k] = (out[k] ?? 0) + v;
  return out as T;
}

export class TracingSession {
  private windowStart = Date.now();
  private windows = 0;
  private tcp: TcpTracer | null = null;
  private sched: RunqueueTracer | null = null;
  private readonly tcpRows = new TcpAggregator();
  /** Run-queue latencies read when a tracer was detached, for the next window. */
  private schedLeftover: RunqueueWindow = { cpus: [], processes: [] };
  private tcpRetired: TcpTracerStats | undefined;
  private schedRetired: RunqlatStats | undefined;
  private retiredRunTimeNs = { tcp: 0, sched: 0 };
  private readonly attaches = { tcp: 0, sched: 0 };

  private constructor(private readonly resource: Attributes) {}

  static async start(options: TracingSessionOptions): Promise<TracingSession> {
    const session = new TracingSession(options.resource ?? { 'host.name': os.hostname() });
    try {
      if (options.tcp) await session.enable('tcp', options.tcp);
      if (options.sched) await session.enable('sched', options.sched);
    } catch (e) {
      await session.stopWindow();
      throw e;
    }
    return session;
  }

  /** Which collectors are attached now. */
  get enabled(): { tcp: boolean; sched: boolean } {
    return { tcp: this.tcp !== null, sched: this.sched !== null };
  }

  /** Attaches a collector (no-op when it is attached). Throws as TcpTracer/RunqueueTracer.open do. */
  async enable(which: 'tcp', options?: NonNullable<TracingSessionOptions['tcp']>): Promise<void>;
  async enable(which: 'sched', options?: NonNullable<TracingSessionOptions['sched']>): Promise<void>;
  async enable(which: TracingCollector, options: NonNullable<TracingSessionOptions['tcp']> | NonNullable<TracingSessionOptions['sched']> = {}): Promise<void> {
    if (which === 'tcp') {
      if (this.tcp) return;
      const o = options as NonNullable<TracingSessionOptions['tcp']>;
      const onEvent = o.onEvent;
      const rows = this.tcpRows;
      rows.onNewRow = o.onNewRow ?? null;
      this.tcp = await TcpTracer.open({
        ...(o.pid !== undefined ? { pid: o.pid } : {}),
        ...(o.prefer ? { prefer: o.prefer } : {}),
        // Without a per-event consumer, records go to the rows undecoded (TcpAggregator.addRecord).
        onEvent: onEvent
          ? (e) => {
              rows.add(e);
              onEvent(e);
            }
          : { raw: (rec) => rows.addRecord(rec) },
      });
      this.attaches.tcp++;
    } else {
      if (this.sched) return;
      const o = options as NonNullable<TracingSessionOptions['sched']>;
      this.sched = await RunqueueTracer.open({ ...(o.pid !== undefined ? { pid: o.pid } : {}), ...(o.prefer ? { prefer: o.prefer } : {}) });
      this.attaches.sched++;
    }
  }

  /** Detaches a collector; what it saw until now goes into the next window. */
  async disable(which: TracingCollector): Promise<void> {
    if (which === 'tcp') {
      const t = this.tcp;
      if (!t) return;
      this.tcp = null;
      await t.close(); // delivers the events read before: they land in tcpRows
      this.tcpRetired = addCounters(this.tcpRetired, t.stats());
      this.retiredRunTimeNs.tcp += t.runTimeNs();
    } else {
      const r = this.sched;
      if (!r) return;
      this.sched = null;
      const rest = await r.close();
      this.schedLeftover = { cpus: [...this.schedLeftover.cpus, ...rest.cpus], processes: [...this.schedLeftover.processes, ...rest.processes] };
      this.schedRetired = addCounters(this.schedRetired, r.stats());
      this.retiredRunTimeNs.sched += r.runTimeNs();
    }
  }

  /** How each hook is attached, per collector (for --verbose and the agent's health output). */
  hooks(): { tcp?: HookStatus[]; sched?: HookStatus[] } {
    return { ...(this.tcp ? { tcp: this.tcp.hooks } : {}), ...(this.sched ? { sched: this.sched.hooks } : {}) };
  }

  /** What happened since the previous window, as plain data. */
  async takeWindow(): Promise<TracingWindow> {
    const endMs = Date.now();
    const sched = this.sched ? await this.sched.drain() : { cpus: [], processes: [] };
    return this.window(endMs, sched);
  }

  private window(endMs: number, sched: RunqueueWindow): TracingWindow {
    const left = this.schedLeftover;
    this.schedLeftover = { cpus: [], processes: [] };
    const w: TracingWindow = {
      startMs: this.windowStart,
      endMs,
      cpus: mergeCpus([...left.cpus, ...sched.cpus]),
      processes: mergeProcesses([...left.processes, ...sched.processes]),
      tcp: this.tcpRows.take(),
    };
    this.windowStart = endMs;
    this.windows++;
    return w;
  }

  /** The next window as OTLP ResourceMetrics. */
  async collect(): Promise<ResourceMetrics[]> {
    return buildResourceMetrics(await this.takeWindow(), this.resource);
  }

  stats(): TracingSessionStats {
    const tcp = this.tcp ? addCounters(this.tcpRetired, this.tcp.stats()) : this.tcpRetired;
    const sched = this.sched ? addCounters(this.schedRetired, this.sched.stats()) : this.schedRetired;
    return { ...(tcp ? { tcp } : {}), ...(sched ? { sched } : {}), windows: this.windows, attaches: { ...this.attaches } };
  }

  /**
   * In-kernel run time of the collectors' programs since this session started, ns, per collector
   * (0 unless the kernel's run-time statistics are on).
   */
  runTimeNs(): { tcp: number; sched: number } {
    return {
      tcp: this.retiredRunTimeNs.tcp + (this.tcp?.runTimeNs() ?? 0),
      sched: this.retiredRunTimeNs.sched + (this.sched?.runTimeNs() ?? 0),
    };
  }

  /** Detaches everything and returns the last window. */
  async stopWindow(): Promise<TracingWindow> {
    const endMs = Date.now();
    await this.disable('tcp');
    await this.disable('sched');
    return this.window(endMs, { cpus: [], processes: [] });
  }

  async stop(): Promise<ResourceMetrics[]> {
    return buildResourceMetrics(await this.stopWindow(), this.resource);
  }
}

/** Rows of one CPU from two sources (a detached tracer's rest and the current drain) as one. */
function mergeCpus(rows: CpuRunqueue[]): CpuRunqueue[] {
  const by = new Map<number, CpuRunqueue>();
  for (const r of rows) {
    const have = by.get(r.cpu);
    if (have) mergeHistogram(have.hist, r.hist);
    else by.set(r.cpu, { cpu: r.cpu, hist: cloneHistogram(r.hist) });
  }
  return [...by.values()].sort((a, b) => a.cpu - b.cpu);
}

function mergeProcesses(rows: ProcessRunqueue[]): ProcessRunqueue[] {
  const by = new Map<string, ProcessRunqueue>();
  for (const r of rows) {
    const k = `${r.pid}:${r.startNs}`;
    const have = by.get(k);
    if (have) mergeHistogram(have.hist, r.hist);
    else by.set(k, { ...r, hist: cloneHistogram(r.hist) });
  }
  return [...by.values()];
}
