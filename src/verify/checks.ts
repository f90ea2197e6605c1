// SPDX-License-Identifier: Apache-2.0
/**
 * The checks of `ebpfprof verify`: pure functions from what the two phases observed to CheckResults
 * with values, thresholds and a severity per finding. docs/verify.md explains each one.
 */
import { judgeCapability } from './capability-matrix';
import type { ProfilerUsage, TargetWatch } from './monitor';
import { checkFrom, type CheckResult, type Finding, type LoadSummary } from './report';
import type { MappedFile, TargetSnapshot } from './snapshot';
import type { UprobeRegistration } from './uprobes';

/** Thresholds of section 4 of the product description. */
export const THRESHOLDS = {
  countTolerancePercent: 5,
  cpuAvgPercent: 3,
  cpuPeakPercent: 10,
  rssMiB: 200,
  egressMiBPerMinute: 5,
  throughputLossPercent: 5,
  latencyIncreasePercent: 10,
} as const;

/** Names of agents, profilers and preloaded libraries that have no business in a strictly observed process. */
export const AGENT_PATTERNS: readonly { name: string; re: RegExp }[] = [
  { name: 'ebpfprof', re: /ebpfprof/i },
  { name: 'LD_PRELOAD-style preload library', re: /(^|\/)lib[^/]*preload[^/]*\.so|\/etc\/ld\.so\.preload/i },
  { name: 'injected library', re: /inject/i },
  { name: 'async-profiler', re: /libasyncProfiler|async-profiler/i },
  { name: 'perf-map-agent', re: /perf-map-agent|libperfmap/i },
  { name: 'jattach', re: /jattach/i },
  { name: 'Java agent', re: /-javaagent|\.jar.*agent|agent.*\.jar/i },
  { name: 'Datadog', re: /datadog|ddtrace|dd-trace|dd-java-agent/i },
  { name: 'Pyroscope', re: /pyroscope/i },
  { name: 'OpenTelemetry auto-instrumentation', re: /opentelemetry.*(javaagent|auto|instrument)|otel.*agent/i },
  { name: 'New Relic', re: /newrelic/i },
  { name: 'Dynatrace', re: /dynatrace|oneagent/i },
  { name: 'Elastic APM', re: /elastic-apm|elasticapm/i },
  { name: 'AppDynamics', re: /appdynamics/i },
  { name: 'Instana', re: /instana/i },
  { name: 'Frida', re: /frida/i },
];

/** Environment variables through which code gets into a process. */
export const INJECTION_ENV = ['LD_PRELOAD', 'LD_AUDIT', 'LD_LIBRARY_PATH', 'JAVA_TOOL_OPTIONS', '_JAVA_OPTIONS', 'JDK_JAVA_OPTIONS', 'NODE_OPTIONS', 'PYTHONPATH', 'PYTHONSTARTUP', 'CORECLR_ENABLE_PROFILING', 'CORECLR_PROFILER_PATH', 'DOTNET_STARTUP_HOOKS', 'RUBYOPT', 'PERL5OPT'];

export interface PhaseObservation {
  /** At the start of the phase (before the load), and at its end (after the load settled). */
  before: TargetSnapshot;
  after: TargetSnapshot;
  watch: TargetWatch;
  load: LoadSummary | null;
  /** Uprobes on the target's files seen during the phase (null: not scanned). */
  uprobes: UprobeRegistration[] | null;
  uprobeProblems: string[];
}

export interface CheckInput {
  baseline: PhaseObservation;
  withProfiler: PhaseObservation;
  /** A process started during the profiler phase running the target's command (a restart). */
  replacement: TargetSnapshot | null;
  profiler: ProfilerUsage | null;
  /** Bytes the built-in collector received from the default agent, per minute (null: custom agent). */
  collectorMiBPerMinute: number | null;
}

function pctChange(base: number, now: number): number {
  return base === 0 ? (now === 0 ? 0 : 100) : ((now - base) / base) * 100;
}

function fileKey(f: MappedFile): string {
  return `${f.path}\0${f.inode}`;
}

