// SPDX-License-Identifier: Apache-2.0
/**
 * Strict and enhanced mode: THE table of everything ebpfprof could do to an observed process, with
 * its classification, and THE guard every such action goes through.
 *
 * Strict mode (the default everywhere) uses only what leaves the observed process as it is:
 * perf_event, BPF on perf events and tracepoints, read-only /proc, its binaries read from outside,
 * and files it already publishes. Anything that writes to, attaches to, or reconfigures the process
 * is an *enhanced* item: refused unless the user enables that item (`--enhanced ITEM`, or
 * `enhanced: [ITEM]` in the agent configuration), and the refusal names the item and the switch.
 *
 * No ebpfprof feature uses an enhanced item yet. Enabling one therefore fails with a clear "not
 * implemented yet" instead of silently doing nothing; `ebpfprof doctor --intrusion ITEM` asks the
 * guard whether ITEM would be allowed with the given switches. README.md prints this table
 * (test/intrusion-policy.test.ts checks that it lists every item).
 */
import { EbpfprofError } from '../errors';

export type IntrusionClass = 'strict' | 'enhanced';

export interface IntrusionItem {
  /** The name used with --enhanced and in `enhanced:`. */
  id: string;
  title: string;
  /** What it does to the observed process (for enhanced items: why strict mode refuses it, a clause). */
  effect: string;
  classification: IntrusionClass;
  /** Whether an ebpfprof feature uses it today. */
  implemented: boolean;
  /** What uses it (strict items), or what would (enhanced items). */
  usedBy: string;
}

export const INTRUSION_ITEMS = [
  {
    id: 'perf-events',
    title: 'perf_event sampling and BPF on perf events',
    effect: 'none: the kernel interrupts the CPU on a timer and runs a BPF program; the process is neither stopped nor changed',
    classification: 'strict',
    implemented: true,
    usedBy: 'record, agent',
  },
  {
    id: 'tracepoints',
    title: 'BPF on kernel tracepoints and raw tracepoints',
    effect: 'none: kernel code paths are observed, not the process',
    classification: 'strict',
    implemented: true,
    usedBy: 'offcpu, sched, tcp, and the process events of record and agent',
  },
  {
    id: 'proc-read',
    title: 'reading /proc and /sys',
    effect: 'none: read-only files the kernel maintains (maps, status, cmdline, cgroup)',
    classification: 'strict',
    implemented: true,
    usedBy: 'every command',
  },
  {
    id: 'binary-read',
    title: 'reading the binaries and debug files a process maps',
    effect: 'none: files are opened read-only from outside the process',
    classification: 'strict',
    implemented: true,
    usedBy: 'symbolization, unwind tables',
  },
  {
    id: 'perf-map-read',
    title: 'reading a JIT perf map the runtime already writes',
    effect: 'none: only a /tmp/perf-PID.map the runtime writes by itself is read; nothing asks it to write one',
    classification: 'strict',
    implemented: true,
    usedBy: 'symbolization of JIT frames',
  },
  {
    id: 'uprobes',
    title: "uprobes on the target's code",
    effect: "the kernel writes a breakpoint into the target's code pages and maps an [uprobes] page into it",
    classification: 'enhanced',
    implemented: false,
    usedBy: 'user-space function tracing (TLS payloads, allocations, interpreter frames)',
  },
  {
    id: 'ptrace',
    title: 'attaching with ptrace',
    effect: "it stops the target's threads and reads or writes their registers and memory; TracerPid shows the tracer",
    classification: 'enhanced',
    implemented: false,
    usedBy: 'reading interpreter state or registers on demand',
  },
  {
    id: 'perf-map-injection',
    title: 'JIT perf-map injection',
    effect: "it adds --perf-basic-prof (or an agent such as perf-map-agent) to someone else's runtime, or asks it to write a perf map, changing its command line, its behaviour and its files",
    classification: 'enhanced',
    implemented: false,
    usedBy: 'symbols for JIT frames of runtimes that do not write a perf map themselves',
  },
  {
    id: 'agent-injection',
    title: 'agent or library injection',
    effect: 'it loads foreign code into the target: LD_PRELOAD (restarting it with a changed environment), dlopen through ptrace, JVMTI -javaagent or the attach API, CLR profilers',
    classification: 'enhanced',
    implemented: false,
    usedBy: 'runtime-specific profilers',
  },
  {
    id: 'memory-write',
    title: "writes into the target's memory",
    effect: 'it changes the running program (process_vm_writev, /proc/PID/mem)',
    classification: 'enhanced',
    implemented: false,
    usedBy: 'enabling a runtime profiling switch in place',
  },
  {
    id: 'file-write',
    title: "writes into the target's files",
    effect: "it creates or changes files in the target's filesystem view (/proc/PID/root), such as the trigger file of a runtime's attach mechanism",
    classification: 'enhanced',
    implemented: false,
    usedBy: 'runtime attach mechanisms',
  },
  {
    id: 'signals',
    title: 'signals to the target',
    effect: 'it interrupts the target to make its runtime dump state or start an agent (SIGUSR1, SIGQUIT, SIGPROF)',
    classification: 'enhanced',
    implemented: false,
    usedBy: 'runtime-triggered dumps',
  },
  {
    id: 'kubernetes-api',
    title: 'the Kubernetes API server',
    effect: 'it needs a service-account token and RBAC (the target itself is left alone); strict mode names pods from node-local sources only',
    classification: 'enhanced',
    implemented: false,
    usedBy: 'pod labels and owner names',
  },
] as const satisfies readonly IntrusionItem[];

