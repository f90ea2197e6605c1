// SPDX-License-Identifier: Apache-2.0
/**
 * Process lifecycle, tracked once and shared by every tracer: which processes exist, which image
 * each runs, when it exits. Events come from bpf/lifecycle.bpf.c (fork, exec, exit of every process)
 * or, for a caller that already has them (the CPU sampler's exec/fork events), from handle().
 *
 * A process is named by (pid, start time): a reused pid is a new process, never merged with the old
 * one. Listeners hear of exec (so symbol caches are dropped: the mappings changed) and of exit (so
 * per-process state is freed once what was sampled before the exit has been folded). Exited
 * processes stay known until sweep(): samples drained after the exit still find their name.
 */
import { bpfObjectPath, NativeRingBuffer } from '../native/addon';
import { splitRingBufferBatch, sumPerCpu, u32Key } from '../sampler/records';
import { AttachMethod } from '../system/kernel-features';
import { AttachedTracer, HookStatus, loadTracer, probeAttachAvailability, programsRunTimeNs } from '../trace/attach';
import { decodeLifecycleEvent, LIFECYCLE_STATS, LifecycleEvent, LifecycleStats } from './lifecycle-records';

export type { LifecycleEvent } from './lifecycle-records';

export interface ProcessInfo {
  pid: number;
  /** Process start, ns since boot; 0 when only known from an event source without it. */
  startNs: number;
  ppid: number;
  /** The name at the last fork/exec/exit event (comm). */
  comm: string;
  /** The current image's exec id. */
  execId: number;
  /** Execs seen while tracked. */
  execs: number;
  /** When the last exec happened, CLOCK_MONOTONIC ns (process.hrtime's clock); 0 if none was seen. */
  execTimeNs: number;
  exited: boolean;
  /** Wait status at exit. */
  exitStatus: number;
}

export interface LifecycleListener {
  onFork?(p: ProcessInfo): void;
  /** The process replaced its image: anything cached about its mappings is stale. */
  onExec?(p: ProcessInfo): void;
  /** The last thread ended. State about it may be freed once pending samples are folded. */
  onExit?(p: ProcessInfo): void;
}

/** Upper bound of tracked processes; the oldest exited ones go first, then the oldest. */
const MAX_TRACKED = 65536;

export function processKey(pid: number, startNs: number): string {
  return `${pid}:${startNs}`;
}

/** The state machine, independent of where events come from. */
export class ProcessTracker {
  private readonly byKey = new Map<string, ProcessInfo>();
  /** pid -> key of the newest process with that pid. */
  private readonly byPid = new Map<number, string>();
  private readonly listeners = new Set<LifecycleListener>();
  /** Exited since the last sweep. */
  private exitedPending: string[] = [];
  /** Exited before the last sweep: freed at the next one. */
  private exitedGrace: string[] = [];
  pidReuses = 0;
  events = 0;

  subscribe(l: LifecycleListener): () => void {
    this.listeners.add(l);
    return () => this.listeners.delete(l);
  }

  /** The newest process with this pid (possibly exited, until sweep()). */
  get(pid: number): ProcessInfo | undefined {
    const k = this.byPid.get(pid);
    return k === undefined ? undefined : this.byKey.get(k);
  }

  /** Exactly this process: pid and start time. */
  identify(pid: number, startNs: number): ProcessInfo | undefined {
    return this.byKey.get(processKey(pid, startNs));
  }

  get size(): number {
    return this.byKey.size;
  }

  handle(e: LifecycleEvent): void {
    this.events++;
    const key = processKey(e.pid, e.startNs);
    let p = this.byKey.get(key);
    const previous = this.byPid.get(e.pid);
    if (p === undefined) {
      if (previous !== undefined && previous !== key) this.pidReuses++;
      p = { pid: e.pid, startNs: e.startNs, ppid: e.ppid, comm: e.comm, execId: e.execId, execs: 0, execTimeNs: 0, exited: false, exitStatus: 0 };
      this.byKey.set(key, p);
      this.bound();
    }
    this.byPid.set(e.pid, key);
    p.comm = e.comm || p.comm;
    switch (e.type) {
      case 'fork':
        p.ppid = e.ppid;
        p.execId = e.execId;
        for (const l of this.listeners) l.onFork?.(p);
        break;
      case 'exec':
        p.execId = e.execId;
        p.execs++;
        p.execTimeNs = e.timeNs;
        for (const l of this.listeners) l.onExec?.(p);
        break;
      case 'exit':
        p.exited = true;
        p.exitStatus = e.exitCode;
        this.exitedPending.push(key);
        for (const l of this.listeners) l.onExit?.(p);
        break;
    }
  }