function envMap(env: readonly string[]): Map<string, string> {
  const m = new Map<string, string>();
  for (const e of env) {
    const i = e.indexOf('=');
    m.set(i < 0 ? e : e.slice(0, i), i < 0 ? '' : e.slice(i + 1));
  }
  return m;
}

/** The process that runs the target at the end of the profiler phase (the replacement after a restart). */
function finalTarget(i: CheckInput): TargetSnapshot {
  return i.withProfiler.after.alive || !i.replacement ? i.withProfiler.after : i.replacement;
}

export function checkIdentity(i: CheckInput): CheckResult {
  const b = i.baseline.after;
  const w = i.withProfiler.after;
  const findings: Finding[] = [];
  const same = w.alive && w.startTicks === b.startTicks;
  if (!same) {
    if (i.replacement) {
      findings.push({
        severity: 'high',
        message: `the target was restarted: pid ${b.pid} ${w.alive ? 'was replaced' : 'exited'} during the profiler phase and pid ${i.replacement.pid} now runs the same command`,
        evidence: { oldPid: b.pid, newPid: i.replacement.pid, newStartTicks: i.replacement.startTicks },
      });
    } else {
      findings.push({ severity: 'high', message: `the target (pid ${b.pid}) ${w.alive ? 'is another process now (start time changed)' : 'exited'} during the profiler phase`, evidence: { pid: b.pid } });
    }
  }
  return checkFrom(
    {
      id: 'target.identity',
      category: 'target',
      description: 'The target was not restarted: same pid and start time in both phases',
      values: { baseline: { pid: b.pid, startTicks: b.startTicks }, withProfiler: { pid: i.replacement && !same ? i.replacement.pid : w.pid, startTicks: i.replacement && !same ? i.replacement.startTicks : w.startTicks } },
      threshold: { op: '==', limit: 'same pid and start time', unit: '' },
    },
    findings,
    `pid ${b.pid}, start time ${b.startTicks} ticks after boot, in both phases`,
  );
}

export function checkNewMappings(i: CheckInput): CheckResult {
  const seen = new Set([...i.baseline.before.files, ...i.baseline.after.files].map(fileKey));
  const now = [...i.withProfiler.before.files, ...i.withProfiler.after.files, ...(i.replacement?.files ?? [])];
  const fresh = new Map<string, MappedFile>();
  for (const f of now) if (!seen.has(fileKey(f))) fresh.set(fileKey(f), f);
  const findings: Finding[] = [...fresh.values()].map((f) => ({
    severity: f.executable ? ('high' as const) : ('medium' as const),
    message: `${f.executable ? 'new code mapped into the target' : 'new file mapped into the target'}: ${f.path}${f.deleted ? ' (deleted)' : ''}`,
    evidence: { path: f.path, inode: f.inode, dev: f.dev, executable: f.executable },
  }));
  const specialsBefore = new Set([...i.baseline.before.specials, ...i.baseline.after.specials]);
  for (const s of finalTarget(i).specials) {
    if (!specialsBefore.has(s)) findings.push({ severity: s === '[uprobes]' ? 'high' : 'medium', message: `new kernel mapping in the target: ${s}${s === '[uprobes]' ? ' (a uprobe fired in it: its code was patched)' : ''}`, evidence: { mapping: s } });
  }
  const base = i.baseline.after.files.length;
  return checkFrom(
    {
      id: 'target.maps.new_files',
      category: 'target',
      description: "No file-backed mapping (library, executable, data file) appeared in the target's /proc/PID/maps while the profiler ran",
      values: { baseline: base, withProfiler: finalTarget(i).files.length },
      threshold: { op: '==', limit: 0, unit: 'new mappings' },
    },
    findings,
    `no new mapping (${base} files mapped in both phases)`,
  );
}

function patternOf(text: string): string | null {
  return AGENT_PATTERNS.find((p) => p.re.test(text))?.name ?? null;
}

