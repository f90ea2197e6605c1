// SPDX-License-Identifier: Apache-2.0
/**
 * The [vdso] image has no file. Every process on one kernel maps the same image, so ours names the
 * target's vdso frames: read /proc/self/maps and /proc/self/mem of this process only — never a
 * target's memory, which strict mode forbids.
 */
import * as fs from 'node:fs';
import { BufferSource, ElfFile, ElfSummary, loadSymbolTable } from './elf-file';
import { findMapping, parseProcMaps } from './proc-maps';
import { SymbolTable } from './symbol-table';

export interface VdsoImage {
  summary: ElfSummary;
  table: SymbolTable;
  size: number;
  /** The image itself (a few KiB), for its unwind table. */
  image: Buffer;
}

/** Extracts the vdso ELF image from given maps text and a reader of our own memory (testable). */
export function vdsoFromMemory(mapsText: string, readMemory: (address: number, length: number) => Buffer): VdsoImage | null {
  const { entries } = parseProcMaps(mapsText);
  const e = entries.find((x) => x.kind === 'vdso');
  if (e === undefined || findMapping(entries, e.start) < 0) return null;
  const image = readMemory(e.start, e.end - e.start);
  const elf = new ElfFile(new BufferSource(image));
  const summary = elf.summary();
  const { table } = loadSymbolTable(elf, null);
  return { summary, table, size: image.length, image };
}

/** Loads our own process's vdso; throws when the kernel maps none (vdso=0) or it cannot be read. */
export function loadOwnVdso(): VdsoImage {
  const maps = fs.readFileSync('/proc/self/maps', 'latin1');
  const fd = fs.openSync('/proc/self/mem', 'r');
  try {
    const image = vdsoFromMemory(maps, (address, length) => {
      const buf = Buffer.alloc(length);
      const n = fs.readSync(fd, buf, 0, length, address);
      return buf.subarray(0, n);
    });
    if (image === null) throw Object.assign(new Error('this process has no [vdso] mapping'), { code: 'ENOVDSO' });
    return image;
  } finally {
    fs.closeSync(fd);
  }
}
