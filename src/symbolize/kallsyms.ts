// SPDX-License-Identifier: Apache-2.0
/**
 * /proc/kallsyms as a compact sorted table: addresses in a BigUint64Array (kernel addresses do not
 * fit a double), names in one string buffer, a module index per symbol. Only text symbols get names;
 * the other symbols are kept as boundaries so that an address past the end of a function's code
 * (data, another section) is not attributed to it.
 */
import * as fs from 'node:fs';

export interface KernelSymbolsResult {
  table: KernelSymbols;
  /** Lines that could not be parsed. */
  skipped: number;
  /**
   * Every address read as zero: kptr_restrict (or missing CAP_SYSLOG) hides them, so nothing can be
   * resolved. Reported in stats rather than treated as an empty kernel.
   */
  restricted: boolean;
}

/** Module index of the core kernel. */
export const CORE_KERNEL = 0;

const NO_NAME = 0xffffffff;

export class KernelSymbols {
  constructor(
    private readonly addresses: BigUint64Array,
    /** Offset of the name in `names`, or NO_NAME for a boundary (non-text symbol). */
    private readonly nameOffsets: Uint32Array,
    private readonly names: Buffer,
    private readonly moduleIndex: Uint16Array,
    /** Module names; index 0 is the core kernel (''). */
    readonly modules: readonly string[],
    /** Per module: lowest and highest text symbol address. */
    private readonly moduleRanges: ReadonlyArray<{ start: bigint; end: bigint }>,
  ) {}

  get count(): number {
    return this.addresses.length;
  }

  get byteSize(): number {
    return this.addresses.byteLength + this.nameOffsets.byteLength + this.names.length + this.moduleIndex.byteLength;
  }

  /** Index of the text symbol containing `address`, or -1 (before the first symbol, or in a non-text gap). */
  lookup(address: bigint): number {
    const a = this.addresses;
    let lo = 0;
    let hi = a.length - 1;
    let found = -1;
    while (lo <= hi) {
      const mid = (lo + hi) >>> 1;
      if (a[mid]! <= address) {
        found = mid;
        lo = mid + 1;
      } else hi = mid - 1;
    }
    if (found < 0 || this.nameOffsets[found] === NO_NAME) return -1;
    // Past the last symbol of its module by more than any function is long: not this symbol.
    const range = this.moduleRanges[this.moduleIndex[found]!]!;
    if (address > range.end && address - range.end > MAX_LAST_SYMBOL_SIZE) return -1;
    return found;
  }

  name(i: number): string {
    const off = this.nameOffsets[i]!;
    return this.names.toString('utf8', off, this.names.indexOf(0, off));
  }

  address(i: number): bigint {
    return this.addresses[i]!;
  }

  /** '' for the core kernel, else the module name (without brackets). */
  module(i: number): string {
    return this.modules[this.moduleIndex[i]!]!;
  }

  moduleRange(i: number): { start: bigint; end: bigint } {
    return this.moduleRanges[this.moduleIndex[i]!]!;
  }
}

/** The last symbol of a module or of the kernel has no successor to bound it; assume at most this. */
const MAX_LAST_SYMBOL_SIZE = 1n << 20n;

function isTextType(t: number): boolean {
  return t === 0x54 /* T */ || t === 0x74 /* t */ || t === 0x57 /* W */ || t === 0x77 /* w */;
}

function hexDigit(c: number): number {
  if (c >= 0x30 && c <= 0x39) return c - 0x30;
  if (c >= 0x61 && c <= 0x66) return c - 0x57;
  if (c >= 0x41 && c <= 0x46) return c - 0x37;
  return -1;
}

function isSpace(c: number): boolean {
  return c === 0x20 || c === 0x09 || c === 0x0d || c === 0x0b || c === 0x0c;
}

/** Growable typed columns for the streaming parser. */
class Columns {
  hi = new Uint32Array(1 << 14);
  lo = new Uint32Array(1 << 14);
  nameAt = new Uint32Array(1 << 14);
  nameLen = new Uint16Array(1 << 14);
  text = new Uint8Array(1 << 14);
  mods = new Uint16Array(1 << 14);
  n = 0;

