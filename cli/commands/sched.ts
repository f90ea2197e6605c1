// SPDX-License-Identifier: Apache-2.0
/** ebpfprof sched: run-queue latency histograms per CPU and per process; optionally as OTLP metrics. */
import { setTimeout as sleep } from 'node:timers/promises';
import { Command } from 'commander';
import { EbpfprofError } from '../../src/errors';
import { assertCanProfile, assertKernelSupportsProfiling } from '../../src/system/privileges';
import type { AttachMethod } from '../../src/system/kernel-features';
import { buildResourceMetrics } from '../../src/telemetry/otlp-metrics';
import { TracingSession } from '../../src/telemetry/tracing-session';
import { cloneHistogram, formatNs, Log2Histogram, mean, mergeHistogram, quantileUpperBound, renderHistogram, slotUpperBound } from '../../src/trace/histogram';
import type { CpuRunqueue, ProcessRunqueue } from '../../src/trace/runqlat';
import { parseIntegerIn, parsePid } from '../options';
import { interruptSignal, MetricsSender, optionalDuration, parseAttach, printHooks } from './trace-options';
import { addStrictModeOptions, confineAfterLoad, planStrictMode, StrictModeFlags, StrictModePlan } from '../strict-mode';

interface SchedFlags extends StrictModeFlags {
  pid?: string;
  duration?: string;
  json?: boolean;
  top: string;
  otlpEndpoint?: string;
  exportInterval: string;
  attach?: string;
  verbose?: boolean;
  quiet?: boolean;
}

export interface SchedPlan {
  pid?: number;
  durationMs?: number;
  json: boolean;
  top: number;
  otlpEndpoint?: string;
  exportIntervalMs: number;
  prefer?: AttachMethod;
  verbose: boolean;
  quiet: boolean;
  strictMode: StrictModePlan;
}

export function planSched(flags: SchedFlags): SchedPlan {
  const durationMs = optionalDuration(flags.duration);
  const prefer = parseAttach(flags.attach);
  if (flags.otlpEndpoint !== undefined) new MetricsSender(flags.otlpEndpoint); // validates the URL now
  return {
    ...(flags.pid !== undefined ? { pid: parsePid(flags.pid) } : {}),
    ...(durationMs !== undefined ? { durationMs } : {}),
    json: flags.json === true,
    top: parseIntegerIn(flags.top, '--top', 0, 100000),
    ...(flags.otlpEndpoint !== undefined ? { otlpEndpoint: flags.otlpEndpoint } : {}),
    exportIntervalMs: optionalDuration(flags.exportInterval, '--export-interval')!,
    ...(prefer ? { prefer } : {}),
    verbose: flags.verbose === true,
    quiet: flags.quiet === true,
    strictMode: planStrictMode(flags),
  };
}

/** Everything seen over the run, merged across windows. */
export class SchedTotals {
  readonly cpus = new Map<number, Log2Histogram>();
  readonly processes = new Map<string, ProcessRunqueue>();

  add(w: { cpus: CpuRunqueue[]; processes: ProcessRunqueue[] }): void {
    for (const c of w.cpus) {
      const h = this.cpus.get(c.cpu);
      if (h) mergeHistogram(h, c.hist);
      else this.cpus.set(c.cpu, cloneHistogram(c.hist));
    }
    for (const p of w.processes) {
      const k = `${p.pid}:${p.startNs}`;
      const have = this.processes.get(k);
      if (have) mergeHistogram(have.hist, p.hist);
      else this.processes.set(k, { ...p, hist: cloneHistogram(p.hist) });
    }
  }
}

/** One JSON object per aggregate row (documented in the README). */
export function schedJsonRows(t: SchedTotals): object[] {
  const stats = (h: Log2Histogram): object => ({
    count: h.count,
    sumNs: h.sum,
    meanNs: Math.round(mean(h)),
    p50Ns: quantileUpperBound(h, 0.5),
    p99Ns: quantileUpperBound(h, 0.99),
    maxNs: h.max,
    buckets: h.slots.flatMap((count, k) => (count > 0 ? [{ leNs: Number.isFinite(slotUpperBound(k, h.slots.length)) ? slotUpperBound(k, h.slots.length) : null, count }] : [])),
  });
  const rows: object[] = [];
  for (const [cpu, h] of [...t.cpus].sort((a, b) => a[0] - b[0])) rows.push({ kind: 'cpu', cpu, ...stats(h) });
  for (const p of [...t.processes.values()].sort((a, b) => b.hist.count - a.hist.count || a.pid - b.pid)) {
    rows.push({ kind: 'process', pid: p.pid, processStartNs: p.startNs, comm: p.comm, ...stats(p.hist) });
  }
  return rows;
}