export type IntrusionItemId = (typeof INTRUSION_ITEMS)[number]['id'];
export type EnhancedItemId = Extract<(typeof INTRUSION_ITEMS)[number], { classification: 'enhanced' }>['id'];

export const ENHANCED_ITEMS: readonly EnhancedItemId[] = INTRUSION_ITEMS.filter((i) => i.classification === 'enhanced').map((i) => i.id as EnhancedItemId);

const BY_ID = new Map<string, IntrusionItem>(INTRUSION_ITEMS.map((i) => [i.id, i]));

export function intrusionItem(id: string): IntrusionItem | undefined {
  return BY_ID.get(id);
}

/** The enhanced items a command or the agent runs with; empty = strict mode. */
export class IntrusionPolicy {
  readonly enabled: ReadonlySet<EnhancedItemId>;

  constructor(enabled: Iterable<EnhancedItemId> = []) {
    this.enabled = new Set(enabled);
  }

  static strict(): IntrusionPolicy {
    return new IntrusionPolicy();
  }

  get mode(): 'strict' | 'enhanced' {
    return this.enabled.size === 0 ? 'strict' : 'enhanced';
  }

  isEnabled(id: EnhancedItemId): boolean {
    return this.enabled.has(id);
  }
}

/** The documented refusal of an enhanced item in strict mode. */
export function refusalMessage(item: IntrusionItem): string {
  return `${item.title} (${item.id}) is refused in strict mode: ${item.effect}. Enable it with --enhanced ${item.id} (agent configuration: enhanced: [${item.id}])`;
}

/** The documented answer for an enabled item no feature implements. */
export function notImplementedMessage(item: IntrusionItem): string {
  return `${item.title} (${item.id}) is not implemented yet: enhanced mode allows it, but no ebpfprof feature uses it (it would serve ${item.usedBy}); everything ebpfprof does today works in strict mode`;
}

export interface IntrusionContext {
  /** The process the action would touch; ebpfprof's own process is not an observed one. */
  pid?: number;
}

/**
 * THE guard. Returns when `id` may be done now; throws ESTRICT (strict mode: not enabled) or
 * ENOTIMPLEMENTED (enabled, but nothing implements it). Every code path that would write to,
 * attach to or reconfigure an observed process calls this first.
 */
export function requireIntrusion(policy: IntrusionPolicy, id: IntrusionItemId, context: IntrusionContext = {}): void {
  const item = BY_ID.get(id)!;
  if (item.classification === 'strict') return;
  if (context.pid !== undefined && context.pid === process.pid) return; // ebpfprof itself (doctor's probes)
  if (!policy.isEnabled(id as EnhancedItemId)) throw new EbpfprofError('ESTRICT', refusalMessage(item));
  if (!item.implemented) throw new EbpfprofError('ENOTIMPLEMENTED', notImplementedMessage(item));
}

/**
 * Parses the items of `--enhanced` (repeatable, comma-separated) or `enhanced:`. Unknown names and
 * strict items are EBADARG; with `requireImplemented`, an item no feature implements is EBADARG too
 * (the commands: enabling it would change nothing, which must not pass silently).
 */
export function parseEnhancedItems(values: readonly string[], where: string, options: { requireImplemented?: boolean } = {}): EnhancedItemId[] {
  const out: EnhancedItemId[] = [];
  for (const raw of values.flatMap((v) => v.split(',')).map((s) => s.trim()).filter(Boolean)) {
    const item = BY_ID.get(raw);
    if (!item) throw new EbpfprofError('EBADARG', `${where}: unknown item ${JSON.stringify(raw)} (enhanced items: ${ENHANCED_ITEMS.join(', ')})`);
    if (item.classification === 'strict') throw new EbpfprofError('EBADARG', `${where}: ${raw} is a strict-mode item, always allowed: nothing to enable`);
    if (options.requireImplemented && !item.implemented) throw new EbpfprofError('EBADARG', `${where} ${raw}: ${notImplementedMessage(item)}`);
    if (!out.includes(item.id as EnhancedItemId)) out.push(item.id as EnhancedItemId);
  }
  return out;
}
