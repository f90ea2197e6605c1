// SPDX-License-Identifier: Apache-2.0
/**
 * Call frame information (.eh_frame, .debug_frame) of x86-64 ELF files: a pure parser over the
 * section's bytes that runs each FDE's CFA program and hands the resulting rows — "from this pc on,
 * the CFA is rsp+16 and rbp is saved at CFA-16" — to a sink. Only what the kernel walker uses is
 * kept: the CFA rule, the rbp rule, and whether the return address is defined (see unwind-rule.ts).
 *
 * Bad input never throws past parseCallFrameInfo() except as CfiFormatError, and only when the
 * section's framing itself is broken (an entry's length runs past the end): then nothing after it
 * can be trusted. A broken entry inside a sound frame is skipped and counted.
 */
import { EbpfprofError } from '../errors';
import { CFA, CfaType, packRule, RBP, RbpType, UNSUPPORTED_RULE } from './unwind-rule';

/** Raised for call frame information that cannot be parsed (code EINPUT). */
export class CfiFormatError extends EbpfprofError {
  constructor(message: string) {
    super('EINPUT', message);
    this.name = 'CfiFormatError';
  }
}

export interface CfiSection {
  kind: 'eh_frame' | 'debug_frame';
  data: Buffer;
  /** Virtual address of the section's first byte (pc-relative pointers are relative to it). */
  address: number;
}

/** Receives the rows of each FDE, in the FDE's own pc order. */
export interface CfiSink {
  /** A new FDE covering [start, end). */
  fde(start: number, end: number): void;
  /** From `pc` on (inside the current FDE), `rule` (packRule) applies. */
  row(pc: number, rule: number): void;
  /** The current FDE turned out broken: forget it and the rows it sent. */
  abandon(): void;
}

export interface CfiStats {
  cies: number;
  fdes: number;
  /** FDEs left out: their CIE or instructions are broken. */
  fdesMalformed: number;
  /** FDEs of discarded code (start 0) or of no code (length 0). */
  fdesEmpty: number;
  /** CIEs with an augmentation or version this parser does not know (their FDEs are left out). */
  ciesUnsupported: number;
  /** Rows whose rule the kernel walker cannot evaluate (it stops there, counted). */
  rowsUnsupported: number;
}

export function newCfiStats(): CfiStats {
  return { cies: 0, fdes: 0, fdesMalformed: 0, fdesEmpty: 0, ciesUnsupported: 0, rowsUnsupported: 0 };
}

/** x86-64 DWARF register numbers. */
const REG_RBP = 6;
const REG_RSP = 7;

const MAX_REMEMBERED_STATES = 64;
const TWO_32 = 0x100000000;

/** A bounded reader over one entry; every read past `end` throws CfiFormatError. */
class Cursor {
  constructor(
    readonly buf: Buffer,
    public pos: number,
    public end: number,
  ) {}

  private need(n: number, what: string): void {
    if (this.pos + n > this.end) throw new CfiFormatError(`${what} at byte ${this.pos} runs past the end of its entry (byte ${this.end})`);
  }

  u8(): number {
    this.need(1, 'a byte');
    return this.buf[this.pos++]!;
  }

  u16(): number {
    this.need(2, 'a 2-byte value');
    const v = this.buf.readUInt16LE(this.pos);
    this.pos += 2;
    return v;
  }

  u32(): number {
    this.need(4, 'a 4-byte value');
    const v = this.buf.readUInt32LE(this.pos);
    this.pos += 4;
    return v;
  }

  s32(): number {
    this.need(4, 'a 4-byte value');
    const v = this.buf.readInt32LE(this.pos);
    this.pos += 4;
    return v;
  }

  /** An unsigned 64-bit value; beyond 2^53 it cannot be an address of ours. */
  u64(): number {
    this.need(8, 'an 8-byte value');
    const lo = this.buf.readUInt32LE(this.pos);
    const hi = this.buf.readUInt32LE(this.pos + 4);
    this.pos += 8;
    if (hi >= 0x200000) throw new CfiFormatError(`64-bit value 0x${hi.toString(16)}${lo.toString(16).padStart(8, '0')} is beyond 2^53`);
    return hi * TWO_32 + lo;
  }