  push(h: number, l: number, at: number, len: number, text: boolean, mod: number): void {
    if (this.n === this.hi.length) {
      const grow = <T extends Uint32Array | Uint16Array | Uint8Array>(a: T): T => {
        const b = new (a.constructor as new (n: number) => T)(a.length * 2);
        b.set(a);
        return b;
      };
      this.hi = grow(this.hi);
      this.lo = grow(this.lo);
      this.nameAt = grow(this.nameAt);
      this.nameLen = grow(this.nameLen);
      this.text = grow(this.text);
      this.mods = grow(this.mods);
    }
    const i = this.n++;
    this.hi[i] = h;
    this.lo[i] = l;
    this.nameAt[i] = at;
    this.nameLen[i] = len;
    this.text[i] = text ? 1 : 0;
    this.mods[i] = mod;
  }
}

/** Longest name kept (KSYM_NAME_LEN is 512 on current kernels); longer lines are skipped. */
const MAX_NAME = 1024;

/**
 * Parses /proc/kallsyms (`ADDRESS TYPE NAME[\tMODULE]` lines) from its bytes, fed in chunks of any
 * size: ~120k lines become typed columns plus one buffer of text-symbol names, without a string or
 * BigInt per line and without holding the whole 10 MB file, so loading the kernel's symbols does not
 * balloon a profiler that must stay small.
 */
export class KallsymsParser {
  private readonly cols = new Columns();
  private names = Buffer.alloc(1 << 20);
  private namesUsed = 0;
  private carry: Buffer = Buffer.alloc(0);
  private readonly moduleNames = [''];
  private readonly moduleIds = new Map<string, number>([['', CORE_KERNEL]]);
  private skipped = 0;
  private nonZero = false;

  push(chunk: Buffer): void {
    const buf = this.carry.length > 0 ? Buffer.concat([this.carry, chunk]) : chunk;
    let pos = 0;
    for (let end = buf.indexOf(10, pos); end >= 0; end = buf.indexOf(10, pos)) {
      this.line(buf, pos, end);
      pos = end + 1;
    }
    this.carry = Buffer.from(buf.subarray(pos));
    if (this.carry.length > 64 * 1024) {
      // No line is this long: treat it as garbage rather than buffering without bound.
      this.skipped++;
      this.carry = Buffer.alloc(0);
    }
  }

  finish(): KernelSymbolsResult {
    if (this.carry.length > 0) this.line(this.carry, 0, this.carry.length);
    this.carry = Buffer.alloc(0);
    const { hi, lo, text, mods, nameAt, nameLen } = this.cols;
    const n = this.cols.n;
    const restricted = n > 0 && !this.nonZero;
    const count = restricted ? 0 : n;
    const order = new Uint32Array(count);
    for (let i = 0; i < count; i++) order[i] = i;
    // By address; at one address a text symbol wins over a boundary, then kallsyms order.
    order.sort((x, y) => hi[x]! - hi[y]! || lo[x]! - lo[y]! || text[y]! - text[x]! || x - y);
    // One entry per address: the first text symbol at that address, or a boundary.
    let kept = 0;
    for (let k = 0; k < count; k++) {
      const i = order[k]!;
      const last = kept > 0 ? order[kept - 1]! : -1;
      if (last >= 0 && hi[last] === hi[i] && lo[last] === lo[i]) continue;
      order[kept++] = i;
    }
    const addresses = new BigUint64Array(kept);
    const nameOffsets = new Uint32Array(kept);
    const moduleIndex = new Uint16Array(kept);
    const ranges = this.moduleNames.map(() => ({ start: -1n, end: 0n }));
    let bytes = 0;
    for (let k = 0; k < kept; k++) if (text[order[k]!]) bytes += nameLen[order[k]!]! + 1;
    const names = Buffer.alloc(bytes);
    let at = 0;
    for (let k = 0; k < kept; k++) {
      const i = order[k]!;
      const address = (BigInt(hi[i]!) << 32n) | BigInt(lo[i]!);
      addresses[k] = address;
      moduleIndex[k] = mods[i]!;
      if (!text[i]) {
        nameOffsets[k] = NO_NAME;
        continue;
      }
      nameOffsets[k] = at;
      at += this.names.copy(names, at, nameAt[i]!, nameAt[i]! + nameLen[i]!) + 1;
      const r = ranges[mods[i]!]!;
      if (r.start < 0n || address < r.start) r.start = address;
      if (address > r.end) r.end = address;
    }
    for (const r of ranges) if (r.start < 0n) r.start = 0n;
    return {
      table: new KernelSymbols(addresses, nameOffsets, names, moduleIndex, this.moduleNames, ranges),
      skipped: this.skipped,
      restricted,
    };
  }

