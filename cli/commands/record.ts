// SPDX-License-Identifier: Apache-2.0
/** ebpfprof record: a CPU profile of a process, the whole host, or a command, written to a file. */
import * as path from 'node:path';
import { Command } from 'commander';
import { EbpfprofError } from '../../src/errors';
import { assertWritable, DEFAULT_OUTPUT, encodeProfile, OUTPUT_FORMATS, OutputFormat, writeOutputFile } from '../../src/output/profile-file';
import { record, RecordResult, RecordSummary, RecordTarget } from '../../src/record/recorder';
import { MAX_FREQUENCY_HZ, MIN_FREQUENCY_HZ, UNWIND_MODES, UnwindMode } from '../../src/sampler/cpu-sampler';
import { assertCanProfile, assertKernelSupportsProfiling } from '../../src/system/privileges';
import { EXIT_FAILURE } from '../exit-codes';
import { parseChoice, parseDuration, parseIntegerIn, parsePid } from '../options';
import { ProgressLine } from '../progress';
import { addStrictModeOptions, confineAfterLoad, planStrictMode, StrictModeFlags, StrictModePlan } from '../strict-mode';

interface RecordFlags extends StrictModeFlags {
  pid?: string;
  all?: boolean;
  freq: string;
  duration?: string;
  output?: string;
  format: string;
  open?: boolean;
  quiet?: boolean;
  callGraph: string;
}

export interface RecordPlan {
  target: RecordTarget;
  frequencyHz: number;
  durationMs?: number;
  format: OutputFormat;
  output: string;
  open: boolean;
  quiet: boolean;
  callGraph: UnwindMode;
  strictMode: StrictModePlan;
}

/** Validates every flag before anything is loaded: bad input fails in one line, fast. */
export function planRecord(flags: RecordFlags, command: string[]): RecordPlan {
  const chosen = [flags.pid !== undefined, flags.all === true, command.length > 0].filter(Boolean).length;
  if (chosen !== 1) {
    throw new EbpfprofError('EBADARG', 'say what to profile with exactly one of -p/--pid PID, -a/--all, or -- CMD ARGS');
  }
  const target: RecordTarget =
    flags.pid !== undefined ? { kind: 'pid', pid: parsePid(flags.pid) } : flags.all ? { kind: 'all' } : { kind: 'command', argv: command };
  const format = parseChoice(flags.format, '--format', OUTPUT_FORMATS);
  const output = flags.output ?? DEFAULT_OUTPUT[format];
  assertWritable(output);
  return {
    target,
    frequencyHz: parseIntegerIn(flags.freq, '--freq', MIN_FREQUENCY_HZ, MAX_FREQUENCY_HZ, ' Hz'),
    ...(flags.duration !== undefined ? { durationMs: parseDuration(flags.duration) } : {}),
    format,
    output,
    open: flags.open === true,
    quiet: flags.quiet === true,
    callGraph: parseChoice(flags.callGraph, '--call-graph', UNWIND_MODES),
    strictMode: planStrictMode(flags),
  };
}

function pct(n: number, of: number): string {
  return of === 0 ? '0%' : `${((100 * n) / of).toFixed(1)}%`;
}

export function summaryLines(s: RecordSummary): string[] {
  const cpuS = s.sampler.aggregated + s.sampler.ringBufferSent > 0 ? ` (${((s.samples * 1e9) / s.frequencyHz / 1e9).toFixed(1)} s of CPU)` : '';
  return [
    `recorded ${s.samples} samples${cpuS} from ${s.processes} processes, ${s.threads} threads in ${(s.elapsedMs / 1000).toFixed(1)} s at ${s.frequencyHz} Hz`,
    `lost ${s.lostSamples} samples; ${s.truncatedSamples} (${pct(s.truncatedSamples, s.samples)}) had truncated stacks; ` +
      `${s.unsymbolizedSamples} (${pct(s.unsymbolizedSamples, s.samples)}) had unsymbolized frames; ${s.stackErrors} stacks could not be read`,
    ...callGraphLines(s),
  ];
}

/** How user stacks were walked, and how the table-driven walks ended. */
function callGraphLines(s: RecordSummary): string[] {
  if (s.callGraphFallback !== null) return [`user stacks: frame pointers only: ${s.callGraphFallback}`];
  const u = s.unwinder;
  if (s.callGraph === 'fp' || u === null) return ['user stacks: frame pointers only (--call-graph fp)'];
  const st = s.sampler;
  const walks = st.unwindEndOk + st.unwindEndFpZero + st.unwindEndTruncated + st.unwindEndReadFault + st.unwindEndNoProgress + st.unwindEndUnsupported + st.unwindEndUnknownPc;
  const failed = Object.entries(u.binariesWithoutTables).filter(([, n]) => n > 0).map(([why, n]) => `${n} ${why}`);
  return [
    `user stacks: unwind tables for ${u.binariesWithTables} binaries (${(u.kernel.residentBytes / 1048576).toFixed(1)} MiB in the kernel, built in ${u.tableBuildMs} ms)` +
      (failed.length > 0 ? `, frame pointers for binaries without: ${failed.join(', ')}` : ''),
    `table walks ${walks}: ${pct(st.unwindEndOk, walks)} reached the outermost frame, ${pct(st.unwindEndFpZero, walks)} ended at a null frame pointer, ` +
      `${pct(st.unwindEndReadFault + st.unwindEndNoProgress + st.unwindEndUnsupported + st.unwindEndUnknownPc, walks)} stopped early, ${pct(st.unwindEndTruncated, walks)} truncated; ` +
      `${st.unwindNoProcess} samples of not yet registered processes used frame pointers`,
  ];
}