  /** A signed 64-bit value within ±2^53. */
  s64(): number {
    this.need(8, 'an 8-byte value');
    const lo = this.buf.readUInt32LE(this.pos);
    const hi = this.buf.readInt32LE(this.pos + 4);
    this.pos += 8;
    if (hi >= 0x200000 || hi < -0x200000) throw new CfiFormatError('signed 64-bit value beyond ±2^53');
    return hi * TWO_32 + lo;
  }

  uleb(): number {
    let result = 0;
    let mul = 1;
    for (;;) {
      const b = this.u8();
      result += (b & 0x7f) * mul;
      if ((b & 0x80) === 0) break;
      mul *= 128;
      if (mul > 2 ** 49) throw new CfiFormatError('ULEB128 value beyond 2^53');
    }
    return result;
  }

  sleb(): number {
    let result = 0;
    let mul = 1;
    let b: number;
    for (;;) {
      b = this.u8();
      result += (b & 0x7f) * mul;
      mul *= 128;
      if ((b & 0x80) === 0) break;
      if (mul > 2 ** 49) throw new CfiFormatError('SLEB128 value beyond ±2^53');
    }
    if ((b & 0x40) !== 0) result -= mul;
    return result;
  }

  cstring(): string {
    const stop = this.buf.indexOf(0, this.pos);
    if (stop < 0 || stop >= this.end) throw new CfiFormatError(`unterminated string at byte ${this.pos}`);
    const s = this.buf.toString('latin1', this.pos, stop);
    this.pos = stop + 1;
    return s;
  }

  skip(n: number): void {
    this.need(n, `${n} bytes`);
    this.pos += n;
  }
}

interface Cie {
  codeAlign: number;
  dataAlign: number;
  raRegister: number;
  /** DW_EH_PE_* of FDE addresses; 0 (absolute, 8 bytes) for .debug_frame. */
  fdeEncoding: number;
  /** FDEs carry augmentation data (a 'z' augmentation). */
  hasAugmentationData: boolean;
  addressSize: number;
  /** Bytes [initialStart, initialEnd) of the section: the initial instructions. */
  initialStart: number;
  initialEnd: number;
}

/**
 * Reads a pointer in DW_EH_PE encoding `enc`. Only absolute and pc-relative values can be resolved
 * without the process's memory or other sections; anything else throws.
 */
function readEncoded(c: Cursor, enc: number, sectionAddress: number, addressSize: number): number {
  if ((enc & 0x70) === 0x50) {
    // DW_EH_PE_aligned: the value sits at the next address-size boundary.
    const unaligned = sectionAddress + c.pos;
    c.skip((addressSize - (unaligned % addressSize)) % addressSize);
  }
  // Cursor positions are offsets in the section, so this is the field's own address.
  const fieldAddress = sectionAddress + c.pos;
  let v: number;
  switch (enc & 0x0f) {
    case 0x00:
      v = addressSize === 4 ? c.u32() : c.u64();
      break;
    case 0x01:
      v = c.uleb();
      break;
    case 0x02:
      v = c.u16();
      break;
    case 0x03:
      v = c.u32();
      break;
    case 0x04:
      v = c.u64();
      break;
    case 0x09:
      v = c.sleb();
      break;
    case 0x0a: {
      const u = c.u16();
      v = u >= 0x8000 ? u - 0x10000 : u;
      break;
    }
    case 0x0b:
      v = c.s32();
      break;
    case 0x0c:
      v = c.s64();
      break;
    default:
      throw new CfiFormatError(`pointer encoding 0x${enc.toString(16)} has an unknown value format`);
  }
  switch (enc & 0x70) {
    case 0x00:
    case 0x50:
      break;
    case 0x10:
      v += fieldAddress;
      break;
    default:
      throw new CfiFormatError(`pointer encoding 0x${enc.toString(16)} needs a base this parser does not have`);
  }
  if ((enc & 0x80) !== 0) throw new CfiFormatError('indirect pointer encoding would need the process memory');
  return v;
}