  private line(buf: Buffer, start: number, end: number): void {
    if (end === start) return;
    // ADDRESS: 1..16 hex digits, then one space.
    let h = 0;
    let l = 0;
    let i = start;
    for (; i < end && i - start < 17; i++) {
      const d = hexDigit(buf[i]!);
      if (d < 0) break;
      h = ((h << 4) | (l >>> 28)) >>> 0;
      l = ((l << 4) | d) >>> 0;
    }
    const digits = i - start;
    // TYPE: one character between single spaces.
    if (digits === 0 || digits > 16 || i + 3 > end || buf[i] !== 0x20 || buf[i + 2] !== 0x20) {
      this.skipped++;
      return;
    }
    const type = buf[i + 1]!;
    // NAME: up to a tab (the module follows) or the end of the line; no whitespace inside.
    let nameStart = i + 3;
    let tab = nameStart;
    while (tab < end && buf[tab] !== 9) tab++;
    let nameEnd = tab;
    while (nameStart < nameEnd && isSpace(buf[nameStart]!)) nameStart++;
    while (nameEnd > nameStart && isSpace(buf[nameEnd - 1]!)) nameEnd--;
    let bad = nameEnd === nameStart || nameEnd - nameStart > MAX_NAME;
    for (let k = nameStart; k < nameEnd && !bad; k++) bad = isSpace(buf[k]!);
    let module = '';
    if (!bad && tab < end) {
      const m = buf.toString('utf8', tab + 1, end).trim();
      if (m.startsWith('[') && m.endsWith(']') && m.length > 2) module = m.slice(1, -1);
      else bad = m !== '';
    }
    if (bad) {
      this.skipped++;
      return;
    }
    let mid = this.moduleIds.get(module);
    if (mid === undefined) {
      if (this.moduleNames.length >= 0xffff) {
        this.skipped++;
        return;
      }
      mid = this.moduleNames.length;
      this.moduleIds.set(module, mid);
      this.moduleNames.push(module);
    }
    if (h !== 0 || l !== 0) this.nonZero = true;
    const text = isTextType(type);
    let at = 0;
    const len = nameEnd - nameStart;
    if (text) {
      // Only text symbols need their names; boundaries are kept by address alone.
      if (this.namesUsed + len > this.names.length) {
        const bigger = Buffer.alloc(Math.max(this.names.length * 2, this.namesUsed + len));
        this.names.copy(bigger, 0, 0, this.namesUsed);
        this.names = bigger;
      }
      at = this.namesUsed;
      this.namesUsed += buf.copy(this.names, at, nameStart, nameEnd);
    }
    this.cols.push(h, l, at, text ? len : 0, text, mid);
  }
}

/** Parses the whole text of /proc/kallsyms at once (fixtures, tests); readKallsyms streams the file. */
export function parseKallsyms(input: string | Buffer): KernelSymbolsResult {
  const parser = new KallsymsParser();
  parser.push(typeof input === 'string' ? Buffer.from(input, 'utf8') : input);
  return parser.finish();
}

/** Reads a kallsyms file in 256 KiB chunks into the streaming parser. Throws on I/O errors. */
export function readKallsyms(file: string): KernelSymbolsResult {
  const fd = fs.openSync(file, 'r');
  try {
    const parser = new KallsymsParser();
    const chunk = Buffer.alloc(256 * 1024);
    for (let n = fs.readSync(fd, chunk); n > 0; n = fs.readSync(fd, chunk)) parser.push(chunk.subarray(0, n));
    return parser.finish();
  } finally {
    fs.closeSync(fd);
  }
}
