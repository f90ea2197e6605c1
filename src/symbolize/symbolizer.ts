// SPDX-License-Identifier: Apache-2.0
/**
 * Turns (pid, address) and kernel addresses into function names: the library the recorder calls.
 *
 * User space: observeProcess() snapshots /proc/PID/maps and opens each executable file mapping
 * through /proc/PID/root (so containers resolve) or /proc/PID/map_files, keeping the descriptors in
 * a bounded LRU so that a process that exits before its samples are symbolized still resolves.
 * resolveUser() finds the mapping, turns the address into a file offset and then into an ELF virtual
 * address through the PT_LOAD headers, and looks it up in the binary's symbol table (cached by build
 * id), its separate debug file, or — for anonymous executable memory — the perf map the process's
 * runtime already writes. Kernel addresses resolve through /proc/kallsyms.
 *
 * Nothing here throws from resolve*: every failure becomes an unsymbolized frame that keeps
 * module+offset, and is counted by reason in stats().
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { Mapping, FrameKind } from '../profile/model';
import { BinaryModule, BinaryStore, BinaryStoreStats, deviceNumber, FileFailure, failureOf, newBinaryStoreStats } from './binaries';
import { demangle } from './demangle';
import { fileOffsetToVaddr, findBuildId, parseNotes } from './elf';
import { ElfFile, openForReading } from './elf-file';
import { KernelSymbols, readKallsyms } from './kallsyms';
import { parsePerfMap } from './perf-map';
import { ProcMapEntry, parseProcIds, parseProcMaps } from './proc-maps';
import { SymbolTable } from './symbol-table';
import { VdsoImage, loadOwnVdso } from './vdso';

export interface ResolvedFrame {
  kind: FrameKind;
  /** Demangled function name, or `<module basename>+0x<hex>` when not symbolized. */
  name: string;
  /** The symbol as in the binary when it differs from name (mangled), else ''. */
  systemName: string;
  /** Runtime mapping: start, limit, fileOffset, path (as the process sees it), buildId (hex). */
  mapping: Mapping | null;
  symbolized: boolean;
}

/** An executable mapping of an observed process and the binary behind it (the unwinder's input). */
export interface ExecutableMapping {
  start: number;
  end: number;
  /** File offset of `start`. */
  offset: number;
  kind: ProcMapEntry['kind'];
  /** The opened binary of a file mapping; null for anonymous memory, [vdso] or unreadable files. */
  module: BinaryModule | null;
}

export interface SymbolizerOptions {
  /** Where procfs is mounted (default /proc); tests point it at fixtures. */
  procRoot?: string;
  /** Default `${procRoot}/kallsyms`. */
  kallsymsPath?: string;
  /** Directories holding separate debug files (default ['/usr/lib/debug']). */
  debugDirs?: string[];
  /** Budget for cached symbol tables, bytes (default 64 MiB). */
  maxCachedBytes?: number;
  /** Descriptors kept open on binaries and debug files (default 256). */
  maxOpenFiles?: number;
  /** Processes whose state is kept (default 4096); the least recently used is forgotten beyond. */
  maxProcesses?: number;
  /** Cached (pid, address) results per process, and kernel results (default 65536 each). */
  maxCachedFrames?: number;
}

/** Why a frame stayed unsymbolized. */
export type UnresolvedReason =
  | 'no-process' // never observed and /proc/PID is gone
  | 'no-mapping' // the address is in no mapping of the process
  | 'file-missing' // the mapped file could not be opened (deleted, gone with its mount namespace)
  | 'file-permission'
  | 'file-unreadable'
  | 'file-evicted' // the descriptor was evicted from the LRU and no path reopens the same file
  | 'malformed-elf'
  | 'no-segment' // the file offset is in no PT_LOAD segment
  | 'no-symbol' // the binary has no symbol covering the address (stripped, or padding)
  | 'jit-no-perf-map' // anonymous executable memory, and the process publishes no perf map
  | 'jit-not-in-perf-map' // there is a perf map but it does not cover the address
  | 'not-executable' // stack, heap or other non-code memory
  | 'vdso-unavailable'
  | 'kernel-restricted' // kallsyms shows zero addresses (kptr_restrict)
  | 'kallsyms-unavailable'
  | 'kernel-no-symbol'
  | 'internal-error';