/** Size of a pointer in encoding `enc` when it is skipped (personality routine). */
function skipEncoded(c: Cursor, enc: number, sectionAddress: number, addressSize: number): void {
  const saved = enc & 0x0f;
  if ((enc & 0x70) === 0x50 || saved === 0x01 || saved === 0x09 || (enc & 0x80) !== 0 || (enc & 0x70) !== 0x10) {
    // Formats we cannot resolve are still skippable by their size.
    switch (saved) {
      case 0x00:
        c.skip(addressSize);
        return;
      case 0x01:
        c.uleb();
        return;
      case 0x09:
        c.sleb();
        return;
      case 0x02:
      case 0x0a:
        c.skip(2);
        return;
      case 0x03:
      case 0x0b:
        c.skip(4);
        return;
      case 0x04:
      case 0x0c:
        c.skip(8);
        return;
      default:
        throw new CfiFormatError(`pointer encoding 0x${enc.toString(16)} has an unknown value format`);
    }
  }
  readEncoded(c, enc, sectionAddress, addressSize);
}

/** Classifies a DW_CFA_def_cfa_expression: the three shapes compilers and linkers emit on x86-64. */
function cfaExpressionRule(buf: Buffer, start: number, end: number): number {
  const len = end - start;
  // PLT entries (ld, lld): rsp + 8 + ((rip & 15) >= N) << 3.
  if (
    len === 11 &&
    buf[start] === 0x77 && // DW_OP_breg7 (rsp)
    buf[start + 1] === 0x08 &&
    buf[start + 2] === 0x80 && // DW_OP_breg16 (rip)
    buf[start + 3] === 0x00 &&
    buf[start + 4] === 0x3f && // DW_OP_lit15
    buf[start + 5] === 0x1a && // DW_OP_and
    buf[start + 6]! >= 0x30 &&
    buf[start + 6]! <= 0x3f && // DW_OP_litN
    buf[start + 7] === 0x2a && // DW_OP_ge
    buf[start + 8] === 0x33 && // DW_OP_lit3
    buf[start + 9] === 0x24 && // DW_OP_shl
    buf[start + 10] === 0x22 // DW_OP_plus
  ) {
    return packRule(CFA.plt, buf[start + 6]! - 0x30, RBP.same, 0);
  }
  try {
    const c = new Cursor(buf, start, end);
    const op = c.u8();
    if (op === 0x76 || op === 0x77) {
      const k = c.sleb();
      if (c.u8() !== 0x06) return UNSUPPORTED_RULE; // DW_OP_deref
      if (op === 0x76 && c.pos === end) return packRule(CFA.derefRbp, k, RBP.same, 0);
      if (op === 0x77 && c.u8() === 0x23 && c.uleb() === 8 && c.pos === end) return packRule(CFA.derefRsp, k, RBP.same, 0);
    }
  } catch {
    // a truncated expression: unsupported, like any other shape
  }
  return UNSUPPORTED_RULE;
}

/** An rbp rule "saved at rbp + K" (DW_OP_breg6 K), the one register expression that matters. */
function rbpExpressionOffset(buf: Buffer, start: number, end: number): number | null {
  try {
    const c = new Cursor(buf, start, end);
    if (c.u8() !== 0x76) return null;
    const k = c.sleb();
    return c.pos === end ? k : null;
  } catch {
    return null;
  }
}

/** Register rule kinds the interpreter keeps for rbp. */
const R_SAME = 0;
const R_OFFSET = 1; // saved at CFA + off
const R_EXPR = 2; // saved at an address given by an expression
const R_LOST = 3; // another register, val_* rules, undefined

/** Return address rule: at CFA-8 (every call on x86-64), undefined (outermost frame), other. */
const RA_CFA_MINUS_8 = 0;
const RA_UNDEFINED = 1;
const RA_OTHER = 2;

/** The part of the CFA program's state the walker needs. */
interface FrameState {
  cfaRegister: number;
  cfaOffset: number;
  /** DW_CFA_def_cfa_expression bytes [cfaExprStart, cfaExprEnd), or -1. */
  cfaExprStart: number;
  cfaExprEnd: number;
  rbpKind: number;
  rbpOffset: number;
  rbpExprStart: number;
  rbpExprEnd: number;
  ra: number;
}

function initialState(): FrameState {
  return { cfaRegister: REG_RSP, cfaOffset: 8, cfaExprStart: -1, cfaExprEnd: -1, rbpKind: R_SAME, rbpOffset: 0, rbpExprStart: -1, rbpExprEnd: -1, ra: RA_CFA_MINUS_8 };
}

