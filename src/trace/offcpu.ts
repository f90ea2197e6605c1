// SPDX-License-Identifier: Apache-2.0
/**
 * Drives bpf/offcpu.bpf.c: where threads block, with stacks, as rows the record path's SampleFolder
 * folds into a profile (samples = blocks, cpuNs = blocked ns).
 *
 * Stack ids (docs/tracing.md): the kernel takes a blocked thread's stack ids when it switches out and
 * adds its row when it switches in, possibly many drains later. Ids therefore carry the epoch they
 * were taken in (set = epoch & 1), and a drain of set S:
 *   1. bumps control.epoch (new blocks use the other set) and waits for programs already running;
 *   2. scans the start map: ids of S that blocked threads still hold are kept;
 *   3. reads and deletes S's counts (rows of blocks that began and ended in S's epoch);
 *   4. resolves the blocks that came through the ring buffer (ids of an earlier epoch, or whole
 *      stacks) against the stack maps, which still hold them;
 *   5. reads S's stacks and deletes those neither held (2) nor taken during the epoch that just ended
 *      (a late block of that epoch may still be on its way through the ring buffer).
 * An id that is nevertheless missing is counted (stackNotFound), never replaced by another stack.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import { EbpfprofError } from '../errors';
import { BPF_ANY, bpfObjectPath, NativeRingBuffer } from '../native/addon';
import type { DrainedSample } from '../sampler/cpu-sampler';
import { decodeStack, splitRingBufferBatch, STACK_VALUE_SIZE, sumPerCpu, u32Key } from '../sampler/records';
import { AttachMethod } from '../system/kernel-features';
import { AttachedTracer, HookStatus, loadTracer, probeAttachAvailability } from './attach';
import {
  decodeOffCpuEvent,
  decodeOffCpuRows,
  decodeOffCpuStarts,
  encodeOffCpuControl,
  OFFCPU_STATS,
  OFFCPU_WHOLE_STACKS,
  OffCpuEvent,
  OffCpuStats,
} from './offcpu-records';

/** Long enough for programs that read the old epoch to finish and for ring records to arrive. */
const EPOCH_GRACE_MS = 10;

export interface OffCpuTracerOptions {
  /** 'all': every user thread on the host; otherwise these process ids. */
  targets: 'all' | number[];
  /** Blocks shorter than this are counted, not recorded (default 0). */
  minBlockNs?: number;
  /** Also count time a thread waited in the run queue after preemption (default: only blocked time). */
  includePreempted?: boolean;
  includeKernelThreads?: boolean;
  stackMapEntries?: number;
  countsMapEntries?: number;
  startEntries?: number;
  ringBufferBytes?: number;
  prefer?: AttachMethod;
  objectPath?: string;
}

export interface OffCpuTracerStats extends OffCpuStats {
  /** Rows or events whose stack id was not in its stack map (should stay 0). */
  stackNotFound: number;
  recordsMalformed: number;
  droppedRecords: number;
  /** Stack map entries deleted by drains. */
  stacksDeleted: number;
  /** Stack ids kept across a drain because a blocked thread held them. */
  stacksHeld: number;
}

export class OffCpuTracer {
  private epoch = 0;
  private closed = false;
  private draining: Promise<DrainedSample[]> | null = null;
  private pending: OffCpuEvent[] = [];
  /** Per set: ids present at its previous drain (deleted at the next one unless held). */
  private seenAt: [Set<number>, Set<number>] = [new Set(), new Set()];
  private stackNotFound = 0;
  private recordsMalformed = 0;
  private stacksDeleted = 0;
  private stacksHeld = 0;
  private finalStats: OffCpuTracerStats | null = null;
  private ring: NativeRingBuffer | null = null;

  private constructor(private readonly t: AttachedTracer) {}

  get hooks(): HookStatus[] {
    return this.t.hooks;
  }

  static async open(options: OffCpuTracerOptions): Promise<OffCpuTracer> {
    if (options.minBlockNs !== undefined && !(options.minBlockNs >= 0)) throw new EbpfprofError('EBADARG', `the minimum block time must be >= 0, got ${options.minBlockNs}`);
    const { availability, tracepointExists } = await probeAttachAvailability();
    const t = loadTracer({
      objectPath: options.objectPath ?? bpfObjectPath('offcpu'),
      what: 'off-CPU tracing',
      hooks: [{ name: 'sched:sched_switch', programs: { tp_btf: 'btf_switch', raw_tp: 'raw_switch' }, required: true }],
      availability,
      tracepointExists,
      ...(options.prefer ? { prefer: options.prefer } : {}),
      configure: (obj) => {
        obj.setGlobal('filter_mode', u32Key(options.targets === 'all' ? 0 : 1));
        const min = Buffer.alloc(8);
        min.writeBigUInt64LE(BigInt(Math.round(options.minBlockNs ?? 0)));
        obj.setGlobal('min_block_ns', min);
        obj.setGlobal('include_preempted', Buffer.from([options.includePreempted ? 1 : 0]));
        obj.setGlobal('include_kernel_threads', Buffer.from([options.includeKernelThreads ? 1 : 0]));
        if (options.stackMapEntries) for (const m of ['stacks0', 'stacks1']) obj.setMaxEntries(m, options.stackMapEntries);
        if (options.countsMapEntries) for (const m of ['counts0', 'counts1']) obj.setMaxEntries(m, options.countsMapEntries);
        if (options.startEntries) obj.setMaxEntries('start', options.startEntries);
        if (options.ringBufferBytes) obj.setMaxEntries('events', options.ringBufferBytes);
      },
    });
    // Targets go in before the first switch can be recorded: attach happened already, but with an
    // empty targets map nothing passes the filter yet.
    try {
      t.obj.mapUpdate('control', u32Key(0), encodeOffCpuControl(0), BPF_ANY);
      if (options.targets !== 'all') for (const pid of options.targets) t.obj.mapUpdate('targets', u32Key(pid), Buffer.from([1]), BPF_ANY);
    } catch (e) {
      for (const l of t.links) l.close();
      t.obj.close();
      throw e;
    }
    const tracer = new OffCpuTracer(t);
    tracer.ring = t.obj.openRingBuffer('events', (batch, records) => tracer.onBatch(batch, records), { maxQueuedBatches: 256 });
    return tracer;
  }

