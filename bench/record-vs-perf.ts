// SPDX-License-Identifier: Apache-2.0
/**
 * Benchmark: the same whole-host workload with no profiler, under `ebpfprof record -a -F 99`, under
 * `perf record -a -F 99 -g`, and under bpftrace's `profile:hz:99 { @[kstack, ustack] = count(); }`,
 * interleaved over several rounds. Reports per-function shares side by side (ebpfprof vs perf), each
 * profiler's CPU (steady state while the workload runs, and in total), peak RSS, the in-kernel cost
 * per sample of the BPF programs, and the workload's slowdown.
 *
 *   node dist/bench/record-vs-perf.js [--runs 5] [--seconds 20] [--json out.json]
 *
 * Needs root, perf (linux-perf), bpftrace, gcc. Prints a Markdown report for BENCHMARKS.md.
 */
import { ChildProcess, execFileSync, spawn, spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { decodeProfile } from '../src/decode';
import { leafShares, samplesOf } from '../src/profile/analysis';
import { arg, argString, bpfProgramStats, CLK_TCK, cpuTicks, fmt, median, nsPerRun, watchUntilExit, withBpfStats } from './measure';

const ROOT = path.resolve(__dirname, '..', '..');
/** The installed entry point, with the V8 settings users get. */
const BIN = path.join(ROOT, 'bin', 'ebpfprof');
const FUNCTIONS = Array.from({ length: 10 }, (_, i) => `fn${String(i + 1).padStart(2, '0')}`);
const EXPECTED = new Map(FUNCTIONS.map((f, i) => [f, (100 * (i + 1)) / 55]));
const WARMUP_MS = 3000;

type Mode = 'baseline' | 'ebpfprof' | 'perf' | 'bpftrace';

interface Run {
  mode: Mode;
  round: number;
  /** Wall time of the fixed amount of work, seconds. */
  workloadS: number;
  /** Profiler CPU while the workload ran, % of one core. */
  steadyCpuPct: number;
  /** Profiler CPU from start to exit (load, symbolization, writing), seconds. */
  totalCpuS: number;
  peakRssMiB: number;
  /** In-kernel cost per sample of the profiler's BPF program (run-time stats), ns. */
  bpfNsPerRun: number | null;
  /** Post-processing CPU (perf report), seconds. */
  reportCpuS: number | null;
  /** Self shares of fn01..fn10 in the workload, % of the workload's samples. */
  shares: Map<string, number> | null;
  samples: number;
}

function buildWorkload(dir: string): string {
  const out = path.join(dir, 'mix');
  execFileSync('gcc', ['-O0', '-fno-omit-frame-pointer', '-fno-inline', '-o', out, path.join(ROOT, 'bench', 'workloads', 'mix.c'), '-lpthread']);
  return out;
}

function runWorkload(bin: string, rounds: number): Promise<{ pid: number; seconds: number }> {
  return new Promise((resolve, reject) => {
    const child = spawn(bin, [String(rounds), String(os.cpus().length)], { stdio: ['ignore', 'pipe', 'inherit'] });
    let out = '';
    child.stdout.on('data', (d: Buffer) => (out += d.toString()));
    child.on('exit', (code) => (code === 0 ? resolve({ pid: child.pid!, seconds: Number(out.trim()) }) : reject(new Error(`workload exited ${code}`))));
  });
}

/** Self shares per symbol of one pid in perf.data, from `perf report`. */
function perfShares(file: string, pid: number): { shares: Map<string, number>; cpuS: number } {
  const r = spawnSync('perf', ['report', '-i', file, '--stdio', '--no-children', '-g', 'none', '--percentage', 'relative', '--pid', String(pid), '--sort', 'sym', '-F', 'overhead,sym', '-q'], {
    encoding: 'utf8',
    maxBuffer: 64 << 20,
  });
  if (r.status !== 0) throw new Error(`perf report failed: ${r.stderr}`);
  const shares = new Map<string, number>();
  for (const line of r.stdout.split('\n')) {
    const m = /^\s*([\d.]+)%\s+\[[.k]\]\s+(\S+)/.exec(line);
    if (m) shares.set(m[2]!, Number(m[1]));
  }
  return { shares, cpuS: reportCpu(file, pid) };
}

/** CPU seconds `perf report` takes to turn perf.data into per-symbol shares (perf symbolizes offline). */
function reportCpu(file: string, pid: number): number {
  const r = spawnSync('bash', ['-c', `TIMEFORMAT='%U %S'; { time perf report -i ${file} --stdio --no-children -g none --percentage relative --pid ${pid} --sort sym -q > /dev/null 2>&1; } 2>&1`], {
    encoding: 'utf8',
  });
  const [u, s] = r.stdout.trim().split(/\s+/).map(Number);
  return (u ?? 0) + (s ?? 0);
}

async function oneRun(mode: Mode, round: number, bin: string, rounds: number, dir: string): Promise<Run> {
  let profiler: ChildProcess | null = null;
  const out = path.join(dir, `${mode}-${round}`);
  if (mode === 'ebpfprof') profiler = spawn(BIN, ['record', '-a', '-F', '99', '-q', '-o', `${out}.pb.gz`], { stdio: ['ignore', 'ignore', 'inherit'] });
  if (mode === 'perf') profiler = spawn('perf', ['record', '-F', '99', '-a', '-g', '-q', '-o', `${out}.data`], { stdio: ['ignore', 'ignore', 'inherit'] });
  if (mode === 'bpftrace') profiler = spawn('bpftrace', ['-e', 'profile:hz:99 { @[kstack, ustack] = count(); }'], { stdio: ['ignore', 'ignore', 'inherit'] });
  const watch = profiler ? watchUntilExit(profiler) : null;
  if (profiler) await sleep(WARMUP_MS);
  // bpftrace names a profile:hz:99 program after its frequency.
  const bpfName = mode === 'ebpfprof' ? ['on_sample_dwarf', 'on_sample'] : ['99'];
  const bpf0 = profiler && mode !== 'perf' ? bpfProgramStats(bpfName) : null;
  const c0 = profiler ? cpuTicks(profiler.pid!) ?? 0 : 0;
  const t0 = process.hrtime.bigint();
  const w = await runWorkload(bin, rounds);
  const windowS = Number(process.hrtime.bigint() - t0) / 1e9;
  const c1 = profiler ? cpuTicks(profiler.pid!) ?? 0 : 0;
  const bpf1 = profiler && mode !== 'perf' ? bpfProgramStats(bpfName) : null;
  let totalCpuS = 0;
  let peakRssMiB = 0;
  if (profiler && watch) {
    profiler.kill('SIGINT');
    const end = await watch;
    totalCpuS = end.ticks / CLK_TCK;
    peakRssMiB = end.hwm / 1024;
  }
  let shares: Map<string, number> | null = null;
  let samples = 0;
  let reportCpuS: number | null = null;
  if (mode === 'ebpfprof') {
    const p = decodeProfile(fs.readFileSync(`${out}.pb.gz`));
    const mine = samplesOf(p, w.pid);
    samples = mine.reduce((n, s) => n + s.count, 0);
    shares = leafShares(p, mine);
  }
  if (mode === 'perf') {
    const r = perfShares(`${out}.data`, w.pid);
    shares = r.shares;
    reportCpuS = r.cpuS;
  }
  const bpfNsPerRun = nsPerRun(bpf0, bpf1);
  return {
    mode,
    round,
    workloadS: w.seconds,
    steadyCpuPct: profiler ? (100 * (c1 - c0)) / CLK_TCK / windowS : 0,
    totalCpuS,
    peakRssMiB,
    bpfNsPerRun,
    reportCpuS,
    shares,
    samples,
  };
}

async function main(): Promise<void> {
  const runs = arg('--runs', 5);
  const seconds = arg('--seconds', 20);
  const modes: Mode[] = ['baseline', 'ebpfprof', 'perf', 'bpftrace'];
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'ebpfprof-bench-'));
  const bin = buildWorkload(dir);
  const calib = await runWorkload(bin, 200);
  const rounds = Math.max(50, Math.round((200 * seconds) / calib.seconds));
  const results: Run[] = [];
  await withBpfStats(async () => {
    for (let r = 0; r < runs; r++) {
      // Rotate the order so no mode always runs first or last.
      const order = modes.map((_, i) => modes[(i + r) % modes.length]!);
      for (const mode of order) {
        const run = await oneRun(mode, r, bin, rounds, dir);
        results.push(run);
        process.stderr.write(`round ${r} ${mode}: workload ${fmt(run.workloadS, 3)} s, cpu ${fmt(run.steadyCpuPct)}%, rss ${fmt(run.peakRssMiB, 1)} MiB\n`);
      }
    }
  });

  const by = (m: Mode): Run[] => results.filter((x) => x.mode === m);
  const base = median(by('baseline').map((x) => x.workloadS));
  const lines: string[] = [];
  lines.push(`Workload: bench/workloads/mix.c, ${os.cpus().length} threads, ${rounds} rounds (~${seconds} s), ten functions with costs 1..10; ${runs} interleaved rounds per mode; medians.`);
  lines.push('');
  lines.push('| | workload time (min–max) | slowdown | profiler CPU while sampling | profiler CPU in total | peak RSS | BPF ns/sample | post-processing CPU |');
  lines.push('| --- | --- | --- | --- | --- | --- | --- | --- |');
  for (const m of modes) {
    const xs = by(m);
    const wt = median(xs.map((x) => x.workloadS));
    const bpf = xs.map((x) => x.bpfNsPerRun).filter((x): x is number => x !== null);
    const rep = xs.map((x) => x.reportCpuS).filter((x): x is number => x !== null);
    lines.push(
      `| ${m} | ${fmt(wt, 3)} s (${fmt(Math.min(...xs.map((x) => x.workloadS)), 2)}–${fmt(Math.max(...xs.map((x) => x.workloadS)), 2)}) | ${m === 'baseline' ? '—' : `${fmt((100 * (wt - base)) / base)}%`} | ${m === 'baseline' ? '—' : `${fmt(median(xs.map((x) => x.steadyCpuPct)))}% of a core`} | ${
        m === 'baseline' ? '—' : `${fmt(median(xs.map((x) => x.totalCpuS)))} s`
      } | ${m === 'baseline' ? '—' : `${fmt(median(xs.map((x) => x.peakRssMiB)), 1)} MiB`} | ${bpf.length ? fmt(median(bpf), 0) : '—'} | ${rep.length ? `${fmt(median(rep))} s (perf report)` : '—'} |`,
    );
  }
  lines.push('');
  lines.push('Self shares of the workload\'s functions (% of the workload\'s samples, all rounds pooled by median):');
  lines.push('');
  lines.push('| function | by construction | ebpfprof | perf | ebpfprof − perf |');
  lines.push('| --- | --- | --- | --- | --- |');
  let worst = 0;
  for (const f of [...FUNCTIONS].reverse()) {
    const e = median(by('ebpfprof').map((x) => x.shares?.get(f) ?? 0));
    const p = median(by('perf').map((x) => x.shares?.get(f) ?? 0));
    worst = Math.max(worst, Math.abs(e - p));
    lines.push(`| ${f} | ${fmt(EXPECTED.get(f)!)}% | ${fmt(e)}% | ${fmt(p)}% | ${fmt(e - p)} |`);
  }
  lines.push('');
  lines.push(`Largest difference ebpfprof − perf: ${fmt(worst)} points. ebpfprof samples of the workload per run (median): ${median(by('ebpfprof').map((x) => x.samples))}.`);
  process.stdout.write(`${lines.join('\n')}\n`);
  const json = argString('--json');
  if (json) fs.writeFileSync(json, JSON.stringify(results.map((r) => ({ ...r, shares: r.shares ? Object.fromEntries(r.shares) : null })), null, 2));
  fs.rmSync(dir, { recursive: true, force: true });
}

main().catch((e) => {
  process.stderr.write(`${(e as Error).stack}\n`);
  process.exitCode = 1;
});
