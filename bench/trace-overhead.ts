// SPDX-License-Identifier: Apache-2.0
/**
 * Benchmark: what TCP and scheduler tracing cost the workloads they watch.
 *
 * - Connection-heavy: wrk with `Connection: close` against nginx on loopback (a new TCP connection
 *   per request), with no tracer, under `ebpfprof tcp`, and under the equivalent bpftrace script
 *   (connect latency, lifetime, RTT histograms, retransmit and reset counts from the same tracepoints).
 * - Context-switch-heavy: `stress-ng --switch` (pipe ping-pong between pairs of processes), with no
 *   tracer, under `ebpfprof sched`, under `ebpfprof offcpu -a`, and under bpftrace's runqlat.bt.
 *
 * Rounds interleave the modes in a rotating order; medians are reported. Per run: the workload's
 * throughput, the tool's CPU (utime+stime of its process while the workload ran, % of one core), and
 * the in-kernel cost of its BPF programs (run-time stats: run_time_ns summed over the tool's programs,
 * as % of one CPU over the run, and ns per program run) — the part charged to the workload.
 *
 *   node dist/bench/trace-overhead.js [--runs 5] [--seconds 10] [--only tcp|switch] [--json out.json]
 *
 * Needs root, bpftrace, stress-ng; installs nginx-light and wrk with apt-get when missing.
 */
