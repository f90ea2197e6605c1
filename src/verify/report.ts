// SPDX-License-Identifier: Apache-2.0
/**
 * THE schema of `non_intrusive_report.json` (documented field by field in docs/verify.md), the
 * verdict (exit status) and the summary printed at the end of `ebpfprof verify`.
 */
import type { Severity } from './capability-matrix';

export type { Severity } from './capability-matrix';

export const REPORT_SCHEMA = 'ebpfprof.verify/v1';

export type CheckStatus = 'pass' | 'fail' | 'skipped';

/** A threshold: `value op limit` must hold for the check to pass (op '==' for equality checks). */
export interface Threshold {
  op: '<' | '<=' | '==' | 'none';
  limit: number | string | null;
  unit: string;
}

/** One finding of a check that failed: what was seen, where, and how bad. */
export interface Finding {
  severity: Severity;
  /** Names the cause: the file, the thread, the capability, the tracer, the manifest object. */
  message: string;
  /** Machine-readable details (path, pid, capability, ...). */
  evidence?: Record<string, unknown>;
}

export interface CheckResult {
  /** Stable id, e.g. "target.maps.new_modules". */
  id: string;
  /** Group: target, profiler, workload, capabilities, manifests. */
  category: 'target' | 'profiler' | 'workload' | 'capabilities' | 'manifests';
  description: string;
  /** What was measured in each phase (null: not measured in that phase). */
  values: { baseline: unknown; withProfiler: unknown };
  threshold: Threshold;
  status: CheckStatus;
  /** The worst finding's severity; 'info' for a pass or a skip. */
  severity: Severity;
  /** One line: the verdict and its cause. */
  message: string;
  findings: Finding[];
}

export interface PhaseSummary {
  /** Wall time of the measured part (the load), ms. */
  durationMs: number;
  startedAt: string;
  load: LoadSummary | null;
}

export interface LoadSummary {
  kind: 'http' | 'command';
  description: string;
  requests?: number;
  errors?: number;
  /** Requests per second. */
  throughput?: number;
  /** Latency in ms. */
  latencyMs?: { mean: number; p50: number; p90: number; p99: number; max: number };
  exitCode?: number | null;
}

export interface VerifyReport {
  schema: typeof REPORT_SCHEMA;
  tool: { name: 'ebpfprof'; version: string };
  startedAt: string;
  finishedAt: string;
  host: { hostname: string; kernelRelease: string; cpus: number };
  target: { pid: number; startedByVerify: boolean; command: string[]; executable: string | null; listen: string | null };
  profiler: { command: string[]; kind: 'ebpfprof-agent' | 'custom'; pids: number[]; readyAfterMs: number | null };
  phases: { baseline: PhaseSummary; withProfiler: PhaseSummary };
  checks: CheckResult[];
  summary: { verdict: 'pass' | 'fail'; high: number; medium: number; low: number; info: number; failedChecks: string[] };
  /** Exit status of `ebpfprof verify` for this report. */
  exitCode: number;
}

/** Exit status: 0 no high-severity finding, 3 at least one (1 and 2 are errors and bad usage). */
export const EXIT_HIGH_FINDING = 3;

const ORDER: Severity[] = ['info', 'low', 'medium', 'high'];

export function worst(severities: readonly Severity[]): Severity {
  return severities.reduce<Severity>((w, s) => (ORDER.indexOf(s) > ORDER.indexOf(w) ? s : w), 'info');
}

/** A check from its findings: failed (with the worst severity) when there is any finding above info. */
export function checkFrom(base: Omit<CheckResult, 'status' | 'severity' | 'message' | 'findings'>, findings: Finding[], passMessage: string, skipped?: string): CheckResult {
  if (skipped !== undefined) return { ...base, status: 'skipped', severity: 'info', message: skipped, findings: [] };
  const real = findings.filter((f) => f.severity !== 'info');
  if (real.length === 0) return { ...base, status: 'pass', severity: 'info', message: passMessage, findings };
  const sev = worst(real.map((f) => f.severity));
  const first = real.find((f) => f.severity === sev)!;
  return { ...base, status: 'fail', severity: sev, message: real.length > 1 ? `${first.message} (and ${real.length - 1} more)` : first.message, findings };
}

export function summarize(checks: readonly CheckResult[]): VerifyReport['summary'] {
  const count = (s: Severity): number => checks.filter((c) => c.status === 'fail' && c.severity === s).length;
  const high = count('high');
  return {
    verdict: high > 0 ? 'fail' : 'pass',
    high,
    medium: count('medium'),
    low: count('low'),
    info: checks.filter((c) => c.status !== 'fail').length,
    failedChecks: checks.filter((c) => c.status === 'fail').map((c) => c.id),
  };
}

export function exitCodeOf(summary: VerifyReport['summary']): number {
  return summary.high > 0 ? EXIT_HIGH_FINDING : 0;
}

function formatValue(v: unknown): string {
  if (v === null || v === undefined) return '-';
  if (typeof v === 'number') return Number.isInteger(v) ? String(v) : v.toFixed(v < 10 ? 2 : 1);
  if (typeof v === 'string') return v.length > 40 ? `${v.slice(0, 37)}...` : v;
  if (Array.isArray(v)) return v.length === 0 ? 'none' : `${v.length} item${v.length === 1 ? '' : 's'}`;
  if (typeof v === 'object') {
    const o = v as Record<string, unknown>;
    if ('value' in o) return formatValue(o['value']);
    return Object.entries(o)
      .slice(0, 2)
      .map(([k, x]) => `${k} ${formatValue(x)}`)
      .join(', ');
  }
  return String(v);
}

/** The summary readable at a glance: one line per check, then the verdict. */
export function formatSummary(r: VerifyReport, reportPath: string | null): string {
  const lines: string[] = [];
  lines.push(`ebpfprof verify: target pid ${r.target.pid}${r.target.executable ? ` (${r.target.executable})` : ''}, profiler: ${r.profiler.command.join(' ')}`);
  const b = r.phases.baseline.load;
  const w = r.phases.withProfiler.load;
  if (b && w) lines.push(`load: ${b.description}: ${fmtLoad(b)} without, ${fmtLoad(w)} with the profiler`);
  const idWidth = Math.max(...r.checks.map((c) => c.id.length));
  for (const c of r.checks) {
    const tag = c.status === 'pass' ? 'PASS' : c.status === 'skipped' ? 'SKIP' : `FAIL ${c.severity.toUpperCase()}`;
    const vals = c.values.baseline !== null && c.values.baseline !== undefined ? `${formatValue(c.values.baseline)} -> ${formatValue(c.values.withProfiler)}` : formatValue(c.values.withProfiler);
    lines.push(`${tag.padEnd(11)} ${c.id.padEnd(idWidth)}  ${vals.padEnd(24)} ${c.message}`);
  }
  const s = r.summary;
  lines.push(
    `verdict: ${s.verdict.toUpperCase()}: ${s.high} high, ${s.medium} medium, ${s.low} low-severity findings${s.high > 0 ? ` (exit ${r.exitCode})` : ''}${reportPath ? `; report: ${reportPath}` : ''}`,
  );
  return `${lines.join('\n')}\n`;
}

function fmtLoad(l: LoadSummary): string {
  if (l.kind === 'command') return `exit ${l.exitCode ?? '?'}`;
  return `${(l.throughput ?? 0).toFixed(0)} req/s, mean ${(l.latencyMs?.mean ?? 0).toFixed(2)} ms, p99 ${(l.latencyMs?.p99 ?? 0).toFixed(2)} ms`;
}
