// SPDX-License-Identifier: Apache-2.0
/**
 * Reads the parts of an ELF file that symbolization needs — headers, notes, .gnu_debuglink, symbol
 * and string tables — through positional reads on a file descriptor, and hands the bytes to the pure
 * parsers in elf.ts. A 100 MB binary costs a few reads of its tables, never a whole-file read.
 */
import * as fs from 'node:fs';
import {
  ELF_HEADER_SIZE,
  ElfFormatError,
  ElfHeader,
  PT_LOAD,
  PT_NOTE,
  ProgramHeader,
  SECTION_HEADER_SIZE,
  SHF_EXECINSTR,
  SHT_DYNSYM,
  SHT_NOBITS,
  SHT_NOTE,
  SHT_SYMTAB,
  SectionHeader,
  applyExtendedNumbering,
  findBuildId,
  nameSections,
  needsExtendedNumbering,
  parseDebugLink,
  parseElfHeader,
  parseNotes,
  parseProgramHeaders,
  parseSectionHeaders,
  parseSymbols,
  DebugLink,
  ElfNote,
} from './elf';
import { parseGoPclntab } from './gopclntab';
import { AddressRange, SymbolTable, SymbolTableBuilder } from './symbol-table';

/** Random-access bytes: a file descriptor, or a buffer (the vdso image). */
export interface ByteSource {
  readonly size: number;
  /** Bytes [offset, offset+length); fewer only at the end of the source. */
  read(offset: number, length: number): Buffer;
  /** Total bytes handed out, so tests and stats can prove large files are read in part. */
  readonly bytesRead: number;
}

export class BufferSource implements ByteSource {
  bytesRead = 0;
  constructor(private readonly buf: Buffer) {}
  get size(): number {
    return this.buf.length;
  }
  read(offset: number, length: number): Buffer {
    const start = Math.min(Math.max(0, offset), this.buf.length);
    const out = this.buf.subarray(start, Math.min(this.buf.length, start + Math.max(0, length)));
    this.bytesRead += out.length;
    return out;
  }
}

/** Reads through a file descriptor it does not own (the caller closes it). */
export class FdSource implements ByteSource {
  bytesRead = 0;
  constructor(
    readonly fd: number,
    readonly size: number,
  ) {}
  read(offset: number, length: number): Buffer {
    const len = Math.max(0, Math.min(length, this.size - offset));
    const buf = Buffer.allocUnsafe(len);
    let done = 0;
    while (done < len) {
      const n = fs.readSync(this.fd, buf, done, len - done, offset + done);
      if (n === 0) break; // the file shrank under us; the parsers report the truncation
      done += n;
    }
    this.bytesRead += done;
    return done === len ? buf : buf.subarray(0, done);
  }
}

export interface ElfFileLimits {
  /** Refuse sections larger than this (a corrupt size field must not allocate gigabytes). */
  maxSectionBytes: number;
}

const DEFAULT_LIMITS: ElfFileLimits = { maxSectionBytes: 512 * 1024 * 1024 };
const MAX_NOTE_BYTES = 64 * 1024;

/** What the Symbolizer keeps about a binary without its symbols: a few hundred bytes. */
export interface ElfSummary {
  type: number;
  buildId: string;
  segments: ProgramHeader[];
  /** Executable sections' address ranges, to bound zero-size symbols. */
  execRanges: AddressRange[];
  hasSymtab: boolean;
  hasDynsym: boolean;
  /** .gopclntab or .go.buildinfo present. */
  isGo: boolean;
  debugLink: DebugLink | null;
}

/** An ELF file being read; cheap to construct (reads 64 bytes), sections loaded on demand. */
export class ElfFile {
  readonly header: ElfHeader;
  private sectionCache: SectionHeader[] | null = null;
  private segmentCache: ProgramHeader[] | null = null;

  constructor(
    readonly source: ByteSource,
    private readonly limits: ElfFileLimits = DEFAULT_LIMITS,
  ) {
    this.header = parseElfHeader(source.read(0, ELF_HEADER_SIZE));
    if (needsExtendedNumbering(this.header)) {
      const s0 = parseSectionHeaders(this.readExact(this.header.shoff, SECTION_HEADER_SIZE, 'section header 0'), 1)[0]!;
      this.header = applyExtendedNumbering(this.header, s0);
    }
  }

  private readExact(offset: number, length: number, what: string): Buffer {
    if (length > this.limits.maxSectionBytes) throw new ElfFormatError(`${what} is ${length} bytes, more than the ${this.limits.maxSectionBytes}-byte limit`);
    if (offset + length > this.source.size) {
      throw new ElfFormatError(`${what} at bytes ${offset}..${offset + length} lies beyond the end of the ${this.source.size}-byte file (truncated?)`);
    }
    const b = this.source.read(offset, length);
    if (b.length !== length) throw new ElfFormatError(`short read of ${what}: ${b.length} of ${length} bytes`);
    return b;
  }

  get segments(): ProgramHeader[] {
    if (this.segmentCache === null) {
      const h = this.header;
      this.segmentCache = h.phnum === 0 ? [] : parseProgramHeaders(this.readExact(h.phoff, h.phnum * h.phentsize, 'the program header table'), h.phnum, h.phentsize);
    }
    return this.segmentCache;
  }

  /** Section headers with names; [] for files without a section table (some stripped or packed files). */
  get sections(): SectionHeader[] {
    if (this.sectionCache === null) {
      const h = this.header;
      if (h.shoff === 0 || h.shnum === 0) {
        this.sectionCache = [];
      } else {
        const secs = parseSectionHeaders(this.readExact(h.shoff, h.shnum * h.shentsize, 'the section header table'), h.shnum, h.shentsize);
        const strSec = secs[h.shstrndx];
        if (strSec === undefined) throw new ElfFormatError(`section-name table index ${h.shstrndx} is outside the ${h.shnum} sections`);
        nameSections(secs, this.sectionData(strSec, '.shstrtab'));
        this.sectionCache = secs;
      }
    }
    return this.sectionCache;
  }

