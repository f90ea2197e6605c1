// SPDX-License-Identifier: Apache-2.0
/**
 * The in-memory profile every part of ebpfprof shares: the recorder builds it, encoders (pprof,
 * folded, speedscope, OTLP) write it, decoders read files back into it for the viewer.
 *
 * Samples are aggregated: one row per distinct (stack, pid, tid, names), so the size grows with
 * distinct stacks, not with sample count. Frames and stacks are interned.
 */

/** What produced a frame; encoders map it to the semantic-convention frame type. */
export type FrameKind = 'kernel' | 'native' | 'go' | 'jit' | 'interpreted' | 'unknown';

/** A loaded module (executable, shared library, kernel, vdso, JIT region) of some process. */
export interface Mapping {
  /** Runtime start address (inclusive). 0n when unknown (e.g. decoded from folded stacks). */
  start: bigint;
  /** Runtime end address (exclusive). */
  limit: bigint;
  /** File offset that `start` maps. */
  fileOffset: bigint;
  /** Path of the file as the process sees it ('[kernel.kallsyms]', '[vdso]', '[jit]' for non-files). */
  path: string;
  /** GNU build id as lowercase hex, '' if none. */
  buildId: string;
}

export interface Frame {
  kind: FrameKind;
  /** Display name: demangled symbol, or `module+0xoffset` when it could not be symbolized. */
  name: string;
  /** Symbol as written in the binary (mangled), '' when equal to `name` or unknown. */
  systemName: string;
  /** Index into Profile.mappings, -1 when none. */
  mapping: number;
  /** Runtime address of the frame (return addresses as unwound, leaf ip as sampled). 0n if unknown. */
  address: bigint;
  /** False when no symbol was found; `name` then holds module+offset. */
  symbolized: boolean;
}

export interface Sample {
  /** Index into Profile.stacks. */
  stack: number;
  pid: number;
  tid: number;
  processName: string;
  threadName: string;
  /** Number of samples. */
  count: number;
  /** CPU time represented by these samples, nanoseconds. */
  cpuNs: number;
}

export interface ProfileMeta {
  /** Wall-clock start of the recording, ms since the epoch. */
  startTimeMs: number;
  /** Length of the recording, ns. */
  durationNs: number;
  /** Sampling frequency in Hz (0 when unknown). */
  frequencyHz: number;
  /** Nominal CPU time per sample, ns (1e9 / frequency). */
  periodNs: number;
  /** Free-form lines kept with the profile (pprof comments). */
  comments: string[];
  /**
   * What Sample.cpuNs measures: 'cpu' (on-CPU time from sampling, the default when absent) or
   * 'off-cpu' (time threads spent blocked, from `ebpfprof offcpu`; Sample.count is then the number
   * of blocks). Encoders name their value types after it (profileValueTypes).
   */
  timeKind?: TimeKind;
}

export type TimeKind = 'cpu' | 'off-cpu';

/** The names every encoder gives a profile's two values (pprof sample types, speedscope titles). */
export interface ProfileValueTypes {
  /** Sample.count: pprof type/unit. */
  count: { type: string; unit: 'count' };
  /** Sample.cpuNs: pprof type/unit (also the period type). */
  time: { type: string; unit: 'nanoseconds' };
  /** For people: "CPU time", "off-CPU time". */
  title: string;
}

export function profileValueTypes(meta: Pick<ProfileMeta, 'timeKind'>): ProfileValueTypes {
  if (meta.timeKind === 'off-cpu') return { count: { type: 'blocks', unit: 'count' }, time: { type: 'off_cpu', unit: 'nanoseconds' }, title: 'off-CPU time' };
  return { count: { type: 'samples', unit: 'count' }, time: { type: 'cpu', unit: 'nanoseconds' }, title: 'CPU time' };
}

export interface Profile {
  meta: ProfileMeta;
  mappings: Mapping[];
  frames: Frame[];
  /** Frame indices, leaf first. */
  stacks: number[][];
  samples: Sample[];
}

/** Builds a Profile, interning mappings, frames and stacks and merging identical sample rows. */
export class ProfileBuilder {
  private readonly mappings: Mapping[] = [];
  private readonly frames: Frame[] = [];
  private readonly stacks: number[][] = [];
  private readonly samples: Sample[] = [];
  private readonly mappingIndex = new Map<string, number>();
  private readonly frameIndex = new Map<string, number>();
  private readonly stackIndex = new Map<string, number>();
  private readonly sampleIndex = new Map<string, number>();

  constructor(private readonly meta: ProfileMeta) {}

  mapping(m: Mapping): number {
    const key = `${m.start}|${m.limit}|${m.fileOffset}|${m.path}|${m.buildId}`;
    let i = this.mappingIndex.get(key);
    if (i === undefined) {
      i = this.mappings.length;
      this.mappings.push(m);
      this.mappingIndex.set(key, i);
    }
    return i;
  }

  frame(f: Frame): number {
    const key = `${f.kind}|${f.mapping}|${f.address}|${f.name}|${f.systemName}|${f.symbolized ? 1 : 0}`;
    let i = this.frameIndex.get(key);
    if (i === undefined) {
      i = this.frames.length;
      this.frames.push(f);
      this.frameIndex.set(key, i);
    }
    return i;
  }

  /** Interns a stack of frame indices, leaf first. */
  stack(frameIds: readonly number[]): number {
    const key = frameIds.join(',');
    let i = this.stackIndex.get(key);
    if (i === undefined) {
      i = this.stacks.length;
      this.stacks.push(frameIds.slice());
      this.stackIndex.set(key, i);
    }
    return i;
  }

  addSample(s: Sample): void {
    const key = `${s.stack}|${s.pid}|${s.tid}|${s.processName}|${s.threadName}`;
    const i = this.sampleIndex.get(key);
    if (i === undefined) {
      this.sampleIndex.set(key, this.samples.length);
      this.samples.push({ ...s });
    } else {
      const row = this.samples[i]!;
      row.count += s.count;
      row.cpuNs += s.cpuNs;
    }
  }

  setDuration(durationNs: number): void {
    this.meta.durationNs = durationNs;
  }

  addComment(line: string): void {
    this.meta.comments.push(line);
  }

  build(): Profile {
    return {
      meta: { ...this.meta, comments: [...this.meta.comments] },
      mappings: this.mappings.slice(),
      frames: this.frames.slice(),
      stacks: this.stacks.map((s) => s.slice()),
      samples: this.samples.map((s) => ({ ...s })),
    };
  }
}

/** Total sample count of a profile. */
export function totalSamples(p: Profile): number {
  let n = 0;
  for (const s of p.samples) n += s.count;
  return n;
}
