// SPDX-License-Identifier: Apache-2.0
/**
 * ELF64 little-endian parsing: pure functions over Buffers holding the parts of a file that were read
 * (the file header, the program or section header table, one section). They never touch the file
 * system; elf-file.ts decides what to read. Every malformed input raises ElfFormatError.
 *
 * Addresses and offsets are returned as numbers: user-space ELF addresses and file sizes stay below
 * 2^53, and a value above that is treated as malformed rather than silently rounded.
 */
import { EbpfprofError } from '../errors';

/** Raised for bytes that are not a usable ELF64 little-endian file (code EINPUT). */
export class ElfFormatError extends EbpfprofError {
  constructor(message: string) {
    super('EINPUT', message);
    this.name = 'ElfFormatError';
  }
}

export const ELF_HEADER_SIZE = 64;
export const PROGRAM_HEADER_SIZE = 56;
export const SECTION_HEADER_SIZE = 64;
export const SYMBOL_SIZE = 24;

export const ET_EXEC = 2;
export const ET_DYN = 3;
export const PT_LOAD = 1;
export const PT_NOTE = 4;
export const PF_X = 1;
export const SHT_SYMTAB = 2;
export const SHT_NOTE = 7;
export const SHT_NOBITS = 8;
export const SHT_DYNSYM = 11;
export const SHF_EXECINSTR = 4;
export const STT_FUNC = 2;
export const STT_GNU_IFUNC = 10;
export const STB_LOCAL = 0;
export const STB_GLOBAL = 1;
export const STB_WEAK = 2;
export const NT_GNU_BUILD_ID = 3;
const SHN_XINDEX = 0xffff;
const PN_XNUM = 0xffff;

export interface ElfHeader {
  /** ET_EXEC for non-PIE executables, ET_DYN for PIE executables and shared libraries. */
  type: number;
  machine: number;
  entry: number;
  phoff: number;
  shoff: number;
  phentsize: number;
  /** May be PN_XNUM (0xffff): the real count is then in section 0 (see applyExtendedNumbering). */
  phnum: number;
  shentsize: number;
  /** 0 with shoff != 0 means the real count is in section 0. */
  shnum: number;
  shstrndx: number;
}

export interface ProgramHeader {
  type: number;
  flags: number;
  offset: number;
  vaddr: number;
  filesz: number;
  memsz: number;
}

export interface SectionHeader {
  /** Filled in by nameSections(); '' until then. */
  name: string;
  nameOffset: number;
  type: number;
  flags: number;
  addr: number;
  offset: number;
  size: number;
  link: number;
  info: number;
  entsize: number;
}

export interface ElfNote {
  name: string;
  type: number;
  desc: Buffer;
}

export interface DebugLink {
  fileName: string;
  crc: number;
}

function need(buf: Buffer, offset: number, length: number, what: string): void {
  if (offset < 0 || length < 0 || offset + length > buf.length) {
    throw new ElfFormatError(`truncated ELF data: ${what} needs bytes ${offset}..${offset + length} but only ${buf.length} are available`);
  }
}

/** Reads a u64 that must fit a JavaScript number (offsets, sizes, user-space addresses). */
export function readU64(buf: Buffer, offset: number, what: string): number {
  const v = buf.readBigUInt64LE(offset);
  if (v > BigInt(Number.MAX_SAFE_INTEGER)) {
    throw new ElfFormatError(`ELF ${what} 0x${v.toString(16)} is larger than 2^53: not a user-space ELF64 file this parser supports`);
  }
  return Number(v);
}

/** Parses the 64-byte file header; rejects anything but ELF64 little-endian. */
export function parseElfHeader(buf: Buffer): ElfHeader {
  if (buf.length < 4 || buf[0] !== 0x7f || buf[1] !== 0x45 || buf[2] !== 0x4c || buf[3] !== 0x46) {
    throw new ElfFormatError('not an ELF file (bad magic bytes)');
  }
  need(buf, 0, ELF_HEADER_SIZE, 'the ELF header');
  if (buf[4] !== 2) throw new ElfFormatError(`unsupported ELF class ${buf[4]}: only 64-bit ELF files are supported`);
  if (buf[5] !== 1) throw new ElfFormatError(`unsupported ELF data encoding ${buf[5]}: only little-endian ELF files are supported`);
  if (buf[6] !== 1) throw new ElfFormatError(`unsupported ELF version ${buf[6]}`);
  const h: ElfHeader = {
    type: buf.readUInt16LE(16),
    machine: buf.readUInt16LE(18),
    entry: readU64(buf, 24, 'entry point'),
    phoff: readU64(buf, 32, 'program header offset'),
    shoff: readU64(buf, 40, 'section header offset'),
    phentsize: buf.readUInt16LE(54),
    phnum: buf.readUInt16LE(56),
    shentsize: buf.readUInt16LE(58),
    shnum: buf.readUInt16LE(60),
    shstrndx: buf.readUInt16LE(62),
  };
  if (h.phnum > 0 && h.phentsize < PROGRAM_HEADER_SIZE) throw new ElfFormatError(`bad program header entry size ${h.phentsize}`);
  if (h.shoff !== 0 && h.shentsize < SECTION_HEADER_SIZE) throw new ElfFormatError(`bad section header entry size ${h.shentsize}`);
  return h;
}