export interface SymbolizerStats {
  framesResolved: Record<'kernel' | 'native' | 'go' | 'jit' | 'vdso', number>;
  framesUnresolved: Record<UnresolvedReason, number>;
  /** resolve* calls answered from the (pid, address) or kernel result cache. */
  cacheHits: number;
  cacheMisses: number;
  processesObserved: number;
  /** observeProcess() on a pid whose /proc entry could not be read. */
  processObserveFailures: number;
  processesForgotten: number;
  processesTracked: number;
  /** /proc/PID/maps lines that could not be parsed. */
  mapsLinesSkipped: number;
  perfMapsLoaded: number;
  perfMapHits: number;
  perfMapLinesSkipped: number;
  /** Perf maps refused: not a regular file, a symlink, owned by another user, or too large. */
  perfMapsRefused: number;
  kallsymsLoaded: boolean;
  kallsymsRestricted: boolean;
  kallsymsSymbols: number;
  kallsymsLinesSkipped: number;
  /** Symbol lookups through the separate debug file of a binary. */
  debugFilesUsed: number;
  openFiles: number;
  symbolTablesCached: number;
  symbolTableBytes: number;
  binaries: BinaryStoreStats;
}

function newStats(): SymbolizerStats {
  return {
    framesResolved: { kernel: 0, native: 0, go: 0, jit: 0, vdso: 0 },
    framesUnresolved: {
      'no-process': 0,
      'no-mapping': 0,
      'file-missing': 0,
      'file-permission': 0,
      'file-unreadable': 0,
      'file-evicted': 0,
      'malformed-elf': 0,
      'no-segment': 0,
      'no-symbol': 0,
      'jit-no-perf-map': 0,
      'jit-not-in-perf-map': 0,
      'not-executable': 0,
      'vdso-unavailable': 0,
      'kernel-restricted': 0,
      'kallsyms-unavailable': 0,
      'kernel-no-symbol': 0,
      'internal-error': 0,
    },
    cacheHits: 0,
    cacheMisses: 0,
    processesObserved: 0,
    processObserveFailures: 0,
    processesForgotten: 0,
    processesTracked: 0,
    mapsLinesSkipped: 0,
    perfMapsLoaded: 0,
    perfMapHits: 0,
    perfMapLinesSkipped: 0,
    perfMapsRefused: 0,
    kallsymsLoaded: false,
    kallsymsRestricted: false,
    kallsymsSymbols: 0,
    kallsymsLinesSkipped: 0,
    debugFilesUsed: 0,
    openFiles: 0,
    symbolTablesCached: 0,
    symbolTableBytes: 0,
    binaries: newBinaryStoreStats(),
  };
}

/** A result and how to count it again when it is served from the cache. */
interface Cached {
  frame: ResolvedFrame;
  /** null when symbolized; `vdso` counts vdso frames apart from native ones. */
  reason: UnresolvedReason | null;
  resolvedAs: keyof SymbolizerStats['framesResolved'] | null;
}

interface MappingRecord {
  entry: ProcMapEntry;
  mapping: Mapping;
  /** The mapping as reported for perf-map frames ('[jit]' path), made on first use. */
  jitMapping: Mapping | null;
  module: BinaryModule | null;
  failure: FileFailure | null;
}

interface PerfMapState {
  fd: number;
  /** Bytes of the file parsed into `table` (up to its last complete line). */
  parsedBytes: number;
  table: SymbolTable | null;
}

