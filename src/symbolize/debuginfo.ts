// SPDX-License-Identifier: Apache-2.0
/**
 * Separate debug files (what `objcopy --only-keep-debug` and distribution -dbgsym packages produce),
 * found the way GDB finds them: by GNU build id under <debugdir>/.build-id/, and by the
 * .gnu_debuglink name next to the binary, in its .debug/ subdirectory and under <debugdir>/<dir>/.
 * Candidates inside the process's root (its container) come before the host's.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { crc32 } from './crc32';
import { DebugLink, SHT_SYMTAB } from './elf';
import { ElfFile, FdSource, openForReading } from './elf-file';

export interface DebugCandidate {
  path: string;
  via: 'build-id' | 'debuglink';
}

export interface DebugSearch {
  buildId: string;
  debugLink: DebugLink | null;
  /** The binary's path as the process sees it (the debuglink directories are relative to it). */
  binaryPath: string;
  debugDirs: readonly string[];
  /** Filesystem roots to search, in order: '/proc/PID/root' for a process's view, '' for the host. */
  roots: readonly string[];
}

/** Candidate paths in search order (pure: no file system access). */
export function debugFileCandidates(s: DebugSearch): DebugCandidate[] {
  const out: DebugCandidate[] = [];
  const seen = new Set<string>();
  const add = (p: string, via: DebugCandidate['via']): void => {
    const norm = path.normalize(p);
    if (!seen.has(norm)) {
      seen.add(norm);
      out.push({ path: norm, via });
    }
  };
  const validId = /^[0-9a-f]{4,128}$/.test(s.buildId);
  const dir = path.posix.dirname(s.binaryPath);
  for (const root of s.roots) {
    if (validId) for (const d of s.debugDirs) add(`${root}${d}/.build-id/${s.buildId.slice(0, 2)}/${s.buildId.slice(2)}.debug`, 'build-id');
    if (s.debugLink !== null && s.binaryPath.startsWith('/')) {
      const name = s.debugLink.fileName;
      add(`${root}${dir}/${name}`, 'debuglink');
      add(`${root}${dir}/.debug/${name}`, 'debuglink');
      for (const d of s.debugDirs) add(`${root}${d}${dir}/${name}`, 'debuglink');
    }
  }
  return out;
}

/** CRC32 of a whole file, read in chunks (debug files can be hundreds of MB). */
export function fileCrc32(fd: number, size: number): number {
  const chunk = Buffer.allocUnsafe(1 << 20);
  let crc = 0;
  let pos = 0;
  while (pos < size) {
    const n = fs.readSync(fd, chunk, 0, Math.min(chunk.length, size - pos), pos);
    if (n === 0) break;
    crc = crc32(chunk.subarray(0, n), crc);
    pos += n;
  }
  return crc;
}

export interface OpenedDebugFile {
  fd: number;
  stat: fs.Stats;
  path: string;
  via: DebugCandidate['via'];
}

export type DebugRejection = 'build-id-mismatch' | 'crc-mismatch' | 'malformed' | 'no-symtab' | 'same-file';

/**
 * Opens the first candidate that is really this binary's debug file: its build id must equal the
 * binary's (when both have one), a debuglink match must also have the recorded CRC32, and it must
 * hold a .symtab. Returns the open file (caller owns the fd) or null; `onReject` hears why
 * candidates that exist were refused.
 */
export function openDebugFile(
  candidates: readonly DebugCandidate[],
  expect: { buildId: string; debugLink: DebugLink | null; dev: number; ino: number },
  onReject: (reason: DebugRejection, path: string) => void = () => {},
): OpenedDebugFile | null {
  for (const c of candidates) {
    let opened: { fd: number; stat: fs.Stats };
    try {
      opened = openForReading(c.path);
    } catch {
      continue; // absent or unreadable: try the next place
    }
    const { fd, stat } = opened;
    let reason: DebugRejection | null = null;
    try {
      if (stat.dev === expect.dev && stat.ino === expect.ino) reason = 'same-file';
      else {
        const elf = new ElfFile(new FdSource(fd, stat.size));
        const id = elf.buildId();
        if (expect.buildId !== '' && id !== '' && id !== expect.buildId) reason = 'build-id-mismatch';
        else if (c.via === 'build-id' && id === '') reason = 'build-id-mismatch';
        else if (!elf.sections.some((s) => s.type === SHT_SYMTAB && s.size > 0)) reason = 'no-symtab';
        else if (c.via === 'debuglink' && expect.debugLink !== null && fileCrc32(fd, stat.size) !== expect.debugLink.crc) reason = 'crc-mismatch';
      }
    } catch {
      reason = 'malformed';
    }
    if (reason === null) return { fd, stat, path: c.path, via: c.via };
    fs.closeSync(fd);
    onReject(reason, c.path);
  }
  return null;
}
