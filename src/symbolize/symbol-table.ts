// SPDX-License-Identifier: Apache-2.0
/**
 * Compact, sorted function-symbol table: typed arrays of start/end addresses and name offsets into
 * one byte buffer, binary-searched. A large binary has 10^5..10^6 symbols; one object per symbol
 * would cost ten times the memory and the GC time.
 */

/** Binding preference when several symbols share an address: a global name beats a local alias. */
function bindingRank(binding: number): number {
  return binding === 1 ? 3 : binding === 2 ? 2 : binding === 0 ? 1 : 0;
}

/** A half-open [start, end) range of executable addresses, e.g. an SHF_EXECINSTR section. */
export interface AddressRange {
  start: number;
  end: number;
}

export class SymbolTableBuilder {
  private addr = new Float64Array(1024);
  private size = new Float64Array(1024);
  private rank = new Uint8Array(1024);
  private nameOff = new Uint32Array(1024);
  private nameLen = new Uint32Array(1024);
  private names = Buffer.allocUnsafe(16384);
  private namesUsed = 0;
  private n = 0;

  get count(): number {
    return this.n;
  }

  /** Adds a symbol whose name is `bytes[start..end)` (copied; the source buffer may be dropped). */
  addBytes(address: number, size: number, bytes: Buffer, start: number, end: number, binding: number = 1): void {
    const len = end - start;
    this.reserveNames(len);
    bytes.copy(this.names, this.namesUsed, start, end);
    this.push(address, size, this.namesUsed, len, binding);
    this.namesUsed += len;
  }

  add(address: number, size: number, name: string, binding: number = 1): void {
    const len = Buffer.byteLength(name);
    this.reserveNames(len);
    this.names.write(name, this.namesUsed, 'utf8');
    this.push(address, size, this.namesUsed, len, binding);
    this.namesUsed += len;
  }

  private reserveNames(len: number): void {
    if (this.namesUsed + len <= this.names.length) return;
    const next = Buffer.allocUnsafe(Math.max(this.names.length * 2, this.namesUsed + len));
    this.names.copy(next, 0, 0, this.namesUsed);
    this.names = next;
  }

  private push(address: number, size: number, off: number, len: number, binding: number): void {
    if (this.n === this.addr.length) {
      const cap = this.n * 2;
      this.addr = grow(this.addr, new Float64Array(cap));
      this.size = grow(this.size, new Float64Array(cap));
      this.rank = grow(this.rank, new Uint8Array(cap));
      this.nameOff = grow(this.nameOff, new Uint32Array(cap));
      this.nameLen = grow(this.nameLen, new Uint32Array(cap));
    }
    const i = this.n++;
    this.addr[i] = address;
    this.size[i] = size;
    this.rank[i] = bindingRank(binding);
    this.nameOff[i] = off;
    this.nameLen[i] = len;
  }