interface ProcessState {
  pid: number;
  /** /proc/PID/stat start time: tells a reused pid from the process we observed. */
  startTime: string;
  root: string;
  nsPid: number;
  uid: number;
  records: MappingRecord[];
  alive: boolean;
  results: Map<number, Cached>;
  perfMap: PerfMapState | null;
  perfMapAttempts: number;
  anonLookups: number;
  /** One extra maps read per observe cycle when an address falls outside every known mapping. */
  refreshedOnMiss: boolean;
}

const MAX_PERF_MAP_BYTES = 256 * 1024 * 1024;
const hex = (n: number | bigint): string => n.toString(16);

function sameEntry(a: ProcMapEntry, b: ProcMapEntry): boolean {
  return (
    a.start === b.start &&
    a.end === b.end &&
    a.offset === b.offset &&
    a.inode === b.inode &&
    a.path === b.path &&
    a.executable === b.executable &&
    a.devMajor === b.devMajor &&
    a.devMinor === b.devMinor &&
    a.deleted === b.deleted
  );
}

/** What a frame's module is called when it is not symbolized. */
function moduleLabel(e: ProcMapEntry): string {
  switch (e.kind) {
    case 'file':
      return path.posix.basename(e.path);
    case 'anon':
    case 'memfd':
      return e.executable ? '[jit]' : '[anon]';
    default:
      return e.path;
  }
}

export class Symbolizer {
  private readonly procRoot: string;
  private readonly kallsymsPath: string;
  private readonly maxProcesses: number;
  private readonly maxCachedFrames: number;
  private readonly store: BinaryStore;
  private readonly st: SymbolizerStats = newStats();
  private readonly processes = new Map<number, ProcessState>();
  private kernel: KernelSymbols | null | undefined;
  private readonly kernelResults = new Map<bigint, Cached>();
  private readonly kernelMappings = new Map<number, Mapping>();
  private vdso: VdsoImage | null | undefined;
  private vdsoBuildId = '';

  constructor(options: SymbolizerOptions = {}) {
    this.procRoot = options.procRoot ?? '/proc';
    this.kallsymsPath = options.kallsymsPath ?? `${this.procRoot}/kallsyms`;
    this.maxProcesses = options.maxProcesses ?? 4096;
    this.maxCachedFrames = options.maxCachedFrames ?? 65536;
    this.store = new BinaryStore(
      { maxOpenFiles: options.maxOpenFiles ?? 256, maxCachedBytes: options.maxCachedBytes ?? 64 * 1024 * 1024, debugDirs: options.debugDirs ?? ['/usr/lib/debug'] },
      this.st.binaries,
    );
  }

  // ---------------------------------------------------------------- processes

  observeProcess(pid: number): void {
    try {
      this.observe(pid);
    } catch {
      this.st.processObserveFailures++;
    }
  }

  private observe(pid: number): void {
    const dir = `${this.procRoot}/${pid}`;
    let mapsText: string;
    let statText: string;
    try {
      statText = fs.readFileSync(`${dir}/stat`, 'latin1');
      mapsText = fs.readFileSync(`${dir}/maps`, 'latin1');
    } catch {
      const p = this.processes.get(pid);
      if (p !== undefined) p.alive = false; // exited: keep what was captured
      this.st.processObserveFailures++;
      return;
    }
    const startTime = startTimeOf(statText);
    let p = this.processes.get(pid);
    if (p !== undefined && p.startTime !== startTime) {
      this.forgetProcess(pid); // the pid was reused by another process
      p = undefined;
    }
    if (p === undefined) {
      let status = { nsPid: null as number | null, uid: null as number | null };
      try {
        status = parseProcIds(fs.readFileSync(`${dir}/status`, 'latin1'));
      } catch {
        // keep defaults: host pid, unknown uid
      }
      p = {
        pid,
        startTime,
        root: `${dir}/root`,
        nsPid: status.nsPid ?? pid,
        uid: status.uid ?? -1,
        records: [],
        alive: true,
        results: new Map(),
        perfMap: null,
        perfMapAttempts: 0,
        anonLookups: 0,
        refreshedOnMiss: false,
      };
      this.processes.set(pid, p);
      this.st.processesObserved++;
      while (this.processes.size > this.maxProcesses) this.forgetProcess(this.processes.keys().next().value!);
    } else {
      this.processes.delete(pid); // re-insert: most recently used last
      this.processes.set(pid, p);
    }
    p.refreshedOnMiss = false;
    this.applyMaps(p, mapsText);
  }

