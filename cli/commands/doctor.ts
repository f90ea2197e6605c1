// SPDX-License-Identifier: Apache-2.0
/**
 * `ebpfprof doctor`: what this kernel and these privileges allow, and why not. One line per check
 * (yes/no, name, reason, and the fix for failures), then a summary; `--json` prints the report.
 * Exit code 0 when everything CPU profiling needs is there, 1 otherwise: optional features (kprobes,
 * fentry, uprobes, ...) never fail it, their line says which fallback is used instead.
 *
 * After the checks it shows the capabilities before and after self-confinement — by doing it: the
 * drop the profiling commands do after loading runs here too, on every thread, and what the kernel
 * reports afterwards is printed — and which enhanced-mode items strict mode refuses.
 * `--intrusion ITEM` asks the one guard (src/system/intrusion-policy.ts) about one item instead.
 */
import type { Command } from 'commander';
import { errorMessage } from '../../src/errors';
import { capabilityNames, readCapabilities } from '../../src/system/capabilities';
import { confineProcess, type ConfinementResult } from '../../src/system/confinement';
import { INTRUSION_ITEMS, IntrusionPolicy, parseEnhancedItems, requireIntrusion, type IntrusionItemId } from '../../src/system/intrusion-policy';
import { runDoctor, type DoctorReport, type KernelFeatureOptions } from '../../src/system/kernel-features';
import { EXIT_FAILURE } from '../exit-codes';

export interface DoctorFlags {
  json?: boolean;
  enhanced?: string[];
  intrusion?: string;
}

export interface DoctorCapabilities {
  /** What this process held before (main thread). */
  before: string[];
  /** What every thread holds after the drop; null when the drop failed (see `error`). */
  after: string[] | null;
  /** What the profiling commands keep after loading, and why. */
  kept: { capability: string; why: string }[];
  dropped: string[];
  threads: number;
  boundingNarrowed: boolean;
  noNewPrivs: boolean;
  error?: string;
}

export interface DoctorStrictMode {
  mode: 'strict' | 'enhanced';
  items: { id: string; classification: string; implemented: boolean; status: 'allowed' | 'refused' | 'not-implemented' }[];
}

export interface DoctorCliReport extends DoctorReport {
  capabilities: DoctorCapabilities;
  strictMode: DoctorStrictMode;
}

/** Drops what the profiling commands drop after loading, for real, and says what is left. */
export function demonstrateConfinement(): DoctorCapabilities {
  const before = capabilityNames(readCapabilities('self').effective);
  let r: ConfinementResult;
  try {
    r = confineProcess();
  } catch (e) {
    return { before, after: null, kept: [], dropped: [], threads: 0, boundingNarrowed: false, noNewPrivs: false, error: errorMessage(e) };
  }
  const after = [...new Set(r.after.flatMap((t) => [...t.effective, ...t.permitted]))].sort();
  return { before, after, kept: r.kept, dropped: r.dropped, threads: r.after.length, boundingNarrowed: r.boundingNarrowed, noNewPrivs: r.after.every((t) => t.noNewPrivs === true) };
}

export function strictModeStatus(policy: IntrusionPolicy): DoctorStrictMode {
  return {
    mode: policy.mode,
    items: INTRUSION_ITEMS.map((i) => {
      let status: DoctorStrictMode['items'][number]['status'] = 'allowed';
      try {
        requireIntrusion(policy, i.id);
      } catch (e) {
        status = (e as { code?: string }).code === 'ENOTIMPLEMENTED' ? 'not-implemented' : 'refused';
      }
      return { id: i.id, classification: i.classification, implemented: i.implemented, status };
    }),
  };
}

function list(names: readonly string[]): string {
  return names.length === 0 ? 'none' : names.length >= 40 ? `all ${names.length} (full root)` : names.join(', ');
}

export function formatDoctorReport(report: DoctorReport, extra?: { capabilities: DoctorCapabilities; strictMode: DoctorStrictMode }): string {
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
  if (extra) {
    const c = extra.capabilities;
    lines.push(`capabilities before loading: ${list(c.before)}`);
    if (c.after === null) lines.push(`capabilities after loading: the drop failed: ${c.error}`);
    else {
      lines.push(
        `capabilities after loading: ${list(c.after)} (dropped here as record does, on all ${c.threads} threads${c.noNewPrivs ? ', no_new_privs set' : ''}${c.boundingNarrowed ? '' : '; bounding set unchanged: no CAP_SETPCAP'}; the agent keeps CAP_BPF as well, for the tracers it loads while running)`,
      );
      for (const k of c.kept) lines.push(`  ${k.capability}: ${k.why}`);
    }
    const refused = extra.strictMode.items.filter((i) => i.status === 'refused').map((i) => i.id);
    const notImpl = extra.strictMode.items.filter((i) => i.status === 'not-implemented').map((i) => i.id);
    lines.push(
      `${extra.strictMode.mode} mode: enhanced items refused: ${refused.join(', ') || 'none'}${notImpl.length ? `; enabled but not implemented yet: ${notImpl.join(', ')}` : ''} ('ebpfprof doctor --intrusion ITEM' explains one)`,
    );
  }
  return `${lines.join('\n')}\n`;
}

/** `--intrusion ITEM`: what the guard says about ITEM with these --enhanced switches. Throws the refusal. */
export function intrusionVerdict(item: string, policy: IntrusionPolicy): string {
  const known = INTRUSION_ITEMS.find((i) => i.id === item);
  if (!known) parseEnhancedItems([item], '--intrusion'); // throws EBADARG naming the known items
  requireIntrusion(policy, item as IntrusionItemId);
  return `${item}: allowed in ${known!.classification === 'strict' ? 'strict' : 'enhanced'} mode: ${known!.effect}`;
}

export async function doctorAction(options: DoctorFlags, featureOptions: KernelFeatureOptions = {}): Promise<number> {
  const policy = new IntrusionPolicy(parseEnhancedItems(options.enhanced ?? [], '--enhanced'));
  if (options.intrusion !== undefined) {
    process.stdout.write(`${intrusionVerdict(options.intrusion, policy)}\n`);
    return 0;
  }
  const report = await runDoctor(featureOptions);
  // Every probe is closed by now: what remains is what a profiling command holds after loading.
  const extra = { capabilities: demonstrateConfinement(), strictMode: strictModeStatus(policy) };
  const full: DoctorCliReport = { ...report, ...extra };
  process.stdout.write(options.json ? `${JSON.stringify(full, null, 2)}\n` : formatDoctorReport(report, extra));
  return report.canProfile ? 0 : EXIT_FAILURE;
}

function collect(value: string, previous: string[] | undefined): string[] {
  return [...(previous ?? []), value];
}

export function registerDoctor(program: Command): void {
  program
    .command('doctor')
    .description('check what this kernel and these privileges allow ebpfprof to do, and why not')
    .option('--json', 'print the results as JSON')
    .option('--enhanced <item>', 'judge the strict-mode items as with this --enhanced switch (repeatable)', collect)
    .option('--intrusion <item>', 'only say whether ITEM would be allowed (exit 0) or refused (exit 1), and why')
    .action(async (options: DoctorFlags) => {
      const code = await doctorAction(options);
      if (code !== 0) process.exitCode = code;
    });
}