function ruleOf(s: FrameState, buf: Buffer, stats: CfiStats): number {
  if (s.ra === RA_UNDEFINED) return packRule(CFA.end, 0, RBP.same, 0);
  let rule: number;
  if (s.ra !== RA_CFA_MINUS_8) {
    rule = UNSUPPORTED_RULE;
  } else if (s.cfaExprStart >= 0) {
    rule = cfaExpressionRule(buf, s.cfaExprStart, s.cfaExprEnd);
    if (rule !== UNSUPPORTED_RULE) rule = withRbp(rule, s, buf);
  } else if (s.cfaRegister === REG_RSP || s.cfaRegister === REG_RBP) {
    rule = withRbp(packRule(s.cfaRegister === REG_RSP ? CFA.rsp : CFA.rbp, s.cfaOffset, RBP.same, 0), s, buf);
  } else {
    rule = UNSUPPORTED_RULE; // CFA in another register (r10 in stack-realigning prologues)
  }
  if (rule === UNSUPPORTED_RULE) stats.rowsUnsupported++;
  return rule;
}

/** Adds the rbp rule of `s` to a CFA-only rule. */
function withRbp(cfaRule: number, s: FrameState, buf: Buffer): number {
  if (s.rbpKind === R_SAME) return cfaRule;
  const types = (cfaRule >>> 16) & 0xff;
  const cfa = (types & 0xf) as CfaType;
  const cfaField = (cfaRule << 16) >> 16;
  const cfaOffset = cfa === CFA.plt ? cfaField : cfaField * 8;
  let rbp: RbpType = RBP.lost;
  let off = 0;
  if (s.rbpKind === R_OFFSET) {
    rbp = RBP.atCfa;
    off = s.rbpOffset;
  } else if (s.rbpKind === R_EXPR) {
    const k = rbpExpressionOffset(buf, s.rbpExprStart, s.rbpExprEnd);
    if (k !== null) {
      rbp = RBP.atRbp;
      off = k;
    }
  }
  const packed = packRule(cfa, cfaOffset, rbp, off);
  // An rbp save slot we cannot encode: keep the CFA, lose rbp (only frames that need it suffer).
  return packed === UNSUPPORTED_RULE ? packRule(cfa, cfaOffset, RBP.lost, 0) : packed;
}

/** What a frame reader needs from its section. */
interface Context {
  section: CfiSection;
  stats: CfiStats;
  sink: CfiSink;
}

/**
 * Runs the CFA instructions in [c.pos, c.end). With `emit`, rows are sent from `loc` on, up to
 * `fdeEnd`; without, the instructions are a CIE's initial ones and only the state changes.
 */