  private applyMaps(p: ProcessState, mapsText: string): void {
    const { entries, skipped } = parseProcMaps(mapsText);
    this.st.mapsLinesSkipped += skipped;
    const old = p.records;
    let changed = old.length !== entries.length;
    const records: MappingRecord[] = [];
    let j = 0;
    let hasAnonExec = false;
    for (const e of entries) {
      while (j < old.length && old[j]!.entry.start < e.start) j++;
      const prev = j < old.length && sameEntry(old[j]!.entry, e) ? old[j]! : null;
      if (prev === null) changed = true;
      records.push(prev ?? this.record(p, e));
      if (e.executable && (e.kind === 'anon' || e.kind === 'memfd')) hasAnonExec = true;
    }
    p.records = records;
    p.alive = true;
    // Cached results may name mappings that are gone (exec, dlclose) or miss new ones.
    if (changed) p.results.clear();
    if (hasAnonExec && p.perfMap === null && p.perfMapAttempts === 0) this.openPerfMap(p);
  }

  private record(p: ProcessState, e: ProcMapEntry): MappingRecord {
    const r: MappingRecord = {
      entry: e,
      mapping: { start: BigInt(e.start), limit: BigInt(e.end), fileOffset: BigInt(e.offset), path: e.path, buildId: '' },
      jitMapping: null,
      module: null,
      failure: null,
    };
    const held = e.kind === 'file' && e.executable ? this.store.openHeld(deviceNumber(e.devMajor, e.devMinor), e.inode) : null;
    if (held !== null) {
      r.module = held;
      r.mapping.buildId = held.summary.buildId;
    } else if (e.kind === 'file' && e.executable) {
      // The process's own view first (container paths); map_files reaches deleted or replaced files.
      const paths = [`${this.procRoot}/${p.pid}/map_files/${hex(e.start)}-${hex(e.end)}`];
      if (!e.deleted) paths.unshift(`${p.root}${e.path}`);
      // Without ptrace-read access (ebpfprof after dropping its capabilities) /proc/PID/root is
      // refused; the same path in our own mount namespace serves if it is the very file mapped.
      const exact = e.deleted ? [] : [{ path: e.path, dev: deviceNumber(e.devMajor, e.devMinor) }];
      const m = this.store.open(paths, e.inode, e.path, [p.root, ''], exact);
      if (typeof m === 'string') r.failure = m;
      else {
        r.module = m;
        r.mapping.buildId = m.summary.buildId;
      }
    } else if (e.kind === 'vdso') {
      r.mapping.path = '[vdso]';
      const v = this.ownVdso();
      if (v !== null) r.mapping.buildId = v.summary.buildId;
    } else if ((e.kind === 'anon' || e.kind === 'memfd') && e.executable) {
      r.mapping.path = '[jit]';
      r.jitMapping = r.mapping;
    } else if (e.kind === 'anon') {
      r.mapping.path = e.path === '' ? '[anon]' : e.path;
    }
    Object.freeze(r.mapping);
    return r;
  }

  /**
   * The executable mappings of `pid` as last observed (observeProcess), sorted by start; null when
   * the process was never observed or is forgotten.
   */
  executableMappings(pid: number): ExecutableMapping[] | null {
    const p = this.processes.get(pid);
    if (p === undefined) return null;
    return p.records.filter((r) => r.entry.executable).map((r) => ({ start: r.entry.start, end: r.entry.end, offset: r.entry.offset, kind: r.entry.kind, module: r.module }));
  }

