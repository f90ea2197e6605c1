// SPDX-License-Identifier: Apache-2.0
/**
 * Go function table (.gopclntab, Go 1.18 and later): the runtime's own list of function entries and
 * names. Stripped Go binaries (-ldflags=-s) drop .symtab but must keep this table for tracebacks,
 * so it names their functions. Entries and names are read here; the stack-pointer deltas (pcsp) that
 * unwind Go frames are read by src/unwind/go-stack-deltas.ts through the same header and functab.
 */
import { ElfFormatError, readU64 } from './elf';
import { SymbolTableBuilder } from './symbol-table';

const MAGIC_GO118 = 0xfffffff0;
const MAGIC_GO120 = 0xfffffff1;

/** The parts of a pclntab header (runtime.pcHeader) its readers use; offsets from the table's start. */
export interface PclntabHeader {
  nfunc: number;
  funcnameOffset: number;
  /** pcvalue tables (pcsp, pcfile, pcln) of every function. */
  pctabOffset: number;
  /** functab: nfunc (entryoff u32, funcoff u32) pairs, then the end offset of the last function. */
  pclnOffset: number;
  /** Instruction size quantum (1 on x86-64): pc deltas of pcvalue tables are in these units. */
  quantum: number;
}

export function readPclntabHeader(buf: Buffer): PclntabHeader {
  if (buf.length < 8) throw new ElfFormatError('.gopclntab is too short for its header');
  const magic = buf.readUInt32LE(0);
  if (magic !== MAGIC_GO118 && magic !== MAGIC_GO120) {
    throw new ElfFormatError(`.gopclntab magic 0x${magic.toString(16)} is not Go 1.18+ (older Go versions are not supported)`);
  }
  const ptrSize = buf[7]!;
  if (ptrSize !== 8) throw new ElfFormatError(`.gopclntab pointer size ${ptrSize}: only 64-bit Go binaries are supported`);
  if (buf.length < 8 + 8 * 8) throw new ElfFormatError('.gopclntab is too short for its header');
  const h: PclntabHeader = {
    nfunc: readU64(buf, 8, 'pclntab function count'),
    funcnameOffset: readU64(buf, 8 + 3 * 8, 'pclntab funcname offset'),
    pctabOffset: readU64(buf, 8 + 6 * 8, 'pclntab pctab offset'),
    pclnOffset: readU64(buf, 8 + 7 * 8, 'pclntab functab offset'),
    quantum: buf[6]! || 1,
  };
  if (h.pclnOffset + (h.nfunc * 2 + 1) * 4 > buf.length) throw new ElfFormatError(`.gopclntab function table (${h.nfunc} functions) exceeds the section`);
  return h;
}

/** One function of the functab: [entry, end) as offsets from the text start; `funcAt` is its _func record. */
export interface PclntabFunc {
  entryOff: number;
  endOff: number;
  funcAt: number;
}

/** Calls `each` for every function whose _func record lies inside the table. */
export function forEachPclntabFunc(buf: Buffer, h: PclntabHeader, each: (f: PclntabFunc) => void): void {
  for (let i = 0; i < h.nfunc; i++) {
    const entryOff = buf.readUInt32LE(h.pclnOffset + i * 8);
    const funcOff = buf.readUInt32LE(h.pclnOffset + i * 8 + 4);
    const endOff = buf.readUInt32LE(h.pclnOffset + (i + 1) * 8);
    const funcAt = h.pclnOffset + funcOff;
    if (funcAt + 8 > buf.length) continue;
    each({ entryOff, endOff, funcAt });
  }
}

/** The function name of a _func record as [start, end) in `buf`, or null when out of bounds. */
export function pclntabFuncName(buf: Buffer, h: PclntabHeader, funcAt: number): [number, number] | null {
  const nameOff = buf.readInt32LE(funcAt + 4);
  const nameStart = h.funcnameOffset + nameOff;
  if (nameOff < 0 || nameStart >= buf.length) return null;
  const nameEnd = buf.indexOf(0, nameStart);
  return nameEnd <= nameStart ? null : [nameStart, nameEnd];
}

/**
 * Adds every function of a pclntab to `builder`. `textStart` is the address of runtime.text (for
 * internally linked binaries the start of .text): since Go 1.18 entries are offsets from it and the
 * header no longer stores it. Returns the number of functions added.
 */
export function parseGoPclntab(buf: Buffer, textStart: number, builder: SymbolTableBuilder): number {
  const h = readPclntabHeader(buf);
  let added = 0;
  forEachPclntabFunc(buf, h, (f) => {
    const name = pclntabFuncName(buf, h, f.funcAt);
    if (name === null) return;
    builder.addBytes(textStart + f.entryOff, f.endOff > f.entryOff ? f.endOff - f.entryOff : 0, buf, name[0], name[1], 1);
    added++;
  });
  return added;
}