function execute(c: Cursor, cie: Cie, state: FrameState, initial: FrameState | null, ctx: Context, emit: { loc: number; end: number } | null): void {
  const buf = c.buf;
  const stack: FrameState[] = [];
  let lastRule = -1;
  const emitUpTo = (next: number): void => {
    if (emit === null) return;
    if (next < emit.loc) throw new CfiFormatError(`location moves backwards to 0x${next.toString(16)}`);
    if (next > emit.loc && emit.loc < emit.end) {
      const rule = ruleOf(state, buf, ctx.stats);
      if (rule !== lastRule) ctx.sink.row(emit.loc, rule);
      lastRule = rule;
    }
    emit.loc = next;
  };
  const setReg = (reg: number, kind: number, offset: number, exprStart = -1, exprEnd = -1): void => {
    if (reg === REG_RBP) {
      state.rbpKind = kind;
      state.rbpOffset = offset;
      state.rbpExprStart = exprStart;
      state.rbpExprEnd = exprEnd;
    } else if (reg === cie.raRegister) {
      state.ra = kind === R_OFFSET && offset === -8 ? RA_CFA_MINUS_8 : RA_OTHER;
    }
  };
  const restore = (reg: number): void => {
    const from = initial ?? initialState();
    if (reg === REG_RBP) {
      state.rbpKind = from.rbpKind;
      state.rbpOffset = from.rbpOffset;
      state.rbpExprStart = from.rbpExprStart;
      state.rbpExprEnd = from.rbpExprEnd;
    } else if (reg === cie.raRegister) {
      state.ra = from.ra;
    }
  };
  const block = (): [number, number] => {
    const len = c.uleb();
    const start = c.pos;
    c.skip(len);
    return [start, c.pos];
  };

  while (c.pos < c.end) {
    const op = c.u8();
    const high = op & 0xc0;
    const low = op & 0x3f;
    if (high === 0x40) {
      emitUpTo((emit?.loc ?? 0) + low * cie.codeAlign);
      continue;
    }
    if (high === 0x80) {
      setReg(low, R_OFFSET, c.uleb() * cie.dataAlign);
      continue;
    }
    if (high === 0xc0) {
      restore(low);
      continue;
    }
    switch (op) {
      case 0x00: // nop
        break;
      case 0x01: // set_loc
        emitUpTo(readEncoded(c, cie.fdeEncoding, ctx.section.address, cie.addressSize));
        break;
      case 0x02:
        emitUpTo((emit?.loc ?? 0) + c.u8() * cie.codeAlign);
        break;
      case 0x03:
        emitUpTo((emit?.loc ?? 0) + c.u16() * cie.codeAlign);
        break;
      case 0x04:
        emitUpTo((emit?.loc ?? 0) + c.u32() * cie.codeAlign);
        break;
      case 0x05: // offset_extended
        setReg(c.uleb(), R_OFFSET, c.uleb() * cie.dataAlign);
        break;
      case 0x06: // restore_extended
        restore(c.uleb());
        break;
      case 0x07: {
        // undefined
        const reg = c.uleb();
        if (reg === cie.raRegister) state.ra = RA_UNDEFINED;
        else if (reg === REG_RBP) setReg(reg, R_LOST, 0);
        break;
      }
      case 0x08: // same_value
        setReg(c.uleb(), R_SAME, 0);
        break;
      case 0x09: {
        // register: saved in another register, which the walker does not track
        const reg = c.uleb();
        c.uleb();
        setReg(reg, R_LOST, 0);
        break;
      }
      case 0x0a: // remember_state
        if (stack.length >= MAX_REMEMBERED_STATES) throw new CfiFormatError(`more than ${MAX_REMEMBERED_STATES} remembered states`);
        stack.push({ ...state });
        break;
      case 0x0b: {
        // restore_state (the CFA is part of the state, as GCC and LLVM expect)
        const s = stack.pop();
        if (s === undefined) throw new CfiFormatError('restore_state without remember_state');
        Object.assign(state, s);
        break;
      }
      case 0x0c: // def_cfa
        state.cfaRegister = c.uleb();
        state.cfaOffset = c.uleb();
        state.cfaExprStart = -1;
        break;
      case 0x0d: // def_cfa_register
        state.cfaRegister = c.uleb();
        state.cfaExprStart = -1;
        break;
      case 0x0e: // def_cfa_offset
        state.cfaOffset = c.uleb();
        break;
      case 0x0f: {
        // def_cfa_expression
        const [s, e] = block();
        state.cfaExprStart = s;
        state.cfaExprEnd = e;
        break;
      }
      case 0x10: {
        // expression: saved at the address the expression computes
        const reg = c.uleb();
        const [s, e] = block();
        if (reg === REG_RBP) setReg(reg, R_EXPR, 0, s, e);
        else if (reg === cie.raRegister) state.ra = RA_OTHER;
        break;
      }
      case 0x11: // offset_extended_sf
        setReg(c.uleb(), R_OFFSET, c.sleb() * cie.dataAlign);
        break;
      case 0x12: // def_cfa_sf
        state.cfaRegister = c.uleb();
        state.cfaOffset = c.sleb() * cie.dataAlign;
        state.cfaExprStart = -1;
        break;
      case 0x13: // def_cfa_offset_sf
        state.cfaOffset = c.sleb() * cie.dataAlign;
        break;
      case 0x14: // val_offset: the value itself is CFA + off, not stored anywhere
      case 0x15: {
        const reg = c.uleb();
        if (op === 0x14) c.uleb();
        else c.sleb();
        setReg(reg, R_LOST, 0);
        if (reg === cie.raRegister) state.ra = RA_OTHER;
        break;
      }
      case 0x16: {
        // val_expression
        const reg = c.uleb();
        block();
        setReg(reg, R_LOST, 0);
        if (reg === cie.raRegister) state.ra = RA_OTHER;
        break;
      }
      case 0x1d: // MIPS_advance_loc8
        emitUpTo((emit?.loc ?? 0) + c.u64() * cie.codeAlign);
        break;
      case 0x2d: // GNU_window_save (SPARC) / AArch64 negate_ra_state: nothing on x86-64
        break;
      case 0x2e: // GNU_args_size
        c.uleb();
        break;
      case 0x2f: // GNU_negative_offset_extended
        setReg(c.uleb(), R_OFFSET, -c.uleb() * cie.dataAlign);
        break;
      default:
        throw new CfiFormatError(`unknown CFA instruction 0x${op.toString(16)}`);
    }
  }
  if (emit !== null && emit.loc < emit.end) {
    const rule = ruleOf(state, buf, ctx.stats);
    if (rule !== lastRule) ctx.sink.row(emit.loc, rule);
  }
}