  /** Runs `read` on a binary's ELF file (the unwinder reads .eh_frame through it). */
  withBinary<T>(m: BinaryModule, read: (elf: ElfFile) => T): T | FileFailure {
    return this.store.withElf(m, read);
  }

  /** Our own [vdso] image, shared by every process on this kernel; null when there is none. */
  vdsoImage(): VdsoImage | null {
    return this.ownVdso();
  }

  forgetProcess(pid: number): void {
    const p = this.processes.get(pid);
    if (p === undefined) return;
    this.processes.delete(pid);
    if (p.perfMap !== null) closeQuietly(p.perfMap.fd);
    this.st.processesForgotten++;
  }

  // ---------------------------------------------------------------- user space

  resolveUser(pid: number, address: number, isReturnAddress: boolean): ResolvedFrame {
    let cached: Cached;
    try {
      if (!Number.isSafeInteger(address) || address < 0) {
        return this.count(unresolved('no-mapping', `[unknown]+0x${hexSafe(address)}`, 'unknown', null));
      }
      // A return address points after the call; the call instruction is the byte before.
      const lookup = isReturnAddress && address > 0 ? address - 1 : address;
      let p = this.processes.get(pid);
      if (p === undefined) {
        this.observeProcess(pid);
        p = this.processes.get(pid);
      }
      if (p === undefined) {
        cached = unresolved('no-process', `[unknown]+0x${hex(address)}`, 'unknown', null);
      } else {
        const hit = p.results.get(lookup);
        if (hit !== undefined) {
          this.st.cacheHits++;
          return this.count(hit);
        }
        this.st.cacheMisses++;
        cached = this.resolveInProcess(p, lookup);
        if (p.results.size >= this.maxCachedFrames) p.results.clear();
        p.results.set(lookup, cached);
      }
    } catch {
      cached = unresolved('internal-error', `[unknown]+0x${hexSafe(address)}`, 'unknown', null);
    }
    return this.count(cached);
  }

  private count(c: Cached): ResolvedFrame {
    if (c.reason !== null) this.st.framesUnresolved[c.reason]++;
    else if (c.resolvedAs !== null) this.st.framesResolved[c.resolvedAs]++;
    return c.frame;
  }

  private resolveInProcess(p: ProcessState, lookup: number): Cached {
    let i = findRecord(p.records, lookup);
    if (i < 0 && p.alive && !p.refreshedOnMiss) {
      // A library loaded or JIT region mapped since the last snapshot.
      p.refreshedOnMiss = true;
      try {
        this.applyMaps(p, fs.readFileSync(`${this.procRoot}/${p.pid}/maps`, 'latin1'));
      } catch {
        p.alive = false;
      }
      i = findRecord(p.records, lookup);
    }
    if (i < 0) return unresolved('no-mapping', `[unknown]+0x${hex(lookup)}`, 'unknown', null);
    const r = p.records[i]!;
    const e = r.entry;
    switch (e.kind) {
      case 'file':
        return this.resolveFile(r, lookup);
      case 'vdso':
        return this.resolveVdso(r, lookup);
      case 'anon':
      case 'memfd':
      case 'heap':
        return this.resolveAnon(p, r, lookup);
      default:
        return unresolved('not-executable', `${moduleLabel(e)}+0x${hex(lookup - e.start)}`, 'unknown', r.mapping);
    }
  }