export async function runRecord(plan: RecordPlan): Promise<number> {
  assertKernelSupportsProfiling();
  assertCanProfile();
  const abort = new AbortController();
  let interrupts = 0;
  const onSigint = (): void => {
    interrupts++;
    if (interrupts > 1) process.exit(130);
    if (!plan.quiet) process.stderr.write('\nebpfprof: stopping, writing the profile (Ctrl-C again to quit at once)\n');
    abort.abort();
  };
  process.on('SIGINT', onSigint);
  process.on('SIGTERM', onSigint);
  const progress = new ProgressLine();
  let result: RecordResult;
  try {
    result = await record({
      target: plan.target,
      frequencyHz: plan.frequencyHz,
      ...(plan.durationMs !== undefined ? { durationMs: plan.durationMs } : {}),
      signal: abort.signal,
      callGraph: plan.callGraph,
      onReady: () => void confineAfterLoad(plan.strictMode, plan.quiet),
      ...(plan.quiet ? {} : { onProgress: (p) => progress.update(p) }),
    });
  } finally {
    process.off('SIGINT', onSigint);
    process.off('SIGTERM', onSigint);
    if (!plan.quiet) progress.finish();
  }
  const { profile, summary } = result;
  const written = writeOutputFile(plan.output, encodeProfile(profile, plan.format));
  if (!plan.quiet) for (const line of summaryLines(summary)) process.stderr.write(`ebpfprof: ${line}\n`);
  if (summary.samples === 0) process.stderr.write('ebpfprof: no samples were recorded: the target used no CPU while recording\n');
  process.stdout.write(`${written}\n`);
  if (plan.open) {
    const { writeViewerPage } = await import('../../viewer/page.js');
    const { openInBrowser } = await import('../open-browser.js');
    const page = writeViewerPage(profile, `${written.replace(/(\.pb\.gz|\.folded|\.speedscope\.json)$/, '')}.html`, path.basename(written));
    process.stdout.write(`${page}\n`);
    openInBrowser(page);
  }
  if (summary.commandExit && summary.commandExit.code !== 0 && summary.endReason === 'command-exited') {
    const how = summary.commandExit.signal ? `was killed by ${summary.commandExit.signal}` : `exited with status ${summary.commandExit.code}`;
    process.stderr.write(`ebpfprof: the command ${how}\n`);
  }
  if (summary.endReason === 'target-exited' && plan.target.kind === 'pid') {
    process.stderr.write(
      `ebpfprof: process ${plan.target.pid} exited after ${(summary.elapsedMs / 1000).toFixed(1)} s; the profile of its ${summary.samples} samples was written\n`,
    );
    return EXIT_FAILURE;
  }
  return 0;
}

export function registerRecord(program: Command): void {
  const command = program
    .command('record')
    .description('record a CPU profile (kernel + user stacks) of a process, the whole host, or a command')
    .usage('[options] (-p PID | -a | -- CMD [ARGS...])')
    .option('-p, --pid <pid>', 'profile this process (all its threads)')
    .option('-a, --all', 'profile the whole host')
    .option('-F, --freq <hz>', `samples per second per CPU, ${MIN_FREQUENCY_HZ}-${MAX_FREQUENCY_HZ}`, '99')
    .option('-d, --duration <time>', 'stop after this long (10s, 500ms, 2m); default: until Ctrl-C or the target ends')
    .option('-o, --output <file>', 'output file (default: ebpfprof.pb.gz, .folded or .speedscope.json)')
    .option('--format <format>', `output format: ${OUTPUT_FORMATS.join(', ')}`, 'pprof')
    .option('--open', 'also write a flame-graph page next to the output and open it in a browser')
    .option('-g, --call-graph <mode>', `how user stacks are walked: dwarf (unwind tables from .eh_frame, frame pointers where none) or fp (frame pointers only)`, 'dwarf')
    .option('-q, --quiet', 'no progress or summary on stderr')
    .argument('[command...]', 'command to start and profile until it exits (after --)');
  addStrictModeOptions(command).action(async (argv: string[], flags: RecordFlags) => {
    process.exitCode = await runRecord(planRecord(flags, argv));
  });
}