function parseCie(c: Cursor, ctx: Context): Cie | null {
  const version = c.u8();
  if (version !== 1 && version !== 3 && version !== 4) return null;
  const augmentation = c.cstring();
  let addressSize = 8;
  if (version === 4) {
    addressSize = c.u8();
    c.u8(); // segment selector size
    if (addressSize !== 4 && addressSize !== 8) return null;
  }
  if (augmentation.startsWith('eh')) return null; // pre-1999 GCC: an extra pointer we do not expect
  const codeAlign = c.uleb();
  const dataAlign = c.sleb();
  const raRegister = version === 1 ? c.u8() : c.uleb();
  const cie: Cie = {
    codeAlign,
    dataAlign,
    raRegister,
    fdeEncoding: 0, // absolute unless a 'R' augmentation says otherwise
    hasAugmentationData: false,
    addressSize,
    initialStart: 0,
    initialEnd: c.end,
  };
  if (augmentation.length > 0) {
    if (augmentation[0] !== 'z') return null;
    cie.hasAugmentationData = true;
    const len = c.uleb();
    const dataEnd = c.pos + len;
    if (dataEnd > c.end) throw new CfiFormatError('CIE augmentation data runs past its entry');
    for (let i = 1; i < augmentation.length; i++) {
      switch (augmentation[i]) {
        case 'R':
          cie.fdeEncoding = c.u8();
          break;
        case 'P': {
          const enc = c.u8();
          skipEncoded(c, enc, ctx.section.address, addressSize);
          break;
        }
        case 'L':
          c.u8();
          break;
        case 'S': // signal frame: its return address is the interrupted pc, not a call's
        case 'B': // AArch64 BTI
        case 'G': // MTE tagged frames
          break;
        default:
          return null;
      }
    }
    c.pos = dataEnd;
  }
  if (codeAlign === 0) return null;
  cie.initialStart = c.pos;
  return cie;
}

export interface CfiLimits {
  /** Stop after this many FDEs (a corrupt section must not run for minutes). */
  maxFdes: number;
}

const DEFAULT_LIMITS: CfiLimits = { maxFdes: 4_000_000 };

/**
 * Parses a whole .eh_frame or .debug_frame section into `sink`. Throws CfiFormatError only when the
 * section's framing is broken; bad entries inside it are skipped and counted in the returned stats.
 */
