// SPDX-License-Identifier: Apache-2.0
/**
 * Parsers for the /proc/PID files symbolization reads: maps (which file backs which address range)
 * and status (the pid as the process sees it in its own pid namespace, its uid). Pure functions over
 * text; odd lines are counted and skipped, never thrown on, because /proc contents change under us.
 */
import { parseProcStatus } from '../process/proc';

/** What backs a mapping. */
export type MapKind =
  | 'file' // a file path
  | 'anon' // no name, or [anon:NAME] (prctl PR_SET_VMA_ANON_NAME)
  | 'memfd' // /memfd:NAME (deleted) — a file without a path, used by JITs for dual mappings
  | 'vdso'
  | 'vsyscall'
  | 'stack'
  | 'heap'
  | 'special'; // [vvar], [uprobes] and other kernel pseudo-mappings

export interface ProcMapEntry {
  start: number;
  end: number;
  readable: boolean;
  writable: boolean;
  executable: boolean;
  shared: boolean;
  /** File offset of `start`. */
  offset: number;
  /** Device as the kernel prints it ("fe:01"), and as major/minor numbers. */
  devMajor: number;
  devMinor: number;
  inode: number;
  /** Path as the process sees it, without the " (deleted)" suffix; '' for anonymous memory. */
  path: string;
  /** The file was deleted or replaced after it was mapped. */
  deleted: boolean;
  kind: MapKind;
}

export interface ProcMapsResult {
  entries: ProcMapEntry[];
  /** Lines that could not be parsed, or ranges beyond 2^53 (other than the [vsyscall] page). */
  skipped: number;
}

const DELETED = ' (deleted)';
// start-end perms offset dev inode [path]; the path is everything after the inode and its padding,
// so it may contain spaces.
const LINE = /^([0-9a-f]+)-([0-9a-f]+) ([r-])([w-])([x-])([ps]) ([0-9a-f]+) ([0-9a-f]+):([0-9a-f]+) (\d+)(?: +(.*))?$/;

function hexNumber(s: string): number | null {
  if (s.length > 14) return null; // > 2^56: certainly beyond a safe integer
  const v = parseInt(s, 16);
  return Number.isSafeInteger(v) ? v : null;
}

function kindOf(path: string, inode: number): MapKind {
  if (path === '') return 'anon';
  if (path.startsWith('[')) {
    if (path === '[vdso]') return 'vdso';
    if (path === '[vsyscall]') return 'vsyscall';
    if (path === '[heap]') return 'heap';
    if (path === '[stack]' || path.startsWith('[stack:')) return 'stack';
    if (path.startsWith('[anon:') || path.startsWith('[anon_shmem:')) return 'anon';
    return 'special';
  }
  // The kernel prints memfd mappings as "/memfd:NAME (deleted)": a path that is not one.
  if (path.startsWith('/memfd:') || path.startsWith('memfd:')) return 'memfd';
  if (path.startsWith('/')) return 'file';
  // Other names without a leading slash (e.g. "anon_inode:[perf_event]", "/dev/zero" is a file):
  return inode === 0 ? 'anon' : 'special';
}

/** The kernel escapes a newline in a path as \012 (seq_path with "\n"); undo that. */
function unescapePath(p: string): string {
  return p.includes('\\012') ? p.replace(/\\012/g, '\n') : p;
}

export function parseProcMapsLine(line: string): ProcMapEntry | null {
  const m = LINE.exec(line);
  if (m === null) return null;
  const start = hexNumber(m[1]!);
  const end = hexNumber(m[2]!);
  const offset = hexNumber(m[7]!);
  const inode = Number(m[10]!);
  if (start === null || end === null || offset === null || end < start || !Number.isSafeInteger(inode)) return null;
  let path = unescapePath(m[11] ?? '');
  let deleted = false;
  if (path.endsWith(DELETED)) {
    deleted = true;
    path = path.slice(0, -DELETED.length);
  }
  return {
    start,
    end,
    readable: m[3] === 'r',
    writable: m[4] === 'w',
    executable: m[5] === 'x',
    shared: m[6] === 's',
    offset,
    devMajor: parseInt(m[8]!, 16),
    devMinor: parseInt(m[9]!, 16),
    inode,
    path,
    deleted,
    kind: kindOf(path, inode),
  };
}

/** Parses /proc/PID/maps; entries come back sorted by start address. */
export function parseProcMaps(text: string): ProcMapsResult {
  const entries: ProcMapEntry[] = [];
  let skipped = 0;
  for (const line of text.split('\n')) {
    if (line === '') continue;
    const e = parseProcMapsLine(line);
    // [vsyscall] sits above 2^53 on x86_64: it holds no symbols and is expected, so not "skipped".
    if (e !== null) entries.push(e);
    else if (!line.endsWith(' [vsyscall]')) skipped++;
  }
  // The kernel prints them sorted; sorting again keeps binary search correct for any input.
  entries.sort((a, b) => a.start - b.start);
  return { entries, skipped };
}

/** Index of the entry containing `address` in entries sorted by start, or -1. */
export function findMapping(entries: readonly ProcMapEntry[], address: number): number {
  let lo = 0;
  let hi = entries.length - 1;
  while (lo <= hi) {
    const mid = (lo + hi) >>> 1;
    const e = entries[mid]!;
    if (address < e.start) hi = mid - 1;
    else if (address >= e.end) lo = mid + 1;
    else return mid;
  }
  return -1;
}

export interface ProcStatus {
  /** The pid in the innermost pid namespace (last NSpid field); the host pid when not namespaced. */
  nsPid: number | null;
  /** Real uid. */
  uid: number | null;
}

/** The fields of /proc/PID/status that symbolization needs. */
export function parseProcIds(text: string): ProcStatus {
  const fields = parseProcStatus(text);
  const firstOrLast = (key: string, last: boolean): number | null => {
    const words = fields.get(key)?.split(/\s+/).filter(Boolean) ?? [];
    const word = last ? words[words.length - 1] : words[0];
    const n = word === undefined || !/^\d+$/.test(word) ? NaN : Number(word);
    return Number.isSafeInteger(n) ? n : null;
  };
  const nsPid = firstOrLast('NSpid', true);
  return { nsPid: nsPid !== null && nsPid > 0 ? nsPid : null, uid: firstOrLast('Uid', false) };
}
