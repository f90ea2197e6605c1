// SPDX-License-Identifier: Apache-2.0
/**
 * The binaries the Symbolizer has seen, shared by every process that maps them: an open file
 * descriptor per file (so symbols of an exited process, or of a file deleted since, stay readable),
 * a small ELF summary, and the parsed symbol tables, cached by GNU build id (else by
 * device+inode+size+mtime). Both caches are bounded: descriptors by count, tables by bytes.
 */
import * as fs from 'node:fs';
import { isSystemError } from '../errors';
import { DebugRejection, debugFileCandidates, openDebugFile } from './debuginfo';
import { ElfFormatError } from './elf';
import { ElfFile, ElfSummary, FdSource, SymbolSourceKind, loadSymbolTable, openForReading } from './elf-file';
import { SymbolTable } from './symbol-table';

/** Why a binary could not serve symbols. */
export type FileFailure = 'file-missing' | 'file-permission' | 'file-unreadable' | 'malformed-elf' | 'file-evicted';

export interface BinaryStoreStats {
  /** Distinct binaries whose headers were read. */
  binariesOpened: number;
  /** Symbol tables built (a table evicted and rebuilt counts twice). */
  symbolTablesLoaded: number;
  symbolTablesEvicted: number;
  symbolTableCacheHits: number;
  /** Tables by where their symbols came from. */
  symbolSources: Record<SymbolSourceKind, number>;
  filesFailed: { malformed: number; missing: number; permission: number; other: number };
  debugFilesFound: number;
  debugFilesRejected: Record<DebugRejection, number>;
  /** The path as the process sees it held another file than the mapping (inode differs). */
  inodeMismatches: number;
  /**
   * Binaries opened by their path in ebpfprof's own mount namespace, the same device and inode as
   * the mapping, because the process's own view (/proc/PID/root) was refused: after ebpfprof drops
   * its capabilities, that needs ptrace-read access, which strict mode does not have.
   */
  openedOutsideProcessView: number;
  /**
   * Mappings served by a binary whose descriptor is held already, found by the mapping's device and
   * inode without opening anything (see BinaryStore.openHeld).
   */
  heldDescriptorHits: number;
  descriptorsEvicted: number;
  /** Bytes read from binaries and debug files (headers, tables). */
  bytesRead: number;
}

export function newBinaryStoreStats(): BinaryStoreStats {
  return {
    binariesOpened: 0,
    symbolTablesLoaded: 0,
    symbolTablesEvicted: 0,
    symbolTableCacheHits: 0,
    symbolSources: { symtab: 0, dynsym: 0, gopclntab: 0, 'debug-symtab': 0, none: 0 },
    filesFailed: { malformed: 0, missing: 0, permission: 0, other: 0 },
    debugFilesFound: 0,
    debugFilesRejected: { 'build-id-mismatch': 0, 'crc-mismatch': 0, malformed: 0, 'no-symtab': 0, 'same-file': 0 },
    inodeMismatches: 0,
    openedOutsideProcessView: 0,
    heldDescriptorHits: 0,
    descriptorsEvicted: 0,
    bytesRead: 0,
  };
}

/** A path that may serve a mapping only if it holds the same file: device (st_dev) and inode. */
export interface ExactPath {
  path: string;
  dev: number;
}

/** st_dev of a device printed as major:minor (glibc's makedev). */
export function deviceNumber(major: number, minor: number): number {
  return Number(((BigInt(major) & 0xfffff000n) << 32n) | ((BigInt(major) & 0xfffn) << 8n) | ((BigInt(minor) & 0xffffff00n) << 12n) | (BigInt(minor) & 0xffn));
}

/** Identity of a file's contents when it has no build id. */
export function identityKey(st: fs.Stats): string {
  return `${st.dev}:${st.ino}:${st.size}:${Math.trunc(st.mtimeMs)}`;
}

/** "dev:ino" of an identity key. */
function inodeOfKey(key: string): string {
  return key.slice(0, key.indexOf(':', key.indexOf(':') + 1));
}