export function parseCallFrameInfo(section: CfiSection, sink: CfiSink, limits: CfiLimits = DEFAULT_LIMITS): CfiStats {
  const stats = newCfiStats();
  const ctx: Context = { section, stats, sink };
  const buf = section.data;
  const isEh = section.kind === 'eh_frame';
  const cies = new Map<number, Cie | null>();
  let pos = 0;
  while (pos + 4 <= buf.length) {
    const entryStart = pos;
    let length = buf.readUInt32LE(pos);
    pos += 4;
    let idSize = 4;
    if (length === 0xffffffff) {
      if (pos + 8 > buf.length) throw new CfiFormatError(`64-bit entry length at byte ${entryStart} is truncated`);
      const hi = buf.readUInt32LE(pos + 4);
      if (hi !== 0) throw new CfiFormatError(`entry at byte ${entryStart} claims ${hi} x 4 GiB`);
      length = buf.readUInt32LE(pos);
      pos += 8;
      idSize = 8;
    }
    if (length === 0) {
      if (isEh) break; // .eh_frame ends with a zero terminator
      continue;
    }
    const end = pos + length;
    if (end > buf.length) throw new CfiFormatError(`entry at byte ${entryStart} is ${length} bytes long but the section ends ${buf.length - pos} bytes later`);
    if (length < idSize) throw new CfiFormatError(`entry at byte ${entryStart} is too short for its id`);
    const idPos = pos;
    const id = idSize === 4 ? buf.readUInt32LE(pos) : buf.readUInt32LE(pos) + buf.readUInt32LE(pos + 4) * TWO_32;
    pos += idSize;
    const isCie = isEh ? id === 0 : idSize === 4 ? id === 0xffffffff : id === 0xffffffff + 0xffffffff * TWO_32;
    if (isCie) {
      stats.cies++;
      if (!cies.has(entryStart)) cies.set(entryStart, readCie(buf, pos, end, ctx));
    } else {
      if (stats.fdes >= limits.maxFdes) throw new CfiFormatError(`more than ${limits.maxFdes} FDEs`);
      stats.fdes++;
      const ciePos = isEh ? idPos - id : id;
      let cie = cies.get(ciePos);
      if (cie === undefined) {
        cie = lookupCie(buf, ciePos, ctx, isEh);
        cies.set(ciePos, cie);
      }
      if (cie === null) stats.fdesMalformed++;
      else readFde(buf, pos, end, cie, ctx);
    }
    pos = end;
  }
  return stats;
}

function readCie(buf: Buffer, start: number, end: number, ctx: Context): Cie | null {
  try {
    const cie = parseCie(new Cursor(buf, start, end), ctx);
    if (cie === null) ctx.stats.ciesUnsupported++;
    return cie;
  } catch (e) {
    if (!(e instanceof CfiFormatError)) throw e;
    ctx.stats.ciesUnsupported++;
    return null;
  }
}

/** A CIE referenced by an FDE but not read yet (it may come later in the section). */
function lookupCie(buf: Buffer, at: number, ctx: Context, isEh: boolean): Cie | null {
  if (at < 0 || at + 8 > buf.length) return null;
  let length = buf.readUInt32LE(at);
  let pos = at + 4;
  let idSize = 4;
  if (length === 0xffffffff) {
    if (pos + 8 > buf.length || buf.readUInt32LE(pos + 4) !== 0) return null;
    length = buf.readUInt32LE(pos);
    pos += 8;
    idSize = 8;
  }
  const end = pos + length;
  if (length < idSize || end > buf.length) return null;
  const id = buf.readUInt32LE(pos);
  const isCie = isEh ? id === 0 && (idSize === 4 || buf.readUInt32LE(pos + 4) === 0) : id === 0xffffffff;
  if (!isCie) return null;
  return readCie(buf, pos + idSize, end, ctx);
}

function readFde(buf: Buffer, start: number, end: number, cie: Cie, ctx: Context): void {
  try {
    const c = new Cursor(buf, start, end);
    const pcBegin = readEncoded(c, cie.fdeEncoding, ctx.section.address, cie.addressSize);
    // The range has the address's size and format but is never relative to anything.
    const pcRange = readEncoded(c, cie.fdeEncoding & 0x0f, ctx.section.address, cie.addressSize);
    if (pcBegin <= 0 || pcRange <= 0 || pcBegin + pcRange > Number.MAX_SAFE_INTEGER) {
      ctx.stats.fdesEmpty++;
      return;
    }
    if (cie.hasAugmentationData) c.skip(c.uleb());
    const state = initialState();
    execute(new Cursor(buf, cie.initialStart, cie.initialEnd), cie, state, null, ctx, null);
    const initial = { ...state };
    ctx.sink.fde(pcBegin, pcBegin + pcRange);
    execute(c, cie, state, initial, ctx, { loc: pcBegin, end: pcBegin + pcRange });
  } catch (e) {
    if (!(e instanceof CfiFormatError)) throw e;
    ctx.stats.fdesMalformed++;
    ctx.sink.abandon();
  }
}
