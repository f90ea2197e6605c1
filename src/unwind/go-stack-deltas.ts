// SPDX-License-Identifier: Apache-2.0
/**
 * Unwind rows for Go code from .gopclntab's pcsp tables: for every pc of every function, the bytes
 * the function has pushed below its return address (the runtime's own tracebacks use them). Go keeps
 * frame pointers, but a function without a frame (small leaves) does not push rbp, so a frame-pointer
 * walk from inside it skips its caller; the stack deltas do not. They exist in stripped binaries too
 * (the runtime needs them), so stripped and unstripped builds unwind alike.
 *
 * Rules (x86-64): CFA = rsp + delta + 8. A function with a frame pushes rbp first (the compiler's and
 * the assembler's prologue), so once delta >= 8 the caller's rbp is at CFA - 16. The functions where
 * a goroutine's or thread's stack begins are the outermost frame.
 *
 * Pure over the section's bytes, like the eh_frame parser: bad input is skipped and counted, never
 * thrown past parseGoStackDeltas() except as ElfFormatError for a header that cannot be read.
 */
import { forEachPclntabFunc, pclntabFuncName, readPclntabHeader } from '../symbolize/gopclntab';
import type { CfiSink } from './eh-frame';
import { CFA, packRule, RBP } from './unwind-rule';

/**
 * Where a walk ends: runtime.goexit under every goroutine, mstart and rt0_go under threads, and the
 * functions that switch to the thread's system stack (mcall, morestack, and the fake frame
 * systemstack_switch): above them the return address is on another stack, which the runtime's own
 * traceback finds through its scheduler state, not through the stack pointer. The signal handlers
 * too: the kernel called them with a return address into runtime.sigreturn__sigaction, and the
 * interrupted frame is in the signal frame's saved registers, which the walker does not read.
 */
const OUTERMOST = new Set([
  'runtime.goexit',
  'runtime.mstart',
  'runtime.rt0_go',
  'runtime.mcall',
  'runtime.morestack',
  'runtime.systemstack_switch',
  'runtime.sigtramp',
  'runtime.cgoSigtramp',
]);
/** _func.pcsp: after entryOff, nameOff, args, deferreturn. */
const PCSP_FIELD = 16;
/**
 * A frame deeper than this is not a real one: the table is corrupt. (runtime.call1073741824 has a
 * 1 GiB frame; frames beyond what a row can hold, 256 KiB, get the unsupported rule: the walk stops
 * there, counted.)
 */
const MAX_FRAME_BYTES = 2 ** 31;

export interface GoDeltaStats {
  functions: number;
  /** Functions left out: their pcsp table is out of bounds or does not decode. */
  functionsMalformed: number;
  /** Functions without a pcsp table (linker-made markers). */
  functionsWithoutDeltas: number;
}

/** A varint reader over the pctab that stops at `end`; null when the bytes run out. */
function varint(buf: Buffer, at: { pos: number }, end: number): number | null {
  let v = 0;
  let shift = 0;
  while (at.pos < end) {
    const b = buf[at.pos++]!;
    v += (b & 0x7f) * 2 ** shift;
    if ((b & 0x80) === 0) return v;
    shift += 7;
    if (shift > 28) return null;
  }
  return null;
}

function ruleFor(delta: number): number {
  return delta >= 8 ? packRule(CFA.rsp, delta + 8, RBP.atCfa, -16) : packRule(CFA.rsp, delta + 8, RBP.same, 0);
}

/**
 * Sends one FDE per Go function, with a row wherever its stack delta changes, to `sink`. `textStart`
 * is the address the functab's entry offsets are relative to (runtime.text, the start of .text).
 */
export function parseGoStackDeltas(buf: Buffer, textStart: number, sink: CfiSink): GoDeltaStats {
  const h = readPclntabHeader(buf);
  const stats: GoDeltaStats = { functions: 0, functionsMalformed: 0, functionsWithoutDeltas: 0 };
  const end = buf.length;
  forEachPclntabFunc(buf, h, (f) => {
    if (f.endOff <= f.entryOff || f.funcAt + PCSP_FIELD + 4 > end) return;
    const start = textStart + f.entryOff;
    const stop = textStart + f.endOff;
    sink.fde(start, stop);
    const name = pclntabFuncName(buf, h, f.funcAt);
    if (name !== null && OUTERMOST.has(buf.toString('latin1', name[0], name[1]))) {
      sink.row(start, packRule(CFA.end, 0, RBP.same, 0));
      stats.functions++;
      return;
    }
    const pcsp = buf.readUInt32LE(f.funcAt + PCSP_FIELD);
    if (pcsp === 0) {
      // No table (linker-made markers such as go:textfipsstart): nothing to unwind there.
      sink.abandon();
      stats.functionsWithoutDeltas++;
      return;
    }
    const at = { pos: h.pctabOffset + pcsp };
    let pc = start;
    let value = -1;
    let first = true;
    let ok = true;
    while (ok) {
      const uvdelta = varint(buf, at, end);
      if (uvdelta === null) {
        ok = false;
        break;
      }
      if (uvdelta === 0 && !first) break;
      // zigzag: the low bit is the sign.
      value += uvdelta % 2 === 1 ? -((uvdelta - 1) / 2) - 1 : uvdelta / 2;
      const pcdelta = varint(buf, at, end);
      // -8: assembly that pops its own return address (syscall.rawVforkSyscall) before returning.
      if (pcdelta === null || value < -8 || value > MAX_FRAME_BYTES || value % 8 !== 0) {
        ok = false;
        break;
      }
      sink.row(pc, ruleFor(value));
      pc += pcdelta * h.quantum;
      first = false;
      if (pc >= stop) break;
    }
    if (!ok || first) {
      sink.abandon();
      stats.functionsMalformed++;
      return;
    }
    stats.functions++;
  });
  return stats;
}