/** Whether counts live in section 0 (more than 0xfeff sections, or 0xffff program headers). */
export function needsExtendedNumbering(h: ElfHeader): boolean {
  return h.shoff !== 0 && (h.shnum === 0 || h.shstrndx === SHN_XINDEX || h.phnum === PN_XNUM);
}

/** Applies ELF extended numbering given section header 0 (gABI: counts overflowing 16 bits). */
export function applyExtendedNumbering(h: ElfHeader, section0: SectionHeader): ElfHeader {
  return {
    ...h,
    shnum: h.shnum === 0 ? section0.size : h.shnum,
    shstrndx: h.shstrndx === SHN_XINDEX ? section0.link : h.shstrndx,
    phnum: h.phnum === PN_XNUM ? section0.info : h.phnum,
  };
}

export function parseProgramHeaders(buf: Buffer, count: number, entsize: number = PROGRAM_HEADER_SIZE): ProgramHeader[] {
  if (entsize < PROGRAM_HEADER_SIZE) throw new ElfFormatError(`bad program header entry size ${entsize}`);
  need(buf, 0, count * entsize, `${count} program headers`);
  const out: ProgramHeader[] = [];
  for (let i = 0; i < count; i++) {
    const o = i * entsize;
    out.push({
      type: buf.readUInt32LE(o),
      flags: buf.readUInt32LE(o + 4),
      offset: readU64(buf, o + 8, 'segment offset'),
      vaddr: readU64(buf, o + 16, 'segment address'),
      filesz: readU64(buf, o + 32, 'segment file size'),
      memsz: readU64(buf, o + 40, 'segment memory size'),
    });
  }
  return out;
}

export function parseSectionHeaders(buf: Buffer, count: number, entsize: number = SECTION_HEADER_SIZE): SectionHeader[] {
  if (entsize < SECTION_HEADER_SIZE) throw new ElfFormatError(`bad section header entry size ${entsize}`);
  need(buf, 0, count * entsize, `${count} section headers`);
  const out: SectionHeader[] = [];
  for (let i = 0; i < count; i++) {
    const o = i * entsize;
    out.push({
      name: '',
      nameOffset: buf.readUInt32LE(o),
      type: buf.readUInt32LE(o + 4),
      flags: readU64(buf, o + 8, 'section flags'),
      addr: readU64(buf, o + 16, 'section address'),
      offset: readU64(buf, o + 24, 'section offset'),
      size: readU64(buf, o + 32, 'section size'),
      link: buf.readUInt32LE(o + 40),
      info: buf.readUInt32LE(o + 44),
      entsize: readU64(buf, o + 56, 'section entry size'),
    });
  }
  return out;
}

/** A NUL-terminated string at `offset` (latin1 would mangle UTF-8 names, so utf8). */
export function readCString(buf: Buffer, offset: number): string {
  if (offset < 0 || offset >= buf.length) throw new ElfFormatError(`string offset ${offset} is outside a string table of ${buf.length} bytes`);
  const end = buf.indexOf(0, offset);
  if (end < 0) throw new ElfFormatError(`unterminated string at offset ${offset}`);
  return buf.toString('utf8', offset, end);
}

/** Fills in section names from the section-name string table (.shstrtab). */
export function nameSections(sections: SectionHeader[], shstrtab: Buffer): void {
  for (const s of sections) s.name = s.nameOffset < shstrtab.length ? readCString(shstrtab, s.nameOffset) : '';
}

