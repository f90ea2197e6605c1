// SPDX-License-Identifier: Apache-2.0
/**
 * One off-CPU recording (`ebpfprof offcpu`): where the threads of a process (or of every process)
 * block, with kernel and user stacks symbolized exactly as `record` does (the same SampleFolder and
 * Symbolizer), into a Profile whose value is blocked time (meta.timeKind 'off-cpu').
 *
 * Process lifecycle comes from the shared tracker (src/process/lifecycle.ts): an exec drops the
 * process's symbols and snapshots the new image, an exit frees its state after the next drain.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import { EbpfprofError } from '../errors';
import { loadAddon } from '../native/addon';
import { ProcessInfo, ProcessLifecycle } from '../process/lifecycle';
import { processAlive, readProcStat, threadGroupOf } from '../process/proc';
import { Profile, ProfileBuilder } from '../profile/model';
import { SampleFolder } from '../record/sample-folder';
import type { DrainedSample } from '../sampler/cpu-sampler';
import { ProcessEvent } from '../sampler/records';
import { Symbolizer, SymbolizerStats } from '../symbolize/symbolizer';
import { AttachMethod } from '../system/kernel-features';
import { explainKernelError } from '../system/privileges';
import { HookStatus } from './attach';
import { OffCpuTracer, OffCpuTracerStats } from './offcpu';

export type OffCpuTarget = { kind: 'pid'; pid: number } | { kind: 'all' };

export interface OffCpuOptions {
  target: OffCpuTarget;
  durationMs?: number;
  /** Blocks shorter than this are left out (default 0: every block). */
  minBlockNs?: number;
  includePreempted?: boolean;
  includeKernelThreads?: boolean;
  drainIntervalMs?: number;
  signal?: AbortSignal;
  onProgress?: (p: OffCpuProgress) => void;
  /** Called once the tracer is attached, with how each hook is attached (for --verbose). */
  onAttached?: (hooks: HookStatus[]) => void;
  prefer?: AttachMethod;
  symbolizer?: Symbolizer;
  objectPath?: string;
}

export interface OffCpuProgress {
  elapsedMs: number;
  blocks: number;
  blockedNs: number;
  lost: number;
}

export interface OffCpuSummary {
  endReason: 'duration' | 'aborted' | 'target-exited';
  elapsedMs: number;
  /** Blocks in the profile, and their total time. */
  blocks: number;
  blockedNs: number;
  /** Blocks lost (ring buffer, start map or whole-stacks map full, records dropped or malformed). */
  lostBlocks: number;
  /** Blocks with at least one frame that has no symbol. */
  unsymbolizedBlocks: number;
  truncatedBlocks: number;
  stackErrors: number;
  processes: number;
  threads: number;
  tracer: OffCpuTracerStats;
  symbolizer: SymbolizerStats;
  hooks: HookStatus[];
}

function resolveTarget(target: OffCpuTarget): { pid: number; startTicks: number } | null {
  if (target.kind !== 'pid') return null;
  if (!Number.isInteger(target.pid) || target.pid <= 0) throw new EbpfprofError('EBADARG', `--pid must be a positive integer, got ${target.pid}`);
  const tgid = threadGroupOf(target.pid);
  const stat = tgid === null ? null : readProcStat(tgid);
  if (tgid === null || stat === null || stat.state === 'Z') throw new EbpfprofError('ENOPROC', `no process with pid ${target.pid}`);
  return { pid: tgid, startTicks: stat.startTicks };
}

export function lostBlocks(s: OffCpuTracerStats): number {
  return s.ringBufferFull + s.startFull + s.wholeFull + s.droppedRecords + s.recordsMalformed;
}

