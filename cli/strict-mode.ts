// SPDX-License-Identifier: Apache-2.0
/**
 * What every command that loads BPF programs shares about strict mode: the `--enhanced ITEM` and
 * `--keep-capabilities LIST` options, and the capability drop right after loading
 * (src/system/confinement.ts), reported on one stderr line.
 */
import type { Command } from 'commander';
import { EbpfprofError } from '../src/errors';
import { confineProcess, describeConfinement, parseKeepCapabilities, type ConfinementResult } from '../src/system/confinement';
import { IntrusionPolicy, parseEnhancedItems } from '../src/system/intrusion-policy';
import { judgeCapability } from '../src/verify/capability-matrix';

export interface StrictModeFlags {
  enhanced?: string[];
  keepCapabilities?: string;
}

export interface StrictModePlan {
  policy: IntrusionPolicy;
  keepCapabilities?: string[] | 'all';
}

function collect(value: string, previous: string[] | undefined): string[] {
  return [...(previous ?? []), value];
}

export function addStrictModeOptions(command: Command): Command {
  return command
    .option('--enhanced <item>', "allow an enhanced-mode item (repeatable; see 'ebpfprof doctor'): strict mode is the default", collect)
    .option('--keep-capabilities <list>', "capabilities to keep after loading besides the matrix's (comma list), or 'all' to drop none");
}

/** Validates the strict-mode flags before anything loads. */
export function planStrictMode(flags: StrictModeFlags): StrictModePlan {
  const policy = new IntrusionPolicy(parseEnhancedItems(flags.enhanced ?? [], '--enhanced', { requireImplemented: true }));
  if (flags.keepCapabilities === undefined) return { policy };
  return { policy, keepCapabilities: parseKeepCapabilities(flags.keepCapabilities) };
}

/**
 * Drops what is no longer needed, right after loading. Prints what was kept (unless quiet) and a
 * warning for a kept capability strict mode forbids; throws EPRIVILEGE if the drop did not hold.
 */
export function confineAfterLoad(plan: StrictModePlan, quiet: boolean, prefix = 'ebpfprof', loadsWhileRunning = false): ConfinementResult {
  let result: ConfinementResult;
  try {
    result = confineProcess({ ...(plan.keepCapabilities !== undefined ? { extraKeep: plan.keepCapabilities } : {}), loadsWhileRunning });
  } catch (e) {
    if (e instanceof EbpfprofError) throw e;
    throw new EbpfprofError('EPRIVILEGE', `dropping capabilities after loading failed: ${(e as Error).message}`);
  }
  const forbidden = (plan.keepCapabilities === 'all' ? result.kept.map((k) => k.capability) : plan.keepCapabilities ?? []).filter((c) => judgeCapability(c).class === 'forbidden');
  if (forbidden.length > 0) {
    process.stderr.write(`${prefix}: warning: keeping ${forbidden.join(', ')} leaves strict mode ('ebpfprof verify' reports it as a high-severity finding)\n`);
  }
  if (!quiet) process.stderr.write(`${prefix}: ${describeConfinement(result)}\n`);
  for (const p of result.problems) process.stderr.write(`${prefix}: capability drop: ${p}\n`);
  return result;
}
