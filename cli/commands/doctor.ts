// SPDX-License-Identifier: Apache-2.0
/**
 * `ebpfprof doctor`: what this kernel and these privileges allow, and why not. One line per check
 * (yes/no, name, reason, and the fix for failures), then a summary; `--json` prints the report.
 * Exit code 0 when everything CPU profiling needs is there, 1 otherwise: optional features (kprobes,
 * fentry, uprobes, ...) never fail it, their line says which fallback is used instead.
 */
import type { Command } from 'commander';
import { runDoctor, type DoctorReport, type KernelFeatureOptions } from '../../src/system/kernel-features';
import { EXIT_FAILURE } from '../exit-codes';

export function formatDoctorReport(report: DoctorReport): string {
  const width = Math.max(...report.checks.map((c) => c.name.length));
  const lines = [`ebpfprof doctor: Linux ${report.kernelRelease} (${process.arch}), uid ${process.geteuid?.() ?? '?'}`];
  for (const c of report.checks) {
    const status = c.ok ? 'yes' : 'no ';
    lines.push(`${status}  ${c.name.padEnd(width)}  ${c.detail}${!c.ok && c.fix ? ` -- fix: ${c.fix}` : ''}`);
  }
  const optional = report.checks.filter((c) => !c.ok && !c.required).map((c) => c.name);
  if (report.canProfile) {
    lines.push(`CPU profiling: ready${optional.length ? ` (optional, not available: ${optional.join(', ')})` : ''}`);
  } else {
    lines.push(`CPU profiling: not possible here: ${report.missing.join(', ')} failed`);
  }
  return `${lines.join('\n')}\n`;
}

export async function doctorAction(options: { json?: boolean }, featureOptions: KernelFeatureOptions = {}): Promise<number> {
  const report = await runDoctor(featureOptions);
  process.stdout.write(options.json ? `${JSON.stringify(report, null, 2)}\n` : formatDoctorReport(report));
  return report.canProfile ? 0 : EXIT_FAILURE;
}

export function registerDoctor(program: Command): void {
  program
    .command('doctor')
    .description('check what this kernel and these privileges allow ebpfprof to do, and why not')
    .option('--json', 'print the results as JSON')
    .action(async (options: { json?: boolean }) => {
      const code = await doctorAction(options);
      if (code !== 0) process.exitCode = code;
    });
}