  section(name: string): SectionHeader | null {
    return this.sections.find((s) => s.name === name) ?? null;
  }

  sectionData(s: SectionHeader, what: string = s.name || 'a section'): Buffer {
    if (s.type === SHT_NOBITS) return Buffer.alloc(0);
    return this.readExact(s.offset, s.size, what);
  }

  /**
   * Notes from SHT_NOTE sections, else PT_NOTE segments. Sections first: objcopy --only-keep-debug
   * keeps the note sections but leaves program headers that point at bytes it did not copy.
   */
  notes(): ElfNote[] {
    const out: ElfNote[] = [];
    for (const s of this.sections) {
      if (s.type === SHT_NOTE && s.size > 0 && s.size <= MAX_NOTE_BYTES) out.push(...parseNotes(this.sectionData(s)));
    }
    if (out.length > 0) return out;
    for (const p of this.segments) {
      if (p.type === PT_NOTE && p.filesz > 0 && p.filesz <= MAX_NOTE_BYTES) out.push(...parseNotes(this.readExact(p.offset, p.filesz, 'a note segment')));
    }
    return out;
  }

  buildId(): string {
    return findBuildId(this.notes());
  }

  debugLink(): DebugLink | null {
    const s = this.section('.gnu_debuglink');
    return s === null ? null : parseDebugLink(this.sectionData(s));
  }

  execRanges(): AddressRange[] {
    return this.sections.filter((s) => (s.flags & SHF_EXECINSTR) !== 0 && s.size > 0).map((s) => ({ start: s.addr, end: s.addr + s.size }));
  }

  summary(): ElfSummary {
    const secs = this.sections;
    const has = (name: string): boolean => secs.some((s) => s.name === name);
    return {
      type: this.header.type,
      buildId: this.buildId(),
      segments: this.segments.filter((p) => p.type === PT_LOAD),
      execRanges: this.execRanges(),
      hasSymtab: secs.some((s) => s.type === SHT_SYMTAB && s.size > 0),
      hasDynsym: secs.some((s) => s.type === SHT_DYNSYM && s.size > 0),
      isGo: has('.gopclntab') || has('.go.buildinfo'),
      debugLink: this.debugLink(),
    };
  }

  /** Function symbols of one symbol table (SHT_SYMTAB or SHT_DYNSYM) into `builder`; false if absent. */
  addSymbols(type: typeof SHT_SYMTAB | typeof SHT_DYNSYM, builder: SymbolTableBuilder): boolean {
    const sym = this.sections.find((s) => s.type === type && s.size > 0);
    if (sym === undefined) return false;
    const str = this.sections[sym.link];
    if (str === undefined) throw new ElfFormatError(`${sym.name} links to string table ${sym.link}, which does not exist`);
    parseSymbols(this.sectionData(sym), this.sectionData(str), (a, sz, buf, ns, ne, bind) => builder.addBytes(a, sz, buf, ns, ne, bind), sym.entsize || undefined);
    return true;
  }

  /** Functions from .gopclntab; false if the file has none. */
  addGoFunctions(builder: SymbolTableBuilder): boolean {
    const pcln = this.section('.gopclntab');
    const text = this.section('.text');
    if (pcln === null || text === null || pcln.type === SHT_NOBITS) return false;
    return parseGoPclntab(this.sectionData(pcln), text.addr, builder) > 0;
  }
}

/** Where a symbol table came from, for stats and tests. */
export type SymbolSourceKind = 'symtab' | 'dynsym' | 'gopclntab' | 'debug-symtab' | 'none';

/**
 * Builds the symbol table of a binary: .symtab of its separate debug file if one is given, else its
 * own .symtab, else .gopclntab for stripped Go binaries, else .dynsym (exported functions only).
 */
export function loadSymbolTable(binary: ElfFile, debugFile: ElfFile | null): { table: SymbolTable; source: SymbolSourceKind } {
  const builder = new SymbolTableBuilder();
  let source: SymbolSourceKind = 'none';
  if (debugFile !== null && debugFile.addSymbols(SHT_SYMTAB, builder) && builder.count > 0) source = 'debug-symtab';
  if (source === 'none' && binary.addSymbols(SHT_SYMTAB, builder) && builder.count > 0) source = 'symtab';
  if (source === 'none' && binary.addGoFunctions(builder)) source = 'gopclntab';
  if (source === 'none' && binary.addSymbols(SHT_DYNSYM, builder) && builder.count > 0) source = 'dynsym';
  // .dynsym stays useful next to a .symtab that lacks some exported aliases; merging them costs a
  // second table read for every library, so it is only done when .symtab was empty.
  const ranges = binary.execRanges();
  return { table: builder.build(ranges.length > 0 ? ranges : debugFile?.execRanges() ?? []), source };
}

/** Opens a file read-only for positional reads; the caller owns the returned fd. */
export function openForReading(path: string, flags: number = 0): { fd: number; stat: fs.Stats } {
  const fd = fs.openSync(path, fs.constants.O_RDONLY | flags);
  try {
    const stat = fs.fstatSync(fd);
    if (!stat.isFile()) throw Object.assign(new Error(`${path} is not a regular file`), { code: 'ENOTREG' });
    return { fd, stat };
  } catch (e) {
    fs.closeSync(fd);
    throw e;
  }
}
