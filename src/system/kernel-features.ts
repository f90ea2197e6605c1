// SPDX-License-Identifier: Apache-2.0
/**
 * What this kernel and these privileges allow, checked for real: every attach method is probed by
 * loading one tiny program of bpf/probes.bpf.c through the addon, attaching it, provoking its event
 * and waiting until it ran; then the object is closed so that nothing stays attached. The rest comes
 * from /proc and /sys (sysctls, capabilities, kernel config, mounts).
 *
 * Every check returns a FeatureCheck and never throws: a check that cannot run is a failed check
 * whose detail says why. `ebpfprof doctor` prints them; the loaders use chooseAttachMethods() so that
 * what doctor reports is what they do.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import * as zlib from 'node:zlib';
import { errorMessage, isSystemError } from '../errors';
import {
  bpfObjectPath,
  loadAddon,
  PERF_COUNT_SW_CPU_CLOCK,
  PERF_TYPE_SOFTWARE,
  type NativeAddon,
  type NativeBpfObject,
  type NativeRingBuffer,
} from '../native/addon';
import {
  CAP_BPF,
  CAP_DAC_READ_SEARCH,
  CAP_PERFMON,
  CAP_SYS_ADMIN,
  CAP_SYS_PTRACE,
  CAP_SYS_RESOURCE,
  CAP_SYSLOG,
  capabilityName,
  hasCapability,
  readCapabilities,
  type ProcessCapabilities,
} from './capabilities';
import { IntrusionPolicy, requireIntrusion } from './intrusion-policy';

export type FeatureId =
  | 'kernel_version'
  | 'btf'
  | 'capabilities'
  | 'unprivileged_bpf'
  | 'perf_event_paranoid'
  | 'perf_event_open'
  | 'perf_event'
  | 'max_sample_rate'
  | 'stack_maps'
  | 'ringbuf'
  | 'tracefs'
  | 'tracepoints'
  | 'raw_tracepoints'
  | 'tp_btf'
  | 'fentry'
  | 'kprobes'
  | 'uprobes'
  | 'kallsyms'
  | 'proc_access'
  | 'bpf_jit'
  | 'bpf_stats'
  | 'attach_cpu_sampling'
  | 'attach_process_lifecycle'
  | 'attach_sched_tracing'
  | 'attach_tcp_tracing';

/** Every check, in the order doctor prints them. */
export const FEATURE_IDS: readonly FeatureId[] = [
  'kernel_version',
  'btf',
  'capabilities',
  'unprivileged_bpf',
  'perf_event_paranoid',
  'perf_event_open',
  'perf_event',
  'max_sample_rate',
  'stack_maps',
  'ringbuf',
  'tracefs',
  'tracepoints',
  'raw_tracepoints',
  'tp_btf',
  'fentry',
  'kprobes',
  'uprobes',
  'kallsyms',
  'proc_access',
  'bpf_jit',
  'bpf_stats',
  'attach_cpu_sampling',
  'attach_process_lifecycle',
  'attach_sched_tracing',
  'attach_tcp_tracing',
];

export interface FeatureCheck {
  /** Stable key (for --json, tests and the kernel-feature test helper). */
  id: FeatureId;
  /** What is checked, for people. */
  name: string;
  ok: boolean;
  /** Whether CPU profiling (`record`, `agent`) cannot work without it. */
  required: boolean;
  /** The reason: what was found, and what it means for ebpfprof. */
  detail: string;
  /** What to do about a failure. */
  fix?: string;
}

export type AttachMethod = 'perf_event' | 'tracepoint' | 'raw_tp' | 'tp_btf' | 'fentry' | 'kprobe';
export type TracingFeature = 'cpu_sampling' | 'process_lifecycle' | 'sched_tracing' | 'tcp_tracing';

/** What the probes found usable, as input to chooseAttachMethods(). */
export interface AttachAvailability {
  perfEvent: boolean;
  stackMaps: boolean;
  tracepoints: boolean;
  rawTracepoints: boolean;
  tpBtf: boolean;
  fentry: boolean;
  kprobes: boolean;
  /** Which of the TCP tracepoints ebpfprof uses exist ("sock:inet_sock_set_state", ...). */
  tcpTracepoints: string[];
}

export interface AttachChoice {
  feature: TracingFeature;
  /** The method the loader attaches with; null when none works here. */
  method: AttachMethod | null;
  /** Additional kernel-function probes used where they add something (TCP only). */
  extras: AttachMethod[];
  reason: string;
}

export interface DoctorReport {
  kernelRelease: string;
  /** True when every required check passed: `record` and `agent` can profile. */
  canProfile: boolean;
  /** Names of the required checks that failed. */
  missing: string[];
  checks: FeatureCheck[];
  attachMethods: AttachChoice[];
}

export interface KernelFeatureOptions {
  /** Kernel BTF to check (default /sys/kernel/btf/vmlinux); tests point it elsewhere. */
  btfPath?: string;
  /** Kernel release to reason about (default os.release()). */
  kernelRelease?: string;
  /** Compiled probes object (default bpf/probes.bpf.o). */
  probesObjectPath?: string;
  /** How long a probe waits for its program to run once attached (default 500 ms). */
  probeTimeoutMs?: number;
  /** Capabilities to reason about (default: this process's, from /proc/self/status). */
  capabilities?: ProcessCapabilities;
  /** Addon to probe with (default: the built one). */
  addon?: NativeAddon;
}

export const DEFAULT_BTF_PATH = '/sys/kernel/btf/vmlinux';
/** ebpfprof's default sampling frequency and the highest --freq it documents. */
export const DEFAULT_FREQUENCY_HZ = 99;
export const MAX_DOCUMENTED_FREQUENCY_HZ = 1000;
/** The TCP tracepoints ebpfprof's TCP tracing reads (product.md §6). */
export const TCP_TRACEPOINTS = ['sock:inet_sock_set_state', 'tcp:tcp_probe', 'tcp:tcp_retransmit_skb', 'tcp:tcp_receive_reset'] as const;

const TRACEFS_MOUNT_FIX = 'mount -t tracefs nodev /sys/kernel/tracing (and add it to /etc/fstab); in a container, mount the host\'s /sys/kernel/tracing';

// ---------------------------------------------------------------------------------------------
// Small readers: none of them throws.

function readText(file: string): string | undefined {
  try {
    return fs.readFileSync(file, 'utf8');
  } catch {
    return undefined;
  }
}

function readInt(file: string): number | undefined {
  const t = readText(file)?.trim();
  if (t === undefined || !/^-?\d+$/.test(t)) return undefined;
  return Number(t);
}

/** errno name of a failed open(2) of `file`, or undefined if it opens. */
function openError(file: string): string | undefined {
  try {
    fs.closeSync(fs.openSync(file, 'r'));
    return undefined;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code ?? 'EUNKNOWN';
  }
}

function exists(file: string): boolean {
  try {
    fs.accessSync(file, fs.constants.F_OK);
    return true;
  } catch {
    return false;
  }
}

/** [major, minor, patch] of a release string like "6.18.44-fc-v669". */
export function parseKernelRelease(release: string): [number, number, number] | undefined {
  const m = /^(\d+)\.(\d+)(?:\.(\d+))?/.exec(release);
  if (!m) return undefined;
  return [Number(m[1]), Number(m[2]), Number(m[3] ?? 0)];
}

export function kernelAtLeast(v: readonly number[] | undefined, major: number, minor: number): boolean {
  if (!v) return false;
  return v[0]! > major || (v[0] === major && v[1]! >= minor);
}

