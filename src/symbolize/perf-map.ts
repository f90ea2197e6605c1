// SPDX-License-Identifier: Apache-2.0
/**
 * perf-PID.map files, which JIT runtimes (V8 with --perf-basic-prof, the JVM with perf-map-agent,
 * .NET with DOTNET_PerfMapEnabled) write to name their generated code: one `START SIZE NAME` line per
 * code object, hex numbers with or without 0x, the name running to the end of the line.
 *
 * Runtimes append as code is created and moved, so a later line for the same start address replaces
 * the earlier one.
 */
import { SymbolTable, SymbolTableBuilder } from './symbol-table';

export interface PerfMapResult {
  table: SymbolTable;
  /** Lines that could not be parsed. */
  skipped: number;
}

const LINE = /^(?:0x)?([0-9a-fA-F]{1,16}) (?:0x)?([0-9a-fA-F]{1,16}) (.+)$/;

/** Parses one line; null when it is not a `START SIZE NAME` line. */
export function parsePerfMapLine(line: string): { start: number; size: number; name: string } | null {
  const m = LINE.exec(line.endsWith('\r') ? line.slice(0, -1) : line);
  if (m === null) return null;
  const start = parseInt(m[1]!, 16);
  const size = parseInt(m[2]!, 16);
  const name = m[3]!.trim();
  if (!Number.isSafeInteger(start) || !Number.isSafeInteger(size) || size === 0 || size > 0xffffffff || name === '') return null;
  return { start, size, name };
}

/**
 * Parses a whole perf map into a symbol table. Later lines override earlier ones at the same
 * address, which SymbolTableBuilder's "first wins" dedupe would get wrong, so duplicates are
 * resolved here first.
 */
export function parsePerfMap(text: string): PerfMapResult {
  const latest = new Map<number, { size: number; name: string }>();
  let skipped = 0;
  for (const line of text.split('\n')) {
    if (line === '') continue;
    const e = parsePerfMapLine(line);
    if (e === null) skipped++;
    else latest.set(e.start, { size: e.size, name: e.name });
  }
  const b = new SymbolTableBuilder();
  for (const [start, e] of latest) b.add(start, e.size, e.name);
  return { table: b.build(), skipped };
}
