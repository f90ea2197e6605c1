// SPDX-License-Identifier: Apache-2.0
/**
 * Tracing results as OTLP metrics: one window of run-queue latency and TCP rows becomes
 * ResourceMetrics (the SDK's data model) that @opentelemetry/otlp-transformer serializes to an
 * ExportMetricsServiceRequest.
 *
 * Modelling (names and attributes are documented in docs/tracing.md):
 * - Resources: the host (per-CPU run-queue latency), and one per observed process with the
 *   semantic-convention attributes process.pid and process.executable.name (the kernel's comm),
 *   both on top of the caller's base attributes (host.name, k8s.* from the agent, ...).
 * - Histograms are explicit-bucket with bounds 2^k ns written in seconds: exactly the kernel's
 *   log2 slots (src/trace/histogram.ts), so no re-bucketing. Durations are in seconds ("s") as the
 *   semantic conventions ask.
 * - Temporality is DELTA: each window holds what happened since the previous one (the kernel maps
 *   are drained), and a process that exited is not carried forever.
 * - Semantic-convention names where they exist (attributes: server.address, server.port,
 *   client.address, network.transport, network.type, network.io.direction, error.type,
 *   cpu.logical_number); ebpfprof.* metric names otherwise, since no convention covers run-queue
 *   latency or per-connection TCP statistics.
 */
import type { Attributes, HrTime } from '@opentelemetry/api';
import { ProtobufMetricsSerializer } from '@opentelemetry/otlp-transformer';
import { resourceFromAttributes } from '@opentelemetry/resources';
import { AggregationTemporality, DataPointType, type DataPoint, type Histogram, type MetricData, type ResourceMetrics } from '@opentelemetry/sdk-metrics';
import * as os from 'node:os';
import { ebpfprofVersion } from '../encode/speedscope';
import type { Log2Histogram } from '../trace/histogram';
import type { CpuRunqueue, ProcessRunqueue } from '../trace/runqlat';
import type { TcpRow } from '../trace/tcp-aggregate';

/** Metric names; see docs/tracing.md for their meaning. */
export const METRIC = {
  runqueueLatency: 'ebpfprof.sched.runqueue.latency',
  tcpConnectDuration: 'ebpfprof.tcp.connect.duration',
  tcpConnectFailures: 'ebpfprof.tcp.connect.failures',
  tcpConnectionDuration: 'ebpfprof.tcp.connection.duration',
  tcpRtt: 'ebpfprof.tcp.rtt',
  tcpConnectionIo: 'ebpfprof.tcp.connection.io',
  tcpRetransmits: 'ebpfprof.tcp.retransmits',
  tcpResets: 'ebpfprof.tcp.resets',
} as const;

export interface MetricsWindow {
  /** Window start and end, ms since the epoch. */
  startMs: number;
  endMs: number;
  cpus?: CpuRunqueue[];
  processes?: ProcessRunqueue[];
  tcp?: TcpRow[];
}

const hr = (ms: number): HrTime => [Math.floor(ms / 1000), Math.round((ms % 1000) * 1e6)];

/** Explicit bucket bounds in seconds for log2 ns slots: 2^0 .. 2^(n-2) ns. */
export function log2BoundsSeconds(slotCount: number): number[] {
  const out: number[] = [];
  for (let k = 0; k < slotCount - 1; k++) out.push(2 ** k / 1e9);
  return out;
}

function histogramPoint(h: Log2Histogram, attributes: Attributes, w: MetricsWindow): DataPoint<Histogram> {
  return {
    startTime: hr(w.startMs),
    endTime: hr(w.endMs),
    attributes,
    value: { buckets: { boundaries: log2BoundsSeconds(h.slots.length), counts: h.slots.slice() }, sum: h.sum / 1e9, count: h.count, max: h.max / 1e9 },
  };
}

