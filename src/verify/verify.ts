// SPDX-License-Identifier: Apache-2.0
/**
 * `ebpfprof verify`, end to end: against a target (an existing pid, or a command it starts and
 * stops), under a load (built-in HTTP, or the user's command), a baseline phase without the
 * profiler, then a phase with it (by default `ebpfprof agent`, exporting to a collector stand-in on
 * loopback; `--agent CMD` judges any other), then the checks (checks.ts, manifests.ts) and the
 * report (report.ts). It reads /proc (and asks the kernel which BPF programs sit on which perf
 * events); the only processes it signals are the ones it started.
 */
import { ChildProcess, spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as http from 'node:http';
import * as os from 'node:os';
import * as path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { EbpfprofError, errorMessage } from '../errors';
import { packageRoot } from '../native/addon';
import { processAlive, readProcStat } from '../process/proc';
import { runChecks, type CheckInput, type PhaseObservation } from './checks';
import { listeningPorts, loopbackUrl, runCommandLoad, runHttpLoad } from './load';
import { helmChartsUnder, readManifests, manifestChecks } from './manifests';
import { ProfilerWatcher, TargetWatcher, type ProfilerUsage } from './monitor';
import { exitCodeOf, REPORT_SCHEMA, summarize, type LoadSummary, type PhaseSummary, type VerifyReport } from './report';
import { findReplacement, nowTicks, takeSnapshot, type TargetSnapshot } from './snapshot';
import { scanUprobes, uprobesOnTarget } from './uprobes';

export type VerifyTarget = { kind: 'pid'; pid: number } | { kind: 'command'; argv: string[] };

export interface VerifyOptions {
  target: VerifyTarget;
  /** Another agent to judge: a shell command, `{pid}` replaced by the target's pid. Default: `ebpfprof agent`. */
  agent?: string;
  /** Length of the measured part (the load) of each phase, ms. */
  durationMs: number;
  /** The user's load command (shell); default: the built-in HTTP load on the port the target listens on. */
  load?: string;
  manifestsDir?: string;
  /** Progress lines (stderr in the CLI). */
  progress?: (line: string) => void;
  /**
   * How long the profiler runs under the load before the measured window (default 20 s): its
   * start-up (first symbolization of every process, compilation of its own code) is reported, not
   * judged. The target is watched from the profiler's start, warm-up included.
   */
  warmupMs?: number;
  /** How long after the load ends the end-of-phase snapshot waits (default 1 s). */
  settleMs?: number;
  /** Connections of the built-in HTTP load (default 4). */
  connections?: number;
  /** Ctrl-C: stops the run (everything verify started is stopped) with EINTERRUPTED. */
  signal?: AbortSignal;
}

interface StartedTarget {
  pid: number;
  child: ChildProcess | null;
}

function line(o: VerifyOptions, text: string): void {
  o.progress?.(text);
}

async function startTarget(o: VerifyOptions): Promise<StartedTarget> {
  if (o.target.kind === 'pid') {
    const st = readProcStat(o.target.pid);
    if (!st || st.state === 'Z') throw new EbpfprofError('ENOPROC', `no process with pid ${o.target.pid}`);
    return { pid: o.target.pid, child: null };
  }
  const argv = o.target.argv;
  if (argv.length === 0) throw new EbpfprofError('EBADARG', 'no command given after --');
  // Its own session and process group: it and its children are stopped together at the end.
  const child = spawn(argv[0]!, argv.slice(1), { stdio: ['ignore', 'ignore', 'inherit'], detached: true });
  await new Promise<void>((resolve, reject) => {
    child.once('spawn', resolve);
    child.once('error', (e) => reject(new EbpfprofError('EBADARG', `cannot start ${argv[0]}: ${e.message}`)));
  });
  return { pid: child.pid!, child };
}

async function stopProcessGroup(child: ChildProcess, graceMs: number): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  const kill = (sig: NodeJS.Signals): void => {
    try {
      process.kill(-child.pid!, sig);
    } catch {
      // the group is gone
    }
  };
  kill('SIGTERM');
  const t = setTimeout(() => kill('SIGKILL'), graceMs);
  await exited;
  clearTimeout(t);
}

