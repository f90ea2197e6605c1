// SPDX-License-Identifier: Apache-2.0
/**
 * Drives bpf/profile.bpf.c: loads it, opens a cpu-clock perf event on every online CPU, and drains
 * the in-kernel aggregation on demand.
 *
 * With an unwinder (src/unwind/process-unwinder.ts), the program variant that walks user stacks
 * with unwind tables (on_sample_dwarf) is loaded, and the unwinder registers processes before the
 * perf events are attached. A kernel that refuses that variant gets the frame-pointer one instead;
 * the unwinder is told why (SamplerUnwinder.detach) and the summary says so.
 *
 * Draining flips control.active_set so that new samples go to the other map set, waits for programs
 * already running on the old set to finish, then reads and clears the old counts and stacks. Stack
 * ids are therefore never reused while a count row still refers to them.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import { EbpfprofError } from '../errors';
import {
  BPF_ANY,
  bpfObjectPath,
  loadAddon,
  NativeBpfObject,
  NativeLink,
  NativePerfLink,
  NativeRingBuffer,
  PERF_COUNT_SW_CPU_CLOCK,
  PERF_TYPE_SOFTWARE,
  ProgramStats,
  RingBufferStats,
} from '../native/addon';
import { onlineCpus } from '../system/cpus';
import {
  decodeCountRows,
  decodeHashedStacks,
  decodeProcessEvent,
  decodeSampleEvent,
  decodeStackEntries,
  encodeControl,
  ProcessEvent,
  PROFILE_STATS,
  ProfileStats,
  splitRingBufferBatch,
  sumPerCpu,
  u32Key,
} from './records';

export const MIN_FREQUENCY_HZ = 1;
export const MAX_FREQUENCY_HZ = 1000;

/** How long a BPF program that read the old active set may still be writing to it. */
const SET_FLIP_GRACE_MS = 5;

/** The unwinder's maps, written while sampling (src/unwind/table-store.ts). */
export interface SamplerUnwindMaps {
  mapUpdate(map: string, key: Buffer, value: Buffer, flags?: number): void;
  mapDelete(map: string, key: Buffer): boolean;
}

/** What the sampler needs from a table-driven unwinder (src/unwind/process-unwinder.ts). */
export interface SamplerUnwinder {
  /** max_entries of the unwinder's maps, set before the program loads. */
  mapSizes(): Record<string, number>;
  /** The program loaded: register processes now, before sampling starts. */
  attach(maps: SamplerUnwindMaps): void;
  /** The maps are gone (the sampler closed), or the kernel refused the unwinding program (`reason`). */
  detach(reason?: string): void;
  /** The walker met a pc outside every mapping registered for `pid`: read its mappings again. */
  refresh(pid: number): void;
}

/** How user stacks are walked: unwind tables (with frame pointers where none apply), or frame pointers only. */
export const UNWIND_MODES = ['dwarf', 'fp'] as const;
export type UnwindMode = (typeof UNWIND_MODES)[number];

/** Unwinder maps of a frame-pointer-only sampler: one entry each, no memory to speak of. */
const UNUSED_UNWIND_MAPS = ['unwind_chunks', 'unwind_tables', 'unwind_procs', 'ustacks0', 'ustacks1'];

export interface CpuSamplerOptions {
  /** Samples per second per CPU, MIN_FREQUENCY_HZ..MAX_FREQUENCY_HZ. */
  frequencyHz: number;
  /** 'all' samples every task; otherwise only these process ids (and what addTarget adds). */
  targets: 'all' | number[];
  /** Also sample processes forked by targets (record -- CMD). */
  followForks?: boolean;
  kernelStacks?: boolean;
  userStacks?: boolean;
  /** Defaults to every online CPU. */
  cpus?: number[];
  stackMapEntries?: number;
  countsMapEntries?: number;
  ringBufferBytes?: number;
  /** Path of the compiled profile.bpf.o (tests). */
  objectPath?: string;
  /** Walk user stacks with unwind tables for the processes this unwinder registers. */
  unwinder?: SamplerUnwinder;
  /** Unwound-stack maps' entries (default 8192 per set). */
  unwoundStackEntries?: number;
  /** Called (in batches, on the event loop) when a sampled process exec'd or a process forked. */
  onProcessEvent?: (event: ProcessEvent) => void;
}

