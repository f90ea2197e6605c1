// SPDX-License-Identifier: Apache-2.0
/**
 * Drives bpf/runqlat.bpf.c: run-queue latency histograms per CPU and per process. The histograms
 * are double-buffered like the CPU sampler's counts: drain() flips control.active_set, waits for
 * programs still updating the old set, then reads and clears it, so no update is lost.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import { EbpfprofError } from '../errors';
import { BPF_ANY, bpfObjectPath } from '../native/addon';
import { sumPerCpu, u32Key } from '../sampler/records';
import { AttachMethod } from '../system/kernel-features';
import { AttachedTracer, HookStatus, loadTracer, probeAttachAvailability, programsRunTimeNs } from './attach';
import { Log2Histogram } from './histogram';
import {
  decodeRunqCpuRows,
  decodeRunqProcRows,
  encodeRunqControl,
  RUNQ_HIST_SIZE,
  RUNQLAT_STATS,
  RunqlatStats,
} from './runqlat-records';

export { RUNQ_SLOTS } from './runqlat-records';

const SET_FLIP_GRACE_MS = 5;

export interface RunqueueTracerOptions {
  /** Only this process's threads (default: every process). */
  pid?: number;
  /** Try this attach method first (tp_btf or raw_tp). */
  prefer?: AttachMethod;
  objectPath?: string;
}

export interface CpuRunqueue {
  cpu: number;
  hist: Log2Histogram;
}

export interface ProcessRunqueue {
  pid: number;
  /** Process start, ns since boot: (pid, startNs) names one process across pid reuse. */
  startNs: number;
  comm: string;
  hist: Log2Histogram;
}

/** Latencies since the previous drain. */
export interface RunqueueWindow {
  cpus: CpuRunqueue[];
  processes: ProcessRunqueue[];
}

export class RunqueueTracer {
  private activeSet: 0 | 1 = 0;
  private closed = false;
  private finalRunTimeNs = 0;
  private draining: Promise<RunqueueWindow> | null = null;
  private finalStats: RunqlatStats | null = null;

  private constructor(private readonly t: AttachedTracer) {}

  get hooks(): HookStatus[] {
    return this.t.hooks;
  }

  static async open(options: RunqueueTracerOptions = {}): Promise<RunqueueTracer> {
    if (options.pid !== undefined && !(Number.isInteger(options.pid) && options.pid > 0)) {
      throw new EbpfprofError('EBADARG', `--pid must be a positive integer, got ${options.pid}`);
    }
    const { availability, tracepointExists } = await probeAttachAvailability();
    const hook = (name: string, btf: string, raw: string): { name: string; programs: Partial<Record<AttachMethod, string>>; required: boolean } => ({
      name,
      programs: { tp_btf: btf, raw_tp: raw },
      required: true,
    });
    const t = loadTracer({
      objectPath: options.objectPath ?? bpfObjectPath('runqlat'),
      what: 'run-queue latency tracing',
      hooks: [
        hook('sched:sched_wakeup', 'btf_wakeup', 'raw_wakeup'),
        hook('sched:sched_wakeup_new', 'btf_wakeup_new', 'raw_wakeup_new'),
        hook('sched:sched_switch', 'btf_switch', 'raw_switch'),
      ],
      availability,
      tracepointExists,
      ...(options.prefer ? { prefer: options.prefer } : {}),
      configure: (obj) => {
        obj.setGlobal('targ_tgid', u32Key(options.pid ?? 0));
      },
    });
    try {
      t.obj.mapUpdate('control', u32Key(0), encodeRunqControl(0), BPF_ANY);
    } catch (e) {
      for (const l of t.links) l.close();
      t.obj.close();
      throw e;
    }
    return new RunqueueTracer(t);
  }

  /** Latencies since the previous drain. Concurrent calls share one drain. */
  drain(): Promise<RunqueueWindow> {
    if (this.closed) return Promise.resolve({ cpus: [], processes: [] });
    this.draining ??= this.drainOnce().finally(() => {
      this.draining = null;
    });
    return this.draining;
  }

  private async drainOnce(): Promise<RunqueueWindow> {
    const old = this.activeSet;
    this.activeSet = old === 0 ? 1 : 0;
    this.t.obj.mapUpdate('control', u32Key(0), encodeRunqControl(this.activeSet), BPF_ANY);
    await sleep(SET_FLIP_GRACE_MS);
    return this.readSet(old);
  }

  private readSet(set: 0 | 1): RunqueueWindow {
    const obj = this.t.obj;
    const cpuRead = obj.mapEntries(`cpu_hists${set}`);
    const cpus = decodeRunqCpuRows(cpuRead.keys, cpuRead.values, cpuRead.count);
    // Array maps cannot delete: zero the rows that were used.
    const zero = Buffer.alloc(RUNQ_HIST_SIZE);
    for (const c of cpus) obj.mapUpdate(`cpu_hists${set}`, u32Key(c.cpu), zero, BPF_ANY);
    const procRead = obj.mapEntries(`proc_hists${set}`, { delete: true });
    const procs = decodeRunqProcRows(procRead.keys, procRead.values, procRead.count);
    return {
      cpus: cpus.map((c) => ({ cpu: c.cpu, hist: c.hist })),
      processes: procs.map((p) => ({ pid: p.pid, startNs: p.startNs, comm: p.comm, hist: p.hist })),
    };
  }

  /** In-kernel run time of the programs, ns (0 unless run-time statistics are on); kept after close(). */
  runTimeNs(): number {
    if (this.closed) return this.finalRunTimeNs;
    return programsRunTimeNs(this.t);
  }

  stats(): RunqlatStats {
    if (this.finalStats) return { ...this.finalStats };
    const out = {} as RunqlatStats;
    RUNQLAT_STATS.forEach((name, i) => {
      out[name] = sumPerCpu(this.t.obj.mapLookup('stats', u32Key(i)) ?? Buffer.alloc(0));
    });
    return out;
  }

  /** Detaches and returns what was not drained yet. */
  async close(): Promise<RunqueueWindow> {
    if (this.closed) return { cpus: [], processes: [] };
    if (this.draining) await this.draining;
    for (const l of this.t.links) l.close();
    const a = this.readSet(0);
    const b = this.readSet(1);
    this.finalStats = this.stats();
    this.finalRunTimeNs = this.runTimeNs();
    this.closed = true;
    this.t.obj.close();
    return { cpus: [...a.cpus, ...b.cpus], processes: [...a.processes, ...b.processes] };
  }
}