  private resolveFile(r: MappingRecord, lookup: number): Cached {
    const e = r.entry;
    const fileOffset = lookup - e.start + e.offset;
    const label = moduleLabel(e);
    if (r.module === null) {
      if (!e.executable) return unresolved('not-executable', `${label}+0x${hex(fileOffset)}`, 'native', r.mapping);
      return unresolved(r.failure ?? 'file-unreadable', `${label}+0x${hex(fileOffset)}`, 'native', r.mapping);
    }
    const m = r.module;
    const kind: FrameKind = m.summary.isGo ? 'go' : 'native';
    const vaddr = fileOffsetToVaddr(m.summary.segments, fileOffset);
    if (vaddr === null) return unresolved('no-segment', `${label}+0x${hex(fileOffset)}`, kind, r.mapping);
    const table = this.store.symbols(m);
    if (typeof table === 'string') return unresolved(table, `${label}+0x${hex(vaddr)}`, kind, r.mapping);
    const s = table.lookup(vaddr);
    if (s < 0) return unresolved('no-symbol', `${label}+0x${hex(vaddr)}`, kind, r.mapping);
    if (m.debug !== null) this.st.debugFilesUsed++;
    return symbolized(table.name(s), kind, r.mapping, kind);
  }

  private ownVdso(): VdsoImage | null {
    if (this.vdso === undefined) {
      try {
        this.vdso = loadOwnVdso();
        this.vdsoBuildId = this.vdso.summary.buildId;
      } catch {
        this.vdso = null;
      }
    }
    return this.vdso;
  }

  private resolveVdso(r: MappingRecord, lookup: number): Cached {
    const v = this.ownVdso();
    const offset = lookup - r.entry.start + r.entry.offset;
    if (v === null) return unresolved('vdso-unavailable', `[vdso]+0x${hex(offset)}`, 'native', r.mapping);
    const vaddr = fileOffsetToVaddr(v.summary.segments, offset);
    const s = vaddr === null ? -1 : v.table.lookup(vaddr);
    if (s < 0) return unresolved('no-symbol', `[vdso]+0x${hex(vaddr ?? offset)}`, 'native', r.mapping);
    return symbolized(v.table.name(s), 'native', r.mapping, 'vdso');
  }

  private resolveAnon(p: ProcessState, r: MappingRecord, lookup: number): Cached {
    const e = r.entry;
    p.anonLookups++;
    // A perf map created after observeProcess: retry opening it, at exponentially spaced lookups.
    if (p.perfMap === null && p.alive && (p.anonLookups & (p.anonLookups - 1)) === 0) this.openPerfMap(p);
    const pm = p.perfMap;
    if (pm !== null) {
      let s = pm.table === null ? -1 : pm.table.lookup(lookup);
      if (s < 0 && this.reloadPerfMap(p, pm)) s = pm.table === null ? -1 : pm.table.lookup(lookup);
      if (s >= 0) {
        this.st.perfMapHits++;
        // V8 also lists interpreted functions at their bytecode, which lives in non-executable heap.
        r.jitMapping ??= Object.freeze({ ...r.mapping, path: '[jit]' });
        return symbolized(pm.table!.name(s), 'jit', r.jitMapping, 'jit', true);
      }
    }
    const offset = `+0x${hex(lookup - e.start)}`;
    if (!e.executable) return unresolved('not-executable', `${moduleLabel(e)}${offset}`, 'unknown', r.mapping);
    return unresolved(pm === null ? 'jit-no-perf-map' : 'jit-not-in-perf-map', `[jit]${offset}`, 'jit', r.mapping);
  }

  /**
   * Opens /tmp/perf-<pid as the process knows it>.map inside the process's root if it exists. Only
   * what the runtime already wrote: nothing asks it to write one. Symlinks, non-regular files and
   * files owned by someone other than the process's user (or root) are refused, as perf does, so a
   * process cannot point us at a file it should not be able to make us read.
   */
  private openPerfMap(p: ProcessState): void {
    p.perfMapAttempts++;
    let o: { fd: number; stat: fs.Stats };
    try {
      o = openForReading(`${p.root}/tmp/perf-${p.nsPid}.map`, fs.constants.O_NOFOLLOW);
    } catch (e) {
      const failure = failureOf(e);
      // /proc/PID/root refused (no ptrace-read access after ebpfprof dropped its capabilities): a
      // process in our own pid namespace most likely shares our /tmp; the owner check still applies.
      const own = failure === 'file-permission' && p.nsPid === p.pid ? this.openHostPerfMap(p) : failure;
      if (typeof own === 'string') {
        if (own !== 'file-missing') this.st.perfMapsRefused++;
        return;
      }
      o = own;
    }
    if ((o.stat.uid !== p.uid && o.stat.uid !== 0) || o.stat.size > MAX_PERF_MAP_BYTES) {
      this.st.perfMapsRefused++;
      closeQuietly(o.fd);
      return;
    }
    p.perfMap = { fd: o.fd, parsedBytes: 0, table: null };
    this.st.perfMapsLoaded++;
    this.reloadPerfMap(p, p.perfMap);
  }