function histogram(name: string, description: string, points: Array<ReturnType<typeof histogramPoint>>): MetricData {
  return {
    descriptor: { name, description, unit: 's', valueType: 1 /* DOUBLE */ },
    aggregationTemporality: AggregationTemporality.DELTA,
    dataPointType: DataPointType.HISTOGRAM,
    dataPoints: points,
  };
}

function sum(name: string, description: string, unit: string, points: Array<{ attributes: Attributes; value: number }>, w: MetricsWindow): MetricData {
  return {
    descriptor: { name, description, unit, valueType: 0 /* INT */ },
    aggregationTemporality: AggregationTemporality.DELTA,
    dataPointType: DataPointType.SUM,
    isMonotonic: true,
    dataPoints: points.map((p) => ({ startTime: hr(w.startMs), endTime: hr(w.endMs), attributes: p.attributes, value: p.value })),
  };
}

function processKeyOf(pid: number, startNs: number): string {
  return `${pid}:${startNs}`;
}

function tcpAttributes(r: TcpRow): Attributes {
  const a: Attributes = { 'network.transport': 'tcp', 'network.type': r.family === 4 ? 'ipv4' : 'ipv6', 'server.port': r.servicePort };
  if (r.role === 'passive') {
    a['client.address'] = r.peerAddress;
    a['ebpfprof.tcp.role'] = 'server';
  } else {
    a['server.address'] = r.peerAddress;
    a['ebpfprof.tcp.role'] = 'client';
  }
  return a;
}

/** A process as the tracers name it: pid and start time (ns since boot), and its comm. */
export interface TracedProcess {
  pid: number;
  startNs: number;
  comm: string;
}

/**
 * Resource attributes of a traced process, or null to leave its metrics out (the agent's process
 * filter). Without one, a process's resource is the base attributes plus process.pid and
 * process.executable.name (the comm).
 */
export type ProcessResourceOf = (p: TracedProcess) => Attributes | null;

/**
 * The window as ResourceMetrics: the host's first (per-CPU latency), then one per process. Empty
 * resources are left out.
 */
