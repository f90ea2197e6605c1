// SPDX-License-Identifier: Apache-2.0
/**
 * The unwind rule of one table row, as bpf/profile.h packs it (struct unwind_row after its pc):
 * how to find the CFA (the caller's stack pointer) and the caller's rbp. A rule is one u32 here —
 * bytes 4..7 of the row: s16 cfa_off (8-byte units), u8 types (cfa | rbp << 4), s8 rbp_off — so
 * tables are two typed arrays and the upload is a byte copy.
 */

/** enum unwind_cfa_type. */
export const CFA = {
  /** No FDE covers the pc: step with the frame pointer. */
  none: 0,
  /** CFA = rsp + offset. */
  rsp: 1,
  /** CFA = rbp + offset. */
  rbp: 2,
  /** PLT entry: CFA = rsp + 8, + 8 when (pc & 15) >= threshold (kept in cfa_off). */
  plt: 3,
  /** CFA = *(rbp + offset): functions that realign their stack. */
  derefRbp: 4,
  /** CFA = *(rsp + offset) + 8: assembly that saved its entry stack pointer. */
  derefRsp: 5,
  /** Return address undefined: the outermost frame (_start, clone). */
  end: 6,
  /** A rule the kernel walker does not evaluate. */
  unsupported: 7,
} as const;
export type CfaType = (typeof CFA)[keyof typeof CFA];

/** enum unwind_rbp_type. */
export const RBP = {
  same: 0,
  /** Saved at CFA + offset. */
  atCfa: 1,
  /** Saved at rbp + offset (stack realignment). */
  atRbp: 2,
  /** Kept in a place the walker cannot read (another register, an expression). */
  lost: 3,
} as const;
export type RbpType = (typeof RBP)[keyof typeof RBP];

export const CFA_NAMES: readonly string[] = ['none', 'rsp', 'rbp', 'plt', 'deref-rbp', 'deref-rsp', 'end', 'unsupported'];
export const RBP_NAMES: readonly string[] = ['same', 'at-cfa', 'at-rbp', 'lost'];

export interface UnwindRule {
  cfa: CfaType;
  /** Bytes (CFA.plt: the pc & 15 threshold). */
  cfaOffset: number;
  rbp: RbpType;
  /** Bytes. */
  rbpOffset: number;
}

/** The rule of a pc no FDE covers. */
export const NO_RULE = packRule(CFA.none, 0, RBP.same, 0);
/** The rule of a pc whose FDE the walker cannot follow. */
export const UNSUPPORTED_RULE = packRule(CFA.unsupported, 0, RBP.same, 0);

function fitsUnits(bytes: number, min: number, max: number): boolean {
  return bytes % 8 === 0 && bytes / 8 >= min && bytes / 8 <= max;
}

/**
 * Packs a rule into its u32; a rule whose offsets do not fit the row (not multiples of 8, beyond
 * ±256 KiB for the CFA or ±1 KiB for rbp) becomes UNSUPPORTED_RULE.
 */
export function packRule(cfa: CfaType, cfaOffset: number, rbp: RbpType, rbpOffset: number): number {
  let cfaField: number;
  if (cfa === CFA.plt) {
    if (!Number.isInteger(cfaOffset) || cfaOffset < 0 || cfaOffset > 16) return UNSUPPORTED_RULE;
    cfaField = cfaOffset;
  } else if (cfa === CFA.none || cfa === CFA.end || cfa === CFA.unsupported) {
    cfaField = 0;
  } else {
    if (!fitsUnits(cfaOffset, -32768, 32767)) return UNSUPPORTED_RULE;
    cfaField = cfaOffset / 8;
  }
  let rbpField = 0;
  if (rbp === RBP.atCfa || rbp === RBP.atRbp) {
    if (!fitsUnits(rbpOffset, -128, 127)) return UNSUPPORTED_RULE;
    rbpField = rbpOffset / 8;
  }
  return ((cfaField & 0xffff) | ((cfa | (rbp << 4)) << 16) | ((rbpField & 0xff) << 24)) >>> 0;
}

export function unpackRule(rule: number): UnwindRule {
  const types = (rule >>> 16) & 0xff;
  const cfa = (types & 0xf) as CfaType;
  const rbp = (types >>> 4) as RbpType;
  const cfaField = (rule << 16) >> 16; // sign-extend the low 16 bits
  const rbpField = rule >> 24; // sign-extend the top 8 bits
  return {
    cfa,
    cfaOffset: cfa === CFA.plt ? cfaField : cfa === CFA.none || cfa === CFA.end || cfa === CFA.unsupported ? 0 : cfaField * 8,
    rbp,
    rbpOffset: rbp === RBP.atCfa || rbp === RBP.atRbp ? rbpField * 8 : 0,
  };
}

/** "rsp+16 rbp@cfa-16": a rule the way tests and diagnostics print it. */
export function formatRule(rule: number): string {
  const r = unpackRule(rule);
  const sign = (n: number): string => (n < 0 ? `${n}` : `+${n}`);
  let cfa: string;
  switch (r.cfa) {
    case CFA.rsp:
      cfa = `rsp${sign(r.cfaOffset)}`;
      break;
    case CFA.rbp:
      cfa = `rbp${sign(r.cfaOffset)}`;
      break;
    case CFA.plt:
      cfa = `plt${r.cfaOffset}`;
      break;
    case CFA.derefRbp:
      cfa = `*(rbp${sign(r.cfaOffset)})`;
      break;
    case CFA.derefRsp:
      cfa = `*(rsp${sign(r.cfaOffset)})+8`;
      break;
    default:
      cfa = CFA_NAMES[r.cfa]!;
  }
  const rbp = r.rbp === RBP.atCfa ? `rbp@cfa${sign(r.rbpOffset)}` : r.rbp === RBP.atRbp ? `rbp@rbp${sign(r.rbpOffset)}` : r.rbp === RBP.lost ? 'rbp?' : '';
  return rbp === '' ? cfa : `${cfa} ${rbp}`;
}