export function checkAgentPatterns(i: CheckInput): CheckResult {
  const findings: Finding[] = [];
  const baseFiles = new Set([...i.baseline.before.files, ...i.baseline.after.files].map((f) => f.path));
  const baseEnv = envMap(i.baseline.after.environ);
  const t = finalTarget(i);
  for (const f of t.files) {
    const p = patternOf(f.path);
    if (!p) continue;
    const before = baseFiles.has(f.path);
    findings.push({ severity: before ? 'info' : 'high', message: `${p} mapped in the target: ${f.path}${before ? ' (already there before the profiler ran)' : ''}`, evidence: { path: f.path, pattern: p, beforeProfiler: before } });
  }
  const env = envMap(t.environ);
  for (const k of INJECTION_ENV) {
    const v = env.get(k);
    if (v === undefined || v === '') continue;
    const before = baseEnv.get(k) === v;
    const severity = before ? 'info' : 'high';
    findings.push({ severity, message: `${k}=${v.length > 80 ? `${v.slice(0, 77)}...` : v} in the target's environment${before ? ' (already set before the profiler ran)' : ''}`, evidence: { variable: k, value: v, beforeProfiler: before } });
  }
  return checkFrom(
    {
      id: 'target.maps.agent_patterns',
      category: 'target',
      description: 'Nothing in the target matches a known agent, profiler or preload library, and no code-injection variable (LD_PRELOAD, JAVA_TOOL_OPTIONS, ...) is set',
      values: { baseline: null, withProfiler: findings.map((f) => f.evidence?.['path'] ?? f.evidence?.['variable']) },
      threshold: { op: '==', limit: 0, unit: 'matches' },
    },
    findings,
    'no agent, profiler or preload library and no injection variable in the target',
  );
}

export function checkEnviron(i: CheckInput): CheckResult {
  const b = envMap(i.baseline.after.environ);
  const w = envMap(finalTarget(i).environ);
  const findings: Finding[] = [];
  for (const [k, v] of w) {
    if (!b.has(k)) findings.push({ severity: 'high', message: `${k} was added to the target's environment (${k}=${v.length > 60 ? `${v.slice(0, 57)}...` : v})`, evidence: { variable: k, value: v, change: 'added' } });
    else if (b.get(k) !== v) findings.push({ severity: 'high', message: `${k} changed in the target's environment`, evidence: { variable: k, before: b.get(k), after: v, change: 'changed' } });
  }
  for (const k of b.keys()) if (!w.has(k)) findings.push({ severity: 'high', message: `${k} was removed from the target's environment`, evidence: { variable: k, change: 'removed' } });
  // Code-injection variables first: they are the likely cause.
  findings.sort((x, y) => Number(!INJECTION_ENV.includes(String(x.evidence?.['variable']))) - Number(!INJECTION_ENV.includes(String(y.evidence?.['variable']))));
  return checkFrom(
    {
      id: 'target.environ',
      category: 'target',
      description: "The target's environment (/proc/PID/environ) is unchanged",
      values: { baseline: b.size, withProfiler: w.size },
      threshold: { op: '==', limit: 'identical', unit: '' },
    },
    findings,
    `unchanged (${b.size} variables)`,
  );
}

export function checkCmdline(i: CheckInput): CheckResult {
  const b = i.baseline.after.cmdline;
  const w = finalTarget(i).cmdline;
  const same = b.length === w.length && b.every((a, k) => a === w[k]);
  const findings: Finding[] = same ? [] : [{ severity: 'high', message: `the target's command line changed: ${JSON.stringify(b.join(' '))} -> ${JSON.stringify(w.join(' '))}`, evidence: { before: b, after: w } }];
  return checkFrom(
    { id: 'target.cmdline', category: 'target', description: "The target's command line (/proc/PID/cmdline) is unchanged", values: { baseline: b.join(' '), withProfiler: w.join(' ') }, threshold: { op: '==', limit: 'identical', unit: '' } },
    findings,
    'unchanged',
  );
}