  /**
   * Sorts, keeps one symbol per address (sized beats zero-size, then global beats weak beats local,
   * then the shorter name), and gives zero-size symbols (hand-written assembly, some linker stubs)
   * an end: the next symbol's start, but never past the end of the executable range holding them,
   * so an address in padding after the last function does not get that function's name.
   */
  build(execRanges: readonly AddressRange[] = []): SymbolTable {
    const n = this.n;
    const order = new Uint32Array(n);
    for (let i = 0; i < n; i++) order[i] = i;
    const a = this.addr;
    const s = this.size;
    const r = this.rank;
    const l = this.nameLen;
    const sorted = Array.from(order).sort((x, y) => {
      const d = a[x]! - a[y]!;
      if (d !== 0) return d;
      const sx = s[x]! > 0 ? 1 : 0;
      const sy = s[y]! > 0 ? 1 : 0;
      if (sx !== sy) return sy - sx;
      if (r[x] !== r[y]) return r[y]! - r[x]!;
      if (l[x] !== l[y]) return l[x]! - l[y]!;
      return this.compareNames(x, y);
    });
    // Dedupe by address; the first of each run is the preferred one.
    const keep: number[] = [];
    for (let k = 0; k < sorted.length; k++) {
      const i = sorted[k]!;
      if (keep.length > 0 && a[keep[keep.length - 1]!] === a[i]) continue;
      keep.push(i);
    }
    const m = keep.length;
    const starts = new Float64Array(m);
    const ends = new Float64Array(m);
    const offs = new Uint32Array(m + 1);
    let bytes = 0;
    for (let k = 0; k < m; k++) bytes += l[keep[k]!]! + 1;
    const names = Buffer.alloc(bytes);
    let pos = 0;
    const ranges = [...execRanges].sort((x, y) => x.start - y.start);
    for (let k = 0; k < m; k++) {
      const i = keep[k]!;
      starts[k] = a[i]!;
      offs[k] = pos;
      this.names.copy(names, pos, this.nameOff[i]!, this.nameOff[i]! + l[i]!);
      pos += l[i]! + 1; // NUL separator keeps the buffer readable in a debugger
    }
    offs[m] = pos;
    for (let k = 0; k < m; k++) {
      const i = keep[k]!;
      if (s[i]! > 0) {
        ends[k] = a[i]! + s[i]!;
        continue;
      }
      let end = k + 1 < m ? starts[k + 1]! : Number.MAX_SAFE_INTEGER;
      const range = rangeOf(ranges, a[i]!);
      if (range !== null) end = Math.min(end, range.end);
      else if (ranges.length > 0) end = a[i]! + 1; // outside all code: only its exact address
      ends[k] = end;
    }
    return new SymbolTable(starts, ends, offs, names);
  }

  private compareNames(x: number, y: number): number {
    // Buffer#compare(target, tStart, tEnd, sStart, sEnd) orders source (x) against target (y).
    return this.names.compare(this.names, this.nameOff[y], this.nameOff[y]! + this.nameLen[y]!, this.nameOff[x], this.nameOff[x]! + this.nameLen[x]!);
  }
}

function grow<T extends Float64Array | Uint32Array | Uint8Array>(from: T, to: T): T {
  to.set(from);
  return to;
}

function rangeOf(sorted: readonly AddressRange[], address: number): AddressRange | null {
  let lo = 0;
  let hi = sorted.length - 1;
  while (lo <= hi) {
    const mid = (lo + hi) >> 1;
    const rg = sorted[mid]!;
    if (address < rg.start) hi = mid - 1;
    else if (address >= rg.end) lo = mid + 1;
    else return rg;
  }
  return null;
}

/** How far back lookup() walks to find an enclosing symbol when the nearest one does not cover. */
const MAX_ENCLOSING_SCAN = 16;

export class SymbolTable {
  constructor(
    private readonly starts: Float64Array,
    private readonly ends: Float64Array,
    /** count+1 offsets: name i is names[offs[i] .. offs[i+1]-1). */
    private readonly offs: Uint32Array,
    private readonly names: Buffer,
  ) {}

  get count(): number {
    return this.starts.length;
  }

  /** Memory held by the table, for cache accounting. */
  get byteSize(): number {
    return this.starts.byteLength + this.ends.byteLength + this.offs.byteLength + this.names.length + 128;
  }

  /** Index of the symbol covering `address`, or -1. */
  lookup(address: number): number {
    const st = this.starts;
    let lo = 0;
    let hi = st.length - 1;
    let found = -1;
    while (lo <= hi) {
      const mid = (lo + hi) >>> 1;
      if (st[mid]! <= address) {
        found = mid;
        lo = mid + 1;
      } else hi = mid - 1;
    }
    // A symbol may be nested inside a larger one (local labels with sizes inside a function).
    for (let i = found, k = 0; i >= 0 && k < MAX_ENCLOSING_SCAN; i--, k++) {
      if (address < this.ends[i]!) return i;
    }
    return -1;
  }

  name(index: number): string {
    return this.names.toString('utf8', this.offs[index]!, this.offs[index + 1]! - 1);
  }

  start(index: number): number {
    return this.starts[index]!;
  }

  end(index: number): number {
    return this.ends[index]!;
  }
}
