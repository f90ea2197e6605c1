// SPDX-License-Identifier: Apache-2.0
/**
 * Registers processes with the kernel unwinder (bpf/profile.bpf.c, on_sample_dwarf): for each
 * executable mapping, the unwind table of its binary (built from .eh_frame once per binary, kept in
 * the kernel while some process uses it) and the bias that turns a runtime pc into a table address.
 * A process whose binaries have no tables at all is not registered: its user stacks keep coming from
 * frame pointers and the kernel's stack map, as before.
 *
 * Everything is read through the Symbolizer's view of the process (its /proc/PID/maps snapshot, the
 * binaries it opened through /proc/PID/root): nothing touches the process itself.
 */
import * as fs from 'node:fs';
import { ExecutableMapping, Symbolizer } from '../symbolize/symbolizer';
import { PF_X, PT_LOAD, ProgramHeader } from '../symbolize/elf';
import { BufferSource, ElfFile } from '../symbolize/elf-file';
import { CfiInputs, LoadedUnwindTable, readCfiInputs, UnwindTableFailure } from './elf-unwind';
import { TableBuilder } from './table-builder';
import {
  CHUNK_SIZE,
  DEFAULT_PROCS,
  DEFAULT_TABLES,
  encodeProc,
  KernelMapping,
  MAX_MAPPINGS,
  MAX_TABLE_ROWS,
  NO_TABLE,
  u32Key,
} from './kernel-layout';
import { ResidentTable, TableStoreStats, UnwindMapWriter, UnwindTableStore } from './table-store';

export interface ProcessUnwinderOptions {
  /** Kernel memory for unwind tables, bytes (default 32 MiB: /usr/bin/node takes 2.9). */
  tableBytes?: number;
  /** Distinct binaries with a table at once (default 4096). */
  maxTables?: number;
  /** Processes registered at once (default 1024); more are unwound with frame pointers, counted. */
  maxProcesses?: number;
  /** Rows per binary (default and maximum 2^23 - 1, 64 MiB): a larger binary gets no table. */
  maxRowsPerBinary?: number;
}

export const DEFAULT_TABLE_BYTES = 32 * 1024 * 1024;

/** Why a binary has no table in the kernel. */
export type BinaryTableFailure = UnwindTableFailure | 'unreadable' | 'budget-full';

export interface UnwinderStats {
  /** Processes registered now. */
  processes: number;
  /** Registrations done (first ones and refreshes). */
  registrations: number;
  /** Processes left on frame pointers because none of their binaries has a table (Go, JIT-only). */
  processesWithoutTables: number;
  /** Registrations the kernel refused (the process map was full): frame pointers instead. */
  processesRefused: number;
  /** Processes with more than 128 executable mappings: the rest are walked with frame pointers. */
  processesWithTooManyMappings: number;
  /** Distinct binaries given a table, and those refused by reason (each binary counted once). */
  binariesWithTables: number;
  binariesWithoutTables: Record<BinaryTableFailure, number>;
  /** Time spent building tables from .eh_frame, ms, and the largest table built (rows). */
  tableBuildMs: number;
  largestTableRows: number;
  kernel: TableStoreStats;
}

/** Where a mapping's table comes from: its key (the binary), its segments, how to read its inputs. */
interface TableSource {
  key: string;
  segments: readonly ProgramHeader[];
  readInputs: () => CfiInputs | BinaryTableFailure;
}

interface Registration {
  /** Table keys this registration holds a reference on. */
  keys: string[];
}

const MAX_REMEMBERED_FAILURES = 16384;
const SWEEP_INTERVAL_MS = 5000;

export class ProcessUnwinder {
  private writer: UnwindMapWriter | null = null;
  private store: UnwindTableStore | null = null;
  private readonly pending = new Set<number>();
  private readonly registered = new Map<number, Registration>();
  /** Binaries whose table could not be built, by key: not parsed again. */
  private readonly failures = new Map<string, BinaryTableFailure>();
  /** Tables being built (table-builder.ts: one per event-loop turn), by key, and the processes to register again when they are ready. */
  private readonly building = new Map<string, Promise<void>>();
  private readonly waiting = new Map<string, Set<number>>();
  /** Tables built before attach() (prepare()), uploaded when a process first needs them. */
  private readonly built = new Map<string, LoadedUnwindTable>();
  private readonly builder = new TableBuilder();
  private closed = false;
  private readonly chunks: number;
  private readonly tables: number;
  private readonly procs: number;
  private readonly maxRows: number;
  private lastSweep = Date.now();
  private readonly st = {
    registrations: 0,
    processesWithoutTables: 0,
    processesRefused: 0,
    processesWithTooManyMappings: 0,
    binariesWithTables: 0,
    binariesWithoutTables: { 'no-cfi': 0, 'malformed-cfi': 0, 'too-many-rows': 0, 'compressed-cfi': 0, unreadable: 0, 'budget-full': 0 } as Record<BinaryTableFailure, number>,
    tableBuildMs: 0,
    largestTableRows: 0,
  };
  /** Why the kernel side is unavailable (set by detach), for the summary. */
  disabledReason: string | null = null;

