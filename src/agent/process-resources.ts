// SPDX-License-Identifier: Apache-2.0
/**
 * OpenTelemetry resource attributes of a process: host, executable, command line, container and
 * Kubernetes pod. Read once per process from /proc (readlink exe, cmdline, cgroup: read-only, no
 * access to the process itself) when it is first seen, which for short-lived processes is while
 * they still exist; re-checked against the process's start time once per export window so that a
 * reused pid never inherits another program's attributes, and forgotten when the process execs.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { ATTR, Attributes } from '../encode/otlp/semconv';
import { KubernetesAttribution } from '../k8s/attribution';
import { readProcStat } from '../process/proc';
import { parseProcMaps } from '../symbolize/proc-maps';

export const DEFAULT_COMMAND_LINE_MAX = 1024;

/**
 * /proc/PID/stat's start time (clock ticks, USER_HZ = 100) of a process whose start a BPF program
 * read (task->group_leader->start_boottime, ns since boot): the kernel divides by 1e7 the same way.
 */
export function startTicksOf(startNs: number): number {
  return Math.floor(startNs / 1e7);
}

/**
 * Whether two start times in ticks name the same start. One tick apart counts as the same: a start
 * time above 2^53 ns (104 days of uptime) reaches us rounded, which can move it across a tick
 * boundary, while a pid cannot be reused within 10 ms (the whole pid space turns over first).
 */
function sameStart(a: number | null, b: number): boolean {
  return a !== null && Math.abs(a - b) <= 1;
}

/** /proc/PID/cmdline (NUL-separated arguments) as one line, cut to `max` characters. */
export function parseCmdline(buf: Buffer, max = DEFAULT_COMMAND_LINE_MAX): string {
  let end = buf.length;
  while (end > 0 && buf[end - 1] === 0) end--;
  // Arguments joined by spaces; control characters would break log lines and some backends.
  const text = buf.toString('utf8', 0, Math.min(end, max * 4)).replace(/\0/g, ' ').replace(/[\x00-\x1f\x7f]/g, ' ');
  return text.length > max ? text.slice(0, max) : text;
}

/** The target of /proc/PID/exe without the " (deleted)" the kernel appends for a removed file. */
export function executableFromLink(link: string): string {
  return link.endsWith(' (deleted)') ? link.slice(0, -' (deleted)'.length) : link;
}

const AT_ENTRY = 9n;

/**
 * The executable of a process from its auxiliary vector (64-bit little-endian (type, value)
 * pairs) and its maps: the file mapped where AT_ENTRY, the program's entry point, lies. The same
 * file /proc/PID/exe names (the dynamic loader when it was run as the program). null if unknown.
 */
export function executableFromAuxv(auxv: Buffer, mapsText: string): string | null {
  let entry: bigint | null = null;
  for (let o = 0; o + 16 <= auxv.length; o += 16) {
    const type = auxv.readBigUInt64LE(o);
    if (type === 0n) break;
    if (type === AT_ENTRY) entry = auxv.readBigUInt64LE(o + 8);
  }
  if (entry === null || entry > BigInt(Number.MAX_SAFE_INTEGER)) return null;
  const at = Number(entry);
  const m = parseProcMaps(mapsText).entries.find((e) => e.start <= at && at < e.end && e.kind === 'file');
  return m ? m.path : null;
}

export interface ProcessResourcesOptions {
  procRoot?: string;
  hostName: string;
  /** Container and pod attribution; null outside Kubernetes or when disabled. */
  kubernetes?: KubernetesAttribution | null;
  commandLineMaxLength?: number;
  /** Written on every process (from the configuration). */
  extra?: Attributes;
  /** Processes remembered; the least recently used are forgotten beyond (default 8192). */
  maxProcesses?: number;
}

export interface ProcessResourcesStats {
  /** Processes whose /proc entries were read. */
  reads: number;
  /** Reads that found the process gone (it exited before it was first seen). */
  gone: number;
  /** Cached attributes dropped because the pid now belongs to another process. */
  pidReuses: number;
  cached: number;
}

interface Entry {
  startTicks: number | null;
  checked: number;
  attributes: Attributes;
  /** When /proc was read, CLOCK_MONOTONIC ns (process.hrtime.bigint()). */
  readAtNs: bigint;
}

export class ProcessResources {
  private readonly entries = new Map<number, Entry>();
  private generation = 0;
  private readonly procRoot: string;
  private readonly maxProcesses: number;
  readonly stats: ProcessResourcesStats = { reads: 0, gone: 0, pidReuses: 0, cached: 0 };

  constructor(private readonly options: ProcessResourcesOptions) {
    this.procRoot = options.procRoot ?? '/proc';
    this.maxProcesses = options.maxProcesses ?? 8192;
  }

  /** Starts a new export window: cached processes are re-checked (pid reuse) at their next get(). */
  nextWindow(): void {
    this.generation++;
  }

  forget(pid: number): void {
    this.entries.delete(pid);
  }

  /**
   * The process exec'd at `execTimeNs` (CLOCK_MONOTONIC, as bpf_ktime_get_ns): forgets what was read
   * before. The exec event may be handled after a read of the new image's attributes (it comes
   * through another ring buffer than the record that caused the read), which must be kept.
   */
  forgetReadBefore(pid: number, execTimeNs: number): void {
    const e = this.entries.get(pid);
    if (e !== undefined && (execTimeNs <= 0 || e.readAtNs < BigInt(Math.floor(execTimeNs)))) this.entries.delete(pid);
  }

