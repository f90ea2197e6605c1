// SPDX-License-Identifier: Apache-2.0
/**
 * Benchmark: complete stacks without frame pointers. The same fixed amount of work of
 * test/workloads/deepchain.c, built -O2 -fomit-frame-pointer (and run against Debian's libc, which
 * has no frame pointers either), with no profiler and under each of:
 *   ebpfprof record -p PID -g dwarf   (unwind tables walked in the kernel)
 *   ebpfprof record -p PID -g fp      (frame pointers only: the cost baseline of the 2x target)
 *   perf record -p PID --call-graph fp
 *   perf record -p PID --call-graph dwarf   (8 KiB stack copies, unwound by perf script)
 * interleaved over several rounds, at 99 Hz. Reports the share of samples whose stack reads
 * _start ... main -> level1 -> level2 -> level3 -> leaf, the leaf shares (75/25 by construction),
 * each tool's CPU while sampling and in total (with post-processing for perf), peak RSS, output size,
 * the in-kernel ns per sample of ebpfprof's program, and the workload's slowdown. Then the unwind
 * table of the largest binary on the machine (node): build time, rows, kernel bytes.
 *
 *   node dist/bench/unwind-vs-perf.js [--runs 5] [--seconds 10] [--json out.json]
 *
 * Needs root, perf (linux-perf), gcc. Prints a Markdown report for BENCHMARKS.md.
 */