  addTarget(pid: number): void {
    this.t.obj.mapUpdate('targets', u32Key(pid), Buffer.from([1]), BPF_ANY);
  }

  private onBatch(batch: Buffer, records: number): void {
    for (const rec of splitRingBufferBatch(batch, records)) {
      try {
        this.pending.push(decodeOffCpuEvent(rec));
      } catch {
        this.recordsMalformed++;
      }
    }
  }

  /** Blocks that ended since the previous drain. Concurrent calls share one drain. */
  drain(): Promise<DrainedSample[]> {
    if (this.closed) return Promise.resolve([]);
    this.draining ??= this.drainOnce().finally(() => {
      this.draining = null;
    });
    return this.draining;
  }

  private async drainOnce(): Promise<DrainedSample[]> {
    const obj = this.t.obj;
    const set = (this.epoch & 1) as 0 | 1;
    this.epoch++;
    obj.mapUpdate('control', u32Key(0), encodeOffCpuControl(this.epoch), BPF_ANY);
    await sleep(EPOCH_GRACE_MS);
    const held = this.heldIds(set);
    const counts = obj.mapEntries(`counts${set}`, { delete: true });
    const rows = decodeOffCpuRows(counts.keys, counts.values, counts.count);
    // Ring records from before the scan have had the grace period to arrive; give stragglers a turn.
    await sleep(1);
    const stacksRead = obj.mapEntries(`stacks${set}`);
    const stacks = new Map<number, BigUint64Array>();
    for (let i = 0; i < stacksRead.count; i++) {
      stacks.set(stacksRead.keys.readUInt32LE(i * 4), decodeStack(stacksRead.values, i * STACK_VALUE_SIZE, STACK_VALUE_SIZE));
    }
    const out: DrainedSample[] = [];
    const none = new BigUint64Array(0);
    const fromSet = (id: number): BigUint64Array => {
      if (id < 0) return none;
      const s = stacks.get(id);
      if (s) return s;
      this.stackNotFound++;
      return none;
    };
    for (const r of rows) {
      out.push({
        tgid: r.tgid,
        tid: r.tid,
        execId: r.execId,
        comm: r.comm,
        processComm: r.processComm,
        samples: r.blocks,
        cpuNs: r.totalNs,
        kernelStack: fromSet(r.kstackId),
        userStack: fromSet(r.ustackId),
      });
    }
    out.push(...this.takePending((s, id) => (s === set ? fromSet(id) : this.lookupStack(s, id))));
    this.collect(set, stacks, held);
    return out;
  }

  /** Ids of `set` that blocked threads hold now. */
  private heldIds(set: 0 | 1): Set<number> {
    const starts = this.t.obj.mapEntries('start');
    const held = new Set<number>();
    for (const s of decodeOffCpuStarts(starts.keys, starts.values, starts.count)) {
      if ((s.epoch & 1) !== set || (s.flags & OFFCPU_WHOLE_STACKS) !== 0) continue;
      if (s.kstackId >= 0) held.add(s.kstackId);
      if (s.ustackId >= 0) held.add(s.ustackId);
    }
    return held;
  }

  private lookupStack(set: 0 | 1, id: number): BigUint64Array {
    if (id < 0) return new BigUint64Array(0);
    const v = this.t.obj.mapLookup(`stacks${set}`, u32Key(id));
    if (v === null) {
      this.stackNotFound++;
      return new BigUint64Array(0);
    }
    return decodeStack(v, 0, v.length);
  }

  private takePending(resolve: (set: 0 | 1, id: number) => BigUint64Array): DrainedSample[] {
    const events = this.pending;
    this.pending = [];
    return events.map((e) => ({
      tgid: e.tgid,
      tid: e.tid,
      execId: e.execId,
      comm: e.comm,
      processComm: e.processComm,
      samples: 1,
      cpuNs: e.blockedNs,
      kernelStack: e.kind === 'whole' ? e.kernelStack : resolve((e.epoch & 1) as 0 | 1, e.kstackId),
      userStack: e.kind === 'whole' ? e.userStack : resolve((e.epoch & 1) as 0 | 1, e.ustackId),
    }));
  }