export async function recordOffCpu(options: OffCpuOptions): Promise<{ profile: Profile; summary: OffCpuSummary }> {
  if (options.durationMs !== undefined && !(options.durationMs > 0)) throw new EbpfprofError('EBADARG', `duration must be positive, got ${options.durationMs} ms`);
  const target = resolveTarget(options.target);
  const symbolizer = options.symbolizer ?? new Symbolizer();
  symbolizer.loadKernelSymbols();
  const folder = new SampleFolder(symbolizer);
  const stop = new AbortController();
  let endReason: OffCpuSummary['endReason'] = 'duration';
  const end = (r: OffCpuSummary['endReason']): void => {
    if (!stop.signal.aborted) {
      endReason = r;
      stop.abort();
    }
  };

  let lifecycle: ProcessLifecycle;
  let tracer: OffCpuTracer;
  try {
    lifecycle = await ProcessLifecycle.open();
  } catch (e) {
    throw explainKernelError(e, 'starting process lifecycle tracking');
  }
  try {
    tracer = await OffCpuTracer.open({
      targets: target ? [target.pid] : 'all',
      ...(options.minBlockNs !== undefined ? { minBlockNs: options.minBlockNs } : {}),
      ...(options.includePreempted ? { includePreempted: true } : {}),
      ...(options.includeKernelThreads ? { includeKernelThreads: true } : {}),
      ...(options.prefer ? { prefer: options.prefer } : {}),
      ...(options.objectPath ? { objectPath: options.objectPath } : {}),
    });
  } catch (e) {
    await lifecycle.close();
    throw explainKernelError(e, 'starting off-CPU tracing', target ? { pid: target.pid } : {});
  }
  options.onAttached?.(tracer.hooks);
  // The profile covers the time the tracer was attached: loading the programs is not part of it.
  const startTimeMs = Date.now();
  const builder = new ProfileBuilder({ startTimeMs, durationNs: 0, frequencyHz: 0, periodNs: 0, comments: [], timeKind: 'off-cpu' });
  folder.startProfile(builder);

  const trim = kernelStackTrimmer(symbolizer);
  let folding: Promise<void> = Promise.resolve();
  const drainAndFold = (): Promise<void> =>
    (folding = folding.then(async () => {
      folder.add(trim(await tracer.drain()));
    }));
  // Exited processes are forgotten one drain after their exit: their last blocks are folded first.
  let exitedSinceDrain: ProcessInfo[] = [];
  const relevant = (pid: number): boolean => target === null || pid === target.pid || folder.processes.has(pid);
  const toProcessEvent = (p: ProcessInfo, type: 'exec' | 'fork'): ProcessEvent =>
    type === 'exec' ? { type, tgid: p.pid, execId: p.execId, comm: p.comm } : { type, tgid: p.pid, ppid: p.ppid, execId: p.execId, comm: p.comm };
  const unsubscribe = lifecycle.tracker.subscribe({
    onFork: (p) => {
      if (relevant(p.ppid)) void folder.onProcessEvent(toProcessEvent(p, 'fork'), drainAndFold, () => stop.signal.aborted);
    },
    onExec: (p) => {
      if (relevant(p.pid)) void folder.onProcessEvent(toProcessEvent(p, 'exec'), drainAndFold, () => stop.signal.aborted, () => p.exited);
    },
    onExit: (p) => {
      if (relevant(p.pid)) exitedSinceDrain.push(p);
    },
  });

  let liveness: NodeJS.Timeout | null = null;
  try {
    if (target) symbolizer.observeProcess(target.pid);
    if (options.signal) {
      if (options.signal.aborted) end('aborted');
      else options.signal.addEventListener('abort', () => end('aborted'), { once: true });
    }
    if (target) {
      liveness = setInterval(() => {
        if (!processAlive(target.pid, target.startTicks)) end('target-exited');
      }, 200);
    }
    const interval = options.drainIntervalMs ?? 1000;
    const deadline = options.durationMs === undefined ? Infinity : startTimeMs + options.durationMs;
    while (!stop.signal.aborted) {
      const wait = Math.min(interval, deadline - Date.now());
      if (wait <= 0) {
        end('duration');
        break;
      }
      try {
        await sleep(wait, undefined, { signal: stop.signal });
      } catch {
        break;
      }
      const exited = exitedSinceDrain;
      exitedSinceDrain = [];
      await drainAndFold();
      // Only if the pid was not reused since: the new process's state must not go with the old one.
      // The folder forgets its image history too, so that a later process with the pid is not
      // symbolized through the exited one's exec ids.
      for (const p of exited) if (lifecycle.tracker.get(p.pid) === p) folder.forgetProcess(p.pid);
      lifecycle.tracker.sweep();
      const st = tracer.stats();
      options.onProgress?.({ elapsedMs: Date.now() - startTimeMs, blocks: folder.samples, blockedNs: 0, lost: lostBlocks(st) });
    }
  } finally {
    if (liveness) clearInterval(liveness);
    await folding;
    folder.add(trim(await tracer.close(options.minBlockNs ?? 0)));
    unsubscribe();
    await lifecycle.close();
  }
  const elapsedMs = Date.now() - startTimeMs;
  builder.setDuration(elapsedMs * 1e6);
  const profile = builder.build();
  let blockedNs = 0;
  for (const s of profile.samples) blockedNs += s.cpuNs;
  const tracerStats = tracer.stats();
  const summary: OffCpuSummary = {
    endReason,
    elapsedMs,
    blocks: folder.samples,
    blockedNs,
    lostBlocks: lostBlocks(tracerStats),
    unsymbolizedBlocks: folder.unsymbolizedSamples,
    truncatedBlocks: folder.truncatedSamples,
    stackErrors: tracerStats.kernelStackError + tracerStats.userStackError,
    processes: folder.processes.size,
    threads: folder.threads.size,
    tracer: tracerStats,
    symbolizer: symbolizer.stats(),
    hooks: tracer.hooks,
  };
  if (!options.symbolizer) symbolizer.close();
  const what = options.target.kind === 'all' ? '--all' : `--pid ${options.target.pid}`;
  profile.meta.comments.push(
    `ebpfprof offcpu ${what}${options.minBlockNs ? ` --min-block ${options.minBlockNs}ns` : ''}`,
    `blocks ${summary.blocks}, blocked ${(blockedNs / 1e9).toFixed(3)} s, lost ${summary.lostBlocks}, unsymbolized ${summary.unsymbolizedBlocks}, stack read errors ${summary.stackErrors}`,
  );
  setTimeout(() => loadAddon().releaseFreeMemory(), 100).unref();
  return { profile, summary };
}