import { ChildProcess, execFileSync, spawn, spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { decodeProfile } from '../src/decode';
import { framesOf, samplesOf } from '../src/profile/analysis';
import { BufferSource, ElfFile } from '../src/symbolize/elf-file';
import { loadUnwindTable } from '../src/unwind/elf-unwind';
import { CHUNK_SIZE, ROWS_PER_CHUNK } from '../src/unwind/kernel-layout';
import { arg, argString, bpfProgramStats, CLK_TCK, cpuTicks, fmt, median, nsPerRun, spread, watchUntilExit, withBpfStats } from './measure';

const ROOT = path.resolve(__dirname, '..', '..');
const BIN = path.join(ROOT, 'bin', 'ebpfprof');
const CHAIN = ['main', 'level1', 'level2', 'level3'];
const WARMUP_MS = 2000;

type Mode = 'baseline' | 'ebpfprof-dwarf' | 'ebpfprof-fp' | 'perf-fp' | 'perf-dwarf';
const MODES: Mode[] = ['baseline', 'ebpfprof-dwarf', 'ebpfprof-fp', 'perf-fp', 'perf-dwarf'];

interface Run {
  mode: Mode;
  round: number;
  workloadS: number;
  /** Tool CPU while the workload ran, % of one core. */
  steadyCpuPct: number;
  /** Tool CPU from start to exit, seconds; for perf plus `perf script` turning perf.data into stacks. */
  totalCpuS: number;
  postCpuS: number | null;
  peakRssMiB: number;
  outputKiB: number;
  bpfNsPerSample: number | null;
  samples: number;
  /** % of the workload's samples whose stack starts at _start and holds main -> ... -> leaf. */
  completePct: number;
  leafA: number;
  leafB: number;
}

/** Root-first user stacks of one pid with their weights. */
type Stacks = Array<{ names: string[]; weight: number }>;

function complete(stacks: Stacks): { pct: number; samples: number; leafA: number; leafB: number } {
  let total = 0;
  let hit = 0;
  let a = 0;
  let b = 0;
  for (const s of stacks) {
    total += s.weight;
    const leaf = s.names.at(-1);
    if (leaf === 'leaf_a') a += s.weight;
    if (leaf === 'leaf_b') b += s.weight;
    const at = s.names.indexOf('main');
    const chainOk = at >= 0 && CHAIN.every((n, i) => s.names[at + i] === n) && (s.names[at + 4] === 'leaf_a' || s.names[at + 4] === 'leaf_b');
    if (s.names[0] === '_start' && chainOk) hit += s.weight;
  }
  const pct = (n: number): number => (total === 0 ? 0 : (100 * n) / total);
  return { pct: pct(hit), samples: total, leafA: pct(a), leafB: pct(b) };
}

function ebpfprofStacks(file: string, pid: number): Stacks {
  const p = decodeProfile(fs.readFileSync(file));
  return samplesOf(p, pid).map((s) => ({ names: framesOf(p, s).filter((f) => f.kind !== 'kernel').map((f) => f.name), weight: s.count }));
}

/** `perf script` stacks of one pid, and the CPU seconds it took (perf unwinds dwarf stacks here). */
function perfStacks(file: string, pid: number): { stacks: Stacks; cpuS: number } {
  const r = spawnSync('bash', ['-c', `TIMEFORMAT='%U %S'; { time perf script -i ${file} -F pid,ip,sym --pid ${pid} > ${file}.txt 2>/dev/null; } 2>&1`], { encoding: 'utf8' });
  const [u, s] = r.stdout.trim().split(/\s+/).map(Number);
  const text = fs.readFileSync(`${file}.txt`, 'utf8');
  const stacks: Stacks = [];
  for (const block of text.split('\n\n')) {
    const lines = block.split('\n').slice(1).filter((l) => l.trim() !== '');
    if (lines.length === 0) continue;
    // Leaf first; "[unknown]" where perf could not name or follow a frame. Kernel frames carry addresses >= 2^47.
    const names = lines
      .map((l) => l.trim().split(/\s+/))
      .filter((f) => f[0]!.length < 16 || !/^ffff/.test(f[0]!))
      .map((f) => f[1] ?? '[unknown]');
    stacks.push({ names: names.reverse(), weight: 1 });
  }
  return { stacks, cpuS: (u ?? 0) + (s ?? 0) };
}

function buildWorkload(dir: string): string {
  const out = path.join(dir, 'deepchain-nofp');
  execFileSync('gcc', ['-O2', '-fomit-frame-pointer', '-o', out, path.join(ROOT, 'test', 'workloads', 'deepchain.c')]);
  return out;
}

interface Started {
  child: ChildProcess;
  go: () => Promise<number>;
}

/** Starts the workload parked until go(), which resolves with the seconds its fixed work took. */
async function startWorkload(bin: string, iterations: number): Promise<Started> {
  const child = spawn(bin, ['-', String(iterations)], { stdio: ['pipe', 'pipe', 'inherit'] });
  let out = '';
  const lines: Array<() => void> = [];
  child.stdout!.on('data', (d: Buffer) => {
    out += d.toString();
    for (const l of lines.splice(0)) l();
  });
  const waitFor = (pred: () => boolean): Promise<void> =>
    new Promise((resolve) => {
      const check = (): void => (pred() ? resolve() : void lines.push(check));
      check();
    });
  await waitFor(() => out.includes('ready\n'));
  return {
    child,
    go: async () => {
      child.stdin!.end('go\n');
      await waitFor(() => /ready\n[\d.]+\n/.test(out));
      return Number(out.split('\n')[1]);
    },
  };
}

function startTool(mode: Mode, pid: number, out: string): ChildProcess | null {
  switch (mode) {
    case 'baseline':
      return null;
    case 'ebpfprof-dwarf':
    case 'ebpfprof-fp':
      return spawn(BIN, ['record', '-p', String(pid), '-F', '99', '-g', mode === 'ebpfprof-dwarf' ? 'dwarf' : 'fp', '-q', '-o', out], { stdio: ['ignore', 'ignore', 'inherit'] });
    case 'perf-fp':
    case 'perf-dwarf':
      return spawn('perf', ['record', '-q', '-F', '99', '--call-graph', mode === 'perf-fp' ? 'fp' : 'dwarf', '-p', String(pid), '-o', out], { stdio: ['ignore', 'ignore', 'inherit'] });
  }
}

async function oneRun(mode: Mode, round: number, bin: string, iterations: number, dir: string): Promise<Run> {
  const w = await startWorkload(bin, iterations);
  const pid = w.child.pid!;
  const out = path.join(dir, `${mode}-${round}.${mode.startsWith('perf') ? 'data' : 'pb.gz'}`);
  const tool = startTool(mode, pid, out);
  const watch = tool ? watchUntilExit(tool) : null;
  if (tool) await sleep(WARMUP_MS);
  const prog = mode === 'ebpfprof-dwarf' ? ['on_sample_dwarf'] : ['on_sample'];
  const bpf0 = mode.startsWith('ebpfprof') ? bpfProgramStats(prog) : null;
  const c0 = tool ? (cpuTicks(tool.pid!) ?? 0) : 0;
  const t0 = process.hrtime.bigint();
  const workloadS = await w.go();
  const windowS = Number(process.hrtime.bigint() - t0) / 1e9;
  const c1 = tool ? (cpuTicks(tool.pid!) ?? 0) : 0;
  const bpf1 = mode.startsWith('ebpfprof') ? bpfProgramStats(prog) : null;
  let totalCpuS = 0;
  let peakRssMiB = 0;
  if (tool && watch) {
    // The workload has exited: ebpfprof and perf both end (and write their output) when their target does.
    const end = await watch;
    totalCpuS = end.ticks / CLK_TCK;
    peakRssMiB = end.hwm / 1024;
  }
  let stacks: Stacks = [];
  let postCpuS: number | null = null;
  if (mode.startsWith('ebpfprof')) stacks = ebpfprofStacks(out, pid);
  if (mode.startsWith('perf')) {
    const p = perfStacks(out, pid);
    stacks = p.stacks;
    postCpuS = p.cpuS;
    totalCpuS += p.cpuS;
  }
  const c = complete(stacks);
  return {
    mode,
    round,
    workloadS,
    steadyCpuPct: tool ? (100 * (c1 - c0)) / CLK_TCK / windowS : 0,
    totalCpuS,
    postCpuS,
    peakRssMiB,
    outputKiB: tool && fs.existsSync(out) ? fs.statSync(out).size / 1024 : 0,
    bpfNsPerSample: nsPerRun(bpf0, bpf1),
    samples: c.samples,
    completePct: c.pct,
    leafA: c.leafA,
    leafB: c.leafB,
  };
}

/** The unwind table of one binary: build time (median of 3), rows, bytes in the kernel, heap used. */
function tableOf(file: string): string {
  const bytes = fs.readFileSync(file);
  const times: number[] = [];
  let rows = 0;
  let source = '';
  let heapMiB = 0;
  for (let i = 0; i < 3; i++) {
    const h0 = process.memoryUsage().heapUsed;
    const t0 = performance.now();
    const r = loadUnwindTable(new ElfFile(new BufferSource(bytes)), { maxRows: 2 ** 23 - 1, go: false });
    times.push(performance.now() - t0);
    if (typeof r === 'string') return `| ${file} | ${r} | | | |`;
    rows = r.table.pcs.length;
    source = r.source ?? '';
    heapMiB = Math.max(heapMiB, (process.memoryUsage().heapUsed - h0) / 1048576);
  }
  const kernelMiB = (Math.ceil(rows / ROWS_PER_CHUNK) * CHUNK_SIZE) / 1048576;
  const eh = new ElfFile(new BufferSource(bytes)).section('.eh_frame');
  return `| ${file} (${fmt(bytes.length / 1048576, 1)} MiB, ${source} ${fmt((eh?.size ?? 0) / 1048576, 2)} MiB) | ${fmt(median(times), 0)} ms | ${rows} | ${fmt(kernelMiB, 2)} MiB | ${fmt(heapMiB, 1)} MiB |`;
}

async function main(): Promise<void> {
  const runs = arg('--runs', 5);
  const seconds = arg('--seconds', 10);
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'ebpfprof-unwind-bench-'));
  const bin = buildWorkload(dir);
  const calib = await startWorkload(bin, 1000);
  const iterations = Math.max(1000, Math.round((1000 * seconds) / (await calib.go())));
  const results: Run[] = [];
  await withBpfStats(async () => {
    for (let r = 0; r < runs; r++) {
      const order = MODES.map((_, i) => MODES[(i + r) % MODES.length]!);
      for (const mode of order) {
        const run = await oneRun(mode, r, bin, iterations, dir);
        results.push(run);
        process.stderr.write(`round ${r} ${mode}: workload ${fmt(run.workloadS, 3)} s, complete ${fmt(run.completePct, 1)}%, cpu ${fmt(run.steadyCpuPct)}%\n`);
      }
    }
  });

  const by = (m: Mode): Run[] => results.filter((x) => x.mode === m);
  const base = median(by('baseline').map((x) => x.workloadS));
  const lines: string[] = [];
  lines.push(`Workload: test/workloads/deepchain.c built -O2 -fomit-frame-pointer, one thread, ${iterations} iterations (~${seconds} s), 99 Hz, ${runs} interleaved rounds per mode; medians (min–max).`);
  lines.push('');
  lines.push('| | complete stacks | leaf_a / leaf_b (75 / 25) | workload time | slowdown | tool CPU while sampling | tool CPU in total | peak RSS | output | BPF ns/sample |');
  lines.push('| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |');
  for (const m of MODES) {
    const xs = by(m);
    const wt = median(xs.map((x) => x.workloadS));
    const bpf = xs.map((x) => x.bpfNsPerSample).filter((x): x is number => x !== null);
    const post = xs.map((x) => x.postCpuS).filter((x): x is number => x !== null);
    const dash = m === 'baseline';
    lines.push(
      `| ${m} | ${dash ? '—' : `${spread(xs.map((x) => x.completePct), 1)}%`} | ${dash ? '—' : `${fmt(median(xs.map((x) => x.leafA)), 1)} / ${fmt(median(xs.map((x) => x.leafB)), 1)}`} | ${spread(xs.map((x) => x.workloadS), 3)} s | ${
        dash ? '—' : `${fmt((100 * (wt - base)) / base)}%`
      } | ${dash ? '—' : `${spread(xs.map((x) => x.steadyCpuPct))}%`} | ${dash ? '—' : `${fmt(median(xs.map((x) => x.totalCpuS)))} s${post.length ? ` (${fmt(median(post))} s perf script)` : ''}`} | ${
        dash ? '—' : `${fmt(median(xs.map((x) => x.peakRssMiB)), 1)} MiB`
      } | ${dash ? '—' : `${fmt(median(xs.map((x) => x.outputKiB)), 0)} KiB`} | ${bpf.length ? spread(bpf, 0) : '—'} |`,
    );
  }
  lines.push('');
  lines.push('Unwind tables of the largest binaries here (user-space build, rows, kernel memory in 4 KiB chunks, V8 heap growth while building):');
  lines.push('');
  lines.push('| binary | build | rows | in the kernel | heap |');
  lines.push('| --- | --- | --- | --- | --- |');
  for (const f of [fs.realpathSync(process.execPath), '/lib/x86_64-linux-gnu/libc.so.6', '/usr/lib/x86_64-linux-gnu/libstdc++.so.6']) lines.push(tableOf(f));
  process.stdout.write(`${lines.join('\n')}\n`);
  const json = argString('--json');
  if (json) fs.writeFileSync(json, JSON.stringify(results, null, 2));
  fs.rmSync(dir, { recursive: true, force: true });
}

main().catch((e) => {
  process.stderr.write(`${(e as Error).stack}\n`);
  process.exitCode = 1;
});