  private openHostPerfMap(p: ProcessState): { fd: number; stat: fs.Stats } | FileFailure {
    try {
      return openForReading(`/tmp/perf-${p.pid}.map`, fs.constants.O_NOFOLLOW);
    } catch (e) {
      return failureOf(e);
    }
  }

  /** Re-reads the perf map if it grew since it was parsed; true when the table changed. */
  private reloadPerfMap(_p: ProcessState, pm: PerfMapState): boolean {
    let size: number;
    try {
      size = fs.fstatSync(pm.fd).size;
    } catch {
      return false;
    }
    if (size <= pm.parsedBytes || size > MAX_PERF_MAP_BYTES) return false;
    const buf = Buffer.allocUnsafe(size);
    let n = 0;
    while (n < size) {
      const got = fs.readSync(pm.fd, buf, n, size - n, n);
      if (got === 0) break;
      n += got;
    }
    // The runtime may be mid-line: parse up to the last complete line only.
    const end = buf.lastIndexOf(0x0a, n - 1) + 1;
    if (end <= pm.parsedBytes) return false;
    const { table, skipped } = parsePerfMap(buf.toString('utf8', 0, end));
    this.st.perfMapLinesSkipped += skipped;
    pm.table = table;
    pm.parsedBytes = end;
    return true;
  }

  // ---------------------------------------------------------------- kernel

  private kernelSymbols(): KernelSymbols | null {
    if (this.kernel === undefined) {
      this.kernel = null;
      try {
        const { table, skipped, restricted } = readKallsyms(this.kallsymsPath);
        this.st.kallsymsLoaded = true;
        this.st.kallsymsRestricted = restricted;
        this.st.kallsymsSymbols = table.count;
        this.st.kallsymsLinesSkipped = skipped;
        this.kernel = table;
      } catch {
        this.st.kallsymsLoaded = false;
      }
    }
    return this.kernel;
  }

  /** Re-reads /proc/kallsyms (after modules were loaded or unloaded). */
  /** Loads /proc/kallsyms now rather than at the first kernel frame (before sampling starts). */
  loadKernelSymbols(): void {
    this.kernelSymbols();
  }

  reloadKernelSymbols(): void {
    this.kernel = undefined;
    this.kernelResults.clear();
    this.kernelMappings.clear();
  }

  resolveKernel(address: bigint, isReturnAddress: boolean): ResolvedFrame {
    let cached: Cached;
    try {
      const lookup = isReturnAddress && address > 0n ? address - 1n : address;
      const hit = this.kernelResults.get(lookup);
      if (hit !== undefined) {
        this.st.cacheHits++;
        return this.count(hit);
      }
      this.st.cacheMisses++;
      cached = this.resolveKernelUncached(lookup);
      if (this.kernelResults.size >= this.maxCachedFrames) this.kernelResults.clear();
      this.kernelResults.set(lookup, cached);
    } catch {
      cached = unresolved('internal-error', `[kernel]+0x${typeof address === 'bigint' ? hex(address) : '0'}`, 'kernel', null);
    }
    return this.count(cached);
  }

