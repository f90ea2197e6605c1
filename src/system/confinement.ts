// SPDX-License-Identifier: Apache-2.0
/**
 * Self-confinement: once a command has loaded and attached its BPF programs and opened what only
 * privilege opens (kallsyms, the perf events, the ring buffers), it drops every capability it no
 * longer needs — on every thread, from the effective, permitted, inheritable, ambient and bounding
 * sets — and sets no_new_privs, so that nothing it executes can regain them. What is kept comes from
 * the capability matrix (src/verify/capability-matrix.ts), plus what `--keep-capabilities` adds.
 * The result is read back from /proc/self/task/TID/status, not assumed.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import { EbpfprofError, errorMessage } from '../errors';
import { loadAddon, type NativeAddon } from '../native/addon';
import { capabilitiesAfterLoad } from '../verify/capability-matrix';
import { readIntFile } from './privileges';
import { capabilityBit, capabilityName, capabilityNames, capabilitySet, parseCapabilities, readCapabilities, type ProcessCapabilities } from './capabilities';

export interface ConfinementOptions {
  /** Capabilities to keep besides the matrix's (names as `CAP_SYS_ADMIN`, `sys_admin`, ...), or 'all' to drop nothing. */
  extraKeep?: readonly string[] | 'all';
  /** The command loads BPF programs later (the agent's tracers): CAP_BPF stays. */
  loadsWhileRunning?: boolean;
  /** Kernel facts (default: this kernel's). */
  kernelRelease?: string;
  unprivilegedBpfDisabled?: number;
  /** Tests: a stand-in for the addon. */
  addon?: Pick<NativeAddon, 'dropCapabilities'>;
  /** Tests: where the task status files are (default /proc/self/task). */
  taskDir?: string;
}

export interface ThreadCapabilities {
  tid: number;
  effective: string[];
  permitted: string[];
  bounding: string[];
  ambient: string[];
  noNewPrivs: boolean | null;
}

export interface ConfinementResult {
  /** False when nothing was dropped (`--keep-capabilities all`). */
  attempted: boolean;
  /** The process's (main thread's) sets before the drop. */
  before: ProcessCapabilities;
  /** Every thread after the drop. */
  after: ThreadCapabilities[];
  kept: { capability: string; why: string }[];
  /** Names of the capabilities that were held (effective or permitted) and are gone now. */
  dropped: string[];
  /** Whether the bounding set could be narrowed (needs CAP_SETPCAP, which containers rarely have). */
  boundingNarrowed: boolean;
  /** Problems reported by the system calls or found when reading the result back. */
  problems: string[];
}

/** The capabilities confinement keeps here, with why (the matrix's after-load set plus extras). */
export function capabilitiesToKeep(options: ConfinementOptions = {}): { capability: string; why: string }[] {
  const facts = {
    kernelRelease: options.kernelRelease ?? os.release(),
    ...((options.unprivilegedBpfDisabled ?? readIntFile('/proc/sys/kernel/unprivileged_bpf_disabled')) !== undefined
      ? { unprivilegedBpfDisabled: options.unprivilegedBpfDisabled ?? readIntFile('/proc/sys/kernel/unprivileged_bpf_disabled')! }
      : {}),
  };
  const keep = capabilitiesAfterLoad(facts, options.loadsWhileRunning === true);
  if (options.extraKeep && options.extraKeep !== 'all') {
    for (const c of options.extraKeep) {
      const name = capabilityName(capabilityBit(c));
      if (!keep.some((k) => k.capability === name)) keep.push({ capability: name, why: 'kept with --keep-capabilities' });
    }
  }
  return keep;
}

/** Parses `--keep-capabilities` / `keepCapabilities`: a comma list of names, or 'all'. */
export function parseKeepCapabilities(text: string, flag = '--keep-capabilities'): string[] | 'all' {
  const t = text.trim();
  if (t.toLowerCase() === 'all') return 'all';
  const names = t.split(',').map((s) => s.trim()).filter(Boolean);
  if (names.length === 0) throw new EbpfprofError('EBADARG', `${flag} must name capabilities (CAP_SYSLOG,CAP_BPF) or be 'all', got ${JSON.stringify(text)}`);
  return names.map((n) => {
    try {
      return capabilityName(capabilityBit(n));
    } catch {
      throw new EbpfprofError('EBADARG', `${flag}: unknown capability ${JSON.stringify(n)} (names as in capabilities(7), e.g. CAP_SYSLOG)`);
    }
  });
}