/** One aggregated row: a task and its two stacks (addresses leaf first), with how often it was seen. */
export interface DrainedSample {
  tgid: number;
  tid: number;
  /** Which image of the process ran (grows at each execve; see ProcessEvent.execId). */
  execId: number;
  comm: string;
  processComm: string;
  samples: number;
  cpuNs: number;
  kernelStack: BigUint64Array;
  userStack: BigUint64Array;
}

export interface SamplerStats extends ProfileStats {
  /** Rows whose stack id had no stack in the map (should stay 0). */
  stackNotFound: number;
  /** Ring-buffer records that did not decode. */
  recordsMalformed: number;
  ringBuffer: RingBufferStats;
  eventRingBuffer: RingBufferStats;
}

export class CpuSampler {
  private activeSet: 0 | 1 = 0;
  private pendingEvents: DrainedSample[] = [];
  private stackNotFound = 0;
  private recordsMalformed = 0;
  private closed = false;
  private draining: Promise<DrainedSample[]> | null = null;

  private constructor(
    private readonly obj: NativeBpfObject,
    private readonly perf: NativePerfLink,
    private readonly links: NativeLink[],
    private readonly ring: NativeRingBuffer,
    private readonly eventRing: NativeRingBuffer,
    private frequency: number,
    /** How this sampler walks user stacks. */
    readonly unwindMode: UnwindMode,
    /** Why the unwinding program is not used although an unwinder was given, else null. */
    readonly unwindFallbackReason: string | null,
    private readonly unwinder: SamplerUnwinder | null,
  ) {}

  /** Loads and attaches the sampler. Errors from the kernel propagate as thrown by the addon. */
  static open(options: CpuSamplerOptions): CpuSampler {
    validateFrequency(options.frequencyHz);
    const addon = loadAddon();
    const wantDwarf = options.unwinder !== undefined && options.userStacks !== false;
    let mode: UnwindMode = wantDwarf ? 'dwarf' : 'fp';
    let fallbackReason: string | null = null;
    let obj = new addon.BpfObject(options.objectPath ?? bpfObjectPath('profile'));
    try {
      CpuSampler.configure(obj, options, mode);
      obj.load();
    } catch (e) {
      obj.close();
      if (mode === 'fp') throw e;
      // A kernel without bpf_loop (< 5.17) or one whose verifier refuses the walker: frame pointers.
      fallbackReason = `the kernel refused the unwinding program (${firstLine(e)}); user stacks use frame pointers only`;
      mode = 'fp';
      obj = new addon.BpfObject(options.objectPath ?? bpfObjectPath('profile'));
      try {
        CpuSampler.configure(obj, options, mode);
        obj.load();
      } catch (e2) {
        obj.close();
        throw e2;
      }
    }
    return CpuSampler.start(obj, options, mode, fallbackReason);
  }

  /** Globals, map sizes and which programs load, before load(). */
  private static configure(obj: NativeBpfObject, options: CpuSamplerOptions, mode: UnwindMode): void {
    obj.setGlobal('filter_mode', u32Key(options.targets === 'all' ? 0 : 1));
    obj.setGlobal('collect_kernel_stacks', Buffer.from([options.kernelStacks === false ? 0 : 1]));
    obj.setGlobal('collect_user_stacks', Buffer.from([options.userStacks === false ? 0 : 1]));
    if (options.stackMapEntries) for (const m of ['stacks0', 'stacks1']) obj.setMaxEntries(m, options.stackMapEntries);
    if (options.countsMapEntries) for (const m of ['counts0', 'counts1']) obj.setMaxEntries(m, options.countsMapEntries);
    if (options.ringBufferBytes) obj.setMaxEntries('samples', options.ringBufferBytes);
    if (mode === 'dwarf') {
      for (const [m, n] of Object.entries(options.unwinder!.mapSizes())) obj.setMaxEntries(m, n);
      if (options.unwoundStackEntries) for (const m of ['ustacks0', 'ustacks1']) obj.setMaxEntries(m, options.unwoundStackEntries);
    } else {
      for (const m of UNUSED_UNWIND_MAPS) obj.setMaxEntries(m, 1);
    }
    const follow = options.followForks === true;
    obj.setGlobal('follow_forks', Buffer.from([follow ? 1 : 0]));
    obj.setAutoload('on_sample', mode === 'fp');
    obj.setAutoload('on_sample_dwarf', mode === 'dwarf');
    const events = options.onProcessEvent !== undefined;
    obj.setGlobal('report_process_events', Buffer.from([events ? 1 : 0]));
    // With unwind tables, fork, exec and exit also drop a process's registration: a new image or a
    // reused pid must never be walked with mappings that are not its own.
    obj.setAutoload('on_fork', follow || events || mode === 'dwarf');
    obj.setAutoload('on_exit', options.targets !== 'all' || mode === 'dwarf');
    obj.setAutoload('on_exec', events || mode === 'dwarf');
  }

