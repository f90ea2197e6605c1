// SPDX-License-Identifier: Apache-2.0
/** Drained sampler rows to profile samples, with symbolization (see SampleFolder). */
import { ProfileBuilder } from '../profile/model';
import type { DrainedSample } from '../sampler/cpu-sampler';
import { MAX_STACK_DEPTH, ProcessEvent } from '../sampler/records';
import { ResolvedFrame, Symbolizer } from '../symbolize/symbolizer';
import type { ProcessUnwinder } from '../unwind/process-unwinder';
import { ProcessImages } from './process-images';

/** A user frame of an image that was never snapshotted (it exec'd away before we saw it). */
function unknownImageFrame(address: number): ResolvedFrame {
  return { kind: 'native', name: `[unknown image]+0x${address.toString(16)}`, systemName: '', mapping: null, symbolized: false };
}

/**
 * Turns drained sampler rows into profile samples: symbolizes each address once per process (and
 * image), counts truncated and unsymbolized samples, and leaves out the parked launcher shell.
 * `record` folds into one profile; a continuous agent starts a new profile per export window with
 * startProfile(), keeping what it knows about processes.
 *
 * With an unwinder, every process the folder learns of (first sample, exec) is registered for
 * table-driven unwinding, and registrations follow its mappings (maps-stale events, re-observes).
 */
export class SampleFolder {
  samples = 0;
  launcherSamples = 0;
  /**
   * record -- CMD: the parked shell's pid and the exec id of the command it became. Its samples from
   * before that exec are ebpfprof's own start-up work, not the command's: they are left out.
   */
  launcher: { pid: number; commandExecId: number | null } | null = null;
  readonly images = new ProcessImages();
  truncatedSamples = 0;
  unsymbolizedSamples = 0;
  /** Mappings reads after an exec left out because the process had exited by then. */
  readsSkippedForExit = 0;
  readonly processes = new Set<number>();
  readonly threads = new Set<number>();
  /** (pid or 'k', address, return?) -> frame id in the current builder. Bounded: cleared when large. */
  private frameCache = new Map<string, number>();
  private unsymbolizedFrames = new Set<number>();
  private builder: ProfileBuilder | null = null;

  constructor(
    private readonly symbolizer: Symbolizer,
    private readonly unwinder: ProcessUnwinder | null = null,
  ) {}

  /** Reads `pid`'s mappings again (libraries loaded late) and updates its unwind registration. */
  reobserve(pid: number): void {
    this.symbolizer.observeProcess(pid);
    this.unwinder?.addProcess(pid);
  }

  /** Folds what comes next into `builder`; the per-profile counters start again from zero. */
  startProfile(builder: ProfileBuilder): void {
    this.builder = builder;
    this.frameCache = new Map();
    this.unsymbolizedFrames = new Set();
    this.samples = 0;
    this.launcherSamples = 0;
    this.truncatedSamples = 0;
    this.unsymbolizedSamples = 0;
    this.threads.clear();
  }

  /**
   * A process forked: remember its parent, whose image it runs until it execs. A sampled process
   * exec'd: read its new mappings now, and again once the dynamic loader has mapped its libraries, so
   * that even a short-lived program symbolizes after it is gone. If the pid was known with its old
   * image, what was sampled before is folded first (`foldPending`), with the old mappings.
   *
   * `exited` says whether the process has exited since (callers that track exits pass it): both
   * reads are skipped for a process that is gone, whose /proc directory can only fail to open. The
   * first read waits for the end of the batch of events, so that an exit delivered in the same
   * batch (a program that ran for a millisecond) is known by then.
   */
  async onProcessEvent(e: ProcessEvent, foldPending: () => Promise<void>, stopped: () => boolean, exited: () => boolean = () => false): Promise<void> {
    const pid = e.tgid;
    if (e.type === 'maps-stale') return; // the sampler hands these to the unwinder itself
    if (e.type === 'fork') {
      this.images.fork(pid, e.ppid, e.execId);
      return;
    }
    if (this.launcher?.pid === pid && this.launcher.commandExecId === null) this.launcher.commandExecId = e.execId;
    if (stopped()) return;
    if (this.processes.has(pid)) {
      await foldPending();
      this.symbolizer.forgetProcess(pid);
    }
    this.images.exec(pid, e.execId);
    const observeIfAlive = (): void => {
      if (stopped()) return;
      if (exited()) this.readsSkippedForExit++;
      else this.reobserve(pid);
    };
    setImmediate(observeIfAlive);
    setTimeout(observeIfAlive, 50).unref();
  }

