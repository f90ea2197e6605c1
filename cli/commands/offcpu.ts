// SPDX-License-Identifier: Apache-2.0
/** ebpfprof offcpu: where threads block (off-CPU time with stacks), written as a profile. */
import * as path from 'node:path';
import { Command } from 'commander';
import { EbpfprofError } from '../../src/errors';
import { assertWritable, DEFAULT_OUTPUT, encodeProfile, OUTPUT_FORMATS, OutputFormat, writeOutputFile } from '../../src/output/profile-file';
import { assertCanProfile, assertKernelSupportsProfiling } from '../../src/system/privileges';
import type { AttachMethod } from '../../src/system/kernel-features';
import { formatNs } from '../../src/trace/histogram';
import { OffCpuSummary, OffCpuTarget, recordOffCpu } from '../../src/trace/offcpu-recorder';
import { EXIT_FAILURE } from '../exit-codes';
import { parseChoice, parsePid } from '../options';
import { interruptSignal, optionalDuration, parseAttach, parseTimeThreshold, printHooks } from './trace-options';
import { addStrictModeOptions, confineAfterLoad, planStrictMode, StrictModeFlags, StrictModePlan } from '../strict-mode';

interface OffCpuFlags extends StrictModeFlags {
  pid?: string;
  all?: boolean;
  duration?: string;
  minBlock: string;
  output?: string;
  format: string;
  open?: boolean;
  includePreempted?: boolean;
  kernelThreads?: boolean;
  attach?: string;
  verbose?: boolean;
  quiet?: boolean;
}

export interface OffCpuPlan {
  target: OffCpuTarget;
  durationMs?: number;
  minBlockNs: number;
  format: OutputFormat;
  output: string;
  open: boolean;
  includePreempted: boolean;
  kernelThreads: boolean;
  prefer?: AttachMethod;
  verbose: boolean;
  quiet: boolean;
  strictMode: StrictModePlan;
}

/** Validates every flag before anything is loaded. */
export function planOffCpu(flags: OffCpuFlags): OffCpuPlan {
  if ((flags.pid !== undefined) === (flags.all === true)) throw new EbpfprofError('EBADARG', 'say whose blocking to trace with exactly one of -p/--pid PID or -a/--all');
  const format = parseChoice(flags.format, '--format', OUTPUT_FORMATS);
  const output = flags.output ?? DEFAULT_OUTPUT[format].replace(/^ebpfprof\./, 'ebpfprof-offcpu.');
  assertWritable(output);
  const durationMs = optionalDuration(flags.duration);
  const prefer = parseAttach(flags.attach);
  return {
    target: flags.pid !== undefined ? { kind: 'pid', pid: parsePid(flags.pid) } : { kind: 'all' },
    ...(durationMs !== undefined ? { durationMs } : {}),
    minBlockNs: parseTimeThreshold(flags.minBlock, '--min-block'),
    format,
    output,
    open: flags.open === true,
    includePreempted: flags.includePreempted === true,
    kernelThreads: flags.kernelThreads === true,
    ...(prefer ? { prefer } : {}),
    verbose: flags.verbose === true,
    quiet: flags.quiet === true,
    strictMode: planStrictMode(flags),
  };
}

export function offCpuSummaryLines(s: OffCpuSummary): string[] {
  const pct = (n: number): string => (s.blocks === 0 ? '0%' : `${((100 * n) / s.blocks).toFixed(1)}%`);
  return [
    `recorded ${s.blocks} blocks, ${formatNs(s.blockedNs)} off CPU, from ${s.processes} processes, ${s.threads} threads in ${(s.elapsedMs / 1000).toFixed(1)} s`,
    `lost ${s.lostBlocks} blocks; ${s.tracer.short} shorter than --min-block left out; ${s.unsymbolizedBlocks} (${pct(s.unsymbolizedBlocks)}) had unsymbolized frames; ` +
      `${s.truncatedBlocks} truncated stacks; ${s.stackErrors} stacks could not be read; ${s.tracer.stackNotFound} stack ids not found`,
  ];
}