  private static start(obj: NativeBpfObject, options: CpuSamplerOptions, mode: UnwindMode, fallbackReason: string | null): CpuSampler {
    const links: NativeLink[] = [];
    let perf: NativePerfLink | undefined;
    let ring: NativeRingBuffer | undefined;
    let eventRing: NativeRingBuffer | undefined;
    const unwinder = options.unwinder ?? null;
    const follow = options.followForks === true;
    try {
      obj.mapUpdate('control', u32Key(0), encodeControl(0), BPF_ANY);
      if (options.targets !== 'all') for (const pid of options.targets) obj.mapUpdate('targets', u32Key(pid), Buffer.from([1]), BPF_ANY);
      const events = options.onProcessEvent !== undefined;
      if (follow || events || mode === 'dwarf') links.push(obj.attachRawTracepoint('on_fork', 'sched_process_fork'));
      if (options.targets !== 'all' || mode === 'dwarf') links.push(obj.attachRawTracepoint('on_exit', 'sched_process_exit'));
      if (events || mode === 'dwarf') links.push(obj.attachRawTracepoint('on_exec', 'sched_process_exec'));
      // The ring buffer must exist before the sampler instance; its callback is bound once it does.
      const sampler: { current?: CpuSampler } = {};
      ring = obj.openRingBuffer('samples', (batch, records) => sampler.current?.onRingBatch(batch, records), {
        maxQueuedBatches: 256,
      });
      const onEvent = options.onProcessEvent;
      eventRing = obj.openRingBuffer('events', (batch, records) => sampler.current?.onEventBatch(batch, records, onEvent));
      if (unwinder !== null) {
        if (mode === 'dwarf') unwinder.attach(obj);
        else unwinder.detach(fallbackReason ?? 'user stacks are not collected');
      }
      // cpu-clock is hrtimer driven: the kernel converts a frequency to a fixed period anyway, and a
      // period can be changed while running (PERF_EVENT_IOC_PERIOD), so sample by period in ns.
      perf = obj.attachPerfEvent(mode === 'dwarf' ? 'on_sample_dwarf' : 'on_sample', {
        type: PERF_TYPE_SOFTWARE,
        config: PERF_COUNT_SW_CPU_CLOCK,
        period: periodNs(options.frequencyHz),
        cpus: options.cpus ?? onlineCpus(),
      });
      const s = new CpuSampler(obj, perf, links, ring, eventRing, options.frequencyHz, mode, fallbackReason, unwinder);
      sampler.current = s;
      return s;
    } catch (e) {
      unwinder?.detach();
      obj.close();
      throw e;
    }
  }

  get frequencyHz(): number {
    return this.frequency;
  }

  /** Changes the sampling frequency while running; takes effect at each CPU's next sample. */
  setFrequency(hz: number): void {
    validateFrequency(hz);
    this.perf.setPeriod(periodNs(hz));
    this.frequency = hz;
  }

  addTarget(pid: number): void {
    this.obj.mapUpdate('targets', u32Key(pid), Buffer.from([1]), BPF_ANY);
  }

  removeTarget(pid: number): void {
    this.obj.mapDelete('targets', u32Key(pid));
  }

  /** Every sample aggregated since the previous drain. Concurrent calls share one drain. */
  drain(): Promise<DrainedSample[]> {
    if (this.closed) return Promise.resolve([]);
    if (!this.draining) {
      this.draining = this.drainOnce().finally(() => {
        this.draining = null;
      });
    }
    return this.draining;
  }