  /**
   * The process exited and its samples were folded: drop what the folder and the symbolizer hold
   * about it, so that a process that reuses the pid is observed afresh.
   */
  forgetProcess(pid: number): void {
    this.processes.delete(pid);
    this.images.forget(pid);
    this.symbolizer.forgetProcess(pid);
    this.unwinder?.unregister(pid);
  }

  add(rows: DrainedSample[]): void {
    const builder = this.builder;
    if (!builder) throw new Error('SampleFolder.add before startProfile');
    for (const r of rows) this.addRow(builder, r);
    if (this.frameCache.size > 500_000) this.frameCache = new Map();
  }

  private frameId(builder: ProfileBuilder, key: string, address: bigint, resolve: () => ResolvedFrame): number {
    let id = this.frameCache.get(key);
    if (id === undefined) {
      const f = resolve();
      id = builder.frame({
        kind: f.kind,
        name: f.name,
        systemName: f.systemName,
        mapping: f.mapping ? builder.mapping(f.mapping) : -1,
        address,
        symbolized: f.symbolized,
      });
      this.frameCache.set(key, id);
      if (!f.symbolized) this.unsymbolizedFrames.add(id);
    }
    return id;
  }

  private addRow(builder: ProfileBuilder, r: DrainedSample): void {
    if (this.launcher?.pid === r.tgid && (this.launcher.commandExecId === null || r.execId < this.launcher.commandExecId)) {
      this.launcherSamples += r.samples;
      return;
    }
    if (!this.processes.has(r.tgid)) {
      this.processes.add(r.tgid);
      this.symbolizer.observeProcess(r.tgid);
      // Until now its user stacks were walked with frame pointers; from the next sample on, tables.
      if (this.unwinder !== null && !this.unwinder.isRegistered(r.tgid)) this.unwinder.addProcess(r.tgid);
    }
    this.threads.add(r.tid);
    const frames: number[] = [];
    r.kernelStack.forEach((addr, i) => {
      const ret = i > 0;
      frames.push(this.frameId(builder, `k:${addr}:${ret ? 1 : 0}`, addr, () => this.symbolizer.resolveKernel(addr, ret)));
    });
    const afterKernel = r.kernelStack.length > 0;
    const symbolsPid = r.userStack.length > 0 ? this.images.symbolsPid(r.tgid, r.execId) : r.tgid;
    if (symbolsPid !== null && symbolsPid !== r.tgid && !this.processes.has(symbolsPid)) {
      // A forked child before its exec runs its parent's image: make sure the parent was observed.
      this.processes.add(symbolsPid);
      this.symbolizer.observeProcess(symbolsPid);
    }
    r.userStack.forEach((addr, i) => {
      // The first user address of a sample taken in the kernel is where the syscall returns to.
      const ret = i > 0 || afterKernel;
      const a = Number(addr);
      frames.push(
        symbolsPid === null
          ? this.frameId(builder, `?:${a}`, addr, () => unknownImageFrame(a))
          : this.frameId(builder, `${symbolsPid}:${a}:${ret ? 1 : 0}`, addr, () => this.symbolizer.resolveUser(symbolsPid, a, ret)),
      );
    });
    const stack = builder.stack(frames);
    builder.addSample({
      stack,
      pid: r.tgid,
      tid: r.tid,
      processName: r.processComm || r.comm,
      threadName: r.comm,
      count: r.samples,
      cpuNs: r.cpuNs,
    });
    this.samples += r.samples;
    if (r.kernelStack.length >= MAX_STACK_DEPTH || r.userStack.length >= MAX_STACK_DEPTH) this.truncatedSamples += r.samples;
    if (frames.some((f) => this.unsymbolizedFrames.has(f))) this.unsymbolizedSamples += r.samples;
  }
}