export function checkThreads(i: CheckInput): CheckResult {
  const b = i.baseline.after.threads.length;
  const t = finalTarget(i);
  const w = t.threads.length;
  const change = pctChange(b, w);
  const findings: Finding[] = [];
  if (Math.abs(change) > THRESHOLDS.countTolerancePercent) {
    findings.push({ severity: 'medium', message: `the target has ${w} threads with the profiler, ${b} without (${change > 0 ? '+' : ''}${change.toFixed(0)}%)`, evidence: { baseline: b, withProfiler: w } });
  }
  // A thread is the target's own if its name was seen among the target's threads without the profiler.
  const ownNames = new Set([...i.baseline.watch.threadsSeen.values(), ...i.baseline.before.threads.map((x) => x.comm), ...i.baseline.after.threads.map((x) => x.comm)]);
  const foreign = new Map<string, number>();
  for (const [tid, comm] of [...i.withProfiler.watch.threadsSeen.entries(), ...t.threads.map((x) => [x.tid, x.comm] as const)]) if (!ownNames.has(comm)) foreign.set(comm, tid);
  for (const [comm, tid] of foreign) findings.push({ severity: 'high', message: `a thread that is not the target's own appeared in it: ${JSON.stringify(comm)} (tid ${tid})`, evidence: { tid, comm } });
  return checkFrom(
    {
      id: 'target.threads',
      category: 'target',
      description: `Thread count within ${THRESHOLDS.countTolerancePercent}% of the baseline, and no thread the target did not have by name without the profiler`,
      values: { baseline: b, withProfiler: w },
      threshold: { op: '<=', limit: THRESHOLDS.countTolerancePercent, unit: '% change' },
    },
    findings,
    `${w} threads with the profiler, ${b} without; all by names the target had`,
  );
}

export function checkFds(i: CheckInput): CheckResult {
  const b = i.baseline.after.fds;
  const w = finalTarget(i).fds;
  const change = pctChange(b, w);
  const findings: Finding[] =
    Math.abs(change) > THRESHOLDS.countTolerancePercent ? [{ severity: 'medium', message: `the target has ${w} open file descriptors with the profiler, ${b} without (${change > 0 ? '+' : ''}${change.toFixed(0)}%)`, evidence: { baseline: b, withProfiler: w } }] : [];
  return checkFrom(
    {
      id: 'target.fds',
      category: 'target',
      description: `Open file descriptors within ${THRESHOLDS.countTolerancePercent}% of the baseline (both counted after the load settled)`,
      values: { baseline: b, withProfiler: w },
      threshold: { op: '<=', limit: THRESHOLDS.countTolerancePercent, unit: '% change' },
    },
    findings,
    `${w} with the profiler, ${b} without`,
  );
}

export function checkTracer(i: CheckInput): CheckResult {
  const findings: Finding[] = [];
  const baseTracers = new Set(i.baseline.watch.tracers.map((s) => s.tracerPid));
  for (const s of i.withProfiler.watch.tracers) {
    const before = baseTracers.has(s.tracerPid);
    findings.push({
      severity: before ? 'low' : 'high',
      message: `the target was ptrace-attached: thread ${s.tid} had TracerPid ${s.tracerPid} (${s.tracerComm}${s.tracerCmdline ? `: ${s.tracerCmdline.slice(0, 100)}` : ''})${before ? ', already during the baseline' : ''}`,
      evidence: { ...s },
    });
  }
  return checkFrom(
    {
      id: 'target.tracer_pid',
      category: 'target',
      description: 'TracerPid stays 0 on every thread of the target (sampled every 250 ms through both phases)',
      values: { baseline: i.baseline.watch.tracers.length, withProfiler: i.withProfiler.watch.tracers.length },
      threshold: { op: '==', limit: 0, unit: 'tracers' },
    },
    findings,
    `TracerPid 0 on every thread in ${i.baseline.watch.samples + i.withProfiler.watch.samples} samples`,
  );
}