/**
 * A kernel stack taken at sched_switch starts with the tracing machinery (the BPF program, then
 * bpf_trace_run<N> or a trampoline) above __schedule, which called the tracepoint: the block is
 * where __schedule was entered, so the frames above it are cut (by address, resolved once).
 */
export function kernelStackTrimmer(symbolizer: Symbolizer): (rows: DrainedSample[]) => DrainedSample[] {
  const isSchedule = new Map<bigint, boolean>();
  const trimmed = new WeakMap<BigUint64Array, BigUint64Array>();
  const trimOne = (stack: BigUint64Array): BigUint64Array => {
    let t = trimmed.get(stack);
    if (t !== undefined) return t;
    t = stack;
    // Only the first few frames can be tracing machinery.
    for (let i = 0; i < Math.min(stack.length, 8); i++) {
      const addr = stack[i]!;
      let hit = isSchedule.get(addr);
      if (hit === undefined) {
        hit = symbolizer.resolveKernel(addr, i > 0).name === '__schedule';
        isSchedule.set(addr, hit);
      }
      if (hit) {
        t = stack.subarray(i);
        break;
      }
    }
    trimmed.set(stack, t);
    return t;
  };
  return (rows) => {
    for (const r of rows) if (r.kernelStack.length > 0) r.kernelStack = trimOne(r.kernelStack);
    return rows;
  };
}