export async function runOffCpu(plan: OffCpuPlan): Promise<number> {
  assertKernelSupportsProfiling();
  assertCanProfile();
  const stop = interruptSignal(plan.quiet, 'writing the off-CPU profile');
  let result;
  try {
    result = await recordOffCpu({
      target: plan.target,
      ...(plan.durationMs !== undefined ? { durationMs: plan.durationMs } : {}),
      minBlockNs: plan.minBlockNs,
      includePreempted: plan.includePreempted,
      includeKernelThreads: plan.kernelThreads,
      ...(plan.prefer ? { prefer: plan.prefer } : {}),
      signal: stop.signal,
      onAttached: (hooks) => {
        if (plan.verbose) printHooks('offcpu', hooks);
        confineAfterLoad(plan.strictMode, plan.quiet);
      },
      ...(plan.quiet
        ? {}
        : {
            onProgress: (p) => {
              if (process.stderr.isTTY) process.stderr.write(`\r\x1b[Kebpfprof: ${(p.elapsedMs / 1000).toFixed(1)}s  blocks ${p.blocks}  lost ${p.lost}`);
            },
          }),
    });
  } finally {
    stop.dispose();
    if (!plan.quiet && process.stderr.isTTY) process.stderr.write('\n');
  }
  const { profile, summary } = result;
  const written = writeOutputFile(plan.output, encodeProfile(profile, plan.format));
  if (!plan.quiet) for (const line of offCpuSummaryLines(summary)) process.stderr.write(`ebpfprof: ${line}\n`);
  if (summary.blocks === 0) process.stderr.write('ebpfprof: no blocks were recorded: the target did not block while tracing\n');
  process.stdout.write(`${written}\n`);
  if (plan.open) {
    const { writeViewerPage } = await import('../../viewer/page.js');
    const { openInBrowser } = await import('../open-browser.js');
    const page = writeViewerPage(profile, `${written.replace(/(\.pb\.gz|\.folded|\.speedscope\.json|\.otlp\.pb\.gz)$/, '')}.html`, path.basename(written));
    process.stdout.write(`${page}\n`);
    openInBrowser(page);
  }
  if (summary.endReason === 'target-exited' && plan.target.kind === 'pid') {
    process.stderr.write(`ebpfprof: process ${plan.target.pid} exited after ${(summary.elapsedMs / 1000).toFixed(1)} s; the profile of its ${summary.blocks} blocks was written\n`);
    return EXIT_FAILURE;
  }
  return 0;
}

export function registerOffCpu(program: Command): void {
  const command = program
    .command('offcpu')
    .description('record where threads block: off-CPU time with kernel and user stacks, as a profile')
    .usage('[options] (-p PID | -a)')
    .option('-p, --pid <pid>', 'trace this process (all its threads)')
    .option('-a, --all', 'trace every user thread on the host')
    .option('-d, --duration <time>', 'stop after this long (10s, 500ms, 2m); default: until Ctrl-C or the target ends')
    .option('--min-block <time>', 'leave out blocks shorter than this (1ms, 250us; a bare number is ms)', '0')
    .option('-o, --output <file>', 'output file (default: ebpfprof-offcpu.pb.gz, .folded, .speedscope.json or .otlp.pb.gz)')
    .option('--format <format>', `output format: ${OUTPUT_FORMATS.join(', ')}`, 'pprof')
    .option('--open', 'also write a flame-graph page next to the output and open it in a browser')
    .option('--include-preempted', 'also count time spent runnable after preemption (default: only blocked time)')
    .option('--kernel-threads', 'also trace kernel threads (with --all)')
    .option('--attach <method>', 'try this attach method first (tp_btf, raw_tp)')
    .option('-v, --verbose', 'say which attach method each hook uses and why')
    .option('-q, --quiet', 'no progress or summary on stderr');
  addStrictModeOptions(command).action(async (flags: OffCpuFlags) => {
    process.exitCode = await runOffCpu(planOffCpu(flags));
  });
}