export function checkUprobes(i: CheckInput): CheckResult {
  const w = i.withProfiler.uprobes;
  const base = {
    id: 'target.uprobes',
    category: 'target' as const,
    description: "No uprobe is registered on the target's files while the profiler runs (strict mode)",
    values: { baseline: i.baseline.uprobes?.length ?? null, withProfiler: w?.length ?? null },
    threshold: { op: '==' as const, limit: 0, unit: 'uprobes' },
  };
  if (w === null) return checkFrom(base, [], '', `not checked: ${i.withProfiler.uprobeProblems.join('; ') || 'no scan'}`);
  const profilerPids = new Set(i.profiler?.processes.map((p) => p.pid) ?? []);
  const key = (r: UprobeRegistration): string => `${r.source}:${r.path}:${r.offset}:${r.holderPid}`;
  const before = new Set((i.baseline.uprobes ?? []).map(key));
  const findings: Finding[] = w.map((r) => {
    const byProfiler = r.holderPid !== null && profilerPids.has(r.holderPid);
    const severity = byProfiler ? 'high' : before.has(key(r)) ? 'info' : 'low';
    const holder = r.holderPid === null ? 'created through tracefs' : `held by pid ${r.holderPid} (${r.holderComm})${byProfiler ? ', the profiler' : ', not the profiler'}`;
    return { severity, message: `${r.retprobe ? 'uretprobe' : 'uprobe'} on ${r.path || 'a file the kernel does not name'}${r.offset !== null ? `+0x${r.offset.toString(16)}` : ''}, which the target maps, ${holder}`, evidence: { ...r, byProfiler } };
  });
  for (const p of i.withProfiler.uprobeProblems) findings.push({ severity: 'medium', message: p });
  return checkFrom(base, findings, 'no uprobe on any file the target maps');
}

/** CPU of one core, percent, of every second of the measured window. */
function cpuSeries(u: ProfilerUsage | null): { atMs: number; cpuPercent: number; rssMiB: number }[] {
  const s = u?.samples ?? [];
  return s.slice(1).map((x, k) => ({ atMs: x.atMs - s[0]!.atMs, cpuPercent: Number(((((x.cpuTicks - s[k]!.cpuTicks) / 100) * 100000) / Math.max(1, x.atMs - s[k]!.atMs)).toFixed(2)), rssMiB: Number((x.rssBytes / 1048576).toFixed(1)) }));
}

function cpuCheck(id: string, value: number | null, limit: number, severity: 'high' | 'medium', what: string, extra: Record<string, unknown> = {}): CheckResult {
  const base = {
    id,
    category: 'profiler' as const,
    description: `The profiler's ${what} CPU after its warm-up, percent of one core (its whole process tree), below ${limit}%`,
    values: { baseline: null, withProfiler: { value, ...extra } },
    threshold: { op: '<' as const, limit, unit: '% of one core' },
  };
  if (value === null) return checkFrom(base, [], '', 'not measured (the profiler ended before two samples)');
  const f: Finding[] = value >= limit ? [{ severity, message: `the profiler used ${value.toFixed(2)}% of a core (${what}), at or above ${limit}%`, evidence: { percent: value } }] : [];
  return checkFrom(base, f, `${value.toFixed(2)}% of one core`);
}

