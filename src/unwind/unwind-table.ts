// SPDX-License-Identifier: Apache-2.0
/**
 * A binary's unwind table in the form the kernel walker searches: rows sorted by pc, each "from
 * this pc on, this rule applies", gaps between FDEs marked with NO_RULE (frame-pointer steps there),
 * identical neighbours merged. Two typed arrays; pcs are relative to `base` so they fit 32 bits.
 */
import { CfiSink } from './eh-frame';
import { NO_RULE } from './unwind-rule';

export interface UnwindTable {
  /** ELF virtual address the row pcs are relative to (the lowest covered address). */
  base: number;
  /** Row start addresses minus `base`, ascending. */
  pcs: Uint32Array;
  /** packRule() of each row. */
  rules: Uint32Array;
}

export interface UnwindTableStats {
  fdes: number;
  /** FDEs that overlap an earlier one (left out; linkers do not emit them, corrupt files do). */
  fdesOverlapping: number;
  rows: number;
}

/** Bytes one row takes in the kernel (struct unwind_row). */
export const ROW_BYTES = 8;

export class TableTooLargeError extends Error {
  constructor(
    readonly rows: number,
    readonly limit: number,
  ) {
    super(`unwind table of ${rows} rows exceeds the limit of ${limit}`);
    this.name = 'TableTooLargeError';
  }
}

/** Collects the rows of every FDE (a CfiSink), then sorts and merges them into an UnwindTable. */
export class UnwindTableBuilder implements CfiSink {
  private fdeStart = new Float64Array(1024);
  private fdeEnd = new Float64Array(1024);
  private fdeFirstRow = new Uint32Array(1024);
  private fdes = 0;
  private rowPc = new Float64Array(4096);
  private rowRule = new Uint32Array(4096);
  private rows = 0;

  constructor(private readonly maxRows: number) {}

  fde(start: number, end: number): void {
    if (this.fdes === this.fdeStart.length) {
      this.fdeStart = grow(this.fdeStart);
      this.fdeEnd = grow(this.fdeEnd);
      this.fdeFirstRow = grow(this.fdeFirstRow);
    }
    this.fdeStart[this.fdes] = start;
    this.fdeEnd[this.fdes] = end;
    this.fdeFirstRow[this.fdes] = this.rows;
    this.fdes++;
  }

  row(pc: number, rule: number): void {
    if (this.rows >= this.maxRows) throw new TableTooLargeError(this.rows + 1, this.maxRows);
    if (this.rows === this.rowPc.length) {
      this.rowPc = grow(this.rowPc);
      this.rowRule = grow(this.rowRule);
    }
    this.rowPc[this.rows] = pc;
    this.rowRule[this.rows] = rule;
    this.rows++;
  }

  abandon(): void {
    if (this.fdes === 0) return;
    this.fdes--;
    this.rows = this.fdeFirstRow[this.fdes]!;
  }

  build(): { table: UnwindTable; stats: UnwindTableStats } {
    const n = this.fdes;
    const order = new Uint32Array(n);
    for (let i = 0; i < n; i++) order[i] = i;
    const starts = this.fdeStart;
    order.sort((a, b) => starts[a]! - starts[b]!);
    // Upper bound: every row plus one gap marker per FDE.
    const outPc = new Float64Array(this.rows + n + 1);
    const outRule = new Uint32Array(this.rows + n + 1);
    let out = 0;
    let prevEnd = -1;
    let overlapping = 0;
    const push = (pc: number, rule: number): void => {
      if (out > 0 && outRule[out - 1] === rule) return;
      if (out > 0 && outPc[out - 1] === pc) {
        // Two rows at one pc (an FDE starting where a gap marker was put): the later one wins.
        outRule[out - 1] = rule;
        if (out > 1 && outRule[out - 2] === rule) out--;
        return;
      }
      outPc[out] = pc;
      outRule[out] = rule;
      out++;
    };
    for (let k = 0; k < n; k++) {
      const f = order[k]!;
      const start = starts[f]!;
      const end = this.fdeEnd[f]!;
      const first = this.fdeFirstRow[f]!;
      const last = f + 1 < n ? this.fdeFirstRow[f + 1]! : this.rows;
      if (end <= start || first === last) continue;
      if (start < prevEnd) {
        overlapping++;
        continue;
      }
      if (prevEnd >= 0 && start > prevEnd) push(prevEnd, NO_RULE);
      for (let r = first; r < last; r++) push(this.rowPc[r]!, this.rowRule[r]!);
      prevEnd = end;
    }
    if (prevEnd >= 0) push(prevEnd, NO_RULE);
    if (out > this.maxRows) throw new TableTooLargeError(out, this.maxRows);
    const base = out > 0 ? outPc[0]! : 0;
    const span = out > 0 ? outPc[out - 1]! - base : 0;
    if (span >= 2 ** 32) throw new TableTooLargeError(out, this.maxRows); // code over 4 GiB: not a real binary
    const pcs = new Uint32Array(out);
    for (let i = 0; i < out; i++) pcs[i] = outPc[i]! - base;
    return { table: { base, pcs, rules: outRule.slice(0, out) }, stats: { fdes: n, fdesOverlapping: overlapping, rows: out } };
  }
}

function grow<T extends Float64Array | Uint32Array>(a: T): T {
  const b = new (a.constructor as new (n: number) => T)(a.length * 2);
  b.set(a);
  return b;
}

/** The rule that applies at ELF address `vaddr`, or null when the table does not cover it. */
export function lookupRule(t: UnwindTable, vaddr: number): number | null {
  const rel = vaddr - t.base;
  if (rel < 0 || rel >= 2 ** 32 || t.pcs.length === 0) return null;
  let lo = 0;
  let hi = t.pcs.length;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if (t.pcs[mid]! <= rel) lo = mid + 1;
    else hi = mid;
  }
  return lo === 0 ? null : t.rules[lo - 1]!;
}

/** Rows as the kernel stores them (struct unwind_row), rows [from, to). */
export function encodeRows(t: UnwindTable, from: number, to: number, out: Buffer, outOffset = 0): void {
  for (let i = from; i < to; i++) {
    const at = outOffset + (i - from) * ROW_BYTES;
    out.writeUInt32LE(t.pcs[i]!, at);
    out.writeUInt32LE(t.rules[i]!, at + 4);
  }
}

export function tableBytes(t: UnwindTable): number {
  return t.pcs.length * ROW_BYTES;
}
