// SPDX-License-Identifier: Apache-2.0
/**
 * ebpfprof command line. Each command lives in cli/commands/<name>.ts and exports register(program).
 * Errors end here: one clear line on stderr and a non-zero exit.
 */
import { Command, CommanderError } from 'commander';
import { EbpfprofError, errorMessage } from '../src/errors';
import { registerAgent } from './commands/agent';
import { registerDoctor } from './commands/doctor';
import { registerOffCpu } from './commands/offcpu';
import { registerRecord } from './commands/record';
import { registerSched } from './commands/sched';
import { registerTcp } from './commands/tcp';
import { registerVerify } from './commands/verify';
import { registerView } from './commands/view';
import { EXIT_FAILURE, EXIT_USAGE } from './exit-codes';

export function buildProgram(): Command {
  const program = new Command('ebpfprof')
    .description('eBPF CPU profiler and tracer for Linux: pprof, OpenTelemetry, folded and speedscope output')
    .version(require('../../package.json').version as string)
    .showHelpAfterError(false)
    .exitOverride();
  registerRecord(program);
  registerView(program);
  registerDoctor(program);
  registerOffCpu(program);
  registerSched(program);
  registerTcp(program);
  registerAgent(program);
  registerVerify(program);
  return program;
}

export function reportError(e: unknown): number {
  if (e instanceof CommanderError) return e.exitCode === 0 ? 0 : EXIT_USAGE;
  if (e instanceof EbpfprofError) {
    process.stderr.write(`ebpfprof: ${e.message}\n`);
    return e.code === 'EBADARG' ? EXIT_USAGE : EXIT_FAILURE;
  }
  process.stderr.write(`ebpfprof: internal error: ${errorMessage(e)}\n`);
  if (process.env.EBPFPROF_DEBUG && e instanceof Error && e.stack) process.stderr.write(`${e.stack}\n`);
  return EXIT_FAILURE;
}

export async function main(argv: string[]): Promise<number> {
  process.title = 'ebpfprof';
  try {
    await buildProgram().parseAsync(argv);
    return process.exitCode === undefined ? 0 : Number(process.exitCode);
  } catch (e) {
    return reportError(e);
  }
}

if (require.main === module || require.main?.filename.endsWith('/bin/ebpfprof')) {
  void main(process.argv).then((code) => process.exit(code));
}