  constructor(
    private readonly symbolizer: Symbolizer,
    options: ProcessUnwinderOptions = {},
  ) {
    this.chunks = Math.max(1, Math.floor((options.tableBytes ?? DEFAULT_TABLE_BYTES) / CHUNK_SIZE));
    this.tables = options.maxTables ?? DEFAULT_TABLES;
    this.procs = options.maxProcesses ?? DEFAULT_PROCS;
    this.maxRows = Math.min(options.maxRowsPerBinary ?? MAX_TABLE_ROWS, MAX_TABLE_ROWS);
  }

  /** Sizes of the unwinder's maps, set by the sampler before it loads the program. */
  mapSizes(): Record<string, number> {
    return { unwind_chunks: this.chunks, unwind_tables: this.tables, unwind_procs: this.procs };
  }

  /** The sampler loaded the program: processes added so far are registered now, before sampling. */
  attach(writer: UnwindMapWriter): void {
    this.writer = writer;
    this.store = new UnwindTableStore(writer, this.chunks, this.tables);
    for (const pid of this.pending) this.addProcess(pid);
    this.pending.clear();
  }

  /**
   * The kernel side is gone (sampler closed) or unavailable (`reason`): registrations stop, the
   * queued builds finish, tables built for it are dropped.
   */
  detach(reason?: string): void {
    this.writer = null;
    this.store = null;
    this.closed = true;
    this.registered.clear();
    this.built.clear();
    this.waiting.clear();
    this.builder.close();
    if (reason !== undefined) this.disabledReason = reason;
  }

  /**
   * Before the sampler loads (record --pid): reads `pid`'s mappings and builds the tables of its
   * binaries, so that attach() registers it with every table and its first samples are complete.
   */
  async prepare(pid: number): Promise<void> {
    this.addProcess(pid);
    let mappings = this.symbolizer.executableMappings(pid);
    if (mappings === null) {
      this.symbolizer.observeProcess(pid);
      mappings = this.symbolizer.executableMappings(pid);
    }
    if (mappings === null) return;
    const builds: Promise<void>[] = [];
    for (const m of mappings) {
      const source = this.tableSource(m);
      if (source !== null && !this.failures.has(source.key) && !this.built.has(source.key)) builds.push(this.requestBuild(source, null));
    }
    await Promise.all(builds);
  }

  get attached(): boolean {
    return this.writer !== null;
  }

  isRegistered(pid: number): boolean {
    return this.registered.has(pid);
  }

  /**
   * Registers `pid` with the unwind tables of its binaries, or updates its registration after its
   * mappings changed (the caller observed them again). Before attach(), it is queued.
   */
  addProcess(pid: number): void {
    if (this.disabledReason !== null) return;
    if (this.writer === null) {
      this.pending.add(pid);
      return;
    }
    this.maybeSweep();
    let mappings = this.symbolizer.executableMappings(pid);
    if (mappings === null) {
      this.symbolizer.observeProcess(pid);
      mappings = this.symbolizer.executableMappings(pid);
    }
    if (mappings === null) return; // gone before we could read its mappings
    this.register(pid, mappings);
  }

  /** Reads `pid`'s mappings again and updates its registration (a pc outside them was seen). */
  refresh(pid: number): void {
    if (this.writer === null || this.disabledReason !== null) return;
    this.symbolizer.observeProcess(pid);
    this.addProcess(pid);
  }

