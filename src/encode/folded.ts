// SPDX-License-Identifier: Apache-2.0
/**
 * Profile → Brendan Gregg's folded stacks, the input of flamegraph.pl, inferno and speedscope:
 *
 *     process_name;root;...;leaf COUNT
 *
 * One line per distinct (process, stack), root first, the process name as the first frame so the
 * flame graph splits per process (as perf's stackcollapse-perf.pl does with the comm). Lines are
 * sorted so the output is deterministic (golden files, diffs); rows with weight 0 are left out.
 *
 * The format has no escaping, so two characters cannot appear in a frame: `;` (the frame separator)
 * is written as `:` and line breaks (\n, \r) as a space. Empty names are written as `[unknown]`.
 * Spaces are kept: readers take the count after the last space.
 */
import type { Frame, Profile } from '../profile/model';

export interface FoldedOptions {
  /** First frame `name-pid/tid` (stackcollapse-perf --tid style) instead of `name`; default false. */
  pidTid?: boolean;
  /**
   * Line weight: sample count or time in nanoseconds. Default: the count, except for an off-CPU
   * profile (meta.timeKind 'off-cpu'), whose default weight is the blocked time in nanoseconds.
   */
  weight?: 'samples' | 'cpu-ns';
  /**
   * Suffix kernel frames with `_[k]` and JIT frames with `_[j]`, as stackcollapse-perf --all does
   * (flamegraph.pl --color=java colors them); default false. decode/folded.ts strips them again.
   */
  annotateKinds?: boolean;
}

/** What replaces characters the folded format cannot carry inside a frame name. */
export const FOLDED_SUBSTITUTES: Readonly<Record<string, string>> = { ';': ':', '\n': ' ', '\r': ' ' };

/** Name placed where a frame or process has an empty name. */
export const FOLDED_UNKNOWN = '[unknown]';

/** A frame or process name made safe for one folded frame (see FOLDED_SUBSTITUTES). */
export function foldedName(name: string): string {
  if (name === '') return FOLDED_UNKNOWN;
  return name.replace(/[;\n\r]/g, (c) => FOLDED_SUBSTITUTES[c] ?? ' ');
}

function frameText(f: Frame, annotate: boolean): string {
  const name = foldedName(f.name);
  if (!annotate) return name;
  if (f.kind === 'kernel') return `${name}_[k]`;
  if (f.kind === 'jit') return `${name}_[j]`;
  return name;
}

/** Folded stacks text, one `stack weight` line per distinct stack, newline-terminated. */
export function encodeFolded(profile: Profile, options: FoldedOptions = {}): string {
  const annotate = options.annotateKinds === true;
  const byCpu = options.weight === 'cpu-ns' || (options.weight === undefined && profile.meta.timeKind === 'off-cpu');
  const frameTexts = profile.frames.map((f) => frameText(f, annotate));
  // Stacks are shared between rows: render each root-first frame path once.
  const stackTexts = new Map<number, string>();
  const weights = new Map<string, number>();

  for (const s of profile.samples) {
    const w = Math.round(byCpu ? s.cpuNs : s.count);
    if (!(w > 0)) continue;
    let path = stackTexts.get(s.stack);
    if (path === undefined) {
      const stack = profile.stacks[s.stack] ?? [];
      const parts: string[] = [];
      for (let i = stack.length - 1; i >= 0; i--) parts.push(frameTexts[stack[i]!] ?? FOLDED_UNKNOWN);
      path = parts.join(';');
      stackTexts.set(s.stack, path);
    }
    let head = foldedName(s.processName);
    if (options.pidTid) head += `-${s.pid}/${s.tid}`;
    const key = path === '' ? head : `${head};${path}`;
    weights.set(key, (weights.get(key) ?? 0) + w);
  }

  const keys = [...weights.keys()].sort();
  let out = '';
  for (const k of keys) out += `${k} ${weights.get(k)!}\n`;
  return out;
}