export function schedTextLines(t: SchedTotals, top: number): string[] {
  const lines: string[] = [];
  for (const [cpu, h] of [...t.cpus].sort((a, b) => a[0] - b[0])) {
    lines.push(`run-queue latency, CPU ${cpu}: ${h.count} wakeups, mean ${formatNs(mean(h))}, p99 <= ${formatNs(quantileUpperBound(h, 0.99))}, max ${formatNs(h.max)}`);
    lines.push(...renderHistogram(h));
  }
  const procs = [...t.processes.values()].sort((a, b) => b.hist.count - a.hist.count || a.pid - b.pid).slice(0, top || undefined);
  if (procs.length > 0) {
    lines.push('', `${'PID'.padStart(8)}  ${'COMM'.padEnd(16)} ${'COUNT'.padStart(8)} ${'MEAN'.padStart(8)} ${'P50<='.padStart(8)} ${'P99<='.padStart(8)} ${'MAX'.padStart(8)}`);
    for (const p of procs) {
      const h = p.hist;
      lines.push(
        `${String(p.pid).padStart(8)}  ${p.comm.padEnd(16)} ${String(h.count).padStart(8)} ${formatNs(mean(h)).padStart(8)} ${formatNs(quantileUpperBound(h, 0.5)).padStart(8)} ${formatNs(quantileUpperBound(h, 0.99)).padStart(8)} ${formatNs(h.max).padStart(8)}`,
      );
    }
  }
  return lines;
}

export async function runSched(plan: SchedPlan): Promise<number> {
  assertKernelSupportsProfiling();
  assertCanProfile();
  const session = await TracingSession.start({ sched: { ...(plan.pid !== undefined ? { pid: plan.pid } : {}), ...(plan.prefer ? { prefer: plan.prefer } : {}) } });
  if (plan.verbose) printHooks('sched', session.hooks().sched ?? []);
  try {
    confineAfterLoad(plan.strictMode, plan.quiet);
  } catch (e) {
    await session.stopWindow();
    throw e;
  }
  const sender = plan.otlpEndpoint ? new MetricsSender(plan.otlpEndpoint) : null;
  const totals = new SchedTotals();
  const stop = interruptSignal(plan.quiet, 'printing the histograms');
  const started = Date.now();
  const deadline = plan.durationMs === undefined ? Infinity : started + plan.durationMs;
  // Without an exporter the kernel histograms are still drained every few seconds: they are small,
  // but a drain is also when exited processes' rows leave the kernel map.
  const interval = sender ? plan.exportIntervalMs : 5000;
  try {
    while (!stop.signal.aborted) {
      const wait = Math.min(interval, deadline - Date.now());
      if (wait <= 0) break;
      try {
        await sleep(wait, undefined, { signal: stop.signal });
      } catch {
        break;
      }
      if (Date.now() >= deadline) break;
      const w = await session.takeWindow();
      totals.add(w);
      if (sender) await sender.send(buildResourceMetrics(w));
    }
  } finally {
    stop.dispose();
  }
  const last = await session.stopWindow();
  totals.add(last);
  if (sender) await sender.send(buildResourceMetrics(last));
  const st = session.stats().sched;
  if (plan.json) for (const row of schedJsonRows(totals)) process.stdout.write(`${JSON.stringify(row)}\n`);
  else process.stdout.write(`${schedTextLines(totals, plan.top).join('\n')}\n`);
  if (!plan.quiet && st) {
    process.stderr.write(
      `ebpfprof: ${st.latencies} latencies in ${((Date.now() - started) / 1000).toFixed(1)} s; lost: ${st.startFull} (start map full), ${st.procFull} missing from per-process rows, ${st.cpuOutOfRange} from per-CPU rows${sender ? `; OTLP: ${sender.sent} sent, ${sender.failed} failed` : ''}\n`,
    );
  }
  if (sender && sender.failed > 0 && sender.sent === 0) throw new EbpfprofError('EOUTPUT', `no metrics reached ${sender.url}: ${sender.lastError}`);
  return 0;
}

export function registerSched(program: Command): void {
  const command = program
    .command('sched')
    .description('run-queue latency (wakeup to running) histograms per CPU and per process')
    .option('-p, --pid <pid>', 'only this process (all its threads)')
    .option('-d, --duration <time>', 'stop after this long (10s, 2m); default: until Ctrl-C')
    .option('--json', 'one JSON object per CPU and per process (see the README)')
    .option('--top <n>', 'processes shown in the table (0: all)', '20')
    .option('--otlp-endpoint <url>', 'also send the histograms as OTLP metrics (HTTP/protobuf), e.g. http://localhost:4318')
    .option('--export-interval <time>', 'how often to send OTLP metrics', '10s')
    .option('--attach <method>', 'try this attach method first (tp_btf, raw_tp)')
    .option('-v, --verbose', 'say which attach method each hook uses and why')
    .option('-q, --quiet', 'no summary on stderr');
  addStrictModeOptions(command).action(async (flags: SchedFlags) => {
    process.exitCode = await runSched(planSched(flags));
  });
}
