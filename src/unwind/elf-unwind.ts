// SPDX-License-Identifier: Apache-2.0
/**
 * Builds a binary's unwind table from its call frame information: .eh_frame (every binary built by
 * GCC or Clang for x86-64 has it, frame pointers or not), else .debug_frame, else the .eh_frame the
 * PT_GNU_EH_FRAME segment points to (files without section headers). Go binaries add the stack
 * deltas of .gopclntab for their Go code (go-stack-deltas.ts); their .eh_frame, when there is one,
 * covers the C code of cgo. Reads only those bytes.
 */
import * as zlib from 'node:zlib';
import { ElfFile } from '../symbolize/elf-file';
import { ElfFormatError, PT_LOAD, SectionHeader, SHT_NOBITS } from '../symbolize/elf';
import { CfiFormatError, CfiSection, CfiStats, newCfiStats, parseCallFrameInfo } from './eh-frame';
import { GoDeltaStats, parseGoStackDeltas } from './go-stack-deltas';
import { TableTooLargeError, UnwindTable, UnwindTableBuilder, UnwindTableStats } from './unwind-table';

/** Why a binary has no unwind table; its frames are then walked with frame pointers. */
export type UnwindTableFailure =
  | 'no-cfi' // neither .eh_frame nor .debug_frame (Go, stripped hand-made files)
  | 'malformed-cfi' // the section's framing is broken (truncated, lengths past the end)
  | 'too-many-rows' // more rows than the per-binary limit
  | 'compressed-cfi'; // .debug_frame compressed with a method other than zlib

export interface LoadedUnwindTable {
  table: UnwindTable;
  /** Where the call frame information came from; null when only .gopclntab described the code. */
  source: '.eh_frame' | '.debug_frame' | 'PT_GNU_EH_FRAME' | null;
  cfi: CfiStats;
  /** Go functions unwound with .gopclntab's stack deltas; null for other binaries. */
  go: GoDeltaStats | null;
  stats: UnwindTableStats;
}

export interface UnwindTableOptions {
  /** Rows per binary; beyond it the binary gets no table (default 4M rows: 32 MiB). */
  maxRows: number;
  /**
   * A Go binary: its Go code is unwound with .gopclntab's stack deltas, and .debug_frame is skipped
   * (only unstripped builds have it: using it would make stripped and unstripped builds unwind
   * differently).
   */
  go?: boolean;
}

const PT_GNU_EH_FRAME = 0x6474e550;
const SHF_COMPRESSED = 0x800;
const ELFCOMPRESS_ZLIB = 1;
const MAX_CFI_BYTES = 256 * 1024 * 1024;

/**
 * The bytes a table is built from: read from the file (cheap, I/O) apart from building the table
 * (CPU: parsing every FDE), so that builds can be queued and spread over the event loop (table-builder.ts).
 */
export interface CfiInputs {
  /** .eh_frame, .debug_frame or the PT_GNU_EH_FRAME-located .eh_frame; null when there is none. */
  section: CfiSection | null;
  source: LoadedUnwindTable['source'];
  /** A Go binary's .gopclntab and the address its entry offsets are relative to. */
  go: { pclntab: Buffer; textStart: number } | null;
  maxRows: number;
}

/** The unwind table of `elf`, or why there is none. Never throws for bad input. */
export function loadUnwindTable(elf: ElfFile, options: UnwindTableOptions): LoadedUnwindTable | UnwindTableFailure {
  const inputs = readCfiInputs(elf, options);
  return typeof inputs === 'string' ? inputs : buildUnwindTable(inputs);
}