/** Parses a CPU list like "0-3,5" (/sys/devices/system/cpu/online). */
export function parseCpuList(text: string): number[] {
  const cpus: number[] = [];
  for (const part of text.trim().split(',')) {
    if (!part) continue;
    const m = /^(\d+)(?:-(\d+))?$/.exec(part.trim());
    if (!m) continue;
    const lo = Number(m[1]);
    const hi = m[2] === undefined ? lo : Number(m[2]);
    for (let c = lo; c <= hi && c - lo < 4096; c++) cpus.push(c);
  }
  return cpus;
}

/** Kernel build configuration from /proc/config.gz or /boot/config-<release>, if either exists. */
export interface KernelConfig {
  source: string;
  /** 'y', 'm', a value, or undefined when the option is not set. */
  get(option: string): string | undefined;
  enabled(option: string): boolean;
}

export function parseKernelConfig(text: string, source: string): KernelConfig {
  const values = new Map<string, string>();
  for (const line of text.split('\n')) {
    const m = /^(CONFIG_[A-Za-z0-9_]+)=(.*)$/.exec(line);
    if (m) values.set(m[1]!, m[2]!);
  }
  return {
    source,
    get: (o) => values.get(o),
    enabled: (o) => values.get(o) === 'y' || values.get(o) === 'm',
  };
}

function readKernelConfig(release: string): KernelConfig | undefined {
  try {
    return parseKernelConfig(zlib.gunzipSync(fs.readFileSync('/proc/config.gz')).toString('utf8'), '/proc/config.gz');
  } catch {
    const file = `/boot/config-${release}`;
    const text = readText(file);
    return text === undefined ? undefined : parseKernelConfig(text, file);
  }
}

/** Where tracefs is mounted (the paths libbpf looks at), or undefined. */
function findTracefs(): string | undefined {
  const mounts = readText('/proc/self/mounts') ?? '';
  const points = new Set<string>();
  for (const line of mounts.split('\n')) {
    const f = line.split(' ');
    if (f[2] === 'tracefs' && f[1]) points.add(f[1].replace(/\\040/g, ' '));
  }
  // libbpf uses /sys/kernel/debug/tracing when that exists (debugfs auto-mounts tracefs there), else /sys/kernel/tracing.
  for (const p of ['/sys/kernel/debug/tracing', '/sys/kernel/tracing']) {
    if (points.has(p) || exists(path.join(p, 'events'))) return p;
  }
  return points.values().next().value;
}

function lockdownMode(): string | undefined {
  const t = readText('/sys/kernel/security/lockdown');
  return t ? /\[(\w+)\]/.exec(t)?.[1] : undefined;
}

function libcPath(): string | undefined {
  const maps = readText('/proc/self/maps') ?? '';
  for (const line of maps.split('\n')) {
    const file = line.slice(line.indexOf('/'));
    if (line.includes('/') && /\/(libc\.so\.6|libc\.musl[^/]*\.so[.\d]*|ld-musl[^/]*\.so\.1)$/.test(file)) return file;
  }
  return undefined;
}