  private register(pid: number, mappings: ExecutableMapping[]): void {
    const writer = this.writer!;
    const store = this.store!;
    const entries: Array<KernelMapping & { key: string | null }> = [];
    let fileTables = 0;
    let building = 0;
    for (const m of mappings) {
      let placed = this.place(pid, m);
      if (placed === 'building') {
        building++;
        placed = null;
      }
      if (placed !== null && m.kind === 'file') fileTables++;
      entries.push({
        start: m.start,
        size: m.end - m.start,
        bias: placed?.bias ?? 0n,
        tableId: placed?.tableId ?? NO_TABLE,
        key: placed?.key ?? null,
      });
    }
    // Every placed table holds a reference from here on (so that placing the next mapping cannot
    // evict it); the ones not kept are released below.
    const placedKeys = entries.map((e) => e.key).filter((k): k is string => k !== null);
    const old = this.registered.get(pid);
    if (fileTables === 0) {
      // Nothing to unwind with tables (yet: when a table being built is ready, the process is
      // registered again): frame pointers and the kernel's stack map do as well.
      for (const k of placedKeys) this.unref(k);
      if (building === 0) this.st.processesWithoutTables++;
      this.unregister(pid);
      return;
    }
    let listed = entries;
    const complete = entries.length <= MAX_MAPPINGS;
    if (!complete) {
      this.st.processesWithTooManyMappings++;
      // Mappings with tables first; the rest keep frame-pointer steps.
      listed = entries.filter((e) => e.tableId !== NO_TABLE).slice(0, MAX_MAPPINGS).sort((a, b) => a.start - b.start);
    }
    const keys = listed.map((e) => e.key).filter((k): k is string => k !== null);
    for (const k of keys) store.get(k)!.refs++;
    for (const k of placedKeys) this.unref(k);
    try {
      writer.mapUpdate('unwind_procs', u32Key(pid), encodeProc(listed, complete));
    } catch {
      // The process map is full (or the kernel refused): this process stays on frame pointers.
      for (const k of keys) this.unref(k);
      this.st.processesRefused++;
      this.unregister(pid);
      return;
    }
    if (old !== undefined) for (const k of old.keys) this.unref(k);
    this.registered.set(pid, { keys });
    this.st.registrations++;
  }

  /**
   * The table and bias for one mapping of `pid`, or null (frame-pointer steps there). A table not
   * built yet is queued for building; `pid` is registered again when it is ready.
   */
  private place(pid: number, m: ExecutableMapping): { tableId: number; bias: bigint; key: string } | 'building' | null {
    const source = this.tableSource(m);
    if (source === null) return null;
    const t = this.tableFor(source, pid);
    if (t === null || t === 'building') return t;
    const bias = biasOf(m, source.segments, t.base);
    if (bias === null) return null;
    t.refs++;
    return { tableId: t.id, bias, key: source.key };
  }

  /** Which binary's table a mapping needs, and how to read its inputs; null: none (anonymous memory, JIT code, unreadable files). */
  private tableSource(m: ExecutableMapping): TableSource | null {
    if (m.kind === 'file' && m.module !== null) {
      const mod = m.module;
      return {
        key: mod.symbolKey,
        segments: mod.summary.segments,
        readInputs: () => {
          const r = this.symbolizer.withBinary(mod, (elf) => readCfiInputs(elf, { maxRows: this.maxRows, go: mod.summary.isGo }));
          return typeof r === 'string' && !isTableFailure(r) ? 'unreadable' : (r as CfiInputs | UnwindTableFailure);
        },
      };
    }
    if (m.kind === 'vdso') {
      const v = this.symbolizer.vdsoImage();
      if (v === null) return null;
      return { key: `vdso:${v.summary.buildId}:${v.size}`, segments: v.summary.segments, readInputs: () => readCfiInputs(new ElfFile(new BufferSource(v.image)), { maxRows: this.maxRows }) };
    }
    return null;
  }

  /** The resident table of `source`, uploading one built earlier; 'building' once a build is requested; null: none. */
  private tableFor(source: TableSource, pid: number): ResidentTable | 'building' | null {
    const key = source.key;
    if (this.failures.has(key)) return null;
    const resident = this.store!.get(key);
    if (resident !== undefined) return resident;
    const built = this.built.get(key);
    if (built !== undefined) {
      this.built.delete(key);
      return this.upload(key, built);
    }
    void this.requestBuild(source, pid);
    return this.building.has(key) ? 'building' : null;
  }