/** The sections a table of `elf` is built from, or why there is none. Never throws for bad input. */
export function readCfiInputs(elf: ElfFile, options: UnwindTableOptions): CfiInputs | UnwindTableFailure {
  let section: CfiSection | null;
  let source: LoadedUnwindTable['source'];
  let go: CfiInputs['go'] = null;
  try {
    if (options.go) {
      const pcln = elf.section('.gopclntab');
      const text = elf.section('.text');
      if (pcln !== null && text !== null && pcln.type !== SHT_NOBITS) go = { pclntab: elf.sectionData(pcln, '.gopclntab'), textStart: text.addr };
    }
    const eh = elf.section('.eh_frame');
    const debug = options.go ? null : elf.section('.debug_frame');
    if (eh !== null && eh.type !== SHT_NOBITS && eh.size > 0) {
      section = { kind: 'eh_frame', data: elf.sectionData(eh, '.eh_frame'), address: eh.addr };
      source = '.eh_frame';
    } else if (debug !== null && debug.type !== SHT_NOBITS && debug.size > 0) {
      const data = debugFrameData(elf, debug);
      if (data === null) return 'compressed-cfi';
      section = { kind: 'debug_frame', data, address: 0 };
      source = '.debug_frame';
    } else {
      section = ehFrameFromSegments(elf);
      source = 'PT_GNU_EH_FRAME';
    }
  } catch (e) {
    if (e instanceof ElfFormatError || e instanceof CfiFormatError) return 'malformed-cfi';
    throw e;
  }
  if (section === null && go === null) return 'no-cfi';
  return { section, source: section === null ? null : source, go, maxRows: options.maxRows };
}

/** Parses the inputs into a table (pure CPU work). Never throws for bad input. */
export function buildUnwindTable(inputs: CfiInputs): LoadedUnwindTable | UnwindTableFailure {
  const builder = new UnwindTableBuilder(inputs.maxRows);
  try {
    const go = inputs.go === null ? null : parseGoStackDeltas(inputs.go.pclntab, inputs.go.textStart, builder);
    const cfi = inputs.section === null ? newCfiStats() : parseCallFrameInfo(inputs.section, builder);
    const { table, stats } = builder.build();
    if (table.pcs.length === 0) return 'no-cfi';
    return { table, source: inputs.source, cfi, go, stats };
  } catch (e) {
    if (e instanceof TableTooLargeError) return 'too-many-rows';
    if (e instanceof CfiFormatError || e instanceof ElfFormatError) return 'malformed-cfi';
    throw e;
  }
}

/** .debug_frame bytes, inflated when SHF_COMPRESSED with zlib; null for another compression. */
function debugFrameData(elf: ElfFile, s: SectionHeader): Buffer | null {
  const raw = elf.sectionData(s, '.debug_frame');
  if ((s.flags & SHF_COMPRESSED) === 0) return raw;
  // Elf64_Chdr: u32 type, u32 reserved, u64 size, u64 alignment.
  if (raw.length < 24) throw new ElfFormatError('compressed .debug_frame shorter than its header');
  if (raw.readUInt32LE(0) !== ELFCOMPRESS_ZLIB) return null;
  const size = Number(raw.readBigUInt64LE(8));
  if (size > MAX_CFI_BYTES) throw new ElfFormatError(`compressed .debug_frame claims ${size} bytes`);
  try {
    return zlib.inflateSync(raw.subarray(24), { maxOutputLength: Math.max(size, 1) });
  } catch {
    throw new ElfFormatError('compressed .debug_frame does not inflate');
  }
}

/**
 * Files without section headers: PT_GNU_EH_FRAME holds .eh_frame_hdr, whose second field points at
 * .eh_frame. Its length is unknown, so the rest of the PT_LOAD segment holding it is read (the
 * parser stops at the zero terminator).
 */
function ehFrameFromSegments(elf: ElfFile): CfiSection | null {
  if (elf.sections.length > 0) return null;
  const hdrSeg = elf.segments.find((p) => p.type === PT_GNU_EH_FRAME);
  if (hdrSeg === undefined || hdrSeg.filesz < 8) return null;
  const hdr = elf.source.read(hdrSeg.offset, 8);
  if (hdr.length < 8 || hdr[0] !== 1) return null;
  // eh_frame_ptr is DW_EH_PE_pcrel | sdata4 in every linker's output.
  if (hdr[1] !== 0x1b) return null;
  const ehAddress = hdrSeg.vaddr + 4 + hdr.readInt32LE(4);
  const load = elf.segments.find((p) => p.type === PT_LOAD && ehAddress >= p.vaddr && ehAddress < p.vaddr + p.filesz);
  if (load === undefined) return null;
  const offset = ehAddress - load.vaddr + load.offset;
  const length = Math.min(load.vaddr + load.filesz - ehAddress, MAX_CFI_BYTES);
  return { kind: 'eh_frame', data: elf.source.read(offset, length), address: ehAddress };
}