function formatCpus(cpus: number[]): string {
  if (cpus.length === 0) return 'none';
  const parts: string[] = [];
  let start = cpus[0]!;
  let prev = start;
  for (const c of [...cpus.slice(1), -2]) {
    if (c === prev + 1) {
      prev = c;
      continue;
    }
    parts.push(start === prev ? `${start}` : `${start}-${prev}`);
    start = prev = c;
  }
  return parts.join(',');
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

// ---------------------------------------------------------------------------------------------
// Probes: load one program of bpf/probes.bpf.o, attach, provoke, wait for hits, close.

export type ProbeKind = 'perf_event' | 'stack_map' | 'tracepoint' | 'raw_tp' | 'tp_btf' | 'fentry' | 'kprobe' | 'uprobe' | 'ringbuf';

export interface ProbeOutcome {
  kind: ProbeKind;
  /** How far it got: 'ok' means it attached and its program ran. */
  stage: 'ok' | 'addon' | 'open' | 'load' | 'attach' | 'event';
  /** What it was attached to. */
  target: string;
  /** Times the program ran (hits map) before the probe gave up or succeeded. */
  events: number;
  /** Milliseconds between attach and the first observed run (or the timeout). */
  waitedMs: number;
  error?: { message: string; code?: string; errno?: number; syscall?: string };
}

interface ProbeSpec {
  program: string;
  target: string;
  attach(obj: NativeBpfObject): { close(): void };
  /** Makes the probed event happen; called repeatedly while waiting. */
  trigger?(): void;
}

function probeSpec(kind: ProbeKind, cpus: number[], libc: string | undefined): ProbeSpec {
  const perf = (program: string): ProbeSpec => ({
    program,
    target: `cpu-clock at ${DEFAULT_FREQUENCY_HZ} Hz on CPUs ${formatCpus(cpus)}`,
    attach: (o) =>
      o.attachPerfEvent(program, { type: PERF_TYPE_SOFTWARE, config: PERF_COUNT_SW_CPU_CLOCK, frequency: DEFAULT_FREQUENCY_HZ, cpus }),
  });
  // A plain file read goes through vfs_read().
  const readFile = (): void => {
    readText('/proc/self/stat');
  };
  switch (kind) {
    case 'perf_event':
      return perf('probe_perf');
    case 'stack_map':
      return perf('probe_stack');
    case 'tracepoint':
      return { program: 'probe_tp', target: 'sched:sched_switch', attach: (o) => o.attachTracepoint('probe_tp', 'sched', 'sched_switch') };
    case 'raw_tp':
      return { program: 'probe_raw_tp', target: 'raw_tp/sched_switch', attach: (o) => o.attachRawTracepoint('probe_raw_tp', 'sched_switch') };
    case 'tp_btf':
      return { program: 'probe_tp_btf', target: 'tp_btf/sched_switch', attach: (o) => o.attach('probe_tp_btf') };
    case 'ringbuf':
      return { program: 'probe_ringbuf', target: 'raw_tp/sched_switch of this process', attach: (o) => o.attachRawTracepoint('probe_ringbuf', 'sched_switch') };
    case 'fentry':
      return { program: 'probe_fentry', target: 'fentry/vfs_read', attach: (o) => o.attach('probe_fentry'), trigger: readFile };
    case 'kprobe':
      return { program: 'probe_kprobe', target: 'kprobe/vfs_read', attach: (o) => o.attachKprobe('probe_kprobe', 'vfs_read'), trigger: readFile };
    case 'uprobe':
      return {
        program: 'probe_uprobe',
        target: `${libc ?? 'libc'}:getuid in this process only`,
        attach: (o) => {
          if (!libc) throw new Error('no libc is mapped into this process: nothing to put a uprobe on');
          // pid filter: the breakpoint is installed in this process's mapping of libc only. The
          // guard allows it because ebpfprof's own process is not an observed one.
          requireIntrusion(IntrusionPolicy.strict(), 'uprobes', { pid: process.pid });
          return o.attachUprobe('probe_uprobe', { path: libc, functionName: 'getuid', pid: process.pid });
        },
        trigger: () => {
          process.getuid?.();
        },
      };
  }
}

function describeError(e: unknown): NonNullable<ProbeOutcome['error']> {
  const message = errorMessage(e).split('\n')[0]!;
  if (isSystemError(e)) {
    const err: NonNullable<ProbeOutcome['error']> = { message };
    if (e.code !== undefined) err.code = e.code;
    if (typeof e.errno === 'number') err.errno = e.errno;
    if (e.syscall !== undefined) err.syscall = e.syscall;
    return err;
  }
  return { message };
}

async function runProbe(kind: ProbeKind, facts: SystemFacts): Promise<ProbeOutcome> {
  const spec = probeSpec(kind, facts.onlineCpus(), libcPath());
  const outcome: ProbeOutcome = { kind, stage: 'addon', target: spec.target, events: 0, waitedMs: 0 };
  let addon: NativeAddon;
  try {
    addon = facts.addon();
  } catch (e) {
    outcome.error = describeError(e);
    return outcome;
  }
  let obj: NativeBpfObject;
  outcome.stage = 'open';
  try {
    obj = new addon.BpfObject(facts.probesObjectPath, facts.options.btfPath ? { kernelBtfPath: facts.options.btfPath } : undefined);
  } catch (e) {
    outcome.error = describeError(e);
    return outcome;
  }
  let ring: NativeRingBuffer | undefined;
  try {
    for (const p of obj.programNames()) obj.setAutoload(p, p === spec.program);
    const tgid = Buffer.alloc(4);
    tgid.writeUInt32LE(process.pid);
    obj.setGlobal('target_tgid', tgid);
    outcome.stage = 'load';
    obj.load();
    outcome.stage = 'attach';
    let delivered = 0;
    if (kind === 'ringbuf') ring = obj.openRingBuffer('events', (_batch, records) => (delivered += records), { maxQueuedBatches: 4 });
    const link = spec.attach(obj);
    outcome.stage = 'event';
    const zero = Buffer.alloc(4);
    const started = Date.now();
    try {
      while (true) {
        spec.trigger?.();
        await sleep(2);
        const v = obj.mapLookup('hits', zero);
        outcome.events = v ? Number(v.readBigUInt64LE(0)) : 0;
        outcome.waitedMs = Date.now() - started;
        if (outcome.events > 0 && (kind !== 'ringbuf' || delivered > 0)) {
          outcome.stage = 'ok';
          break;
        }
        if (outcome.waitedMs >= facts.probeTimeoutMs) break;
      }
    } finally {
      link.close();
    }
    if (kind === 'ringbuf') outcome.events = delivered;
  } catch (e) {
    outcome.error = describeError(e);
  } finally {
    if (ring) await ring.close().catch(() => undefined);
    obj.close();
  }
  return outcome;
}

// ---------------------------------------------------------------------------------------------
// Facts shared by the checks, each computed once.

class SystemFacts {
  readonly release: string;
  readonly version: [number, number, number] | undefined;
  readonly btfPath: string;
  readonly probesObjectPath: string;
  readonly probeTimeoutMs: number;
  private cache = new Map<string, unknown>();
  private probes = new Map<ProbeKind, Promise<ProbeOutcome>>();

  constructor(readonly options: KernelFeatureOptions) {
    this.release = options.kernelRelease ?? os.release();
    this.version = parseKernelRelease(this.release);
    this.btfPath = options.btfPath ?? DEFAULT_BTF_PATH;
    this.probesObjectPath = options.probesObjectPath ?? bpfObjectPath('probes');
    this.probeTimeoutMs = options.probeTimeoutMs ?? 500;
  }

  private once<T>(key: string, compute: () => T): T {
    if (!this.cache.has(key)) this.cache.set(key, compute());
    return this.cache.get(key) as T;
  }

  addon(): NativeAddon {
    return this.options.addon ?? loadAddon();
  }

  caps(): ProcessCapabilities | undefined {
    return this.once('caps', () => {
      if (this.options.capabilities) return this.options.capabilities;
      try {
        return readCapabilities('self');
      } catch {
        return undefined;
      }
    });
  }

  has(bit: number): boolean {
    const c = this.caps();
    return c !== undefined && hasCapability(c.effective, bit);
  }

  /** CAP_BPF + CAP_PERFMON (5.8+) or CAP_SYS_ADMIN. */
  privileged(): boolean {
    return this.has(CAP_SYS_ADMIN) || (kernelAtLeast(this.version, 5, 8) && this.has(CAP_BPF) && this.has(CAP_PERFMON));
  }

  config(): KernelConfig | undefined {
    return this.once('config', () => readKernelConfig(this.release));
  }

  tracefs(): string | undefined {
    return this.once('tracefs', findTracefs);
  }

  /** errno name when this process cannot read tracepoint ids from tracefs (it is root-only, 0700, by default). */
  tracefsError(): string | undefined {
    return this.once('tracefsError', () => {
      const t = this.tracefs();
      return t ? openError(path.join(t, 'events', 'sched', 'sched_switch', 'id')) : 'ENOENT';
    });
  }

  onlineCpus(): number[] {
    return this.once('cpus', () => {
      const cpus = parseCpuList(readText('/sys/devices/system/cpu/online') ?? '');
      return cpus.length > 0 ? cpus : Array.from({ length: os.cpus().length || 1 }, (_, i) => i);
    });
  }

  btfBytes(): Buffer | undefined {
    return this.once('btf', () => {
      try {
        return fs.readFileSync(this.btfPath);
      } catch {
        return undefined;
      }
    });
  }

  /** Whether the kernel has tracepoint "cat:name": from tracefs if mounted, else from BTF. */
  tracepointExists(id: string): boolean {
    const [cat, name] = id.split(':') as [string, string];
    const tracefs = this.tracefs();
    if (tracefs && this.tracefsError() === undefined) return exists(path.join(tracefs, 'events', cat, name));
    // Every tracepoint has a btf_trace_<name> typedef in vmlinux BTF (what tp_btf attaches by).
    return this.btfBytes()?.includes(`btf_trace_${name}\0`) ?? false;
  }

  probe(kind: ProbeKind): Promise<ProbeOutcome> {
    let p = this.probes.get(kind);
    if (!p) {
      // Probes run one after another: each loads its own object, and timings stay independent.
      const previous = Promise.allSettled([...this.probes.values()]);
      p = previous.then(() => runProbe(kind, this));
      this.probes.set(kind, p);
    }
    return p;
  }
}

// ---------------------------------------------------------------------------------------------
// The checks.

type Check = (f: SystemFacts) => FeatureCheck | Promise<FeatureCheck>;

function result(id: FeatureId, name: string, ok: boolean, required: boolean, detail: string, fix?: string): FeatureCheck {
  const r: FeatureCheck = { id, name, ok, required, detail };
  if (!ok && fix) r.fix = fix;
  return r;
}

/** The errno name of a failed probe step ("EPERM"), or the error's first line when it has none. */
function errnoText(o: ProbeOutcome): string {
  if (!o.error) return 'unknown error';
  return o.error.code ?? o.error.message;
}

function runAs(): string {
  return `run as root (sudo), or grant the capabilities to node: sudo setcap cap_bpf,cap_perfmon+ep ${process.execPath}`;
}

/** Why a probe failed, with what ebpfprof can say about the cause. */
function probeFailure(f: SystemFacts, o: ProbeOutcome, what: string): string {
  switch (o.stage) {
    case 'addon':
      return `not tested: ${o.error?.message ?? 'the native addon cannot be loaded'}`;
    case 'open':
      return `not tested: bpf/probes.bpf.o cannot be opened (${o.error?.message ?? 'unknown error'})`;
    case 'load':
      if (!f.privileged()) return `loading ${what} failed (${errnoText(o)}): this process lacks CAP_BPF/CAP_PERFMON`;
      return `loading ${what} failed (${errnoText(o)})`;
    case 'attach':
      return `attaching ${what} to ${o.target} failed (${errnoText(o)})`;
    case 'event':
      if (o.error) return `${what} attached to ${o.target}, then failed (${errnoText(o)})`;
      return `${what} attached to ${o.target} but never ran within ${o.waitedMs} ms`;
    case 'ok':
      return `${what} works`;
  }
}

function ran(o: ProbeOutcome): string {
  return `ran ${o.events} time${o.events === 1 ? '' : 's'} within ${o.waitedMs} ms`;
}

const checkKernelVersion: Check = (f) => {
  if (!f.version) return result('kernel_version', 'kernel version', false, true, `cannot parse the kernel release '${f.release}'`);
  const ok = kernelAtLeast(f.version, 5, 8);
  return result(
    'kernel_version',
    'kernel version',
    ok,
    true,
    ok
      ? `${f.release} (>= 5.8: BPF ring buffer, CAP_BPF and CAP_PERFMON exist)`
      : `${f.release} is older than 5.8: no BPF ring buffer and no CAP_BPF/CAP_PERFMON, which ebpfprof needs`,
    'use Linux 5.8 or newer, built with CONFIG_DEBUG_INFO_BTF=y',
  );
};

const checkBtf: Check = (f) => {
  const name = 'BTF';
  const fix = 'use a kernel built with CONFIG_DEBUG_INFO_BTF=y (Debian 11+, Ubuntu 20.10+, RHEL 8.2+ and Fedora 31+ kernels are)';
  const bytes = f.btfBytes();
  if (!bytes) {
    const err = openError(f.btfPath);
    const cfg = f.config();
    const why =
      err === 'ENOENT'
        ? cfg && !cfg.enabled('CONFIG_DEBUG_INFO_BTF')
          ? `the kernel was built without CONFIG_DEBUG_INFO_BTF (${cfg.source})`
          : 'the kernel exposes no BTF'
        : `it cannot be read (${err ?? 'unknown error'})`;
    return result('btf', name, false, true, `${f.btfPath} is unavailable: ${why}; CO-RE programs need it to adapt to this kernel's struct layouts`, fix);
  }
  // struct btf_header starts with magic 0xeB9F (little endian on x86/arm64).
  if (bytes.length < 24 || bytes.readUInt16LE(0) !== 0xeb9f) {
    return result('btf', name, false, true, `${f.btfPath} is not BTF (bad magic)`, fix);
  }
  return result('btf', name, true, true, `${f.btfPath} (${(bytes.length / 1048576).toFixed(1)} MiB): CO-RE programs adapt to this kernel's struct layouts`);
};

const checkCapabilities: Check = (f) => {
  const name = 'capabilities';
  const caps = f.caps();
  if (!caps) return result('capabilities', name, false, true, 'cannot read /proc/self/status', runAs());
  const uid = caps.uids ? `uid ${caps.uids.effective}` : 'uid ?';
  const relevant = [CAP_BPF, CAP_PERFMON, CAP_SYS_ADMIN, CAP_SYSLOG, CAP_SYS_PTRACE, CAP_DAC_READ_SEARCH, CAP_SYS_RESOURCE];
  const held = relevant.filter((b) => f.has(b)).map(capabilityName);
  const newKernel = kernelAtLeast(f.version, 5, 8);
  const needs = newKernel ? 'needs CAP_BPF and CAP_PERFMON (or CAP_SYS_ADMIN)' : 'needs CAP_SYS_ADMIN (kernel < 5.8 has no CAP_BPF/CAP_PERFMON)';
  const ok = f.privileged();
  let detail = `${uid} holds ${held.length ? held.join(', ') : 'none of the relevant capabilities'}; profiling ${needs}`;
  if (!f.has(CAP_SYS_RESOURCE)) {
    detail += kernelAtLeast(f.version, 5, 11)
      ? '; CAP_SYS_RESOURCE is not needed on >= 5.11 (BPF memory is charged to the cgroup, not RLIMIT_MEMLOCK)'
      : '; without CAP_SYS_RESOURCE, RLIMIT_MEMLOCK must be high enough for the BPF maps (kernel < 5.11)';
  }
  let fix: string;
  if (newKernel) {
    const missing = [CAP_BPF, CAP_PERFMON].filter((b) => !f.has(b)).map((b) => capabilityName(b).slice(4).toLowerCase());
    fix = `run as root (sudo), or grant them to node: sudo setcap ${missing.map((c) => `cap_${c}`).join(',')}+ep ${process.execPath}`;
  } else {
    fix = `run as root (sudo), or: sudo setcap cap_sys_admin+ep ${process.execPath}`;
  }
  return result('capabilities', name, ok, true, detail, fix);
};

const checkUnprivilegedBpf: Check = (f) => {
  const v = readInt('/proc/sys/kernel/unprivileged_bpf_disabled');
  const meaning =
    v === 0 ? 'unprivileged bpf() allowed for a few program types' : v === 1 ? 'unprivileged bpf() disabled until reboot' : v === 2 ? 'unprivileged bpf() disabled; an admin may re-enable it' : 'unknown value';
  const ok = f.privileged();
  const detail =
    v === undefined
      ? 'cannot read /proc/sys/kernel/unprivileged_bpf_disabled'
      : `${v} (${meaning}): ${ok ? 'no effect on ebpfprof, which holds the capabilities; ' : ''}tracing and perf_event programs need CAP_BPF and CAP_PERFMON at any setting`;
  return result('unprivileged_bpf', 'unprivileged_bpf_disabled', ok, false, detail, runAs());
};

const checkPerfEventParanoid: Check = (f) => {
  const v = readInt('/proc/sys/kernel/perf_event_paranoid');
  if (v === undefined) return result('perf_event_paranoid', 'perf_event_paranoid', false, false, 'cannot read /proc/sys/kernel/perf_event_paranoid (no perf events in this kernel?)', 'use a kernel with CONFIG_PERF_EVENTS=y');
  const meaning =
    v <= -1
      ? 'no restrictions'
      : v === 0
        ? 'unprivileged users may open CPU-wide events, without raw tracepoint data'
        : v === 1
          ? 'unprivileged users may profile only their own processes, user and kernel space'
          : v === 2
            ? 'unprivileged users may profile only their own processes, user space only'
            : 'perf_event_open forbidden without CAP_PERFMON (distribution patch)';
  const privileged = f.has(CAP_PERFMON) || f.has(CAP_SYS_ADMIN);
  const ok = privileged || v <= -1;
  const detail = `${v} (${meaning}): ${
    privileged
      ? 'no limit for ebpfprof, which holds CAP_PERFMON'
      : 'ebpfprof opens CPU-wide cpu-clock events with kernel stacks, which needs CAP_PERFMON at this level'
  }`;
  return result('perf_event_paranoid', 'perf_event_paranoid', ok, false, detail, `grant CAP_PERFMON: ${runAs()}`);
};

const checkPerfEventOpen: Check = async (f) => {
  const name = 'perf_event_open (cpu-clock)';
  const o = await f.probe('perf_event');
  const hwPmu = exists('/sys/bus/event_source/devices/cpu');
  const pmuNote = hwPmu ? '' : ' (this machine has no hardware PMU; cpu-clock is a software event and needs none)';
  if (o.stage === 'addon' || o.stage === 'open' || o.stage === 'load') {
    const why = probeFailure(f, o, 'the perf_event probe program');
    return result('perf_event_open', name, false, true, why.startsWith('not tested') ? why : `not tested: ${why}`, f.privileged() ? undefined : runAs());
  }
  if (o.stage === 'attach' && o.error?.syscall === 'perf_event_open') {
    const code = o.error.code;
    const fix =
      code === 'EACCES' || code === 'EPERM'
        ? f.has(CAP_PERFMON) || f.has(CAP_SYS_ADMIN)
          ? 'a seccomp profile or security module blocks perf_event_open: in a container, allow perf_event_open and bpf (or run it privileged)'
          : runAs()
        : code === 'ENOENT' || code === 'ENODEV' || code === 'EOPNOTSUPP'
          ? 'use a kernel with CONFIG_PERF_EVENTS=y and software events'
          : undefined;
    return result('perf_event_open', name, false, true, `perf_event_open of cpu-clock failed: ${errnoText(o)}`, fix);
  }
  return result('perf_event_open', name, true, true, `opened cpu-clock at ${DEFAULT_FREQUENCY_HZ} Hz on CPUs ${formatCpus(f.onlineCpus())}${pmuNote}`);
};

const checkPerfEventProgram: Check = async (f) => {
  const name = 'perf_event programs';
  const o = await f.probe('perf_event');
  if (o.stage === 'ok') return result('perf_event', name, true, true, `a perf_event program on ${o.target} ${ran(o)}: CPU sampling works`);
  return result('perf_event', name, false, true, probeFailure(f, o, 'the perf_event program'), f.privileged() ? undefined : runAs());
};

const checkMaxSampleRate: Check = () => {
  const name = 'max sample rate';
  const v = readInt('/proc/sys/kernel/perf_event_max_sample_rate');
  const fix = `sysctl -w kernel.perf_event_max_sample_rate=${MAX_DOCUMENTED_FREQUENCY_HZ}`;
  if (v === undefined) return result('max_sample_rate', name, false, false, 'cannot read /proc/sys/kernel/perf_event_max_sample_rate', fix);
  const cpuPct = readInt('/proc/sys/kernel/perf_cpu_time_max_percent');
  const lowers = cpuPct !== undefined && cpuPct > 0 && cpuPct < 100 ? `; the kernel lowers it by itself when samples take more than ${cpuPct}% of CPU time` : '';
  if (v >= MAX_DOCUMENTED_FREQUENCY_HZ) return result('max_sample_rate', name, true, false, `${v} Hz: --freq up to ${MAX_DOCUMENTED_FREQUENCY_HZ} is accepted${lowers}`);
  return result(
    'max_sample_rate',
    name,
    false,
    v < DEFAULT_FREQUENCY_HZ,
    `${v} Hz: --freq above ${v} fails with EINVAL${v < DEFAULT_FREQUENCY_HZ ? `, including the default ${DEFAULT_FREQUENCY_HZ} Hz` : ''}${lowers}`,
    fix,
  );
};

const checkStackMaps: Check = async (f) => {
  const name = 'BPF stack maps';
  const o = await f.probe('stack_map');
  if (o.stage === 'ok') return result('stack_maps', name, true, true, `bpf_get_stackid() returned kernel stack ids for ${o.events} cpu-clock sample${o.events === 1 ? '' : 's'} within ${o.waitedMs} ms`);
  return result('stack_maps', name, false, true, probeFailure(f, o, 'the stack-map probe'), f.privileged() ? undefined : runAs());
};

const checkRingbuf: Check = async (f) => {
  const name = 'ring buffer';
  const o = await f.probe('ringbuf');
  if (o.stage === 'ok') return result('ringbuf', name, true, true, `${o.events} records went kernel -> BPF ring buffer -> JavaScript within ${o.waitedMs} ms`);
  const fix = !kernelAtLeast(f.version, 5, 8) ? 'BPF ring buffers need Linux 5.8 or newer' : f.privileged() ? undefined : runAs();
  return result('ringbuf', name, false, true, probeFailure(f, o, 'the ring-buffer probe'), fix);
};

/** Text for tracefs being mounted but not readable by this process. */
function tracefsDenied(f: SystemFacts): string {
  const uid = f.caps()?.uids?.effective;
  return `${f.tracefs()} is mounted but not readable by uid ${uid ?? '?'} (${f.tracefsError()}): classic tracepoint ids are read there, which needs root or CAP_DAC_READ_SEARCH`;
}

const TRACEFS_ACCESS_FIX = `run as root, or add CAP_DAC_READ_SEARCH: sudo setcap cap_bpf,cap_perfmon,cap_dac_read_search+ep ${process.execPath} (raw tracepoints and tp_btf need no tracefs)`;

const checkTracefs: Check = (f) => {
  const t = f.tracefs();
  if (!t) {
    return result(
      'tracefs',
      'tracefs',
      false,
      false,
      'not mounted at /sys/kernel/tracing: classic tracepoints cannot be attached (libbpf reads their ids there); raw tracepoints and tp_btf do not need it',
      TRACEFS_MOUNT_FIX,
    );
  }
  if (f.tracefsError() !== undefined) return result('tracefs', 'tracefs', false, false, tracefsDenied(f), TRACEFS_ACCESS_FIX);
  return result('tracefs', 'tracefs', true, false, `mounted at ${t} and readable: classic tracepoints can be attached`);
};

const checkTracepoints: Check = async (f) => {
  const name = 'tracepoints';
  const o = await f.probe('tracepoint');
  if (o.stage === 'ok') return result('tracepoints', name, true, false, `sched:sched_switch attached through tracefs (${f.tracefs() ?? '?'}), ${ran(o)}`);
  if (o.stage === 'attach' || o.stage === 'event') {
    if (!f.tracefs()) return result('tracepoints', name, false, false, `tracefs is not mounted, so tracepoint ids cannot be read (${errnoText(o)})`, TRACEFS_MOUNT_FIX);
    if (f.tracefsError() !== undefined) return result('tracepoints', name, false, false, `attaching sched:sched_switch failed (${errnoText(o)}): ${tracefsDenied(f)}`, TRACEFS_ACCESS_FIX);
  }
  return result('tracepoints', name, false, false, probeFailure(f, o, 'the tracepoint program'), f.privileged() ? undefined : runAs());
};

const checkRawTracepoints: Check = async (f) => {
  const name = 'raw tracepoints';
  const o = await f.probe('raw_tp');
  if (o.stage === 'ok') return result('raw_tracepoints', name, true, false, `raw_tp/sched_switch attached (no tracefs needed), ${ran(o)}`);
  const fix = !kernelAtLeast(f.version, 4, 17) ? 'raw tracepoints need Linux 4.17 or newer' : f.privileged() ? undefined : runAs();
  return result('raw_tracepoints', name, false, false, probeFailure(f, o, 'the raw tracepoint program'), fix);
};

const checkTpBtf: Check = async (f) => {
  const name = 'BTF tracepoints (tp_btf)';
  const o = await f.probe('tp_btf');
  if (o.stage === 'ok') return result('tp_btf', name, true, false, `tp_btf/sched_switch attached with typed arguments, ${ran(o)}`);
  const fix = !f.btfBytes() ? 'tp_btf needs kernel BTF (CONFIG_DEBUG_INFO_BTF=y)' : !kernelAtLeast(f.version, 5, 5) ? 'tp_btf needs Linux 5.5 or newer' : undefined;
  return result('tp_btf', name, false, false, `${probeFailure(f, o, 'the tp_btf program')}; raw tracepoints serve instead`, fix);
};

/** Why kernel-function probes (kprobes) cannot work, from the kernel config, /sys and tracefs. */
function kprobeCause(f: SystemFacts): string | undefined {
  const cfg = f.config();
  const noPmu = !exists('/sys/bus/event_source/devices/kprobe');
  const tracefs = f.tracefs();
  const noEvents = tracefs !== undefined && !exists(path.join(tracefs, 'kprobe_events'));
  const evidence = [noPmu ? "no 'kprobe' PMU in /sys/bus/event_source/devices" : '', noEvents ? `no kprobe_events in ${tracefs}` : '']
    .filter(Boolean)
    .join(', ');
  if (cfg && !cfg.enabled('CONFIG_KPROBES')) return `the kernel was built without CONFIG_KPROBES, hence without CONFIG_KPROBE_EVENTS (${cfg.source}${evidence ? `; ${evidence}` : ''})`;
  if (cfg && !cfg.enabled('CONFIG_KPROBE_EVENTS')) return `the kernel was built without CONFIG_KPROBE_EVENTS (${cfg.source}${evidence ? `; ${evidence}` : ''})`;
  if (noPmu && (noEvents || tracefs === undefined)) return `the kernel was built without CONFIG_KPROBE_EVENTS (${evidence || "no 'kprobe' PMU"})`;
  const lockdown = lockdownMode();
  if (lockdown === 'confidentiality') return 'kernel lockdown (confidentiality) forbids kprobes';
  return undefined;
}

function kernelFunctionFallback(without: 'fentry' | 'kprobes', otherOk: boolean): string {
  const other = without === 'fentry' ? 'kprobes' : 'fentry';
  return otherOk
    ? `fallback: ${other} for kernel functions; tracepoints for TCP and scheduler tracing`
    : `fallback: tracepoints only (TCP: ${TCP_TRACEPOINTS.join(', ')}; scheduler: sched:sched_switch, sched:sched_wakeup); CPU profiling needs no kernel-function probes`;
}

const checkFentry: Check = async (f) => {
  const name = 'fentry';
  const o = await f.probe('fentry');
  if (o.stage === 'ok') return result('fentry', name, true, false, `fentry/vfs_read attached through a BPF trampoline, ${ran(o)}`);
  const kprobesOk = (await f.probe('kprobe')).stage === 'ok';
  const cfg = f.config();
  const causes: string[] = [];
  if (!kernelAtLeast(f.version, 5, 5)) causes.push('fentry needs Linux 5.5 or newer');
  if (process.arch !== 'x64' && process.arch !== 'arm64') causes.push(`BPF trampolines are not implemented for ${process.arch}`);
  if (cfg && !cfg.enabled('CONFIG_DYNAMIC_FTRACE_WITH_DIRECT_CALLS')) causes.push(`the kernel was built without CONFIG_DYNAMIC_FTRACE_WITH_DIRECT_CALLS, which BPF trampolines need (${cfg.source})`);
  if (o.stage === 'load' && (o.error?.code === 'EPERM' || o.error?.code === 'EACCES') && f.privileged()) {
    let c = `refused although this process holds ${f.has(CAP_SYS_ADMIN) ? 'CAP_SYS_ADMIN, ' : ''}CAP_BPF and CAP_PERFMON: this kernel does not allow BPF trampolines`;
    const tracefs = f.tracefs();
    // Only meaningful when tracefs itself is readable: then a refusal points at function tracing.
    const fnErr = tracefs && f.tracefsError() === undefined ? openError(path.join(tracefs, 'available_filter_functions')) : undefined;
    if (fnErr === 'EPERM' || fnErr === 'EACCES') c += ` (function tracing is restricted here: opening ${tracefs}/available_filter_functions fails with ${fnErr} too)`;
    const lockdown = lockdownMode();
    if (lockdown && lockdown !== 'none') c += ` (kernel lockdown: ${lockdown})`;
    causes.push(c);
  }
  const detail = `${probeFailure(f, o, 'an fentry program on vfs_read')}${causes.length ? `: ${causes.join('; ')}` : ''}; ${kernelFunctionFallback('fentry', kprobesOk)}`;
  return result('fentry', name, false, false, detail);
};

const checkKprobes: Check = async (f) => {
  const name = 'kprobes';
  const o = await f.probe('kprobe');
  if (o.stage === 'ok') return result('kprobes', name, true, false, `kprobe/vfs_read attached, ${ran(o)}`);
  const fentryOk = (await f.probe('fentry')).stage === 'ok';
  const cause = o.stage === 'attach' || o.stage === 'event' ? kprobeCause(f) : undefined;
  const failure = probeFailure(f, o, 'a kprobe program');
  const detail = `${cause ? `${cause}: ` : ''}${failure}; ${kernelFunctionFallback('kprobes', fentryOk)}`;
  const fix = cause?.includes('CONFIG_') ? 'optional: a kernel with CONFIG_KPROBES=y and CONFIG_KPROBE_EVENTS=y would allow kprobe-based extras' : undefined;
  return result('kprobes', name, false, false, detail, fix);
};

const checkUprobes: Check = async (f) => {
  const name = 'uprobes';
  const o = await f.probe('uprobe');
  if (o.stage === 'ok') return result('uprobes', name, true, false, `uprobe on ${o.target} ${ran(o)} (uprobes patch the target's code: 'enhanced' mode only)`);
  const cfg = f.config();
  const note = "; only 'enhanced' mode uses uprobes";
  if (cfg && !cfg.enabled('CONFIG_UPROBE_EVENTS')) {
    return result('uprobes', name, false, false, `the kernel was built without CONFIG_UPROBE_EVENTS (${cfg.source}): ${probeFailure(f, o, 'the uprobe program')}${note}`, 'a kernel with CONFIG_UPROBE_EVENTS=y');
  }
  const denied = o.stage === 'attach' && (o.error?.code === 'EACCES' || o.error?.code === 'EPERM');
  if (denied && f.privileged() && !f.has(CAP_SYS_ADMIN)) {
    return result(
      'uprobes',
      name,
      false,
      false,
      `${probeFailure(f, o, 'the uprobe program')}: the kernel creates uprobe perf events only for CAP_SYS_ADMIN (CAP_PERFMON is not enough)${note}`,
      "run 'enhanced' mode as root",
    );
  }
  return result('uprobes', name, false, false, `${probeFailure(f, o, 'the uprobe program')}${note}`);
};

/** Whether /proc/kallsyms shows real addresses, and why (kernel/kallsyms.c: kallsyms_show_value). */
const checkKallsyms: Check = (f) => {
  const name = 'kallsyms addresses';
  const kptr = readInt('/proc/sys/kernel/kptr_restrict');
  const paranoid = readInt('/proc/sys/kernel/perf_event_paranoid');
  let head = '';
  try {
    const fd = fs.openSync('/proc/kallsyms', 'r');
    try {
      const buf = Buffer.alloc(8192);
      head = buf.toString('latin1', 0, fs.readSync(fd, buf, 0, buf.length, null));
    } finally {
      fs.closeSync(fd);
    }
  } catch (e) {
    return result('kallsyms', name, false, false, `cannot read /proc/kallsyms (${(e as NodeJS.ErrnoException).code ?? errorMessage(e)}): kernel frames stay unsymbolized`, 'use a kernel with CONFIG_KALLSYMS=y');
  }
  const lines = head.split('\n').filter((l) => /^[0-9a-f]+ /.test(l));
  const real = lines.some((l) => !/^0+ /.test(l));
  const syslog = f.has(CAP_SYSLOG);
  let why: string;
  const needSyslog = `they need CAP_SYSLOG, which this process ${syslog ? 'holds' : 'lacks'}`;
  if (kptr === 2) why = 'kptr_restrict=2 hides them from everyone';
  else if (kptr === 1) why = `kptr_restrict=1: ${needSyslog}`;
  else if (paranoid !== undefined && paranoid <= 1) why = `kptr_restrict=${kptr ?? '?'} and perf_event_paranoid=${paranoid} show them to every profiler`;
  else why = `kptr_restrict=${kptr ?? '?'}, perf_event_paranoid=${paranoid ?? '?'}: ${needSyslog}`;
  if (real) return result('kallsyms', name, true, false, `real addresses (${why}): kernel frames can be symbolized`);
  const fix =
    kptr === 2
      ? 'sysctl -w kernel.kptr_restrict=1 and grant CAP_SYSLOG'
      : `grant CAP_SYSLOG: sudo setcap cap_bpf,cap_perfmon,cap_syslog+ep ${process.execPath} (or sysctl -w kernel.perf_event_paranoid=1 with kptr_restrict=0)`;
  return result('kallsyms', name, false, false, `addresses read as 0 (${why}): kernel frames stay unsymbolized`, fix);
};

/** /proc/PID/maps and /proc/PID/root of another user's process: ptrace_may_access(PTRACE_MODE_READ_FSCREDS). */
const checkProcAccess: Check = (f) => {
  const name = "other users' /proc access";
  const uid = f.caps()?.uids?.fs;
  const ptrace = f.has(CAP_SYS_PTRACE);
  const dac = f.has(CAP_DAC_READ_SEARCH) ? '; CAP_DAC_READ_SEARCH (held) also opens binaries in directories the uid cannot search' : '';
  const base = "/proc/PID/maps and /proc/PID/root of another user's process need ptrace-read access (PTRACE_MODE_READ: no tracing happens): same uid and a dumpable process, or CAP_SYS_PTRACE";
  if (ptrace) return result('proc_access', name, true, false, `${base} (held): every process can be symbolized${dac}`);
  return result(
    'proc_access',
    name,
    false,
    false,
    `${base} (not held): only processes of uid ${uid ?? '?'} get symbolized user frames; others are counted as unsymbolized`,
    `to symbolize every user's processes: sudo setcap cap_bpf,cap_perfmon,cap_sys_ptrace+ep ${process.execPath} (strict mode avoids CAP_SYS_PTRACE: run as the target's user instead)`,
  );
};

const checkJit: Check = (f) => {
  const name = 'BPF JIT';
  const v = readInt('/proc/sys/net/core/bpf_jit_enable');
  const always = f.config()?.enabled('CONFIG_BPF_JIT_ALWAYS_ON') ? ' (CONFIG_BPF_JIT_ALWAYS_ON: the interpreter is compiled out)' : '';
  if (v === undefined) {
    if (always) return result('bpf_jit', name, true, false, `always on${always}`);
    return result('bpf_jit', name, false, false, 'cannot read /proc/sys/net/core/bpf_jit_enable', 'sysctl -w net.core.bpf_jit_enable=1');
  }
  if (v >= 1) return result('bpf_jit', name, true, false, `enabled (bpf_jit_enable=${v}): programs run as native code${always}`);
  return result('bpf_jit', name, false, false, 'disabled (bpf_jit_enable=0): programs run interpreted, several times slower per sample', 'sysctl -w net.core.bpf_jit_enable=1');
};

const checkBpfStats: Check = (f) => {
  const name = 'BPF run-time stats';
  const v = readInt('/proc/sys/kernel/bpf_stats_enabled');
  if (v === 1) return result('bpf_stats', name, true, false, 'on (kernel.bpf_stats_enabled=1): run_time_ns/run_cnt per program are counted');
  let addon: NativeAddon;
  try {
    addon = f.addon();
  } catch (e) {
    return result('bpf_stats', name, false, false, `off, and not tested: ${errorMessage(e)}`, 'sysctl -w kernel.bpf_stats_enabled=1');
  }
  try {
    // BPF_ENABLE_STATS counts while the fd is open; closing it right away restores the setting.
    addon.closeFd(addon.enableRunTimeStats());
    return result('bpf_stats', name, true, false, `off (kernel.bpf_stats_enabled=${v ?? '?'}), and ebpfprof can turn it on for its own measurements (BPF_ENABLE_STATS)`);
  } catch (e) {
    const code = isSystemError(e) ? e.code : undefined;
    return result(
      'bpf_stats',
      name,
      false,
      false,
      `off, and BPF_ENABLE_STATS failed (${code ?? errorMessage(e)}${code === 'EPERM' ? ': it needs CAP_SYS_ADMIN' : ''}): per-program cost cannot be measured`,
      'sysctl -w kernel.bpf_stats_enabled=1 (as root) while measuring',
    );
  }
};

/** How tracers attach to a tracepoint, best first (see chooseAttachMethods). */
export const TRACEPOINT_METHODS: readonly AttachMethod[] = ['tp_btf', 'tracepoint', 'raw_tp'];
/** The scheduler programs need task pointers: no classic-tracepoint variant. */
export const SCHED_TRACING_METHODS: readonly AttachMethod[] = ['tp_btf', 'raw_tp'];
/** Probes on the kernel function behind a tracepoint, for kernels that lack the tracepoint. */
export const KERNEL_FUNCTION_METHODS: readonly AttachMethod[] = ['fentry', 'kprobe'];

export function attachMethodWorks(a: AttachAvailability, m: AttachMethod): boolean {
  switch (m) {
    case 'perf_event':
      return a.perfEvent;
    case 'tracepoint':
      return a.tracepoints;
    case 'raw_tp':
      return a.rawTracepoints;
    case 'tp_btf':
      return a.tpBtf;
    case 'fentry':
      return a.fentry;
    case 'kprobe':
      return a.kprobes;
  }
}

/**
 * The methods a tracer tries for one hook, best first: the tracepoint methods it offers (when the
 * tracepoint exists) in TRACEPOINT_METHODS order, then the kernel-function ones it offers. The
 * tracers in src/trace/ attach with the first that works and fall back along this list.
 */
export function tracingHookCandidates(a: AttachAvailability, tracepointExists: boolean, offered: readonly AttachMethod[]): AttachMethod[] {
  const tp = tracepointExists ? TRACEPOINT_METHODS.filter((m) => offered.includes(m) && attachMethodWorks(a, m)) : [];
  return [...tp, ...KERNEL_FUNCTION_METHODS.filter((m) => offered.includes(m) && attachMethodWorks(a, m))];
}

/**
 * Which attach method each ebpfprof feature uses, given what works. Pure: the loaders call it with
 * the probe results, so doctor reports exactly what they do.
 *  - CPU sampling: perf_event (cpu-clock on every CPU) with stack maps; nothing else can sample.
 *  - process lifecycle (exec/exit/fork): raw_tp, else tp_btf. Both work without tracefs; raw_tp
 *    first because it needs no BTF-typed attach and is what profile.bpf.c (and the sampler) attach;
 *    tp_btf is the fallback for a kernel that refuses raw tracepoints.
 *  - scheduler and TCP tracing attach to the tracepoints (tracingHookCandidates): tp_btf first (typed
 *    arguments, no tracefs, so it also works with just CAP_BPF + CAP_PERFMON, and it costs least), the
 *    classic tracepoint next (TCP only: the scheduler programs need the woken task's pointer, which the
 *    classic records do not carry), raw_tp last. TCP adds kernel-function probes where the kernel has
 *    them (fentry first, cheaper, else kprobe): the owner of accepted connections at accept time, and
 *    the kernel function behind any TCP tracepoint this kernel lacks.
 */
export function chooseAttachMethods(a: AttachAvailability): AttachChoice[] {
  const choices: AttachChoice[] = [];

  choices.push(
    a.perfEvent && a.stackMaps
      ? { feature: 'cpu_sampling', method: 'perf_event', extras: [], reason: 'perf_event: cpu-clock on every CPU with kernel and user stacks' }
      : {
          feature: 'cpu_sampling',
          method: null,
          extras: [],
          reason: `none: CPU sampling needs ${a.perfEvent ? 'BPF stack maps' : 'perf_event programs on cpu-clock'}`,
        },
  );

  const life: AttachMethod | null = a.rawTracepoints ? 'raw_tp' : a.tpBtf ? 'tp_btf' : null;
  choices.push({
    feature: 'process_lifecycle',
    method: life,
    extras: [],
    reason:
      life === 'raw_tp'
        ? 'raw_tp: sched_process_fork/exit/exec (no tracefs, no BTF-typed attach needed)'
        : life === 'tp_btf'
          ? 'tp_btf: sched_process_fork/exit/exec (raw tracepoints do not work here)'
          : 'none: neither raw tracepoints nor tp_btf work, so `record -- CMD` cannot follow children',
  });

  const sched = tracingHookCandidates(a, true, SCHED_TRACING_METHODS)[0] ?? null;
  choices.push({
    feature: 'sched_tracing',
    method: sched,
    extras: [],
    reason:
      sched === 'tp_btf'
        ? 'tp_btf: sched:sched_switch, sched_wakeup, sched_wakeup_new with typed task pointers (no tracefs needed; the classic records carry no task pointer)'
        : sched
          ? `${sched}: sched_switch, sched_wakeup, sched_wakeup_new (tp_btf does not work here, see 'tp_btf')`
          : 'none: neither tp_btf nor raw tracepoints work',
  });

  const tcpTp = a.tcpTracepoints;
  const tcpBase = tcpTp.length === 0 ? null : (tracingHookCandidates(a, true, TRACEPOINT_METHODS)[0] ?? null);
  const extras: AttachMethod[] = a.fentry ? ['fentry'] : a.kprobes ? ['kprobe'] : [];
  const missingTp = TCP_TRACEPOINTS.filter((t) => !tcpTp.includes(t));
  choices.push({
    feature: 'tcp_tracing',
    method: tcpBase,
    extras,
    reason:
      (tcpBase ? `${tcpBase}: ${tcpTp.join(', ')}` : tcpTp.length === 0 ? 'none: this kernel has none of the TCP tracepoints' : 'none: no tracepoint attach method works') +
      (missingTp.length && tcpTp.length ? ` (missing: ${missingTp.join(', ')}${extras.length ? `, taken from the kernel functions by ${extras[0]}` : ''})` : '') +
      (extras.length
        ? `; kernel-function extras: ${extras[0]} (the process of accepted connections at accept time)`
        : '; kernel-function extras: none (no fentry, no kprobes): accepted connections get their process when it closes them'),
  });
  return choices;
}

const FEATURE_LABEL: Record<TracingFeature, string> = {
  cpu_sampling: 'CPU sampling uses',
  process_lifecycle: 'process lifecycle uses',
  sched_tracing: 'scheduler tracing uses',
  tcp_tracing: 'TCP tracing uses',
};

const CHECKS: Record<Exclude<FeatureId, `attach_${string}`>, Check> = {
  kernel_version: checkKernelVersion,
  btf: checkBtf,
  capabilities: checkCapabilities,
  unprivileged_bpf: checkUnprivilegedBpf,
  perf_event_paranoid: checkPerfEventParanoid,
  perf_event_open: checkPerfEventOpen,
  perf_event: checkPerfEventProgram,
  max_sample_rate: checkMaxSampleRate,
  stack_maps: checkStackMaps,
  ringbuf: checkRingbuf,
  tracefs: checkTracefs,
  tracepoints: checkTracepoints,
  raw_tracepoints: checkRawTracepoints,
  tp_btf: checkTpBtf,
  fentry: checkFentry,
  kprobes: checkKprobes,
  uprobes: checkUprobes,
  kallsyms: checkKallsyms,
  proc_access: checkProcAccess,
  bpf_jit: checkJit,
  bpf_stats: checkBpfStats,
};

/**
 * Runs checks on demand, each at most once (the probe programs load and attach for real, so results
 * are cached for the prober's lifetime). Nothing it calls throws.
 */
export class FeatureProber {
  private readonly facts: SystemFacts;
  private readonly results = new Map<FeatureId, Promise<FeatureCheck>>();

  constructor(options: KernelFeatureOptions = {}) {
    this.facts = new SystemFacts(options);
  }

  get kernelRelease(): string {
    return this.facts.release;
  }

  check(id: FeatureId): Promise<FeatureCheck> {
    let r = this.results.get(id);
    if (!r) {
      r = this.compute(id).catch((e: unknown) => result(id, id, false, false, `the check itself failed: ${errorMessage(e)}`));
      this.results.set(id, r);
    }
    return r;
  }

  /** What the probes found, for chooseAttachMethods(). */
  async availability(): Promise<AttachAvailability> {
    const ok = async (id: FeatureId): Promise<boolean> => (await this.check(id)).ok;
    return {
      perfEvent: await ok('perf_event'),
      stackMaps: await ok('stack_maps'),
      tracepoints: await ok('tracepoints'),
      rawTracepoints: await ok('raw_tracepoints'),
      tpBtf: await ok('tp_btf'),
      fentry: await ok('fentry'),
      kprobes: await ok('kprobes'),
      tcpTracepoints: TCP_TRACEPOINTS.filter((t) => this.facts.tracepointExists(t)),
    };
  }

  /** Whether the kernel has tracepoint "cat:name" (tracefs if readable, else vmlinux BTF). */
  tracepointExists(id: string): boolean {
    return this.facts.tracepointExists(id);
  }

  async attachMethods(): Promise<AttachChoice[]> {
    return chooseAttachMethods(await this.availability());
  }

  async report(): Promise<DoctorReport> {
    const checks: FeatureCheck[] = [];
    for (const id of FEATURE_IDS) checks.push(await this.check(id));
    const missing = checks.filter((c) => c.required && !c.ok).map((c) => c.name);
    return { kernelRelease: this.facts.release, canProfile: missing.length === 0, missing, checks, attachMethods: await this.attachMethods() };
  }

  private async compute(id: FeatureId): Promise<FeatureCheck> {
    if (id.startsWith('attach_')) {
      const feature = id.slice('attach_'.length) as TracingFeature;
      const choice = (await this.attachMethods()).find((c) => c.feature === feature)!;
      const required = feature === 'cpu_sampling' || feature === 'process_lifecycle';
      return result(id, FEATURE_LABEL[feature], choice.method !== null, required, choice.reason, choice.method === null ? 'see the failed checks above' : undefined);
    }
    return CHECKS[id as keyof typeof CHECKS](this.facts);
  }
}

/** Every check (what `ebpfprof doctor` prints). Never throws. */
export async function runDoctor(options: KernelFeatureOptions = {}): Promise<DoctorReport> {
  return new FeatureProber(options).report();
}

/** One check, e.g. checkFeature('kprobes'). Never throws. */
export async function checkFeature(id: FeatureId, options: KernelFeatureOptions = {}): Promise<FeatureCheck> {
  return new FeatureProber(options).check(id);
}