  private async drainOnce(): Promise<DrainedSample[]> {
    const old = this.activeSet;
    this.activeSet = old === 0 ? 1 : 0;
    this.obj.mapUpdate('control', u32Key(0), encodeControl(this.activeSet), BPF_ANY);
    await sleep(SET_FLIP_GRACE_MS);
    const stacksRead = this.obj.mapEntries(`stacks${old}`, { delete: true });
    const countsRead = this.obj.mapEntries(`counts${old}`, { delete: true });
    const stacks = decodeStackEntries(stacksRead.keys, stacksRead.values, stacksRead.count);
    const rows = decodeCountRows(countsRead.keys, countsRead.values, countsRead.count);
    let unwound: Map<bigint, BigUint64Array> | null = null;
    if (this.unwindMode === 'dwarf') {
      const u = this.obj.mapEntries(`ustacks${old}`, { delete: true });
      unwound = decodeHashedStacks(u.keys, u.values, u.count);
    }
    const none = new BigUint64Array(0);
    const lookup = (id: number): BigUint64Array => {
      if (id < 0) return none;
      const s = stacks.get(id);
      if (s) return s;
      this.stackNotFound++;
      return none;
    };
    const userStack = (r: (typeof rows)[number]): BigUint64Array => {
      if (r.ustackHash === 0n) return lookup(r.ustackId);
      const s = unwound?.get(r.ustackHash);
      if (s) return s;
      this.stackNotFound++;
      return none;
    };
    const out: DrainedSample[] = rows.map((r) => ({
      tgid: r.tgid,
      tid: r.tid,
      execId: r.execId,
      comm: r.comm,
      processComm: r.processComm,
      samples: r.samples,
      cpuNs: r.cpuNs,
      kernelStack: lookup(r.kstackId),
      userStack: userStack(r),
    }));
    const events = this.pendingEvents;
    this.pendingEvents = [];
    return out.concat(events);
  }

  private onRingBatch(batch: Buffer, records: number): void {
    for (const rec of splitRingBufferBatch(batch, records)) {
      try {
        const e = decodeSampleEvent(rec);
        this.pendingEvents.push({
          tgid: e.tgid,
          tid: e.tid,
          execId: e.execId,
          comm: e.comm,
          processComm: e.processComm,
          samples: 1,
          cpuNs: e.cpuNs,
          kernelStack: e.kernelStack,
          userStack: e.userStack,
        });
      } catch {
        this.recordsMalformed++;
      }
    }
  }

  private onEventBatch(batch: Buffer, records: number, onEvent: ((e: ProcessEvent) => void) | undefined): void {
    for (const rec of splitRingBufferBatch(batch, records)) {
      let event: ProcessEvent;
      try {
        event = decodeProcessEvent(rec);
      } catch {
        this.recordsMalformed++;
        continue;
      }
      // The unwinder met a pc outside the mappings it registered (dlopen, a new JIT region).
      if (event.type === 'maps-stale') {
        if (!this.closed) this.unwinder?.refresh(event.tgid);
        continue;
      }
      onEvent?.(event);
    }
  }

  stats(): SamplerStats {
    const out = {} as ProfileStats;
    PROFILE_STATS.forEach((name, i) => {
      const v = this.closed ? null : this.obj.mapLookup('stats', u32Key(i));
      out[name] = v ? sumPerCpu(v) : 0;
    });
    return {
      ...out,
      stackNotFound: this.stackNotFound,
      recordsMalformed: this.recordsMalformed,
      ringBuffer: this.ring.stats(),
      eventRingBuffer: this.eventRing.stats(),
    };
  }

  /** In-kernel cost of the sampling program (needs run-time stats enabled to count). */
  programStats(): ProgramStats {
    return this.obj.programStats(this.unwindMode === 'dwarf' ? 'on_sample_dwarf' : 'on_sample');
  }

  /**
   * Stops sampling and returns what was aggregated since the last drain (including ring-buffer
   * records still in flight). Closes every kernel object.
   */
  async close(): Promise<DrainedSample[]> {
    if (this.closed) return [];
    this.perf.close();
    for (const l of this.links) l.close();
    await this.ring.close();
    await this.eventRing.close();
    const rest = await this.drain();
    this.lastStats = this.stats();
    this.closed = true;
    this.unwinder?.detach();
    this.obj.close();
    return rest;
  }

  /** Statistics as they were at close(). */
  lastStats: SamplerStats | null = null;
}

export function validateFrequency(hz: number): void {
  if (!Number.isInteger(hz) || hz < MIN_FREQUENCY_HZ || hz > MAX_FREQUENCY_HZ) {
    throw new EbpfprofError('EBADARG', `frequency must be an integer from ${MIN_FREQUENCY_HZ} to ${MAX_FREQUENCY_HZ} Hz, got ${hz}`);
  }
}

function firstLine(e: unknown): string {
  return (e instanceof Error ? e.message : String(e)).split('\n')[0]!;
}

export function periodNs(hz: number): number {
  return Math.round(1e9 / hz);
}
