// SPDX-License-Identifier: Apache-2.0
/**
 * ebpfprof verify: evidence that a profiler does not intrude on the process it observes (src/verify,
 * docs/verify.md). Progress on stderr, the summary on stdout, the report as JSON; exit status 0
 * without a high-severity finding, 3 with one (1: verify itself failed, 2: bad arguments).
 */
import type { Command } from 'commander';
import { EbpfprofError } from '../../src/errors';
import { formatSummary } from '../../src/verify/report';
import { runVerify, writeReport, type VerifyTarget } from '../../src/verify/verify';
import { parseDuration, parsePid } from '../options';
import { interruptSignal } from './trace-options';

interface VerifyFlags {
  pid?: string;
  agent?: string;
  duration: string;
  warmup: string;
  load?: string;
  json: string;
  manifests?: string;
  quiet?: boolean;
}

export interface VerifyPlan {
  target: VerifyTarget;
  agent?: string;
  durationMs: number;
  warmupMs: number;
  load?: string;
  json: string;
  manifests?: string;
  quiet: boolean;
}

export const DEFAULT_REPORT = 'non_intrusive_report.json';

export function planVerify(flags: VerifyFlags, command: string[]): VerifyPlan {
  if ((flags.pid !== undefined) === command.length > 0) throw new EbpfprofError('EBADARG', 'say what to verify against with exactly one of -p/--pid PID or -- CMD ARGS');
  const durationMs = parseDuration(flags.duration);
  if (durationMs < 2000) throw new EbpfprofError('EBADARG', `--duration must be at least 2s per phase, got ${JSON.stringify(flags.duration)}`);
  if (flags.agent !== undefined && flags.agent.trim() === '') throw new EbpfprofError('EBADARG', '--agent must be a command');
  if (flags.load !== undefined && flags.load.trim() === '') throw new EbpfprofError('EBADARG', '--load must be a command');
  return {
    target: flags.pid !== undefined ? { kind: 'pid', pid: parsePid(flags.pid) } : { kind: 'command', argv: command },
    ...(flags.agent !== undefined ? { agent: flags.agent } : {}),
    durationMs,
    warmupMs: flags.warmup === '0' ? 0 : parseDuration(flags.warmup, '--warmup'),
    ...(flags.load !== undefined ? { load: flags.load } : {}),
    json: flags.json,
    ...(flags.manifests !== undefined ? { manifests: flags.manifests } : {}),
    quiet: flags.quiet === true,
  };
}

export async function runVerifyCommand(plan: VerifyPlan): Promise<number> {
  // Ctrl-C stops what verify started (the profiler, a target) before exiting; twice quits at once.
  const stop = interruptSignal(plan.quiet, 'ending the profiler and the target verify started');
  let report;
  try {
    report = await runVerify({
      target: plan.target,
      ...(plan.agent !== undefined ? { agent: plan.agent } : {}),
      durationMs: plan.durationMs,
      warmupMs: plan.warmupMs,
      ...(plan.load !== undefined ? { load: plan.load } : {}),
      ...(plan.manifests !== undefined ? { manifestsDir: plan.manifests } : {}),
      ...(plan.quiet ? {} : { progress: (l: string) => process.stderr.write(`ebpfprof verify: ${l}\n`) }),
      signal: stop.signal,
    });
  } catch (e) {
    if (e instanceof EbpfprofError && e.code === 'EINTERRUPTED') {
      process.stderr.write(`ebpfprof: ${e.message}\n`);
      return 130;
    }
    throw e;
  } finally {
    stop.dispose();
  }
  const file = writeReport(report, plan.json);
  process.stdout.write(formatSummary(report, file));
  return report.exitCode;
}

export function registerVerify(program: Command): void {
  program
    .command('verify')
    .description('show that a profiler leaves the process it observes unchanged: a baseline phase, a phase with the profiler, checks, a JSON report')
    .usage('[options] (-p PID | -- CMD [ARGS...])')
    .option('-p, --pid <pid>', 'the target: a running process')
    .option('--agent <cmd>', "the profiler to judge, a shell command ({pid} is replaced by the target's pid); default: ebpfprof agent")
    .option('-d, --duration <time>', 'length of each phase (the load runs that long)', '30s')
    .option('--warmup <time>', 'how long the profiler runs under the load before the measured window (its start-up is reported, not judged)', '20s')
    .option('--load <cmd>', 'load command run in each phase (TARGET_PID and TARGET_URL are set); default: built-in HTTP load on the port the target listens on')
    .option('--json <file>', 'where the report goes', DEFAULT_REPORT)
    .option('--manifests <dir>', "also judge the Kubernetes manifests under DIR (securityContext, host mounts, runtime sockets, RBAC)")
    .option('-q, --quiet', 'no progress on stderr')
    .argument('[command...]', 'the target: a command verify starts and stops (after --)')
    .action(async (command: string[], flags: VerifyFlags) => {
      process.exitCode = await runVerifyCommand(planVerify(flags, command));
    });
}