/** The capability lines of every thread of this process. */
export function readThreadCapabilities(taskDir = '/proc/self/task'): ThreadCapabilities[] {
  const out: ThreadCapabilities[] = [];
  for (const entry of fs.readdirSync(taskDir)) {
    const tid = Number(entry);
    if (!Number.isInteger(tid)) continue;
    let caps: ProcessCapabilities;
    try {
      caps = parseCapabilities(fs.readFileSync(`${taskDir}/${entry}/status`));
    } catch {
      continue; // the thread ended
    }
    out.push({
      tid,
      effective: capabilityNames(caps.effective),
      permitted: capabilityNames(caps.permitted),
      bounding: capabilityNames(caps.bounding ?? 0n),
      ambient: capabilityNames(caps.ambient ?? 0n),
      noNewPrivs: caps.noNewPrivs ?? null,
    });
  }
  return out.sort((a, b) => a.tid - b.tid);
}

/**
 * Drops every capability outside capabilitiesToKeep() on every thread and sets no_new_privs.
 * Throws EPRIVILEGE when a thread still holds a capability outside the kept set in its effective
 * or permitted set afterwards (lowering those never needs privilege, so that means something is
 * wrong); a bounding set that cannot be narrowed (no CAP_SETPCAP) is reported, not fatal: with
 * no_new_privs set, no exec can use it.
 */
export function confineProcess(options: ConfinementOptions = {}): ConfinementResult {
  const before = readCapabilities('self');
  const kept = capabilitiesToKeep(options);
  const taskDir = options.taskDir ?? '/proc/self/task';
  if (options.extraKeep === 'all') {
    return { attempted: false, before, after: readThreadCapabilities(taskDir), kept: capabilityNames(before.permitted).map((c) => ({ capability: c, why: 'kept with --keep-capabilities all' })), dropped: [], boundingNarrowed: false, problems: [] };
  }
  const keepSet = capabilitySet(kept.map((k) => k.capability));
  const keepBits = [...Array(64).keys()].filter((b) => (keepSet >> BigInt(b)) & 1n);
  const addon = options.addon ?? loadAddon();
  let native;
  try {
    native = addon.dropCapabilities(keepBits, { noNewPrivs: true });
  } catch (e) {
    throw new EbpfprofError('EPRIVILEGE', `dropping capabilities after loading failed: ${errorMessage(e)}`, { cause: e });
  }
  const problems = native.errors
    .filter((e) => !(e.syscall === 'prctl(PR_CAPBSET_DROP)' && e.errno === 1))
    .map((e) => `thread ${e.tid}: ${e.syscall}: ${e.message}`);
  const after = readThreadCapabilities(taskDir);
  const keepNames = new Set(kept.map((k) => k.capability));
  const leaks: string[] = [];
  let boundingNarrowed = true;
  for (const t of after) {
    const extra = [...new Set([...t.effective, ...t.permitted, ...t.ambient])].filter((c) => !keepNames.has(c));
    if (extra.length > 0) leaks.push(`thread ${t.tid} still holds ${extra.join(', ')}`);
    if (t.bounding.some((c) => !keepNames.has(c))) boundingNarrowed = false;
    if (t.noNewPrivs === false) problems.push(`thread ${t.tid}: no_new_privs is not set`);
  }
  if (leaks.length > 0) {
    throw new EbpfprofError('EPRIVILEGE', `dropping capabilities after loading left some behind (${leaks.slice(0, 3).join('; ')}${leaks.length > 3 ? '; ...' : ''}); refusing to continue with more privilege than strict mode allows`);
  }
  const held = new Set([...capabilityNames(before.effective), ...capabilityNames(before.permitted)]);
  const dropped = [...held].filter((c) => !keepNames.has(c));
  return { attempted: true, before, after, kept, dropped, boundingNarrowed, problems };
}

/** One line for a command's stderr: what was kept and dropped. */
export function describeConfinement(r: ConfinementResult): string {
  if (!r.attempted) return `kept every capability (--keep-capabilities all): ${capabilityNames(r.before.effective).join(', ') || 'none'}`;
  const now = r.after[0] ? r.after[0].effective.join(', ') || 'none' : '?';
  const notable = r.dropped.filter((c) => ['CAP_BPF', 'CAP_PERFMON', 'CAP_SYSLOG', 'CAP_SYS_ADMIN', 'CAP_SYS_PTRACE'].includes(c));
  const dropped = r.dropped.length === 0 ? 'nothing beyond that was held' : `${r.dropped.length} (${[...notable, ...(r.dropped.length > notable.length ? ['...'] : [])].join(', ')})`;
  const bounding = r.boundingNarrowed ? '' : '; bounding set unchanged (no CAP_SETPCAP), no_new_privs keeps exec from using it';
  return `capabilities after loading: ${now} on all ${r.after.length} threads, no_new_privs set; dropped ${dropped}${bounding}`;
}
