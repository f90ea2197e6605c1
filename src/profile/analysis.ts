// SPDX-License-Identifier: Apache-2.0
/** Reading profiles: stacks as root-first names, self (leaf) shares, filters. Used by tests and benchmarks. */
import type { Frame, Profile, Sample } from './model';

export function framesOf(p: Profile, s: Sample): Frame[] {
  return p.stacks[s.stack]!.map((id) => p.frames[id]!).reverse();
}

/** Function names root first (main ... leaf). */
export function namesOf(p: Profile, s: Sample): string[] {
  return framesOf(p, s).map((f) => f.name);
}

export function samplesOf(p: Profile, pid: number): Sample[] {
  return p.samples.filter((s) => s.pid === pid);
}

export function count(samples: Sample[]): number {
  return samples.reduce((n, s) => n + s.count, 0);
}

/** A sample's weight: its count, or its CPU time for profiles that carry only time (speedscope). */
function weigher(samples: Sample[]): (s: Sample) => number {
  return count(samples) > 0 ? (s) => s.count : (s) => s.cpuNs;
}

/** Percent of samples (by count, else CPU time) whose leaf frame is each name. */
export function leafShares(p: Profile, samples: Sample[]): Map<string, number> {
  const weight = weigher(samples);
  const total = samples.reduce((n, s) => n + weight(s), 0);
  const out = new Map<string, number>();
  for (const s of samples) {
    const leaf = p.frames[p.stacks[s.stack]![0]!]!.name;
    out.set(leaf, (out.get(leaf) ?? 0) + (100 * weight(s)) / total);
  }
  return out;
}

/** Percent of samples (by count) whose stack contains `names` as consecutive frames, root-first order. */
export function shareWithChain(p: Profile, samples: Sample[], names: string[]): number {
  const total = count(samples);
  let hit = 0;
  for (const s of samples) {
    const stack = namesOf(p, s);
    for (let i = 0; i + names.length <= stack.length; i++) {
      if (names.every((n, j) => stack[i + j] === n)) {
        hit += s.count;
        break;
      }
    }
  }
  return total === 0 ? 0 : (100 * hit) / total;
}

/** Percent of samples with a frame matching `pred`. */
export function shareWith(p: Profile, samples: Sample[], pred: (f: Frame, i: number, all: Frame[]) => boolean): number {
  const total = count(samples);
  const hit = samples.filter((s) => framesOf(p, s).some(pred)).reduce((n, s) => n + s.count, 0);
  return total === 0 ? 0 : (100 * hit) / total;
}