  private resolveKernelUncached(lookup: bigint): Cached {
    const label = `[kernel]+0x${hex(lookup)}`;
    const k = this.kernelSymbols();
    if (k === null) return unresolved('kallsyms-unavailable', label, 'kernel', null);
    if (this.st.kallsymsRestricted) return unresolved('kernel-restricted', label, 'kernel', null);
    const i = k.lookup(lookup);
    if (i < 0) return unresolved('kernel-no-symbol', label, 'kernel', null);
    return symbolized(k.name(i), 'kernel', this.kernelMapping(k, i), 'kernel');
  }

  private kernelMapping(k: KernelSymbols, i: number): Mapping {
    const module = k.module(i);
    const id = k.modules.indexOf(module);
    let m = this.kernelMappings.get(id);
    if (m === undefined) {
      const range = k.moduleRange(i);
      const notes = module === '' ? '/sys/kernel/notes' : `/sys/module/${module}/notes/.note.gnu.build-id`;
      let buildId = '';
      try {
        buildId = findBuildId(parseNotes(fs.readFileSync(notes)));
      } catch {
        // no notes for this module (built-in pseudo-modules, older kernels): no build id
      }
      m = Object.freeze({ start: range.start, limit: range.end + 1n, fileOffset: 0n, path: module === '' ? '[kernel.kallsyms]' : `[${module}]`, buildId });
      this.kernelMappings.set(id, m);
    }
    return m;
  }

  // ---------------------------------------------------------------- lifecycle

  stats(): SymbolizerStats {
    const s = this.st;
    s.processesTracked = this.processes.size;
    s.openFiles = this.store.openFiles + [...this.processes.values()].filter((p) => p.perfMap !== null).length;
    s.symbolTablesCached = this.store.cachedTables;
    s.symbolTableBytes = this.store.cachedBytes;
    return structuredClone(s);
  }

  /** Closes every file descriptor; further lookups reopen files through paths where they still can. */
  close(): void {
    for (const pid of [...this.processes.keys()]) this.forgetProcess(pid);
    this.store.close();
  }

  /** Build id of our own vdso ('' when none), for tests and diagnostics. */
  get vdsoBuildIdForTests(): string {
    this.ownVdso();
    return this.vdsoBuildId;
  }
}

function unresolved(reason: UnresolvedReason, name: string, kind: FrameKind, mapping: Mapping | null): Cached {
  return { frame: Object.freeze({ kind, name, systemName: '', mapping, symbolized: false }), reason, resolvedAs: null };
}

function symbolized(systemName: string, kind: FrameKind, mapping: Mapping | null, as: Cached['resolvedAs'], raw: boolean = false): Cached {
  let name = systemName;
  if (!raw) {
    try {
      name = demangle(systemName);
    } catch {
      name = systemName; // a demangler bug must not lose the frame
    }
  }
  return { frame: Object.freeze({ kind, name, systemName: name === systemName ? '' : systemName, mapping, symbolized: true }), reason: null, resolvedAs: as };
}

function hexSafe(n: number): string {
  return Number.isFinite(n) && n >= 0 ? Math.trunc(n).toString(16) : '0';
}

/** Field 22 of /proc/PID/stat (start time in clock ticks), after the parenthesised comm. */
function startTimeOf(stat: string): string {
  const close = stat.lastIndexOf(')');
  const fields = stat.slice(close + 2).split(' ');
  return fields[19] ?? '';
}

/** Index of the record whose mapping contains `address` (records sorted by start), or -1. */
function findRecord(records: readonly MappingRecord[], address: number): number {
  let lo = 0;
  let hi = records.length - 1;
  while (lo <= hi) {
    const mid = (lo + hi) >>> 1;
    const e = records[mid]!.entry;
    if (address < e.start) hi = mid - 1;
    else if (address >= e.end) lo = mid + 1;
    else return mid;
  }
  return -1;
}

function closeQuietly(fd: number): void {
  try {
    fs.closeSync(fd);
  } catch {
    // already closed
  }
}