export function checkProfilerUsage(i: CheckInput): CheckResult[] {
  const u = i.profiler;
  const rss = u?.rssMaxMiB ?? null;
  // Judged on the larger of what the profiler wrote and what the stand-in collector received: an
  // export written just before the window starts arrives just after, so either can lead by one.
  const written = u?.writtenMiBPerMinute ?? null;
  const egress = written === null ? null : Math.max(written, i.collectorMiBPerMinute ?? 0);
  const rssBase = { id: 'profiler.rss', category: 'profiler' as const, description: `The profiler's resident memory (its whole process tree) stays below ${THRESHOLDS.rssMiB} MiB`, values: { baseline: null, withProfiler: rss }, threshold: { op: '<' as const, limit: THRESHOLDS.rssMiB, unit: 'MiB' } };
  const egressBase = {
    id: 'profiler.egress',
    category: 'profiler' as const,
    description: `What the profiler writes (sockets, pipes and files: an upper bound of its network egress) stays below ${THRESHOLDS.egressMiBPerMinute} MiB/min`,
    values: { baseline: null, withProfiler: { value: egress, writtenMiBPerMinute: written, collectorMiBPerMinute: i.collectorMiBPerMinute } },
    threshold: { op: '<' as const, limit: THRESHOLDS.egressMiBPerMinute, unit: 'MiB/min' },
  };
  return [
    cpuCheck('profiler.cpu_avg', u?.cpuAvgPercent ?? null, THRESHOLDS.cpuAvgPercent, 'high', 'average', { warmupCpuSeconds: u?.warmupCpuSeconds ?? null, perSecond: cpuSeries(u) }),
    cpuCheck('profiler.cpu_peak', u?.cpuPeakPercent ?? null, THRESHOLDS.cpuPeakPercent, 'medium', 'peak (5 s window)'),
    rss === null
      ? checkFrom(rssBase, [], '', 'not measured')
      : checkFrom(rssBase, rss >= THRESHOLDS.rssMiB ? [{ severity: 'high', message: `the profiler's resident memory reached ${rss.toFixed(1)} MiB`, evidence: { mib: rss } }] : [], `at most ${rss.toFixed(1)} MiB`),
    egress === null
      ? checkFrom(egressBase, [], '', 'not measured')
      : checkFrom(
          egressBase,
          egress >= THRESHOLDS.egressMiBPerMinute ? [{ severity: 'high', message: `the profiler wrote ${egress.toFixed(2)} MiB/min`, evidence: { mibPerMinute: egress } }] : [],
          `${written!.toFixed(3)} MiB/min written${i.collectorMiBPerMinute !== null ? `, ${i.collectorMiBPerMinute.toFixed(3)} MiB/min reached the collector` : ''}`,
        ),
  ];
}

export function checkWorkload(i: CheckInput): CheckResult[] {
  const b = i.baseline.load;
  const w = i.withProfiler.load;
  const skipped = !b || !w || b.kind !== 'http' || w.kind !== 'http' ? (b?.kind === 'command' ? 'the load is a user command: its throughput is not measured by verify' : 'no load ran') : undefined;
  const thr = {
    id: 'workload.throughput',
    category: 'workload' as const,
    description: `The workload's throughput drops by at most ${THRESHOLDS.throughputLossPercent}% with the profiler (one pair of phases on a possibly shared machine: a finding is medium at most)`,
    values: { baseline: b?.throughput ?? null, withProfiler: w?.throughput ?? null },
    threshold: { op: '<=' as const, limit: THRESHOLDS.throughputLossPercent, unit: '% loss' },
  };
  const lat = {
    id: 'workload.latency',
    category: 'workload' as const,
    description: `The workload's mean latency grows by at most ${THRESHOLDS.latencyIncreasePercent}% with the profiler (medium at most, as above)`,
    values: { baseline: b?.latencyMs ?? null, withProfiler: w?.latencyMs ?? null },
    threshold: { op: '<=' as const, limit: THRESHOLDS.latencyIncreasePercent, unit: '% increase of the mean' },
  };
  if (skipped !== undefined) return [checkFrom(thr, [], '', skipped), checkFrom(lat, [], '', skipped)];
  const loss = -pctChange(b!.throughput!, w!.throughput!);
  const inc = pctChange(b!.latencyMs!.mean, w!.latencyMs!.mean);
  const errs = (w!.errors ?? 0) - (b!.errors ?? 0);
  const thrFindings: Finding[] = loss > THRESHOLDS.throughputLossPercent ? [{ severity: 'medium', message: `throughput fell by ${loss.toFixed(1)}% (${b!.throughput!.toFixed(0)} -> ${w!.throughput!.toFixed(0)} req/s)`, evidence: { lossPercent: loss } }] : [];
  if (errs > 0) thrFindings.push({ severity: 'medium', message: `${errs} more failed requests with the profiler (${b!.errors} -> ${w!.errors})`, evidence: { errors: w!.errors } });
  return [
    checkFrom(thr, thrFindings, `${b!.throughput!.toFixed(0)} -> ${w!.throughput!.toFixed(0)} req/s (${loss > 0 ? '-' : '+'}${Math.abs(loss).toFixed(1)}%)`),
    checkFrom(
      lat,
      inc > THRESHOLDS.latencyIncreasePercent ? [{ severity: 'medium', message: `mean latency grew by ${inc.toFixed(1)}% (${b!.latencyMs!.mean.toFixed(3)} -> ${w!.latencyMs!.mean.toFixed(3)} ms)`, evidence: { increasePercent: inc } }] : [],
      `mean ${b!.latencyMs!.mean.toFixed(3)} -> ${w!.latencyMs!.mean.toFixed(3)} ms, p99 ${b!.latencyMs!.p99.toFixed(3)} -> ${w!.latencyMs!.p99.toFixed(3)} ms`,
    ),
  ];
}

