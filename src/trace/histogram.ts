// SPDX-License-Identifier: Apache-2.0
/**
 * Log2 histograms of durations in nanoseconds, as the BPF programs keep them (common.bpf.h):
 * slot k holds values in (2^(k-1), 2^k] ns, slot 0 holds [0, 1] ns, the last slot everything above.
 * Upper-inclusive slots are exactly OTLP explicit-bucket histograms with bounds 1, 2, 4, ... ns, so
 * export needs no re-bucketing (src/telemetry/otlp-metrics.ts).
 */

export interface Log2Histogram {
  /** Counts per slot. */
  slots: number[];
  count: number;
  /** Sum of the values, ns. */
  sum: number;
  /** Largest value, ns (0 when empty). */
  max: number;
}

export function emptyHistogram(slotCount: number): Log2Histogram {
  return { slots: new Array<number>(slotCount).fill(0), count: 0, sum: 0, max: 0 };
}

/** The slot of a value, as log2_slot() in common.bpf.h computes it. */
export function log2Slot(value: number, slotCount: number): number {
  if (!(value > 1)) return 0;
  // Below 2^32, integer arithmetic: v in (2^(k-1), 2^k] exactly when ceil(v) is (the bounds are
  // integers), and ceil(v) - 1 has k significant bits.
  if (value <= 4294967296) return Math.min(32 - Math.clz32(Math.ceil(value) - 1), slotCount - 1);
  const slot = Math.ceil(Math.log2(value));
  // Math.log2 of an exact power of two is exact; guard the float edge just above one.
  const fixed = 2 ** (slot - 1) >= value ? slot - 1 : slot;
  return Math.min(fixed, slotCount - 1);
}

/** Upper bound of slot k, ns (Infinity for the last slot). */
export function slotUpperBound(k: number, slotCount: number): number {
  return k >= slotCount - 1 ? Infinity : 2 ** k;
}

export function addValue(h: Log2Histogram, value: number): void {
  const v = Math.max(0, value);
  h.slots[log2Slot(v, h.slots.length)]! += 1;
  h.count += 1;
  h.sum += v;
  if (v > h.max) h.max = v;
}

/** Adds `from` into `into` (same slot count). */
export function mergeHistogram(into: Log2Histogram, from: Log2Histogram): void {
  for (let i = 0; i < into.slots.length && i < from.slots.length; i++) into.slots[i]! += from.slots[i]!;
  into.count += from.count;
  into.sum += from.sum;
  if (from.max > into.max) into.max = from.max;
}

export function cloneHistogram(h: Log2Histogram): Log2Histogram {
  return { slots: h.slots.slice(), count: h.count, sum: h.sum, max: h.max };
}

export function mean(h: Log2Histogram): number {
  return h.count === 0 ? 0 : h.sum / h.count;
}

/**
 * The upper bound of the slot holding quantile q (0..1): a value the true quantile does not exceed
 * (capped at the recorded max). Log2 slots make it exact to within a factor of two.
 */
export function quantileUpperBound(h: Log2Histogram, q: number): number {
  if (h.count === 0) return 0;
  const rank = Math.max(1, Math.ceil(q * h.count));
  let seen = 0;
  for (let k = 0; k < h.slots.length; k++) {
    seen += h.slots[k]!;
    if (seen >= rank) return Math.min(slotUpperBound(k, h.slots.length), h.max);
  }
  return h.max;
}

/** "1.5ms", "830ns", "2.0s". */
export function formatNs(ns: number): string {
  if (!Number.isFinite(ns)) return 'inf';
  if (ns < 1_000) return `${Math.round(ns)}ns`;
  if (ns < 1_000_000) return `${(ns / 1e3).toFixed(ns < 10_000 ? 1 : 0)}us`;
  if (ns < 1_000_000_000) return `${(ns / 1e6).toFixed(ns < 10_000_000 ? 1 : 0)}ms`;
  return `${(ns / 1e9).toFixed(1)}s`;
}

/**
 * Text rendering in the style of BCC's print_log2_hist: one line per non-empty range of slots,
 * `lo -> hi : count |****|`.
 */
export function renderHistogram(h: Log2Histogram, width = 40): string[] {
  let first = h.slots.findIndex((c) => c > 0);
  if (first < 0) return ['  (no values)'];
  let last = h.slots.length - 1;
  while (last > first && h.slots[last] === 0) last--;
  first = Math.max(0, first);
  const maxCount = Math.max(...h.slots.slice(first, last + 1));
  const lines: string[] = [];
  const rows = [];
  for (let k = first; k <= last; k++) {
    const lo = k === 0 ? 0 : 2 ** (k - 1);
    const hi = slotUpperBound(k, h.slots.length);
    rows.push({ range: `${formatNs(lo)} -> ${formatNs(hi)}`, count: h.slots[k]! });
  }
  const rangeWidth = Math.max(...rows.map((r) => r.range.length));
  const countWidth = Math.max(5, ...rows.map((r) => String(r.count).length));
  for (const r of rows) {
    const bar = '*'.repeat(maxCount === 0 ? 0 : Math.round((r.count / maxCount) * width));
    lines.push(`  ${r.range.padStart(rangeWidth)} : ${String(r.count).padStart(countWidth)} |${bar.padEnd(width)}|`);
  }
  return lines;
}