export function failureOf(e: unknown): FileFailure {
  if (e instanceof ElfFormatError) return 'malformed-elf';
  if (isSystemError(e, 'ENOENT') || isSystemError(e, 'ENOTDIR') || isSystemError(e, 'ESRCH') || isSystemError(e, 'ELOOP')) return 'file-missing';
  if (isSystemError(e, 'EACCES') || isSystemError(e, 'EPERM')) return 'file-permission';
  return 'file-unreadable';
}

interface FileRef {
  key: string;
  size: number;
  /** Paths that reopen the file if its descriptor was evicted (newest first, few). */
  paths: string[];
}

export class BinaryModule {
  /** Key of the symbol table cache: the build id, or the file identity. */
  readonly symbolKey: string;
  debug: (FileRef & { via: 'build-id' | 'debuglink' }) | null = null;
  loadFailure: FileFailure | null = null;

  constructor(
    readonly file: FileRef,
    readonly summary: ElfSummary,
  ) {
    this.symbolKey = summary.buildId !== '' ? `b:${summary.buildId}` : `f:${file.key}`;
  }
}

export interface BinaryStoreOptions {
  maxOpenFiles: number;
  maxCachedBytes: number;
  debugDirs: readonly string[];
}

const MAX_REOPEN_PATHS = 4;
const MAX_MODULES = 16384;

export class BinaryStore {
  private readonly modules = new Map<string, BinaryModule | FileFailure>();
  private readonly fds = new Map<string, number>();
  /** "dev:ino" of each held descriptor -> its identity key (fds' keys). */
  private readonly heldByInode = new Map<string, string>();
  private readonly tables = new Map<string, SymbolTable>();
  private tableBytes = 0;

  constructor(
    private readonly options: BinaryStoreOptions,
    readonly stats: BinaryStoreStats = newBinaryStoreStats(),
  ) {}

  get openFiles(): number {
    return this.fds.size;
  }

  get cachedBytes(): number {
    return this.tableBytes;
  }

  get cachedTables(): number {
    return this.tables.size;
  }

  /**
   * The binary whose descriptor is held already and is the file with this device (st_dev) and
   * inode, without opening or stat'ing anything; null when none is held. A held descriptor keeps
   * its inode allocated, so no other file can have the same device and inode while it is open: a
   * mapping that names them maps this very file. (A file rewritten in place keeps its inode; so
   * does the mapping, which then sees the new bytes too.) This saves the per-mapping opens that
   * make every short-lived process cost several system calls and failed-open exceptions.
   */
  openHeld(dev: number, inode: number): BinaryModule | null {
    if (inode === 0) return null;
    const key = this.heldByInode.get(`${dev}:${inode}`);
    if (key === undefined || !this.fds.has(key)) return null;
    const known = this.modules.get(key);
    if (known === undefined || typeof known === 'string') return null;
    this.touch(this.modules, key, known);
    this.touch(this.fds, key, this.fds.get(key)!);
    this.stats.heldDescriptorHits++;
    return known;
  }

  /**
   * The binary behind a mapping, opened through the first of `paths` that holds the mapped inode
   * (the process's root view first, /proc/PID/map_files next); if none does, the first path that
   * opens at all; if none opens, an `exact` path that holds the very file (device and inode).
   * `roots` are where its debug file may be.
   */
  open(paths: readonly string[], inode: number, binaryPath: string, roots: readonly string[], exact: readonly ExactPath[] = []): BinaryModule | FileFailure {
    let failure: FileFailure = 'file-missing';
    let fallback: string | null = null;
    for (const p of paths) {
      let o: { fd: number; stat: fs.Stats };
      try {
        o = openForReading(p);
      } catch (e) {
        failure = failureOf(e);
        continue;
      }
      if (inode !== 0 && o.stat.ino !== inode) {
        this.stats.inodeMismatches++;
        fs.closeSync(o.fd);
        fallback ??= p;
        continue;
      }
      return this.adopt(o.fd, o.stat, p, binaryPath, roots);
    }
    if (fallback !== null) {
      try {
        const o = openForReading(fallback);
        return this.adopt(o.fd, o.stat, fallback, binaryPath, roots);
      } catch (e) {
        failure = failureOf(e);
      }
    }
    // Paths outside the process's view count only when they hold the very file that is mapped.
    if (inode !== 0) {
      for (const x of exact) {
        let o: { fd: number; stat: fs.Stats };
        try {
          o = openForReading(x.path);
        } catch {
          continue;
        }
        if (o.stat.ino === inode && o.stat.dev === x.dev) {
          this.stats.openedOutsideProcessView++;
          return this.adopt(o.fd, o.stat, x.path, binaryPath, roots);
        }
        fs.closeSync(o.fd);
      }
    }
    this.countFailure(failure);
    return failure;
  }