  /**
   * Forgets processes that had exited before the previous sweep: one window of grace, in which
   * records drained after the exit (samples, TCP closes at exit) still find their process.
   */
  sweep(): number {
    const keys = this.exitedGrace;
    this.exitedGrace = this.exitedPending;
    this.exitedPending = [];
    let n = 0;
    for (const k of keys) {
      const p = this.byKey.get(k);
      if (!p || !p.exited) continue;
      this.byKey.delete(k);
      if (this.byPid.get(p.pid) === k) this.byPid.delete(p.pid);
      n++;
    }
    return n;
  }

  private bound(): void {
    if (this.byKey.size <= MAX_TRACKED) return;
    for (const [k, p] of this.byKey) {
      if (this.byKey.size <= MAX_TRACKED) break;
      if (p.exited || this.byKey.size > MAX_TRACKED * 1.1) {
        this.byKey.delete(k);
        if (this.byPid.get(p.pid) === k) this.byPid.delete(p.pid);
      }
    }
  }
}

export interface ProcessLifecycleOptions {
  /** Try this attach method first (raw_tp or tp_btf). */
  prefer?: AttachMethod;
  objectPath?: string;
}

export interface ProcessLifecycleStats extends LifecycleStats {
  recordsMalformed: number;
  droppedRecords: number;
  tracked: number;
  pidReuses: number;
}

/** bpf/lifecycle.bpf.o feeding a ProcessTracker. Close it to detach. */
export class ProcessLifecycle {
  readonly tracker = new ProcessTracker();
  private recordsMalformed = 0;
  private closed = false;
  private finalRunTimeNs = 0;
  private finalStats: ProcessLifecycleStats | null = null;

  private constructor(
    private readonly attached: AttachedTracer,
    private ring: NativeRingBuffer | null,
  ) {}

  get hooks(): HookStatus[] {
    return this.attached.hooks;
  }

  static async open(options: ProcessLifecycleOptions = {}): Promise<ProcessLifecycle> {
    const { availability, tracepointExists } = await probeAttachAvailability();
    // raw_tp first (what doctor's 'process lifecycle' reports): needs neither tracefs nor BTF attach.
    const hook = (name: string, raw: string, btf: string): { name: string; programs: Partial<Record<AttachMethod, string>>; required: boolean } => ({
      name,
      programs: { raw_tp: raw, tp_btf: btf },
      required: true,
    });
    const attached = loadTracer({
      objectPath: options.objectPath ?? bpfObjectPath('lifecycle'),
      what: 'process lifecycle tracking',
      hooks: [hook('sched:sched_process_fork', 'raw_fork', 'btf_fork'), hook('sched:sched_process_exec', 'raw_exec', 'btf_exec'), hook('sched:sched_process_exit', 'raw_exit', 'btf_exit')],
      availability,
      tracepointExists,
      // The tracing order puts tp_btf first; lifecycle prefers raw_tp (see chooseAttachMethods).
      prefer: options.prefer ?? (availability.rawTracepoints ? 'raw_tp' : undefined),
      configure: () => {},
    });
    const lc = new ProcessLifecycle(attached, null);
    lc.ring = attached.obj.openRingBuffer('events', (batch, records) => lc.onBatch(batch, records), { maxQueuedBatches: 256 });
    return lc;
  }

  private onBatch(batch: Buffer, records: number): void {
    if (this.closed) return;
    for (const rec of splitRingBufferBatch(batch, records)) {
      let e: LifecycleEvent;
      try {
        e = decodeLifecycleEvent(rec);
      } catch {
        this.recordsMalformed++;
        continue;
      }
      this.tracker.handle(e);
    }
  }

  /** In-kernel run time of the programs, ns (0 unless run-time statistics are on); kept after close(). */
  runTimeNs(): number {
    if (this.closed) return this.finalRunTimeNs;
    return programsRunTimeNs(this.attached);
  }

  stats(): ProcessLifecycleStats {
    if (this.finalStats) return { ...this.finalStats, recordsMalformed: this.recordsMalformed, tracked: this.tracker.size, pidReuses: this.tracker.pidReuses };
    const out = { recordsMalformed: this.recordsMalformed, droppedRecords: this.ring?.stats().droppedRecords ?? 0, tracked: this.tracker.size, pidReuses: this.tracker.pidReuses } as ProcessLifecycleStats;
    LIFECYCLE_STATS.forEach((name, i) => {
      out[name] = sumPerCpu(this.attached.obj.mapLookup('stats', u32Key(i)) ?? Buffer.alloc(0));
    });
    return out;
  }

  /** Detaches; events read before are still delivered. */
  async close(): Promise<void> {
    if (this.closed) return;
    for (const l of this.attached.links) l.close();
    await this.ring?.close();
    this.finalStats = this.stats();
    this.finalRunTimeNs = this.runTimeNs();
    this.closed = true;
    this.attached.obj.close();
  }
}

