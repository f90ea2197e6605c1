// SPDX-License-Identifier: Apache-2.0
/**
 * Loading a tracing BPF object with one attach method per hook, falling back along the list
 * kernel-features.ts's tracingHookCandidates() gives (the same list `doctor` reports from).
 *
 * Each hook (a tracepoint, e.g. sock:inet_sock_set_state) has one program per attach method in the
 * object; only the chosen one is loaded (the others get autoload off). A load or attach failure of a
 * method is recorded with its reason and the next method is tried, with the object opened afresh.
 * `prefer` puts one method first for every hook that has it, even where the probes said it does not
 * work: that is how a user (or a test) sees why kprobes or fentry fail here, and that the fallback
 * works.
 */
import { EbpfprofError, errorMessage } from '../errors';
import { loadAddon, NativeBpfObject, NativeLink } from '../native/addon';
import { AttachAvailability, AttachMethod, FeatureProber, tracingHookCandidates } from '../system/kernel-features';

export interface TraceHook {
  /** The tracepoint ("sched:sched_switch") or, for extras, a name for messages. */
  name: string;
  /** Programs of the object, per attach method. */
  programs: Partial<Record<AttachMethod, string>>;
  /** The kernel function behind the tracepoint (fentry/kprobe programs), for messages. */
  kernelFunction?: string;
  /** A tracer cannot work without a required hook; an optional one may stay unattached (reported). */
  required: boolean;
  /** Extras have no tracepoint: only their kernel-function methods are tried. */
  extra?: boolean;
}

export interface HookStatus {
  hook: string;
  /** The method attached, null when none worked. */
  method: AttachMethod | null;
  /** Methods tried before, with why each failed. */
  failures: Array<{ method: AttachMethod; reason: string }>;
  /** Why this method (first choice, or what failed before it). */
  reason: string;
}

export interface AttachedTracer {
  obj: NativeBpfObject;
  links: NativeLink[];
  hooks: HookStatus[];
  /** Programs loaded (the chosen one per hook, and alwaysLoad). */
  programs: string[];
}

/**
 * In-kernel run time of a tracer's programs since load, ns: counted only while the kernel's run-time
 * statistics are on (kernel.bpf_stats_enabled=1, or BPF_ENABLE_STATS held by someone), else 0.
 */
export function programsRunTimeNs(t: AttachedTracer): number {
  let ns = 0;
  for (const p of t.programs) {
    try {
      ns += t.obj.programStats(p).runTimeNs;
    } catch {
      // a program whose load was given up (an optional hook with no method left)
    }
  }
  return ns;
}

export interface LoadTracerOptions {
  objectPath: string;
  /** "TCP tracing", for errors. */
  what: string;
  hooks: TraceHook[];
  availability: AttachAvailability;
  tracepointExists: (id: string) => boolean;
  prefer?: AttachMethod;
  /** Programs loaded whatever the hooks' choices (attached by the caller, e.g. a perf_event helper). */
  alwaysLoad?: string[];
  /** Sets globals and map sizes on the freshly opened object (called before every load attempt). */
  configure: (obj: NativeBpfObject) => void;
}

/** What doctor's probes found, once per process (they load and attach small programs: ~150 ms). */
let sharedProber: FeatureProber | undefined;
export async function probeAttachAvailability(): Promise<{ availability: AttachAvailability; tracepointExists: (id: string) => boolean }> {
  sharedProber ??= new FeatureProber();
  const prober = sharedProber;
  return { availability: await prober.availability(), tracepointExists: (id) => prober.tracepointExists(id) };
}

/** Why a method failed, in words a user can act on. */
export function explainAttachFailure(method: AttachMethod, e: unknown, hook: TraceHook): string {
  const code = (e as { code?: string }).code ?? '';
  const first = errorMessage(e).split('\n')[0]!;
  const target = hook.kernelFunction ?? hook.name;
  switch (method) {
    case 'kprobe':
      if (code === 'ENOENT' || code === 'EOPNOTSUPP')
        return `kprobe on ${target} failed (${code}): this kernel has no kprobes (CONFIG_KPROBES off) or no such function`;
      break;
    case 'fentry':
      if (code === 'EPERM' || /Operation not permitted/.test(first))
        return `fentry on ${target} was refused (EPERM): this kernel does not allow BPF trampolines`;
      if (code === 'ESRCH' || code === 'ENOENT') return `fentry on ${target} failed (${code}): no such kernel function in BTF`;
      break;
    case 'tracepoint':
      if (code === 'ENOENT' || code === 'EACCES')
        return `classic tracepoint ${hook.name} failed (${code}): tracefs is not mounted, not readable, or has no such event`;
      break;
    case 'tp_btf':
    case 'raw_tp':
      if (code === 'ESRCH' || code === 'ENOENT') return `${method} ${hook.name} failed (${code}): this kernel has no such tracepoint`;
      break;
    default:
      break;
  }
  return `${method} on ${target} failed${code ? ` (${code})` : ''}: ${first}`;
}

