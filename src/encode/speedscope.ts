// SPDX-License-Identifier: Apache-2.0
/**
 * Profile → speedscope's JSON file format
 * (https://www.speedscope.app/file-format-schema.json, shipped as
 * node_modules/speedscope/dist/release/file-format-schema.json).
 *
 * One shared frame table (deduplicated by name + file, because speedscope identifies a frame by its
 * table entry: two entries with one name would show as two functions in the sandwich view), and one
 * "sampled" profile per process named "process_name (pid N)", heaviest first. Threads of a process
 * are merged: speedscope has no thread dimension. Stacks are written root first, as speedscope wants.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import type { Profile } from '../profile/model';
import { KERNEL_MAPPING_PATH } from './pprof';

export const SPEEDSCOPE_SCHEMA_URL = 'https://www.speedscope.app/file-format-schema.json';

export type SpeedscopeUnit = 'none' | 'nanoseconds' | 'microseconds' | 'milliseconds' | 'seconds' | 'bytes';

export interface SpeedscopeFrame {
  name: string;
  file?: string;
  line?: number;
  col?: number;
}

export interface SpeedscopeSampledProfile {
  type: 'sampled';
  name: string;
  unit: SpeedscopeUnit;
  startValue: number;
  endValue: number;
  /** Frame indices into shared.frames, root first. */
  samples: number[][];
  weights: number[];
}

export interface SpeedscopeEvent {
  type: 'O' | 'C';
  frame: number;
  at: number;
}

export interface SpeedscopeEventedProfile {
  type: 'evented';
  name: string;
  unit: SpeedscopeUnit;
  startValue: number;
  endValue: number;
  events: SpeedscopeEvent[];
}

export interface SpeedscopeFile {
  $schema: typeof SPEEDSCOPE_SCHEMA_URL;
  shared: { frames: SpeedscopeFrame[] };
  profiles: Array<SpeedscopeSampledProfile | SpeedscopeEventedProfile>;
  name?: string;
  activeProfileIndex?: number;
  exporter?: string;
}

export interface SpeedscopeOptions {
  /**
   * 'cpu-ns': weights are CPU nanoseconds (unit "nanoseconds"); 'samples': sample counts (unit
   * "none"); 'auto' (default): nanoseconds when every sampled row carries CPU time, else samples.
   */
  weight?: 'auto' | 'cpu-ns' | 'samples';
  /** File name shown by speedscope (and the page title in the viewer). */
  name?: string;
  /** Version written in `exporter`; default: ebpfprof's package.json version. */
  exporterVersion?: string;
}

let cachedVersion: string | undefined;

/** ebpfprof's version from its package.json (found upwards from this file, in src/ or dist/). */
export function ebpfprofVersion(): string {
  if (cachedVersion !== undefined) return cachedVersion;
  cachedVersion = 'unknown';
  for (let dir = __dirname; ; dir = path.dirname(dir)) {
    try {
      const pkg: unknown = JSON.parse(fs.readFileSync(path.join(dir, 'package.json'), 'utf8'));
      if (typeof pkg === 'object' && pkg !== null && (pkg as { name?: unknown }).name === 'ebpfprof') {
        const v = (pkg as { version?: unknown }).version;
        if (typeof v === 'string') cachedVersion = v;
        break;
      }
    } catch {
      // no (readable) package.json here: keep walking up
    }
    if (path.dirname(dir) === dir) break;
  }
  return cachedVersion;
}

/** Whether 'auto' weighting picks CPU nanoseconds for this profile. */
export function hasCpuTime(profile: Profile): boolean {
  let any = false;
  for (const s of profile.samples) {
    if (s.cpuNs > 0) any = true;
    else if (s.count > 0) return false;
  }
  return any;
}

/** The speedscope document for a profile (serialize with JSON.stringify). */
export function buildSpeedscope(profile: Profile, options: SpeedscopeOptions = {}): SpeedscopeFile {
  const mode = options.weight ?? 'auto';
  const offCpu = profile.meta.timeKind === 'off-cpu';
  const byCpu = mode === 'cpu-ns' || (mode === 'auto' && hasCpuTime(profile));

  const frames: SpeedscopeFrame[] = [];
  const frameKeys = new Map<string, number>();
  const frameIndex = profile.frames.map((f) => {
    const file = f.mapping >= 0 ? profile.mappings[f.mapping]?.path : f.kind === 'kernel' ? KERNEL_MAPPING_PATH : undefined;
    const key = `${f.name}\0${file ?? ''}`;
    let i = frameKeys.get(key);
    if (i === undefined) {
      i = frames.length;
      frames.push(file ? { name: f.name, file } : { name: f.name });
      frameKeys.set(key, i);
    }
    return i;
  });

  interface Group {
    pid: number;
    processName: string;
    total: number;
    rows: Map<number, number>; // stack index → weight, in first-seen order
  }
  const groups = new Map<string, Group>();
  for (const s of profile.samples) {
    const w = Math.round(byCpu ? s.cpuNs : s.count);
    if (!(w > 0)) continue;
    const key = `${s.pid}\0${s.processName}`;
    let g = groups.get(key);
    if (g === undefined) {
      g = { pid: s.pid, processName: s.processName, total: 0, rows: new Map() };
      groups.set(key, g);
    }
    g.total += w;
    g.rows.set(s.stack, (g.rows.get(s.stack) ?? 0) + w);
  }

  const ordered = [...groups.values()].sort((a, b) => b.total - a.total || a.pid - b.pid || (a.processName < b.processName ? -1 : 1));
  const unit: SpeedscopeUnit = byCpu ? 'nanoseconds' : 'none';
  const profiles: SpeedscopeSampledProfile[] = ordered.map((g) => {
    const samples: number[][] = [];
    const weights: number[] = [];
    for (const [stackIndex, w] of g.rows) {
      const stack = profile.stacks[stackIndex] ?? [];
      const rootFirst: number[] = new Array<number>(stack.length);
      for (let i = 0; i < stack.length; i++) rootFirst[stack.length - 1 - i] = frameIndex[stack[i]!]!;
      samples.push(rootFirst);
      weights.push(w);
    }
    return {
      type: 'sampled',
      name: `${offCpu ? 'off-CPU: ' : ''}${g.processName || '[unknown]'} (pid ${g.pid})`,
      unit,
      startValue: 0,
      endValue: g.total,
      samples,
      weights,
    };
  });
  if (profiles.length === 0) {
    // speedscope refuses a file without profiles ("it's empty!"); an empty one still opens.
    profiles.push({ type: 'sampled', name: '(no samples)', unit, startValue: 0, endValue: 0, samples: [], weights: [] });
  }

  return {
    $schema: SPEEDSCOPE_SCHEMA_URL,
    shared: { frames },
    profiles,
    name: options.name ?? (offCpu ? 'ebpfprof off-CPU profile' : 'ebpfprof profile'),
    activeProfileIndex: 0,
    exporter: `ebpfprof ${options.exporterVersion ?? ebpfprofVersion()}`,
  };
}

/** speedscope JSON text. */
export function encodeSpeedscope(profile: Profile, options: SpeedscopeOptions = {}): string {
  return JSON.stringify(buildSpeedscope(profile, options));
}