  /**
   * Builds the table of `source` (once per key at a time, table-builder.ts); `pid` is registered again
   * when it is ready. Before attach() the table is kept until then; after, it is uploaded at once.
   */
  private requestBuild(source: TableSource, pid: number | null): Promise<void> {
    const key = source.key;
    if (pid !== null) {
      let w = this.waiting.get(key);
      if (w === undefined) this.waiting.set(key, (w = new Set()));
      w.add(pid);
    }
    const inFlight = this.building.get(key);
    if (inFlight !== undefined) return inFlight;
    const inputs = source.readInputs();
    if (typeof inputs === 'string') {
      this.fail(key, inputs);
      this.waiting.delete(key);
      return Promise.resolve();
    }
    const done = this.builder.build(inputs).then(({ result, ms }) => {
      this.building.delete(key);
      this.st.tableBuildMs += ms;
      const pids = this.waiting.get(key) ?? new Set<number>();
      this.waiting.delete(key);
      if (typeof result === 'string') {
        this.fail(key, result);
        return;
      }
      this.st.largestTableRows = Math.max(this.st.largestTableRows, result.table.pcs.length);
      if (this.closed) return;
      if (this.store === null) {
        this.built.set(key, result); // before attach(): uploaded when a process first needs it
        return;
      }
      this.upload(key, result);
      // Register them again, now with this table (a process that is gone is skipped by addProcess).
      for (const p of pids) this.addProcess(p);
    });
    this.building.set(key, done);
    return done;
  }

  private fail(key: string, why: BinaryTableFailure): void {
    this.failures.set(key, why);
    if (this.failures.size > MAX_REMEMBERED_FAILURES) this.failures.delete(this.failures.keys().next().value!);
    this.st.binariesWithoutTables[why]++;
  }

  /** Uploads a built table; null when the kernel's budget has no room (not remembered: it may later). */
  private upload(key: string, loaded: LoadedUnwindTable): ResidentTable | null {
    const t = this.store!.load(key, loaded.table);
    if (t === null) {
      this.st.binariesWithoutTables['budget-full']++;
      return null;
    }
    this.st.binariesWithTables++;
    return t;
  }

  private unref(key: string): void {
    const t = this.store?.get(key);
    if (t !== undefined && t.refs > 0) t.refs--;
  }

  /** Drops `pid`'s registration (it exited, or has nothing to unwind with tables). */
  unregister(pid: number): void {
    const r = this.registered.get(pid);
    this.registered.delete(pid);
    this.pending.delete(pid);
    if (this.writer !== null) {
      try {
        this.writer.mapDelete('unwind_procs', u32Key(pid));
      } catch {
        // already gone
      }
    }
    if (r !== undefined) for (const k of r.keys) this.unref(k);
  }

  /**
   * Forgets processes that exited (the kernel already dropped their entries at exit), so that their
   * tables can be evicted. At most every few seconds: it costs a stat() per registered process.
   */
  maybeSweep(now = Date.now()): void {
    if (now - this.lastSweep < SWEEP_INTERVAL_MS) return;
    this.lastSweep = now;
    for (const pid of [...this.registered.keys()]) if (!fs.existsSync(`/proc/${pid}`)) this.unregister(pid);
  }

  stats(): UnwinderStats {
    return {
      processes: this.registered.size,
      ...this.st,
      binariesWithoutTables: { ...this.st.binariesWithoutTables },
      tableBuildMs: Math.round(this.st.tableBuildMs),
      kernel: this.store ? { ...this.store.stats } : emptyStoreStats(this.chunks),
    };
  }
}

function isTableFailure(s: string): s is UnwindTableFailure {
  return s === 'no-cfi' || s === 'malformed-cfi' || s === 'too-many-rows' || s === 'compressed-cfi';
}

function emptyStoreStats(chunks: number): TableStoreStats {
  return { budgetBytes: chunks * CHUNK_SIZE, residentBytes: 0, residentTables: 0, residentRows: 0, tablesLoaded: 0, tablesEvicted: 0, tablesRefused: 0, writeErrors: 0 };
}

/**
 * pc - bias = table-relative address for pcs in mapping `m`: the mapping's file range lies in a
 * PT_LOAD segment (the executable one when several overlap), whose vaddr - offset is the link-time
 * shift. Null when no segment holds the mapping's offset.
 */
export function biasOf(m: { start: number; end: number; offset: number }, segments: readonly ProgramHeader[], base: number): bigint | null {
  let best: ProgramHeader | null = null;
  const from = m.offset;
  const to = m.offset + (m.end - m.start);
  for (const p of segments) {
    if (p.type !== PT_LOAD) continue;
    const overlaps = p.offset < to && p.offset + Math.max(p.filesz, 1) > from;
    if (!overlaps) continue;
    if (best === null || ((p.flags & PF_X) !== 0 && (best.flags & PF_X) === 0)) best = p;
  }
  if (best === null) return null;
  // vaddr(pc) = pc - start + offset - seg.offset + seg.vaddr; table address = vaddr(pc) - base.
  return BigInt(m.start) - BigInt(m.offset) + BigInt(best.offset) - BigInt(best.vaddr) + BigInt(base);
}