/** Parses a note section or PT_NOTE segment (4-byte aligned entries; 8-byte aligned ones also occur). */
export function parseNotes(buf: Buffer, align: number = 4): ElfNote[] {
  const a = align === 8 ? 8 : 4;
  const pad = (n: number): number => (n + a - 1) & ~(a - 1);
  const out: ElfNote[] = [];
  let o = 0;
  while (o + 12 <= buf.length) {
    const namesz = buf.readUInt32LE(o);
    const descsz = buf.readUInt32LE(o + 4);
    const type = buf.readUInt32LE(o + 8);
    const nameStart = o + 12;
    const descStart = nameStart + pad(namesz);
    need(buf, descStart, descsz, 'a note descriptor');
    need(buf, nameStart, namesz, 'a note name');
    const nameEnd = namesz > 0 && buf[nameStart + namesz - 1] === 0 ? nameStart + namesz - 1 : nameStart + namesz;
    out.push({ name: buf.toString('latin1', nameStart, nameEnd), type, desc: buf.subarray(descStart, descStart + descsz) });
    o = descStart + pad(descsz);
  }
  return out;
}

/** The GNU build id as lowercase hex, '' when the notes carry none. */
export function findBuildId(notes: readonly ElfNote[]): string {
  for (const n of notes) {
    if (n.name === 'GNU' && n.type === NT_GNU_BUILD_ID && n.desc.length > 0 && n.desc.length <= 64) return n.desc.toString('hex');
  }
  return '';
}

/** Parses .gnu_debuglink: a file name, padding to 4 bytes, then the CRC32 of the debug file. */
export function parseDebugLink(buf: Buffer): DebugLink {
  const end = buf.indexOf(0);
  if (end <= 0) throw new ElfFormatError('.gnu_debuglink holds no file name');
  const crcOffset = (end + 4) & ~3;
  need(buf, crcOffset, 4, '.gnu_debuglink CRC');
  const fileName = buf.toString('utf8', 0, end);
  if (fileName.includes('/')) throw new ElfFormatError(`.gnu_debuglink name "${fileName}" contains a slash`);
  return { fileName, crc: buf.readUInt32LE(crcOffset) };
}

/**
 * Maps a file offset to the ELF virtual address through the PT_LOAD segment that contains it. This
 * is what makes PIE, shared libraries and ASLR work: runtime address - mapping start + mapping
 * offset = file offset, whatever the load bias was. Executable segments win when segments overlap
 * (a page shared by two segments). Returns null when no segment holds the offset.
 */
export function fileOffsetToVaddr(segments: readonly ProgramHeader[], fileOffset: number): number | null {
  let best: ProgramHeader | null = null;
  for (const p of segments) {
    if (p.type !== PT_LOAD) continue;
    if (fileOffset >= p.offset && fileOffset < p.offset + Math.max(p.filesz, 1)) {
      if (best === null || ((p.flags & PF_X) !== 0 && (best.flags & PF_X) === 0)) best = p;
    }
  }
  return best === null ? null : fileOffset - best.offset + best.vaddr;
}

/** Symbol callback of parseSymbols: one accepted function symbol, its name as bytes of `strtab`. */
export type SymbolSink = (address: number, size: number, strtab: Buffer, nameStart: number, nameEnd: number, binding: number) => void;

/**
 * Walks a .symtab/.dynsym section and reports defined STT_FUNC and STT_GNU_IFUNC symbols. Names
 * are handed over as byte ranges so the caller can copy them into a compact table without creating
 * a string per symbol. Returns the number of entries skipped as malformed.
 */
export function parseSymbols(symtab: Buffer, strtab: Buffer, sink: SymbolSink, entsize: number = SYMBOL_SIZE): number {
  if (entsize < SYMBOL_SIZE) throw new ElfFormatError(`bad symbol entry size ${entsize}`);
  const count = Math.floor(symtab.length / entsize);
  let skipped = 0;
  for (let i = 1; i < count; i++) {
    const o = i * entsize;
    const info = symtab[o + 4]!;
    const type = info & 0xf;
    if (type !== STT_FUNC && type !== STT_GNU_IFUNC) continue;
    const shndx = symtab.readUInt16LE(o + 6);
    if (shndx === 0) continue; // undefined: an import, not code of this file
    const nameOff = symtab.readUInt32LE(o);
    const value = symtab.readBigUInt64LE(o + 8);
    const size = symtab.readBigUInt64LE(o + 16);
    if (nameOff === 0 || nameOff >= strtab.length || value > 0xffffffffffffn || size > 0xffffffffn) {
      skipped++;
      continue;
    }
    const nameEnd = strtab.indexOf(0, nameOff);
    if (nameEnd < 0 || nameEnd === nameOff) {
      skipped++;
      continue;
    }
    sink(Number(value), Number(size), strtab, nameOff, nameEnd, info >> 4);
  }
  return skipped;
}