  /** Forgets `pid` only if what is cached describes the process that started at `startNs`. */
  forgetExact(pid: number, startNs: number): void {
    const e = this.entries.get(pid);
    if (e !== undefined && (e.startTicks === null || sameStart(e.startTicks, startTicksOf(startNs)))) this.entries.delete(pid);
    this.stats.cached = this.entries.size;
  }

  /**
   * Attributes of exactly the process (pid, start time) a tracer named. Its record may be read after
   * the process exited and its pid went to another program: then neither the cache nor /proc
   * describes it, and only what the record says is used (the comm as executable name), never the
   * other program's attributes.
   */
  getExact(pid: number, startNs: number, comm: string): Attributes {
    const ticks = startTicksOf(startNs);
    const e = this.entries.get(pid);
    if (e !== undefined && sameStart(e.startTicks, ticks)) {
      this.entries.delete(pid); // most recently used last
      this.entries.set(pid, e);
      return e.attributes;
    }
    const st = readProcStat(pid, this.procRoot);
    if (st !== null && sameStart(st.startTicks, ticks)) {
      if (e !== undefined) {
        this.stats.pidReuses++;
        this.entries.delete(pid);
      }
      return this.get(pid, comm);
    }
    this.stats.gone++;
    return this.fromComm(comm);
  }

  /** Attributes of the node itself (host.name, k8s.node.name where known, configured extras): per-CPU metrics. */
  hostAttributes(): Attributes {
    const a: Attributes = { [ATTR.hostName]: this.options.hostName };
    if (this.options.kubernetes) Object.assign(a, this.options.kubernetes.attributes(''));
    Object.assign(a, this.options.extra ?? {});
    return a;
  }

  /** What is known of a process that is gone: its name, and the attributes every process gets. */
  private fromComm(comm: string): Attributes {
    const a: Attributes = { [ATTR.hostName]: this.options.hostName };
    if (this.options.kubernetes) Object.assign(a, this.options.kubernetes.attributes(''));
    if (comm) a[ATTR.processExecutableName] = comm;
    a[ATTR.serviceName] = `unknown_service:${comm || 'unknown'}`;
    Object.assign(a, this.options.extra ?? {});
    return a;
  }

  /** Attributes of `pid`; `comm` names it when /proc no longer has it (or for kernel threads). */
  get(pid: number, comm = ''): Attributes {
    let e = this.entries.get(pid);
    if (e !== undefined && e.checked !== this.generation) {
      const st = readProcStat(pid, this.procRoot);
      // Gone: keep what was read while it lived. Another start time: another process.
      if (st !== null && e.startTicks !== null && st.startTicks !== e.startTicks) {
        this.stats.pidReuses++;
        e = undefined;
      } else e.checked = this.generation;
    }
    if (e === undefined) {
      e = this.read(pid, comm);
      this.entries.set(pid, e);
      if (this.entries.size > this.maxProcesses) this.entries.delete(this.entries.keys().next().value!);
    } else {
      this.entries.delete(pid); // most recently used last
      this.entries.set(pid, e);
    }
    this.stats.cached = this.entries.size;
    return e.attributes;
  }

  private executableFromAuxv(dir: string): string {
    try {
      return executableFromAuxv(fs.readFileSync(`${dir}/auxv`), fs.readFileSync(`${dir}/maps`, 'latin1')) ?? '';
    } catch {
      return '';
    }
  }

  private read(pid: number, comm: string): Entry {
    this.stats.reads++;
    const readAtNs = process.hrtime.bigint();
    const dir = `${this.procRoot}/${pid}`;
    const st = readProcStat(pid, this.procRoot);
    if (st === null) this.stats.gone++;
    const a: Attributes = { [ATTR.hostName]: this.options.hostName };
    let exePath = '';
    try {
      exePath = executableFromLink(fs.readlinkSync(`${dir}/exe`));
    } catch (e) {
      // After ebpfprof dropped its capabilities, the exe link of a process holding more is refused
      // (ptrace-read access); auxv and maps are still readable (CAP_PERFMON) and name it too.
      if ((e as NodeJS.ErrnoException).code === 'EACCES') exePath = this.executableFromAuxv(dir);
      // else: kernel thread or exited: the comm still names it
    }
    const exeName = exePath ? path.basename(exePath) : comm || st?.comm || '';
    if (exeName) a[ATTR.processExecutableName] = exeName;
    if (exePath) a[ATTR.processExecutablePath] = exePath;
    try {
      const cmd = parseCmdline(fs.readFileSync(`${dir}/cmdline`), this.options.commandLineMaxLength ?? DEFAULT_COMMAND_LINE_MAX);
      if (cmd) a[ATTR.processCommandLine] = cmd;
    } catch {
      // exited or no access
    }
    if (this.options.kubernetes) {
      let cgroup = '';
      try {
        cgroup = fs.readFileSync(`${dir}/cgroup`, 'utf8');
      } catch {
        // exited
      }
      Object.assign(a, this.options.kubernetes.attributes(cgroup));
    }
    const container = a[ATTR.k8sContainerName];
    a[ATTR.serviceName] = typeof container === 'string' ? container : `unknown_service:${exeName || 'unknown'}`;
    Object.assign(a, this.options.extra ?? {});
    return { startTicks: st?.startTicks ?? null, checked: this.generation, attributes: a, readAtNs };
  }
}

/**
 * Resource attributes of this host's processes as they are now, for a profile written after the
 * recording (`record --format otlp`): processes that already exited keep their comm and pid only.
 */
export function liveProcessResources(hostName: string, nodeName: string | null, logRoot?: string): (pid: number, comm: string) => Attributes {
  const resources = new ProcessResources({ hostName, kubernetes: new KubernetesAttribution({ nodeName, ...(logRoot ? { logRoot } : {}) }) });
  return (pid, comm) => resources.get(pid, comm);
}
