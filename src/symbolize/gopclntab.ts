// SPDX-License-Identifier: Apache-2.0
/**
 * Go function table (.gopclntab, Go 1.18 and later): the runtime's own list of function entries and
 * names. Stripped Go binaries (-ldflags=-s) drop .symtab but must keep this table for tracebacks,
 * so it names their functions. Only entries and names are read here; line tables are later work.
 */
import { ElfFormatError, readU64 } from './elf';
import { SymbolTableBuilder } from './symbol-table';

const MAGIC_GO118 = 0xfffffff0;
const MAGIC_GO120 = 0xfffffff1;

/**
 * Adds every function of a pclntab to `builder`. `textStart` is the address of runtime.text (for
 * internally linked binaries the start of .text): since Go 1.18 entries are offsets from it and the
 * header no longer stores it. Returns the number of functions added.
 */
export function parseGoPclntab(buf: Buffer, textStart: number, builder: SymbolTableBuilder): number {
  if (buf.length < 8) throw new ElfFormatError('.gopclntab is too short for its header');
  const magic = buf.readUInt32LE(0);
  if (magic !== MAGIC_GO118 && magic !== MAGIC_GO120) {
    throw new ElfFormatError(`.gopclntab magic 0x${magic.toString(16)} is not Go 1.18+ (older Go versions are not supported)`);
  }
  const ptrSize = buf[7]!;
  if (ptrSize !== 8) throw new ElfFormatError(`.gopclntab pointer size ${ptrSize}: only 64-bit Go binaries are supported`);
  if (buf.length < 8 + 8 * 8) throw new ElfFormatError('.gopclntab is too short for its header');
  const nfunc = readU64(buf, 8, 'pclntab function count');
  const funcnameOffset = readU64(buf, 8 + 3 * 8, 'pclntab funcname offset');
  const pclnOffset = readU64(buf, 8 + 7 * 8, 'pclntab functab offset');
  // functab: nfunc (entryoff u32, funcoff u32) pairs, then the end offset of the last function.
  if (pclnOffset + (nfunc * 2 + 1) * 4 > buf.length) throw new ElfFormatError(`.gopclntab function table (${nfunc} functions) exceeds the section`);
  let added = 0;
  for (let i = 0; i < nfunc; i++) {
    const entryOff = buf.readUInt32LE(pclnOffset + i * 8);
    const funcOff = buf.readUInt32LE(pclnOffset + i * 8 + 4);
    const nextEntry = buf.readUInt32LE(pclnOffset + (i + 1) * 8);
    const funcAt = pclnOffset + funcOff;
    if (funcAt + 8 > buf.length) continue;
    const nameOff = buf.readInt32LE(funcAt + 4);
    const nameStart = funcnameOffset + nameOff;
    if (nameOff < 0 || nameStart >= buf.length) continue;
    const nameEnd = buf.indexOf(0, nameStart);
    if (nameEnd <= nameStart) continue;
    const size = nextEntry > entryOff ? nextEntry - entryOff : 0;
    builder.addBytes(textStart + entryOff, size, buf, nameStart, nameEnd, 1);
    added++;
  }
  return added;
}