  private countFailure(f: FileFailure): void {
    const ff = this.stats.filesFailed;
    if (f === 'malformed-elf') ff.malformed++;
    else if (f === 'file-missing') ff.missing++;
    else if (f === 'file-permission') ff.permission++;
    else ff.other++;
  }

  /** Takes ownership of `fd`. */
  private adopt(fd: number, stat: fs.Stats, openedPath: string, binaryPath: string, roots: readonly string[]): BinaryModule | FileFailure {
    const key = identityKey(stat);
    const known = this.modules.get(key);
    if (known !== undefined) {
      this.touch(this.modules, key, known);
      if (typeof known === 'string') {
        fs.closeSync(fd);
        this.countFailure(known);
        return known;
      }
      addPath(known.file, openedPath);
      if (this.fds.has(key)) fs.closeSync(fd);
      else this.keepFd(key, fd);
      return known;
    }
    let module: BinaryModule;
    try {
      const src = new FdSource(fd, stat.size);
      try {
        module = new BinaryModule({ key, size: stat.size, paths: [openedPath] }, new ElfFile(src).summary());
      } finally {
        this.stats.bytesRead += src.bytesRead;
      }
    } catch (e) {
      fs.closeSync(fd);
      const f = failureOf(e);
      this.remember(key, f);
      this.countFailure(f);
      return f;
    }
    this.stats.binariesOpened++;
    if (!module.summary.hasSymtab) this.attachDebugFile(module, stat, binaryPath, roots);
    this.remember(key, module);
    this.keepFd(key, fd);
    return module;
  }

  private attachDebugFile(m: BinaryModule, stat: fs.Stats, binaryPath: string, roots: readonly string[]): void {
    const candidates = debugFileCandidates({ buildId: m.summary.buildId, debugLink: m.summary.debugLink, binaryPath, debugDirs: this.options.debugDirs, roots });
    if (candidates.length === 0) return;
    const found = openDebugFile(candidates, { buildId: m.summary.buildId, debugLink: m.summary.debugLink, dev: stat.dev, ino: stat.ino }, (r) => this.stats.debugFilesRejected[r]++);
    if (found === null) return;
    this.stats.debugFilesFound++;
    const key = identityKey(found.stat);
    m.debug = { key, size: found.stat.size, paths: [found.path], via: found.via };
    if (this.fds.has(key)) fs.closeSync(found.fd);
    else this.keepFd(key, found.fd);
  }

  private remember(key: string, v: BinaryModule | FileFailure): void {
    this.modules.set(key, v);
    if (this.modules.size > MAX_MODULES) this.modules.delete(this.modules.keys().next().value!);
  }

  private touch<V>(map: Map<string, V>, key: string, v: V): void {
    map.delete(key);
    map.set(key, v);
  }

  private keepFd(key: string, fd: number): void {
    this.fds.set(key, fd);
    this.heldByInode.set(inodeOfKey(key), key);
    while (this.fds.size > this.options.maxOpenFiles) {
      const [oldKey, oldFd] = this.fds.entries().next().value!;
      this.fds.delete(oldKey);
      if (this.heldByInode.get(inodeOfKey(oldKey)) === oldKey) this.heldByInode.delete(inodeOfKey(oldKey));
      fs.closeSync(oldFd);
      this.stats.descriptorsEvicted++;
    }
  }