  /** Deletes ids of `set` that no blocked thread holds and that were already there one drain ago. */
  private collect(set: 0 | 1, stacks: Map<number, BigUint64Array>, held: Set<number>): void {
    const previous = this.seenAt[set];
    const kept = new Set<number>();
    for (const id of stacks.keys()) {
      if (previous.has(id) && !held.has(id)) {
        if (this.t.obj.mapDelete(`stacks${set}`, u32Key(id))) this.stacksDeleted++;
      } else {
        kept.add(id);
        if (held.has(id)) this.stacksHeld++;
      }
    }
    this.seenAt[set] = kept;
  }

  stats(): OffCpuTracerStats {
    if (this.finalStats) return { ...this.finalStats, stackNotFound: this.stackNotFound, recordsMalformed: this.recordsMalformed };
    const out = {
      stackNotFound: this.stackNotFound,
      recordsMalformed: this.recordsMalformed,
      droppedRecords: this.ring?.stats().droppedRecords ?? 0,
      stacksDeleted: this.stacksDeleted,
      stacksHeld: this.stacksHeld,
    } as OffCpuTracerStats;
    OFFCPU_STATS.forEach((name, i) => {
      out[name] = sumPerCpu(this.t.obj.mapLookup('stats', u32Key(i)) ?? Buffer.alloc(0));
    });
    return out;
  }

  /**
   * Detaches and returns every block not drained yet, including threads still blocked now (their
   * block so far, when at least `minBlockNs`): a thread asleep for the whole recording is the most
   * off-CPU of all.
   */
  async close(minBlockNs = 0): Promise<DrainedSample[]> {
    if (this.closed) return [];
    if (this.draining) await this.draining;
    for (const l of this.t.links) l.close();
    await this.ring?.close();
    const obj = this.t.obj;
    const now = Number(process.hrtime.bigint()); // CLOCK_MONOTONIC, as bpf_ktime_get_ns()
    const out: DrainedSample[] = [];
    const stackSets: [Map<number, BigUint64Array>, Map<number, BigUint64Array>] = [new Map(), new Map()];
    for (const set of [0, 1] as const) {
      const read = obj.mapEntries(`stacks${set}`);
      for (let i = 0; i < read.count; i++) stackSets[set].set(read.keys.readUInt32LE(i * 4), decodeStack(read.values, i * STACK_VALUE_SIZE, STACK_VALUE_SIZE));
    }
    const resolve = (set: 0 | 1, id: number): BigUint64Array => {
      if (id < 0) return new BigUint64Array(0);
      const s = stackSets[set].get(id);
      if (s) return s;
      this.stackNotFound++;
      return new BigUint64Array(0);
    };
    for (const set of [0, 1] as const) {
      const counts = obj.mapEntries(`counts${set}`, { delete: true });
      for (const r of decodeOffCpuRows(counts.keys, counts.values, counts.count)) {
        out.push({ tgid: r.tgid, tid: r.tid, execId: r.execId, comm: r.comm, processComm: r.processComm, samples: r.blocks, cpuNs: r.totalNs, kernelStack: resolve(set, r.kstackId), userStack: resolve(set, r.ustackId) });
      }
    }
    out.push(...this.takePending(resolve));
    const starts = obj.mapEntries('start');
    const whole = new Map<number, Buffer>();
    const wholeRead = obj.mapEntries('whole_stacks');
    const wholeSize = wholeRead.count > 0 ? wholeRead.values.length / wholeRead.count : 0;
    for (let i = 0; i < wholeRead.count; i++) whole.set(wholeRead.keys.readUInt32LE(i * 4), wholeRead.values.subarray(i * wholeSize, (i + 1) * wholeSize));
    for (const s of decodeOffCpuStarts(starts.keys, starts.values, starts.count)) {
      const blocked = now - s.ts;
      if (!(blocked > 0) || blocked < minBlockNs) continue;
      let kernelStack: BigUint64Array;
      let userStack: BigUint64Array;
      const w = (s.flags & OFFCPU_WHOLE_STACKS) !== 0 ? whole.get(s.tid) : undefined;
      if (w) {
        const half = STACK_VALUE_SIZE;
        kernelStack = decodeStack(w, 8, Math.min(w.readUInt32LE(0), half));
        userStack = decodeStack(w, 8 + half, Math.min(w.readUInt32LE(4), half));
      } else {
        kernelStack = resolve((s.epoch & 1) as 0 | 1, s.kstackId);
        userStack = resolve((s.epoch & 1) as 0 | 1, s.ustackId);
      }
      out.push({ tgid: s.tgid, tid: s.tid, execId: s.execId, comm: s.comm, processComm: s.processComm, samples: 1, cpuNs: blocked, kernelStack, userStack });
    }
    this.finalStats = this.stats();
    this.closed = true;
    obj.close();
    return out;
  }
}