export function checkProfilerCapabilities(i: CheckInput): CheckResult {
  const findings: Finding[] = [];
  const procs = i.profiler?.processes ?? [];
  for (const p of procs) {
    const held = [...new Set([...p.effective, ...p.permitted, ...p.ambient])];
    for (const c of held) {
      const j = judgeCapability(c);
      if (j.class === 'forbidden' || j.class === 'unneeded') {
        findings.push({ severity: j.severity, message: `${c} held by pid ${p.pid} (${p.comm}): ${j.class === 'forbidden' ? `strict mode never holds it: ${j.why}` : j.why}`, evidence: { pid: p.pid, comm: p.comm, capability: c, set: 'effective/permitted', class: j.class } });
      }
    }
    // The bounding set matters to a process that runs as root and may still execute programs.
    const rootExec = p.uid === 0 && p.noNewPrivs !== true;
    for (const c of p.bounding.filter((x) => !held.includes(x))) {
      const j = judgeCapability(c);
      if (j.class !== 'forbidden' && j.class !== 'unneeded') continue;
      findings.push({
        severity: rootExec ? j.severity : 'info',
        message: `${c} is in the bounding set of pid ${p.pid} (${p.comm})${rootExec ? ': as root without no_new_privs it regains it by executing any program' : ' (not usable: no_new_privs or not root)'}`,
        evidence: { pid: p.pid, comm: p.comm, capability: c, set: 'bounding', class: j.class },
      });
    }
  }
  const summary = procs.filter((p) => p.effective.length + p.permitted.length + p.bounding.length > 0 || p.startupEffective.length === 0).map((p) => `${p.comm}[${p.pid}]: ${p.effective.length ? p.effective.join(',') : 'none'}`).join('; ');
  return checkFrom(
    {
      id: 'capabilities.profiler',
      category: 'capabilities',
      description: "The profiler's effective, permitted, ambient and (for root without no_new_privs) bounding capabilities after its warm-up, on every thread of every process it runs, against the capability matrix: never CAP_SYS_ADMIN or CAP_SYS_PTRACE",
      values: { baseline: null, withProfiler: procs.map((p) => ({ pid: p.pid, comm: p.comm, effective: p.effective, permitted: p.permitted, bounding: p.bounding, noNewPrivs: p.noNewPrivs, startupEffective: p.startupEffective })) },
      threshold: { op: 'none', limit: 'the capability matrix (docs/verify.md)', unit: '' },
    },
    findings,
    procs.length === 0 ? 'no profiler process was seen' : `within the matrix: ${summary}`,
    procs.length === 0 ? 'not checked: no profiler process was seen' : undefined,
  );
}

/** Every check on the two phases, in report order. */
export function runChecks(i: CheckInput): CheckResult[] {
  return [
    checkIdentity(i),
    checkNewMappings(i),
    checkAgentPatterns(i),
    checkEnviron(i),
    checkCmdline(i),
    checkThreads(i),
    checkFds(i),
    checkTracer(i),
    checkUprobes(i),
    ...checkProfilerUsage(i),
    ...checkWorkload(i),
    checkProfilerCapabilities(i),
  ];
}
