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
 */
import type { Attributes } from '@opentelemetry/api';
import type { ResourceMetrics } from '@opentelemetry/sdk-metrics';
import * as os from 'node:os';
import type { AttachMethod } from '../system/kernel-features';
import type { HookStatus } from '../trace/attach';
import { CpuRunqueue, ProcessRunqueue, RunqueueTracer } from '../trace/runqlat';
import { RunqlatStats } from '../trace/runqlat-records';
import { TcpTracer, TcpTracerStats } from '../trace/tcp';
import { TcpAggregator, TcpRow } from '../trace/tcp-aggregate';
import type { TcpEvent } from '../trace/tcp-records';
import { buildResourceMetrics, MetricsWindow } from './otlp-metrics';

export interface TracingSessionOptions {
  /** TCP collection; `pid` limits it to one process. */
  tcp?: { pid?: number; prefer?: AttachMethod; onEvent?: (e: TcpEvent) => void };
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
  tcp?: TcpTracerStats;
  sched?: RunqlatStats;
  windows: number;
}

export class TracingSession {
  private windowStart = Date.now();
  private windows = 0;

  private constructor(
    private readonly tcp: TcpTracer | null,
    private readonly tcpRows: TcpAggregator,
    private readonly sched: RunqueueTracer | null,
    private readonly resource: Attributes,
  ) {}

  static async start(options: TracingSessionOptions): Promise<TracingSession> {
    const rows = new TcpAggregator();
    let tcp: TcpTracer | null = null;
    let sched: RunqueueTracer | null = null;
    try {
      if (options.tcp) {
        const onEvent = options.tcp.onEvent;
        tcp = await TcpTracer.open({
          ...(options.tcp.pid !== undefined ? { pid: options.tcp.pid } : {}),
          ...(options.tcp.prefer ? { prefer: options.tcp.prefer } : {}),
          onEvent: (e) => {
            rows.add(e);
            onEvent?.(e);
          },
        });
      }
      if (options.sched) {
        sched = await RunqueueTracer.open({
          ...(options.sched.pid !== undefined ? { pid: options.sched.pid } : {}),
          ...(options.sched.prefer ? { prefer: options.sched.prefer } : {}),
        });
      }
    } catch (e) {
      await tcp?.close();
      await sched?.close();
      throw e;
    }
    return new TracingSession(tcp, rows, sched, options.resource ?? { 'host.name': os.hostname() });
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

  private window(endMs: number, sched: { cpus: CpuRunqueue[]; processes: ProcessRunqueue[] }): TracingWindow {
    const w: TracingWindow = { startMs: this.windowStart, endMs, cpus: sched.cpus, processes: sched.processes, tcp: this.tcpRows.take() };
    this.windowStart = endMs;
    this.windows++;
    return w;
  }

  /** The next window as OTLP ResourceMetrics. */
  async collect(): Promise<ResourceMetrics[]> {
    return buildResourceMetrics(await this.takeWindow(), this.resource);
  }

  stats(): TracingSessionStats {
    return { ...(this.tcp ? { tcp: this.tcp.stats() } : {}), ...(this.sched ? { sched: this.sched.stats() } : {}), windows: this.windows };
  }

  /** Detaches everything and returns the last window. */
  async stopWindow(): Promise<TracingWindow> {
    const endMs = Date.now();
    await this.tcp?.close();
    const sched = this.sched ? await this.sched.close() : { cpus: [], processes: [] };
    return this.window(endMs, sched);
  }

  async stop(): Promise<ResourceMetrics[]> {
    return buildResourceMetrics(await this.stopWindow(), this.resource);
  }
}