/** Waits until the target listens on a TCP port (or `timeoutMs` passes). */
async function waitForListen(pid: number, timeoutMs: number): Promise<string | null> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    for (const s of listeningPorts(pid)) {
      const url = loopbackUrl(s);
      if (url) return url;
    }
    if (Date.now() > deadline || readProcStat(pid) === null) return null;
    await sleep(200);
  }
}

/** A stand-in OpenTelemetry Collector on loopback: accepts every export, counts the bytes. */
class CollectorSink {
  bytes = 0;
  requests = 0;
  private constructor(private readonly server: http.Server) {}

  static async start(): Promise<CollectorSink> {
    const server = http.createServer();
    const sink = new CollectorSink(server);
    server.on('request', (req, res) => {
      req.on('data', (c: Buffer) => (sink.bytes += c.length));
      req.on('end', () => {
        sink.requests++;
        res.writeHead(200, { 'content-type': 'application/x-protobuf' }).end();
      });
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    return sink;
  }

  get url(): string {
    const a = this.server.address() as { port: number };
    return `http://127.0.0.1:${a.port}`;
  }

  close(): Promise<void> {
    this.server.closeAllConnections();
    return new Promise((resolve) => this.server.close(() => resolve()));
  }
}

interface RunningProfiler {
  child: ChildProcess;
  command: string[];
  kind: 'ebpfprof-agent' | 'custom';
  readyAfterMs: number | null;
  stderrTail: string[];
}

async function get(url: string): Promise<number> {
  return new Promise((resolve) => {
    const req = http.get(url, { timeout: 2000 }, (res) => {
      res.resume();
      resolve(res.statusCode ?? 0);
    });
    req.on('error', () => resolve(0));
    req.on('timeout', () => req.destroy());
  });
}

/** Starts the profiler; `ready` resolves when the default agent's health endpoint answers (at once for a custom agent). */
async function startProfiler(o: VerifyOptions, targetPid: number, sink: CollectorSink | null): Promise<{ running: RunningProfiler; ready: Promise<void> }> {
  const t0 = Date.now();
  const stderrTail: string[] = [];
  let command: string[];
  let child: ChildProcess;
  const env = process.env;
  if (o.agent === undefined) {
    const entry = path.join(packageRoot, 'dist', 'cli', 'main.js');
    command = [process.execPath, '--max-semi-space-size=1', entry, 'agent', '--endpoint', sink!.url, '--control', '127.0.0.1:0'];
    child = spawn(command[0]!, command.slice(1), { stdio: ['ignore', 'ignore', 'pipe'], detached: true, env });
  } else {
    const cmd = o.agent.replaceAll('{pid}', String(targetPid));
    command = ['/bin/sh', '-c', cmd];
    child = spawn('/bin/sh', ['-c', cmd], { stdio: ['ignore', 'ignore', 'pipe'], detached: true, env });
  }
  let control: string | null = null;
  let buf = '';
  child.stderr!.on('data', (d: Buffer) => {
    buf += d.toString('utf8');
    let i;
    while ((i = buf.indexOf('\n')) >= 0) {
      const l = buf.slice(0, i);
      buf = buf.slice(i + 1);
      stderrTail.push(l);
      if (stderrTail.length > 40) stderrTail.shift();
      const m = /control endpoint on (\S+?);/.exec(l);
      if (m) control = m[1]!;
    }
  });
  await new Promise<void>((resolve, reject) => {
    child.once('spawn', resolve);
    child.once('error', (e) => reject(new EbpfprofError('EBADARG', `cannot start the profiler: ${e.message}`)));
  });
  const running: RunningProfiler = {
    child,
    command: o.agent === undefined ? ['ebpfprof', 'agent', '--endpoint', sink!.url, '--control', '127.0.0.1:0'] : command,
    kind: o.agent === undefined ? 'ebpfprof-agent' : 'custom',
    readyAfterMs: null,
    stderrTail,
  };
  if (o.agent !== undefined) {
    // A custom agent says nothing about being ready: the warm-up gives it time.
    running.readyAfterMs = 0;
    return { running, ready: Promise.resolve() };
  }
  const ready = (async (): Promise<void> => {
    const deadline = Date.now() + 90_000;
    while (Date.now() < deadline) {
      if (child.exitCode !== null || child.signalCode !== null) break;
      interrupted(o);
      if (control !== null && (await get(`http://${control}/healthz`)) === 200) {
        running.readyAfterMs = Date.now() - t0;
        return;
      }
      await sleep(200);
    }
    throw new EbpfprofError('EKERNEL', `the profiler did not become ready (ebpfprof agent ${child.exitCode !== null ? `exited with ${child.exitCode}` : 'never answered /healthz'}): ${stderrTail.slice(-5).join(' | ')}`);
  })();
  return { running, ready };
}

async function runLoad(o: VerifyOptions, url: string | null, targetPid: number): Promise<LoadSummary | null> {
  let load: LoadSummary | null = null;
  if (o.load !== undefined) load = await runCommandLoad(o.load, o.durationMs, { ...process.env, TARGET_PID: String(targetPid), ...(url ? { TARGET_URL: url } : {}) }, o.signal);
  else if (url) load = await runHttpLoad({ url, durationMs: o.durationMs, connections: o.connections ?? 4, ...(o.signal ? { signal: o.signal } : {}) });
  else await sleep(o.durationMs, undefined, o.signal ? { signal: o.signal } : {}).catch(() => undefined);
  interrupted(o);
  return load;
}

/** Throws EINTERRUPTED once Ctrl-C was pressed; the callers' cleanup stops what verify started. */
function interrupted(o: VerifyOptions): void {
  if (o.signal?.aborted) throw new EbpfprofError('EINTERRUPTED', 'verify was interrupted: the profiler and a target verify started were stopped, no report was written');
}

interface PhaseResult {
  observation: PhaseObservation;
  summary: PhaseSummary;
  profiler: ProfilerUsage | null;
}

interface ProfilerInPhase {
  child: ChildProcess;
  ready: Promise<void>;
  /** Called when the measured window starts (after the warm-up). */
  onWindow: () => void;
}

async function phase(o: VerifyOptions, name: string, pid: number, url: string | null, profiler: ProfilerInPhase | null): Promise<PhaseResult> {
  // The target is watched from the profiler's start: a profiler may attach while it starts.
  const watcher = new TargetWatcher(pid).start();
  const pw = profiler ? new ProfilerWatcher(profiler.child.pid!).start() : null;
  if (profiler) {
    try {
      await profiler.ready;
    } catch (e) {
      pw!.stop();
      watcher.stop();
      throw e;
    }
    const warmupMs = o.warmupMs ?? 20_000;
    if (warmupMs > 0) {
      line(o, `${name}: ${(warmupMs / 1000).toFixed(0)} s of warm-up under load (not measured)`);
      await runLoad({ ...o, durationMs: warmupMs }, url, pid);
    }
    pw!.markWindow();
    profiler.onWindow();
  }
  const startedAt = new Date().toISOString();
  const before = takeSnapshot(pid);
  line(o, `${name}: ${(o.durationMs / 1000).toFixed(0)} s of load${url && o.load === undefined ? ` on ${url}` : ''}`);
  const t0 = Date.now();
  const load = await runLoad(o, url, pid);
  const durationMs = Date.now() - t0;
  await sleep(o.settleMs ?? 1000);
  const after = takeSnapshot(pid);
  const usage = pw ? pw.stop() : null;
  const watch = watcher.stop();
  line(o, `${name}: scanning uprobes`);
  const scan = scanUprobes();
  const files = [...before.files, ...after.files];
  return {
    observation: { before, after, watch, load, uprobes: uprobesOnTarget(scan, files), uprobeProblems: scan.problems },
    summary: { durationMs, startedAt, load },
    profiler: usage,
  };
}

export async function runVerify(o: VerifyOptions): Promise<VerifyReport> {
  const startedAt = new Date().toISOString();
  const manifests = o.manifestsDir !== undefined ? readManifests(o.manifestsDir) : null; // bad input fails before anything runs
  const target = await startTarget(o);
  let profiler: RunningProfiler | null = null;
  let sink: CollectorSink | null = null;
  let replacement: TargetSnapshot | null = null;
  try {
    const exe = takeSnapshot(target.pid).exe;
    const url = await waitForListen(target.pid, o.load !== undefined ? 1000 : 10_000);
    if (o.load === undefined && url === null) {
      throw new EbpfprofError('EBADARG', `the target (pid ${target.pid}${exe ? `, ${exe}` : ''}) listens on no loopback-reachable TCP port: give a load command with --load CMD`);
    }
    line(o, `target: pid ${target.pid}${exe ? ` (${exe})` : ''}${url ? `, listening on ${url}` : ''}`);
    const startTicks = readProcStat(target.pid)?.startTicks ?? 0;
    const baseline = await phase(o, 'baseline (without the profiler)', target.pid, url, null);
    if (!processAlive(target.pid, startTicks)) throw new EbpfprofError('ENOPROC', `the target (pid ${target.pid}) exited during the baseline phase: nothing to compare`);

    if (o.agent === undefined) sink = await CollectorSink.start();
    line(o, `profiler: starting ${o.agent === undefined ? 'ebpfprof agent (strict mode, default collectors)' : o.agent.replaceAll('{pid}', String(target.pid))}`);
    const profilerStartTicks = nowTicks();
    const { running, ready } = await startProfiler(o, target.pid, sink);
    profiler = running;
    const announced = ready.then(() => line(o, `profiler: ${running.kind === 'ebpfprof-agent' ? `ready after ${((running.readyAfterMs ?? 0) / 1000).toFixed(1)} s` : 'started'}`));
    let sinkBytesBefore = 0;
    const withProfiler = await phase(o, 'profiler phase', target.pid, url, {
      child: running.child,
      ready: announced,
      onWindow: () => {
        sinkBytesBefore = sink?.bytes ?? 0;
      },
    });
    const sinkMiBPerMinute = sink ? (sink.bytes - sinkBytesBefore) / 1048576 / (withProfiler.summary.durationMs / 60000) : null;
    if (!withProfiler.observation.after.alive || withProfiler.observation.after.startTicks !== startTicks) {
      replacement = findReplacement(baseline.observation.after, profilerStartTicks);
    }
    line(o, 'profiler: stopping');
    await stopProcessGroup(profiler.child, 10_000);

    const input: CheckInput = {
      baseline: baseline.observation,
      withProfiler: withProfiler.observation,
      replacement,
      profiler: withProfiler.profiler,
      collectorMiBPerMinute: sinkMiBPerMinute,
    };
    const checks = runChecks(input);
    if (manifests) checks.push(...manifestChecks(o.manifestsDir!, manifests, helmChartsUnder(o.manifestsDir!)));
    const summary = summarize(checks);
    return {
      schema: REPORT_SCHEMA,
      tool: { name: 'ebpfprof', version: (require(path.join(packageRoot, 'package.json')) as { version: string }).version },
      startedAt,
      finishedAt: new Date().toISOString(),
      host: { hostname: os.hostname(), kernelRelease: os.release(), cpus: os.cpus().length },
      target: { pid: target.pid, startedByVerify: target.child !== null, command: baseline.observation.after.cmdline, executable: exe, listen: url },
      profiler: { command: profiler.command, kind: profiler.kind, pids: withProfiler.profiler?.processes.map((p) => p.pid) ?? [], readyAfterMs: profiler.readyAfterMs },
      phases: { baseline: baseline.summary, withProfiler: withProfiler.summary },
      checks,
      summary,
      exitCode: exitCodeOf(summary),
    };
  } finally {
    if (profiler) await stopProcessGroup(profiler.child, 5000).catch(() => undefined);
    await sink?.close();
    if (target.child) {
      await stopProcessGroup(target.child, 5000).catch(() => undefined);
      // A target restarted behind our back runs the command we were asked to start: stop it too.
      if (replacement) stopPid(replacement.pid, replacement.startTicks);
    }
  }
}

function stopPid(pid: number, startTicks: number | null): void {
  if (startTicks === null || !processAlive(pid, startTicks)) return;
  try {
    process.kill(pid, 'SIGTERM');
  } catch {
    // exited meanwhile
  }
}

/** Writes the report (pretty JSON) and returns its absolute path. */
export function writeReport(report: VerifyReport, file: string): string {
  const abs = path.resolve(file);
  try {
    fs.writeFileSync(abs, `${JSON.stringify(report, null, 2)}\n`);
  } catch (e) {
    throw new EbpfprofError('EOUTPUT', `cannot write the report ${abs}: ${errorMessage(e)}`);
  }
  return abs;
}
