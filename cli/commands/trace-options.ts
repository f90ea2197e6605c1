// SPDX-License-Identifier: Apache-2.0
/** What `offcpu`, `sched` and `tcp` share: time thresholds, --attach, --verbose lines, Ctrl-C, OTLP export. */
import { EbpfprofError, errorMessage } from '../../src/errors';
import type { AttachMethod } from '../../src/system/kernel-features';
import { OtlpHttpMetricsExporter } from '../../src/telemetry/otlp-http';
import type { ResourceMetrics } from '@opentelemetry/sdk-metrics';
import { describeHooks, type HookStatus } from '../../src/trace/attach';
import { parseDuration } from '../options';

export const ATTACH_METHODS: readonly AttachMethod[] = ['tp_btf', 'tracepoint', 'raw_tp', 'fentry', 'kprobe'];

const NS: Record<string, number> = { ns: 1, us: 1e3, µs: 1e3, ms: 1e6, s: 1e9 };

/** "1ms", "250us", "0", "2s" -> ns. A bare number means milliseconds (as offcputime's -m). */
export function parseTimeThreshold(text: string, flag: string): number {
  const m = /^\s*(\d+(?:\.\d+)?)\s*(ns|us|µs|ms|s)?\s*$/.exec(text);
  if (!m) throw new EbpfprofError('EBADARG', `${flag} must be a time such as 1ms, 250us or 0, got ${JSON.stringify(text)}`);
  const ns = Number(m[1]) * NS[m[2] ?? 'ms']!;
  if (!Number.isFinite(ns) || ns > 3600e9) throw new EbpfprofError('EBADARG', `${flag} must be at most 1h, got ${JSON.stringify(text)}`);
  return Math.round(ns);
}

export function parseAttach(text: string | undefined): AttachMethod | undefined {
  if (text === undefined) return undefined;
  if (!(ATTACH_METHODS as readonly string[]).includes(text)) {
    throw new EbpfprofError('EBADARG', `--attach must be one of ${ATTACH_METHODS.join(', ')}, got ${JSON.stringify(text)}`);
  }
  return text as AttachMethod;
}

export function optionalDuration(text: string | undefined, flag = '--duration'): number | undefined {
  return text === undefined ? undefined : parseDuration(text, flag);
}

export function printHooks(what: string, hooks: HookStatus[]): void {
  for (const line of describeHooks(what, hooks)) process.stderr.write(`ebpfprof: ${line}\n`);
}

/** An AbortSignal that Ctrl-C (or SIGTERM) aborts; a second Ctrl-C quits at once. */
export function interruptSignal(quiet: boolean, what: string): { signal: AbortSignal; dispose: () => void } {
  const abort = new AbortController();
  let n = 0;
  const on = (): void => {
    n++;
    if (n > 1) process.exit(130);
    if (!quiet) process.stderr.write(`\nebpfprof: stopping, ${what} (Ctrl-C again to quit at once)\n`);
    abort.abort();
  };
  process.on('SIGINT', on);
  process.on('SIGTERM', on);
  return {
    signal: abort.signal,
    dispose: () => {
      process.off('SIGINT', on);
      process.off('SIGTERM', on);
    },
  };
}

/** Sends windows to --otlp-endpoint; failures are reported on stderr and counted, never fatal mid-run. */
export class MetricsSender {
  private readonly exporter: OtlpHttpMetricsExporter;
  sent = 0;
  failed = 0;
  lastError = '';

  constructor(endpoint: string) {
    this.exporter = new OtlpHttpMetricsExporter(endpoint);
  }

  get url(): string {
    return this.exporter.url.href;
  }

  async send(resources: ResourceMetrics[]): Promise<void> {
    try {
      const r = await this.exporter.export(resources);
      this.sent++;
      if (r.rejectedDataPoints > 0) process.stderr.write(`ebpfprof: the OTLP receiver rejected ${r.rejectedDataPoints} data points: ${r.message}\n`);
    } catch (e) {
      this.failed++;
      this.lastError = errorMessage(e);
      process.stderr.write(`ebpfprof: ${this.lastError}\n`);
    }
  }
}