import { ChildProcess, execFileSync, spawn, spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { arg, argString, CLK_TCK, cpuTicks } from './measure';

const ROOT = path.resolve(__dirname, '..', '..');
const BIN = path.join(ROOT, 'bin', 'ebpfprof');
const WARMUP_MS = 2500;
const PORT = 18081;

function have(cmd: string): boolean {
  return spawnSync('sh', ['-c', `command -v ${cmd}`]).status === 0;
}

function ensureTools(): void {
  if (!have('nginx') || !have('wrk')) {
    process.stderr.write('installing nginx-light and wrk (apt-get)\n');
    execFileSync('apt-get', ['update', '-qq'], { stdio: 'inherit' });
    execFileSync('apt-get', ['install', '-y', '-qq', '--no-install-recommends', 'nginx-light', 'wrk'], { stdio: 'inherit', env: { ...process.env, DEBIAN_FRONTEND: 'noninteractive' } });
  }
  for (const t of ['bpftrace', 'stress-ng', 'bpftool']) if (!have(t)) throw new Error(`${t} is required`);
}


interface ProgRun {
  id: number;
  name: string;
  runTimeNs: number;
  runCnt: number;
}

function bpfPrograms(): Map<number, ProgRun> {
  const r = spawnSync('bpftool', ['prog', 'show', '-j'], { encoding: 'utf8', maxBuffer: 64 << 20 });
  const out = new Map<number, ProgRun>();
  for (const p of JSON.parse(r.stdout || '[]') as Array<{ id: number; name?: string; run_time_ns?: number; run_cnt?: number }>) {
    out.set(p.id, { id: p.id, name: p.name ?? '', runTimeNs: p.run_time_ns ?? 0, runCnt: p.run_cnt ?? 0 });
  }
  return out;
}

function startNginx(dir: string): ChildProcess {
  fs.mkdirSync(path.join(dir, 'html'), { recursive: true });
  fs.writeFileSync(path.join(dir, 'html', 'index.html'), 'x'.repeat(612));
  const conf = path.join(dir, 'nginx.conf');
  fs.writeFileSync(
    conf,
    `daemon off;\nworker_processes 1;\npid ${dir}/nginx.pid;\nerror_log ${dir}/error.log;\nevents { worker_connections 4096; }\n` +
      `http {\n  access_log off;\n  client_body_temp_path ${dir}/body;\n  proxy_temp_path ${dir}/proxy;\n  fastcgi_temp_path ${dir}/fastcgi;\n  uwsgi_temp_path ${dir}/uwsgi;\n  scgi_temp_path ${dir}/scgi;\n` +
      `  server { listen 127.0.0.1:${PORT}; root ${dir}/html; keepalive_timeout 0; }\n}\n`,
  );
  return spawn('nginx', ['-c', conf, '-p', dir], { stdio: 'ignore' });
}

interface Workload {
  name: string;
  /** Runs once; resolves with its throughput (per second) and a unit. */
  run(seconds: number): Promise<number>;
  unit: string;
}

function runCapture(cmd: string, args: string[]): Promise<string> {
  return new Promise((resolve, reject) => {
    const c = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    c.stdout.on('data', (d: Buffer) => (out += d.toString()));
    c.stderr.on('data', (d: Buffer) => (out += d.toString()));
    c.on('exit', (code) => (code === 0 ? resolve(out) : reject(new Error(`${cmd} exited with ${code}: ${out.slice(-500)}`))));
  });
}

const wrk: Workload = {
  name: 'wrk Connection: close -> nginx (loopback)',
  unit: 'requests/s',
  run: async (seconds) => {
    const out = await runCapture('wrk', ['-t1', '-c16', `-d${seconds}s`, '-H', 'Connection: close', `http://127.0.0.1:${PORT}/`]);
    const m = /Requests\/sec:\s+([\d.]+)/.exec(out);
    if (!m) throw new Error(`no Requests/sec in wrk output: ${out}`);
    return Number(m[1]);
  },
};

const switches: Workload = {
  name: 'stress-ng --switch 2 (pipe ping-pong)',
  unit: 'switch ops/s',
  run: async (seconds) => {
    const out = await runCapture('stress-ng', ['--switch', '2', '--timeout', `${seconds}s`, '--metrics-brief']);
    // "stress-ng: info:  [pid] switch  <bogo ops> <real time> <usr> <sys> <bogo ops/s real> ..."
    const m = /switch\s+(\d+)\s+([\d.]+)\s+[\d.]+\s+[\d.]+\s+([\d.]+)/.exec(out);
    if (!m) throw new Error(`no switch metrics in stress-ng output: ${out}`);
    return Number(m[3]);
  },
};

const BPFTRACE_TCP = `
tracepoint:sock:inet_sock_set_state /args->protocol == 6/ {
  if (args->newstate == 2) { @birth[args->skaddr] = nsecs; }
  if (args->oldstate == 2 && args->newstate == 1 && @birth[args->skaddr]) { @connect_us = hist((nsecs - @birth[args->skaddr]) / 1000); }
  if (args->oldstate == 3 && args->newstate == 1) { @birth[args->skaddr] = nsecs; }
  if (args->newstate == 7) {
    if (@birth[args->skaddr]) { @lifetime_us = hist((nsecs - @birth[args->skaddr]) / 1000); }
    delete(@birth[args->skaddr]);
  }
}
tracepoint:tcp:tcp_probe { @srtt_us = hist(args->srtt); }
tracepoint:tcp:tcp_retransmit_skb { @retransmits = count(); }
tracepoint:tcp:tcp_receive_reset { @resets = count(); }
`;

// bpftrace's tools/runqlat.bt, in bpftrace 0.17's args-> syntax.
const BPFTRACE_RUNQLAT = `
tracepoint:sched:sched_wakeup, tracepoint:sched:sched_wakeup_new { @qtime[args->pid] = nsecs; }
tracepoint:sched:sched_switch {
  if (args->prev_state == 0) { @qtime[args->prev_pid] = nsecs; }
  $ns = @qtime[args->next_pid];
  if ($ns) { @usecs = hist((nsecs - $ns) / 1000); }
  delete(@qtime[args->next_pid]);
}
`;

interface Tool {
  name: string;
  start(): ChildProcess;
}

function bpftraceTool(name: string, script: string): Tool {
  return { name, start: () => spawn('bpftrace', ['-e', script], { stdio: ['ignore', 'ignore', 'pipe'] }) };
}

function ebpfprofTool(name: string, args: string[]): Tool {
  return { name, start: () => spawn(BIN, args, { stdio: ['ignore', 'ignore', 'pipe'] }) };
}

const NONE: Tool = { name: 'no tracer', start: () => spawn('true') };

interface Run {
  workload: string;
  tool: string;
  round: number;
  throughput: number;
  toolCpuPct: number;
  bpfCpuPct: number;
  bpfNsPerRun: number;
  bpfRuns: number;
}

async function measure(w: Workload, tool: Tool, seconds: number, round: number): Promise<Run> {
  const before = bpfPrograms();
  const proc = tool.start();
  let stderr = '';
  proc.stderr?.on('data', (d: Buffer) => (stderr += d.toString()));
  const isNone = tool === NONE;
  if (!isNone) await sleep(WARMUP_MS);
  if (!isNone && proc.exitCode !== null) throw new Error(`${tool.name} exited early: ${stderr}`);
  const mid = bpfPrograms();
  const ticks0 = isNone ? 0 : (cpuTicks(proc.pid!) ?? 0);
  const t0 = Date.now();
  const throughput = await w.run(seconds);
  const elapsedS = (Date.now() - t0) / 1000;
  const ticks1 = isNone ? 0 : (cpuTicks(proc.pid!) ?? ticks0);
  const after = bpfPrograms();
  // The tool's programs: loaded after `before`; their cost during the workload: after - mid.
  let runTimeNs = 0;
  let runs = 0;
  for (const [id, p] of after) {
    if (before.has(id)) continue;
    const m = mid.get(id);
    runTimeNs += p.runTimeNs - (m?.runTimeNs ?? 0);
    runs += p.runCnt - (m?.runCnt ?? 0);
  }
  if (!isNone) {
    const gone = new Promise<void>((r) => proc.once('exit', () => r()));
    proc.kill('SIGINT');
    const timer = setTimeout(() => proc.kill('SIGKILL'), 30_000);
    await gone;
    clearTimeout(timer);
  }
  return {
    workload: w.name,
    tool: tool.name,
    round,
    throughput,
    toolCpuPct: isNone ? 0 : (100 * (ticks1 - ticks0)) / CLK_TCK / elapsedS,
    bpfCpuPct: (100 * runTimeNs) / 1e9 / elapsedS,
    bpfNsPerRun: runs > 0 ? runTimeNs / runs : 0,
    bpfRuns: runs,
  };
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const n = s.length;
  return n === 0 ? NaN : n % 2 ? s[(n - 1) / 2]! : (s[n / 2 - 1]! + s[n / 2]!) / 2;
}

async function main(): Promise<void> {
  const runs = arg('--runs', 5);
  const seconds = arg('--seconds', 10);
  ensureTools();
  const statsBefore = fs.readFileSync('/proc/sys/kernel/bpf_stats_enabled', 'utf8').trim();
  fs.writeFileSync('/proc/sys/kernel/bpf_stats_enabled', '1');
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'ebpfprof-bench-nginx-'));
  const nginx = startNginx(dir);
  const results: Run[] = [];
  try {
    await sleep(500);
    const only = argString('--only');
    if (only !== undefined && only !== 'tcp' && only !== 'switch') throw new Error(`--only takes tcp or switch, got ${only}`);
    const plans: Array<{ w: Workload; tools: Tool[] }> = [
      ...(only === 'switch' ? [] : [{ w: wrk, tools: [NONE, ebpfprofTool('ebpfprof tcp', ['tcp', '-q']), bpftraceTool('bpftrace (tcp tracepoints)', BPFTRACE_TCP)] }]),
      ...(only === 'tcp'
        ? []
        : [
            {
              w: switches,
              tools: [NONE, ebpfprofTool('ebpfprof sched', ['sched', '-q']), ebpfprofTool('ebpfprof offcpu -a', ['offcpu', '-a', '-q', '-o', path.join(dir, 'off.pb.gz')]), bpftraceTool('bpftrace runqlat.bt', BPFTRACE_RUNQLAT)],
            },
          ]),
    ];
    for (let round = 0; round < runs; round++) {
      for (const { w, tools } of plans) {
        // Rotate the order so that no tool always runs first (or right after another).
        const order = tools.map((_, i) => tools[(i + round) % tools.length]!);
        for (const tool of order) {
          const r = await measure(w, tool, seconds, round);
          results.push(r);
          process.stderr.write(`round ${round + 1}/${runs} ${w.name} | ${tool.name}: ${r.throughput.toFixed(0)} ${w.unit}, tool ${r.toolCpuPct.toFixed(2)}% CPU, BPF ${r.bpfCpuPct.toFixed(2)}% (${r.bpfNsPerRun.toFixed(0)} ns x ${r.bpfRuns})\n`);
        }
      }
    }
  } finally {
    nginx.kill('SIGTERM');
    fs.writeFileSync('/proc/sys/kernel/bpf_stats_enabled', statsBefore);
  }
  const jsonOut = argString('--json');
  if (jsonOut) fs.writeFileSync(jsonOut, `${JSON.stringify(results, null, 2)}\n`);

  const lines: string[] = [];
  for (const w of [wrk, switches]) {
    const mine = results.filter((r) => r.workload === w.name);
    if (mine.length === 0) continue; // left out with --only
    const base = median(mine.filter((r) => r.tool === NONE.name).map((r) => r.throughput));
    const baseRange = mine.filter((r) => r.tool === NONE.name).map((r) => r.throughput);
    lines.push(`### ${w.name}`, '', `| | ${w.unit}, median (min–max) | vs. no tracer | tool CPU (% of a core) | BPF programs (% of a CPU) | BPF ns per program run |`, '| --- | --- | --- | --- | --- | --- |');
    for (const tool of [...new Set(mine.map((r) => r.tool))]) {
      const rs = mine.filter((r) => r.tool === tool);
      const tp = rs.map((r) => r.throughput);
      const m = median(tp);
      const vs = tool === NONE.name ? '—' : `${(((m - base) / base) * 100).toFixed(1)}%`;
      lines.push(
        `| ${tool} | ${m.toFixed(0)} (${Math.min(...tp).toFixed(0)}–${Math.max(...tp).toFixed(0)}) | ${vs} | ${tool === NONE.name ? '—' : median(rs.map((r) => r.toolCpuPct)).toFixed(2)} | ${tool === NONE.name ? '—' : median(rs.map((r) => r.bpfCpuPct)).toFixed(2)} | ${tool === NONE.name ? '—' : median(rs.map((r) => r.bpfNsPerRun)).toFixed(0)} |`,
      );
    }
    lines.push('', `No-tracer spread: ${Math.min(...baseRange).toFixed(0)}–${Math.max(...baseRange).toFixed(0)} ${w.unit}.`, '');
  }
  process.stdout.write(`${lines.join('\n')}\n`);
}

void main().catch((e) => {
  process.stderr.write(`${(e as Error).stack ?? String(e)}\n`);
  process.exitCode = 1;
});