export function buildResourceMetrics(w: MetricsWindow, base: Attributes = { 'host.name': os.hostname() }, processResource?: ProcessResourceOf): ResourceMetrics[] {
  const scope = { name: 'ebpfprof', version: ebpfprofVersion() };
  const out: ResourceMetrics[] = [];
  if (w.cpus && w.cpus.length > 0) {
    out.push({
      resource: resourceFromAttributes(base),
      scopeMetrics: [
        {
          scope,
          metrics: [
            histogram(
              METRIC.runqueueLatency,
              'Time from a task becoming runnable (woken or preempted) to it running, per CPU',
              w.cpus.map((c) => histogramPoint(c.hist, { 'cpu.logical_number': c.cpu }, w)),
            ),
          ],
        },
      ],
    });
  }

  interface Proc {
    pid: number;
    startNs: number;
    comm: string;
    metrics: MetricData[];
  }
  const procs = new Map<string, Proc>();
  const proc = (pid: number, startNs: number, comm: string): Proc => {
    const k = processKeyOf(pid, startNs);
    let p = procs.get(k);
    if (!p) {
      p = { pid, startNs, comm, metrics: [] };
      procs.set(k, p);
    }
    return p;
  };
  for (const r of w.processes ?? []) {
    proc(r.pid, r.startNs, r.comm).metrics.push(
      histogram(METRIC.runqueueLatency, 'Time from a thread of the process becoming runnable to it running', [histogramPoint(r.hist, {}, w)]),
    );
  }
  const byProc = new Map<string, TcpRow[]>();
  for (const r of w.tcp ?? []) {
    const k = processKeyOf(r.pid, r.processStartNs);
    proc(r.pid, r.processStartNs, r.comm);
    let list = byProc.get(k);
    if (!list) byProc.set(k, (list = []));
    list.push(r);
  }
  for (const [k, rows] of byProc) {
    const p = procs.get(k)!;
    const connects = rows.filter((r) => r.connects > 0);
    if (connects.length) p.metrics.push(histogram(METRIC.tcpConnectDuration, 'Time from SYN sent to connection established', connects.map((r) => histogramPoint(r.connectLatency, tcpAttributes(r), w))));
    const failures = rows.flatMap((r) => Object.entries(r.failures).map(([err, n]) => ({ attributes: { ...tcpAttributes(r), 'error.type': err || '_OTHER' }, value: n })));
    if (failures.length) p.metrics.push(sum(METRIC.tcpConnectFailures, 'Connects that ended before the connection was established', '{connect}', failures, w));
    const closed = rows.filter((r) => r.closes > 0);
    if (closed.length) {
      p.metrics.push(histogram(METRIC.tcpConnectionDuration, 'Lifetime of connections that closed, from SYN sent or accept to close', closed.filter((r) => r.lifetime.count > 0).map((r) => histogramPoint(r.lifetime, tcpAttributes(r), w))));
      const withRtt = closed.filter((r) => r.rtt.count > 0);
      if (withRtt.length) p.metrics.push(histogram(METRIC.tcpRtt, 'Smoothed round-trip time of connections that closed', withRtt.map((r) => histogramPoint(r.rtt, tcpAttributes(r), w))));
      p.metrics.push(
        sum(
          METRIC.tcpConnectionIo,
          'Data bytes of connections that closed',
          'By',
          closed.flatMap((r) => [
            { attributes: { ...tcpAttributes(r), 'network.io.direction': 'transmit' }, value: r.bytesSent },
            { attributes: { ...tcpAttributes(r), 'network.io.direction': 'receive' }, value: r.bytesReceived },
          ]),
          w,
        ),
      );
    }
    const retrans = rows.filter((r) => r.retransmits > 0);
    if (retrans.length) p.metrics.push(sum(METRIC.tcpRetransmits, 'Retransmitted segments', '{segment}', retrans.map((r) => ({ attributes: tcpAttributes(r), value: r.retransmits })), w));
    const resets = rows.flatMap((r) => [
      ...(r.resetsReceived ? [{ attributes: { ...tcpAttributes(r), 'ebpfprof.tcp.reset.direction': 'received' }, value: r.resetsReceived }] : []),
      ...(r.resetsSent ? [{ attributes: { ...tcpAttributes(r), 'ebpfprof.tcp.reset.direction': 'sent' }, value: r.resetsSent }] : []),
    ]);
    if (resets.length) p.metrics.push(sum(METRIC.tcpResets, 'TCP resets received and sent', '{reset}', resets, w));
  }
  for (const p of procs.values()) {
    if (p.metrics.length === 0) continue;
    // pid 0: accepted connections reset before their process touched them; no process resource.
    let attrs: Attributes | null;
    if (p.pid === 0) attrs = { ...base };
    else if (processResource) attrs = processResource({ pid: p.pid, startNs: p.startNs, comm: p.comm });
    else attrs = { ...base, 'process.pid': p.pid, 'process.executable.name': p.comm };
    if (attrs === null) continue;
    out.push({ resource: resourceFromAttributes(attrs), scopeMetrics: [{ scope, metrics: p.metrics }] });
  }
  return out;
}

/** Data points in resources (what an OTLP partial success counts as rejected). */
export function countDataPoints(resources: readonly ResourceMetrics[]): number {
  let n = 0;
  for (const r of resources) for (const s of r.scopeMetrics) for (const m of s.metrics) n += m.dataPoints.length;
  return n;
}

/**
 * One ExportMetricsServiceRequest holding every resource. The transformer serializes one
 * ResourceMetrics per request; repeated fields of concatenated protobuf messages merge, so the
 * concatenation is the request with all of them (a decoder reads resource_metrics in order).
 */
export function encodeMetricsRequest(resources: ResourceMetrics[]): Buffer {
  const parts: Buffer[] = [];
  for (const rm of resources) {
    const bytes = ProtobufMetricsSerializer.serializeRequest(rm);
    if (bytes) parts.push(Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength));
  }
  return Buffer.concat(parts);
}