  /** A reader for a file: its kept descriptor, else reopened through a remembered path. */
  private source(ref: FileRef): FdSource | FileFailure {
    const fd = this.fds.get(ref.key);
    if (fd !== undefined) {
      this.touch(this.fds, ref.key, fd);
      return new FdSource(fd, ref.size);
    }
    for (const p of ref.paths) {
      try {
        const o = openForReading(p);
        if (identityKey(o.stat) !== ref.key) {
          fs.closeSync(o.fd);
          continue;
        }
        this.keepFd(ref.key, o.fd);
        return new FdSource(o.fd, ref.size);
      } catch {
        // gone with its process, or replaced: try the next path
      }
    }
    return 'file-evicted';
  }

  /** The symbol table of a binary, from cache or built now; a failure is remembered for the module. */
  symbols(m: BinaryModule): SymbolTable | FileFailure {
    if (m.loadFailure !== null) return m.loadFailure;
    const cached = this.tables.get(m.symbolKey);
    if (cached !== undefined) {
      this.touch(this.tables, m.symbolKey, cached);
      this.stats.symbolTableCacheHits++;
      return cached;
    }
    const src = this.source(m.file);
    if (typeof src === 'string') return src; // not remembered: another process may reopen it later
    let debugSrc: FdSource | null = null;
    try {
      let debugElf: ElfFile | null = null;
      if (m.debug !== null) {
        const d = this.source(m.debug);
        if (typeof d !== 'string') {
          debugSrc = d;
          try {
            debugElf = new ElfFile(d);
          } catch {
            this.stats.debugFilesRejected.malformed++;
          }
        }
      }
      const { table, source } = loadSymbolTable(new ElfFile(src), debugElf);
      this.stats.symbolTablesLoaded++;
      this.stats.symbolSources[source]++;
      this.insertTable(m.symbolKey, table);
      return table;
    } catch (e) {
      const f = failureOf(e);
      m.loadFailure = f;
      this.countFailure(f);
      return f;
    } finally {
      this.stats.bytesRead += src.bytesRead + (debugSrc?.bytesRead ?? 0);
    }
  }

  /**
   * Runs `read` on the binary's ELF file (through its kept descriptor, else a remembered path);
   * the bytes it reads are counted. Read failures become a FileFailure; `read`'s own errors propagate.
   */
  withElf<T>(m: BinaryModule, read: (elf: ElfFile) => T): T | FileFailure {
    const src = this.source(m.file);
    if (typeof src === 'string') return src;
    try {
      return read(new ElfFile(src));
    } catch (e) {
      if (e instanceof ElfFormatError || isSystemError(e)) return failureOf(e);
      throw e;
    } finally {
      this.stats.bytesRead += src.bytesRead;
    }
  }

  private insertTable(key: string, table: SymbolTable): void {
    this.tables.set(key, table);
    this.tableBytes += table.byteSize;
    // Evict least recently used tables, but never the one just built (a single table larger than
    // the budget is still needed for the lookup that asked for it).
    while (this.tableBytes > this.options.maxCachedBytes && this.tables.size > 1) {
      const [oldKey, old] = this.tables.entries().next().value!;
      this.tables.delete(oldKey);
      this.tableBytes -= old.byteSize;
      this.stats.symbolTablesEvicted++;
    }
  }

  /** Closes every descriptor; the store stays usable (it reopens through remembered paths). */
  close(): void {
    for (const fd of this.fds.values()) {
      try {
        fs.closeSync(fd);
      } catch {
        // already closed: nothing to release
      }
    }
    this.fds.clear();
    this.heldByInode.clear();
  }
}

function addPath(ref: FileRef, p: string): void {
  const i = ref.paths.indexOf(p);
  if (i === 0) return;
  if (i > 0) ref.paths.splice(i, 1);
  ref.paths.unshift(p);
  if (ref.paths.length > MAX_REOPEN_PATHS) ref.paths.length = MAX_REOPEN_PATHS;
}
