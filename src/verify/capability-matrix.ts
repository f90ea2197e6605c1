// SPDX-License-Identifier: Apache-2.0
/**
 * THE capability matrix: which Linux capabilities a strict-mode profiler may hold, when, and why.
 * ebpfprof's self-confinement keeps exactly what `capabilitiesAfterLoad()` says; `ebpfprof verify`
 * judges any profiler's effective, permitted, ambient and bounding sets, and every Kubernetes
 * manifest's `capabilities.add`, against `judgeCapability()`. README.md and docs/verify.md print the
 * same table (test/verify-units.test.ts checks that they list every row).
 */
import { capabilityBit, capabilityName } from '../system/capabilities';
import { kernelAtLeast, parseKernelRelease } from '../system/kernel-features';

/**
 * - required: strict mode needs it to load and attach (the profiler cannot work without it);
 * - optional: strict mode uses it when present (better symbols), works without it;
 * - legacy: only on older kernels (see `why`);
 * - forbidden: strict mode never holds it — a profiler holding it can enter or rewrite other
 *   processes (or the kernel): a high-severity finding;
 * - unneeded (every capability not listed): a strict-mode profiler has no use for it — a
 *   medium-severity finding.
 */
export type CapabilityClass = 'required' | 'optional' | 'legacy' | 'forbidden' | 'unneeded';

export interface CapabilityRule {
  capability: string;
  class: Exclude<CapabilityClass, 'unneeded'>;
  /** What it is used for (or why it is forbidden). */
  why: string;
  /** Whether ebpfprof keeps it after loading its BPF programs, and why (or why not). */
  afterLoad: string;
}

export const CAPABILITY_MATRIX: readonly CapabilityRule[] = [
  {
    capability: 'CAP_BPF',
    class: 'required',
    why: 'load the BPF programs and create their maps (Linux 5.8+)',
    afterLoad: 'dropped on Linux 6.5+ (operations on maps already created need no capability); kept on older kernels with kernel.unprivileged_bpf_disabled set, where every bpf() call is checked',
  },
  {
    capability: 'CAP_PERFMON',
    class: 'required',
    why: 'open a cpu-clock perf event on every CPU and attach programs to perf events and tracepoints, whatever kernel.perf_event_paranoid says',
    afterLoad: 'kept: on recent kernels it grants read access to /proc/PID/maps of every process (no ptrace access needed), which symbolizing new processes requires',
  },
  {
    capability: 'CAP_SYSLOG',
    class: 'optional',
    why: 'real addresses in /proc/kallsyms (kptr_restrict=1, or perf_event_paranoid >= 2); without it kernel frames stay unsymbolized',
    afterLoad: 'dropped: /proc/kallsyms is read once, before sampling starts',
  },
  {
    capability: 'CAP_DAC_READ_SEARCH',
    class: 'optional',
    why: 'open binaries and debug files whatever their permissions (read-only: grants no write access)',
    afterLoad: 'kept: binaries of processes that start later are opened while running',
  },
  {
    capability: 'CAP_SYS_RESOURCE',
    class: 'legacy',
    why: 'Linux < 5.11 only: BPF maps count against RLIMIT_MEMLOCK',
    afterLoad: 'dropped: only loading needs it',
  },
  {
    capability: 'CAP_SYS_ADMIN',
    class: 'forbidden',
    why: 'never needed on Linux 5.8+; it allows almost anything, including setns into any process and unrestricted BPF',
    afterLoad: 'dropped',
  },
  {
    capability: 'CAP_SYS_PTRACE',
    class: 'forbidden',
    why: 'ptrace-attach to any process and read or write its memory: exactly what strict mode never does',
    afterLoad: 'dropped',
  },
  {
    capability: 'CAP_SYS_MODULE',
    class: 'forbidden',
    why: 'load code into the kernel',
    afterLoad: 'dropped',
  },
  {
    capability: 'CAP_SYS_RAWIO',
    class: 'forbidden',
    why: 'raw access to memory and I/O ports (/dev/mem)',
    afterLoad: 'dropped',
  },
];

export type Severity = 'high' | 'medium' | 'low' | 'info';

export interface CapabilityJudgement {
  capability: string;
  class: CapabilityClass;
  /** Severity of holding it in a strict-mode profiler. */
  severity: Severity;
  why: string;
}

const BY_NAME = new Map(CAPABILITY_MATRIX.map((r) => [r.capability, r]));

/** How holding `cap` (name or bit) in a strict-mode profiler is judged. */
export function judgeCapability(cap: string | number): CapabilityJudgement {
  const name = typeof cap === 'number' ? capabilityName(cap) : capabilityName(capabilityBit(cap));
  const rule = BY_NAME.get(name);
  if (!rule) return { capability: name, class: 'unneeded', severity: 'medium', why: 'a strict-mode profiler has no use for it' };
  return { capability: name, class: rule.class, severity: rule.class === 'forbidden' ? 'high' : 'info', why: rule.why };
}

export interface KernelFacts {
  kernelRelease: string;
  /** kernel.unprivileged_bpf_disabled; undefined when unreadable (then assumed set). */
  unprivilegedBpfDisabled?: number;
}

/**
 * The capabilities ebpfprof keeps once its programs are loaded, attached and what it must open is
 * open: CAP_PERFMON and CAP_DAC_READ_SEARCH, plus CAP_BPF on kernels that check every bpf() call,
 * and for a command that loads programs while it runs (the agent attaches tracers when tracing is
 * switched on at run time).
 */
export function capabilitiesAfterLoad(k: KernelFacts, loadsWhileRunning = false): { capability: string; why: string }[] {
  const keep = [
    { capability: 'CAP_PERFMON', why: 'read /proc/PID/maps of processes that start later' },
    { capability: 'CAP_DAC_READ_SEARCH', why: 'open the binaries of processes that start later' },
  ];
  const version = parseKernelRelease(k.kernelRelease);
  if (!kernelAtLeast(version, 6, 5) && (k.unprivilegedBpfDisabled ?? 1) !== 0) {
    keep.unshift({ capability: 'CAP_BPF', why: `Linux ${k.kernelRelease} (< 6.5) with kernel.unprivileged_bpf_disabled=${k.unprivilegedBpfDisabled ?? '?'} checks every bpf() call, map reads included` });
  } else if (loadsWhileRunning) {
    keep.unshift({ capability: 'CAP_BPF', why: 'load the tracers switched on while running (agent tracing: tcp, sched)' });
  }
  return keep;
}