function candidatesOf(hook: TraceHook, o: LoadTracerOptions): AttachMethod[] {
  const offered = Object.keys(hook.programs) as AttachMethod[];
  const exists = !hook.extra && o.tracepointExists(hook.name);
  const list = tracingHookCandidates(o.availability, exists, offered);
  if (o.prefer && offered.includes(o.prefer)) return [o.prefer, ...list.filter((m) => m !== o.prefer)];
  return list;
}

/** Opens, configures, loads and attaches, falling back per hook. Throws EKERNEL when a required hook has no method left. */
export function loadTracer(o: LoadTracerOptions): AttachedTracer {
  const addon = loadAddon();
  const state = o.hooks.map((hook) => ({ hook, candidates: candidatesOf(hook, o), at: 0, failures: [] as HookStatus['failures'] }));
  const current = (s: (typeof state)[number]): AttachMethod | undefined => s.candidates[s.at];
  const fail = (s: (typeof state)[number], method: AttachMethod, e: unknown): void => {
    s.failures.push({ method, reason: explainAttachFailure(method, e, s.hook) });
    s.at++;
  };
  const giveUp = (): void => {
    for (const s of state) {
      if (s.hook.required && current(s) === undefined) {
        const tried = s.failures.map((f) => f.reason).join('; ');
        throw new EbpfprofError(
          'EKERNEL',
          `${o.what}: cannot attach to ${s.hook.name}: ${tried || 'no attach method works on this kernel (see ebpfprof doctor)'}`,
        );
      }
    }
  };
  for (let attempt = 0; attempt < 32; attempt++) {
    giveUp();
    const obj = new addon.BpfObject(o.objectPath);
    const links: NativeLink[] = [];
    const wanted = new Set<string>(o.alwaysLoad ?? []);
    try {
      for (const s of state) {
        const m = current(s);
        if (m) wanted.add(s.hook.programs[m]!);
      }
      for (const p of obj.programNames()) obj.setAutoload(p, wanted.has(p));
      o.configure(obj);
      try {
        obj.load();
      } catch (e) {
        // libbpf names the program the verifier or the kernel refused: "prog 'fe_set_state': ...".
        const named = new Set([...errorMessage(e).matchAll(/prog '([^']+)'/g)].map((m) => m[1]!));
        let blamed = state.filter((s) => current(s) && named.has(s.hook.programs[current(s)!]!));
        if (blamed.length === 0) blamed = state.filter((s) => current(s) && s.at === 0 && s.candidates.length > 1 && s.candidates[0] === o.prefer);
        if (blamed.length === 0) throw e;
        for (const s of blamed) fail(s, current(s)!, e);
        obj.close();
        continue;
      }
      let failed = false;
      for (const s of state) {
        const m = current(s);
        if (!m) continue;
        try {
          links.push(obj.attach(s.hook.programs[m]!));
        } catch (e) {
          fail(s, m, e);
          failed = true;
        }
      }
      if (failed) {
        for (const l of links) l.close();
        obj.close();
        continue;
      }
    } catch (e) {
      for (const l of links) l.close();
      obj.close();
      throw e;
    }
    const hooks: HookStatus[] = state.map((s) => {
      const m = current(s) ?? null;
      const reason =
        m === null
          ? `not attached: ${s.failures.map((f) => f.reason).join('; ') || 'no attach method works on this kernel'}`
          : s.failures.length === 0
            ? s.candidates[0] === o.prefer && o.prefer
              ? `${m} (asked for)`
              : `${m} (first choice)`
            : `${m}, after: ${s.failures.map((f) => f.reason).join('; ')}`;
      return { hook: s.hook.name, method: m, failures: s.failures, reason };
    });
    return { obj, links, hooks, programs: [...wanted] };
  }
  throw new EbpfprofError('EKERNEL', `${o.what}: too many failed attach attempts`);
}

/** One line per hook for --verbose: "sock:inet_sock_set_state via tp_btf (first choice)". */
export function describeHooks(what: string, hooks: HookStatus[]): string[] {
  return hooks.map((h) => `${what}: ${h.hook} ${h.method ? `via ${h.reason}` : h.reason}`);
}
