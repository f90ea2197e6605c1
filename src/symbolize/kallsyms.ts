// SPDX-License-Identifier: Apache-2.0
/**
 * /proc/kallsyms as a compact sorted table: addresses in a BigUint64Array (kernel addresses do not
 * fit a double), names in one string buffer, a module index per symbol. Only text symbols get names;
 * the other symbols are kept as boundaries so that an address past the end of a function's code
 * (data, another section) is not attributed to it.
 */

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

function isTextType(t: string): boolean {
  return t === 'T' || t === 't' || t === 'W' || t === 'w';
}

/** Parses the text of /proc/kallsyms: `ADDRESS TYPE NAME [MODULE]` lines. */
export function parseKallsyms(text: string): KernelSymbolsResult {
  const addrs: bigint[] = [];
  const text_: boolean[] = [];
  const nameParts: string[] = [];
  const mods: number[] = [];
  const moduleNames = [''];
  const moduleIds = new Map<string, number>([['', CORE_KERNEL]]);
  let skipped = 0;
  let nonZero = false;
  let lineStart = 0;
  while (lineStart < text.length) {
    let lineEnd = text.indexOf('\n', lineStart);
    if (lineEnd < 0) lineEnd = text.length;
    const line = text.slice(lineStart, lineEnd);
    lineStart = lineEnd + 1;
    if (line === '') continue;
    const sp1 = line.indexOf(' ');
    const sp2 = sp1 < 0 ? -1 : line.indexOf(' ', sp1 + 1);
    if (sp1 <= 0 || sp1 > 16 || sp2 !== sp1 + 2) {
      skipped++;
      continue;
    }
    const hex = line.slice(0, sp1);
    if (!/^[0-9a-fA-F]+$/.test(hex)) {
      skipped++;
      continue;
    }
    const type = line[sp1 + 1]!;
    let rest = line.slice(sp2 + 1);
    let module = '';
    const tab = rest.indexOf('\t');
    if (tab >= 0) {
      const m = rest.slice(tab + 1).trim();
      rest = rest.slice(0, tab);
      if (m.startsWith('[') && m.endsWith(']') && m.length > 2) module = m.slice(1, -1);
      else if (m !== '') {
        skipped++;
        continue;
      }
    }
    const name = rest.trim();
    if (name === '' || /\s/.test(name)) {
      skipped++;
      continue;
    }
    const address = BigInt('0x' + hex);
    if (address !== 0n) nonZero = true;
    let mid = moduleIds.get(module);
    if (mid === undefined) {
      if (moduleNames.length >= 0xffff) {
        skipped++;
        continue;
      }
      mid = moduleNames.length;
      moduleIds.set(module, mid);
      moduleNames.push(module);
    }
    addrs.push(address);
    text_.push(isTextType(type));
    nameParts.push(name);
    mods.push(mid);
  }
  const restricted = addrs.length > 0 && !nonZero;
  const n = restricted ? 0 : addrs.length;
  const order = Array.from({ length: n }, (_, i) => i).sort((x, y) => {
    const a = addrs[x]!;
    const b = addrs[y]!;
    if (a !== b) return a < b ? -1 : 1;
    // At one address a text symbol wins over a boundary, then kallsyms order (stable sort).
    return (text_[y] ? 1 : 0) - (text_[x] ? 1 : 0);
  });
  // One entry per address: the first text symbol at that address, or a boundary.
  const keep: number[] = [];
  for (const i of order) {
    if (keep.length > 0 && addrs[keep[keep.length - 1]!] === addrs[i]) continue;
    keep.push(i);
  }
  const addresses = new BigUint64Array(keep.length);
  const nameOffsets = new Uint32Array(keep.length);
  const moduleIndex = new Uint16Array(keep.length);
  const ranges = moduleNames.map(() => ({ start: -1n, end: 0n }));
  let bytes = 0;
  for (const i of keep) if (text_[i]) bytes += Buffer.byteLength(nameParts[i]!) + 1;
  const names = Buffer.alloc(bytes);
  let pos = 0;
  keep.forEach((i, k) => {
    addresses[k] = addrs[i]!;
    moduleIndex[k] = mods[i]!;
    if (!text_[i]) {
      nameOffsets[k] = NO_NAME;
      return;
    }
    nameOffsets[k] = pos;
    pos += names.write(nameParts[i]!, pos, 'utf8') + 1;
    const r = ranges[mods[i]!]!;
    if (r.start < 0n || addrs[i]! < r.start) r.start = addrs[i]!;
    if (addrs[i]! > r.end) r.end = addrs[i]!;
  });
  for (const r of ranges) if (r.start < 0n) r.start = 0n;
  return { table: new KernelSymbols(addresses, nameOffsets, names, moduleIndex, moduleNames, ranges), skipped, restricted };
}
