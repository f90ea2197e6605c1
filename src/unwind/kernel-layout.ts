// SPDX-License-Identifier: Apache-2.0
/**
 * The unwinder's BPF map layouts (bpf/profile.h: struct unwind_chunk, unwind_table, unwind_mapping,
 * unwind_proc) and their encoders. Sizes are checked against the object's BTF in
 * test/unwind-kernel-layout.test.ts.
 */

export const ROWS_PER_CHUNK = 512;
export const ROW_SIZE = 8;
export const CHUNK_SIZE = ROWS_PER_CHUNK * ROW_SIZE;
export const TABLE_ENTRY_SIZE = 8;
export const MAPPING_SIZE = 24;
export const MAX_MAPPINGS = 128;
export const PROC_HEADER_SIZE = 16;
export const PROC_SIZE = PROC_HEADER_SIZE + MAX_MAPPINGS * MAPPING_SIZE;
/** Rows of one table the kernel's binary search can cover (UNWIND_TABLE_SEARCH_STEPS = 23). */
export const MAX_TABLE_ROWS = 2 ** 23 - 1;
export const NO_TABLE = 0xffffffff;
export const PROC_COMPLETE = 1;

/** Default map sizes (bpf/profile.h); the loader overrides them. */
export const DEFAULT_CHUNKS = 4096;
export const DEFAULT_TABLES = 4096;
export const DEFAULT_PROCS = 1024;

export interface KernelMapping {
  /** Runtime start address. */
  start: number;
  /** Bytes (a mapping larger than 4 GiB is cut to 4 GiB). */
  size: number;
  /** pc - bias = table-relative address, modulo 2^64. */
  bias: bigint;
  /** NO_TABLE: frames in this mapping are walked with the frame pointer. */
  tableId: number;
}

export function encodeTableEntry(firstRow: number, rowCount: number): Buffer {
  const b = Buffer.alloc(TABLE_ENTRY_SIZE);
  b.writeUInt32LE(firstRow, 0);
  b.writeUInt32LE(rowCount, 4);
  return b;
}

/** struct unwind_proc for mappings sorted by start (at most MAX_MAPPINGS of them). */
export function encodeProc(mappings: readonly KernelMapping[], complete: boolean): Buffer {
  if (mappings.length > MAX_MAPPINGS) throw new RangeError(`${mappings.length} mappings, at most ${MAX_MAPPINGS}`);
  const b = Buffer.alloc(PROC_SIZE);
  b.writeUInt32LE(mappings.length, 0);
  b.writeUInt32LE(complete ? PROC_COMPLETE : 0, 4);
  // bytes 8..15: last_refresh_ns, owned by the BPF program
  mappings.forEach((m, i) => {
    const at = PROC_HEADER_SIZE + i * MAPPING_SIZE;
    b.writeBigUInt64LE(BigInt(m.start), at);
    b.writeBigUInt64LE(BigInt.asUintN(64, m.bias), at + 8);
    b.writeUInt32LE(Math.min(m.size, 0xffffffff), at + 16);
    b.writeUInt32LE(m.tableId >>> 0, at + 20);
  });
  return b;
}

export function decodeProc(b: Buffer): { complete: boolean; mappings: KernelMapping[] } {
  const count = b.readUInt32LE(0);
  const mappings: KernelMapping[] = [];
  for (let i = 0; i < Math.min(count, MAX_MAPPINGS); i++) {
    const at = PROC_HEADER_SIZE + i * MAPPING_SIZE;
    mappings.push({ start: Number(b.readBigUInt64LE(at)), bias: b.readBigUInt64LE(at + 8), size: b.readUInt32LE(at + 16), tableId: b.readUInt32LE(at + 20) });
  }
  return { complete: (b.readUInt32LE(4) & PROC_COMPLETE) !== 0, mappings };
}

export function u32Key(n: number): Buffer {
  const b = Buffer.alloc(4);
  b.writeUInt32LE(n >>> 0, 0);
  return b;
}
