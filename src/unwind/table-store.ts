// SPDX-License-Identifier: Apache-2.0
/**
 * The unwind tables resident in the kernel: one row space (unwind_chunks, 512 rows per value) shared
 * by every binary, a table id per binary (unwind_tables: where its rows are), a fixed budget.
 * Tables are allocated in whole chunks, first fit; when the budget is full, tables no process uses
 * any more are evicted, least recently used first. A table that still does not fit is refused and
 * counted: its binary is then walked with frame pointers.
 *
 * The order of writes keeps the kernel's view consistent: rows before the table entry that points
 * at them; on eviction, the entry is zeroed before its rows are reused.
 */
import { CHUNK_SIZE, encodeTableEntry, ROWS_PER_CHUNK, u32Key } from './kernel-layout';
import { encodeRows, UnwindTable } from './unwind-table';

/** The part of a loaded BPF object the unwinder writes to. */
export interface UnwindMapWriter {
  mapUpdate(map: string, key: Buffer, value: Buffer, flags?: number): void;
  mapDelete(map: string, key: Buffer): boolean;
}

export interface ResidentTable {
  key: string;
  id: number;
  /** ELF address the table's rows are relative to. */
  base: number;
  rows: number;
  firstChunk: number;
  chunks: number;
  /** Processes whose registration points at this table. */
  refs: number;
}

export interface TableStoreStats {
  /** Capacity and use of the row space, bytes (kernel memory, allocated when the program loads). */
  budgetBytes: number;
  residentBytes: number;
  residentTables: number;
  residentRows: number;
  tablesLoaded: number;
  tablesEvicted: number;
  /** Tables that did not fit even after evicting every unused one. */
  tablesRefused: number;
  /** Map writes the kernel refused (should stay 0). */
  writeErrors: number;
}

export class UnwindTableStore {
  private readonly resident = new Map<string, ResidentTable>();
  private readonly freeIds: number[] = [];
  /** Free chunk ranges [start, length], sorted by start, never adjacent. */
  private free: Array<[number, number]>;
  readonly stats: TableStoreStats;

  constructor(
    private readonly writer: UnwindMapWriter,
    readonly chunkCapacity: number,
    tableCapacity: number,
  ) {
    this.free = chunkCapacity > 0 ? [[0, chunkCapacity]] : [];
    for (let id = tableCapacity - 1; id >= 0; id--) this.freeIds.push(id);
    this.stats = {
      budgetBytes: chunkCapacity * CHUNK_SIZE,
      residentBytes: 0,
      residentTables: 0,
      residentRows: 0,
      tablesLoaded: 0,
      tablesEvicted: 0,
      tablesRefused: 0,
      writeErrors: 0,
    };
  }

  /** The resident table of `key` (marked most recently used), or undefined. */
  get(key: string): ResidentTable | undefined {
    const t = this.resident.get(key);
    if (t !== undefined) {
      this.resident.delete(key);
      this.resident.set(key, t);
    }
    return t;
  }

  /**
   * Uploads `table` under `key` and returns where it lives, or null when the budget (after evicting
   * unused tables) or the table ids are exhausted, or the kernel refused a write.
   */
  load(key: string, table: UnwindTable): ResidentTable | null {
    const rows = table.pcs.length;
    const chunks = Math.ceil(rows / ROWS_PER_CHUNK);
    let at = this.allocate(chunks);
    while ((at < 0 || this.freeIds.length === 0) && this.evictOne()) at = at < 0 ? this.allocate(chunks) : at;
    if (at < 0 || this.freeIds.length === 0) {
      if (at >= 0) this.release(at, chunks);
      this.stats.tablesRefused++;
      return null;
    }
    const id = this.freeIds.pop()!;
    try {
      const buf = Buffer.alloc(CHUNK_SIZE);
      for (let c = 0; c < chunks; c++) {
        buf.fill(0);
        encodeRows(table, c * ROWS_PER_CHUNK, Math.min(rows, (c + 1) * ROWS_PER_CHUNK), buf);
        this.writer.mapUpdate('unwind_chunks', u32Key(at + c), buf);
      }
      this.writer.mapUpdate('unwind_tables', u32Key(id), encodeTableEntry(at * ROWS_PER_CHUNK, rows));
    } catch {
      this.stats.writeErrors++;
      this.freeIds.push(id);
      this.release(at, chunks);
      return null;
    }
    const t: ResidentTable = { key, id, base: table.base, rows, firstChunk: at, chunks, refs: 0 };
    this.resident.set(key, t);
    this.stats.tablesLoaded++;
    this.stats.residentTables++;
    this.stats.residentRows += rows;
    this.stats.residentBytes += chunks * CHUNK_SIZE;
    return t;
  }

  /** Evicts the least recently used table no process refers to; false if there is none. */
  private evictOne(): boolean {
    for (const t of this.resident.values()) {
      if (t.refs > 0) continue;
      this.unload(t);
      this.stats.tablesEvicted++;
      return true;
    }
    return false;
  }

  private unload(t: ResidentTable): void {
    try {
      this.writer.mapUpdate('unwind_tables', u32Key(t.id), encodeTableEntry(0, 0));
    } catch {
      this.stats.writeErrors++;
    }
    this.resident.delete(t.key);
    this.freeIds.push(t.id);
    this.release(t.firstChunk, t.chunks);
    this.stats.residentTables--;
    this.stats.residentRows -= t.rows;
    this.stats.residentBytes -= t.chunks * CHUNK_SIZE;
  }

  /** First fit; -1 when no free range is large enough. */
  private allocate(chunks: number): number {
    for (let i = 0; i < this.free.length; i++) {
      const [start, len] = this.free[i]!;
      if (len < chunks) continue;
      if (len === chunks) this.free.splice(i, 1);
      else this.free[i] = [start + chunks, len - chunks];
      return start;
    }
    return -1;
  }

  private release(start: number, chunks: number): void {
    let i = 0;
    while (i < this.free.length && this.free[i]![0] < start) i++;
    this.free.splice(i, 0, [start, chunks]);
    // Merge with the neighbours.
    if (i + 1 < this.free.length && this.free[i]![0] + this.free[i]![1] === this.free[i + 1]![0]) {
      this.free[i]![1] += this.free[i + 1]![1];
      this.free.splice(i + 1, 1);
    }
    if (i > 0 && this.free[i - 1]![0] + this.free[i - 1]![1] === this.free[i]![0]) {
      this.free[i - 1]![1] += this.free[i]![1];
      this.free.splice(i, 1);
    }
  }

  /** Free chunks, for tests of the allocator. */
  get freeChunks(): number {
    return this.free.reduce((n, [, len]) => n + len, 0);
  }
}
