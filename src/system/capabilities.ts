// SPDX-License-Identifier: Apache-2.0
/**
 * Linux capabilities of a process, from the Cap* lines of /proc/PID/status. The parser is a pure
 * function over the file's text (tested with fixtures, fuzzed); readCapabilities() is the thin
 * file-reading wrapper. Sets are bigints because the kernel's capability mask is 64 bits wide.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { EbpfprofError, errorMessage } from '../errors';
import { parseProcStatus } from '../process/proc';

/** Capability names indexed by bit number (include/uapi/linux/capability.h). */
export const CAPABILITY_NAMES = [
  'CAP_CHOWN', // 0
  'CAP_DAC_OVERRIDE', // 1
  'CAP_DAC_READ_SEARCH', // 2
  'CAP_FOWNER', // 3
  'CAP_FSETID', // 4
  'CAP_KILL', // 5
  'CAP_SETGID', // 6
  'CAP_SETUID', // 7
  'CAP_SETPCAP', // 8
  'CAP_LINUX_IMMUTABLE', // 9
  'CAP_NET_BIND_SERVICE', // 10
  'CAP_NET_BROADCAST', // 11
  'CAP_NET_ADMIN', // 12
  'CAP_NET_RAW', // 13
  'CAP_IPC_LOCK', // 14
  'CAP_IPC_OWNER', // 15
  'CAP_SYS_MODULE', // 16
  'CAP_SYS_RAWIO', // 17
  'CAP_SYS_CHROOT', // 18
  'CAP_SYS_PTRACE', // 19
  'CAP_SYS_PACCT', // 20
  'CAP_SYS_ADMIN', // 21
  'CAP_SYS_BOOT', // 22
  'CAP_SYS_NICE', // 23
  'CAP_SYS_RESOURCE', // 24
  'CAP_SYS_TIME', // 25
  'CAP_SYS_TTY_CONFIG', // 26
  'CAP_MKNOD', // 27
  'CAP_LEASE', // 28
  'CAP_AUDIT_WRITE', // 29
  'CAP_AUDIT_CONTROL', // 30
  'CAP_SETFCAP', // 31
  'CAP_MAC_OVERRIDE', // 32
  'CAP_MAC_ADMIN', // 33
  'CAP_SYSLOG', // 34
  'CAP_WAKE_ALARM', // 35
  'CAP_BLOCK_SUSPEND', // 36
  'CAP_AUDIT_READ', // 37
  'CAP_PERFMON', // 38 (Linux 5.8)
  'CAP_BPF', // 39 (Linux 5.8)
  'CAP_CHECKPOINT_RESTORE', // 40 (Linux 5.9)
] as const;

export type CapabilityName = (typeof CAPABILITY_NAMES)[number];

/** Bit numbers of the capabilities ebpfprof reasons about. */
export const CAP_DAC_READ_SEARCH = 2;
export const CAP_SYS_PTRACE = 19;
export const CAP_SYS_ADMIN = 21;
export const CAP_SYS_RESOURCE = 24;
export const CAP_SYSLOG = 34;
export const CAP_PERFMON = 38;
export const CAP_BPF = 39;

/** A capability given by name ('CAP_BPF', case-insensitive, prefix optional) or bit number. */
export type Capability = CapabilityName | number | (string & {});

export interface ProcessCapabilities {
  /** CapEff: what the process can use right now. */
  effective: bigint;
  /** CapPrm: what it may make effective. */
  permitted: bigint;
  /** CapInh, CapBnd, CapAmb: undefined when the status file lacks the line (very old kernels). */
  inheritable?: bigint;
  bounding?: bigint;
  ambient?: bigint;
  /** Real, effective, saved and filesystem uid from the Uid: line; undefined if absent. */
  uids?: { real: number; effective: number; saved: number; fs: number };
  /** NoNewPrivs: (Linux 4.10+): execve can grant no privileges. undefined when the line is absent. */
  noNewPrivs?: boolean;
}

export function capabilityBit(cap: Capability): number {
  if (typeof cap === 'number') {
    if (!Number.isInteger(cap) || cap < 0 || cap > 63) throw new EbpfprofError('EBADARG', `capability bit ${cap} is not an integer in 0..63`);
    return cap;
  }
  const upper = cap.toUpperCase();
  const bit = (CAPABILITY_NAMES as readonly string[]).indexOf(upper.startsWith('CAP_') ? upper : `CAP_${upper}`);
  if (bit < 0) throw new EbpfprofError('EBADARG', `unknown capability ${cap}`);
  return bit;
}

/** Name of a bit; bits the table does not know yet read as "CAP_<n>". */
export function capabilityName(bit: number): string {
  return CAPABILITY_NAMES[bit] ?? `CAP_${bit}`;
}

export function hasCapability(set: bigint, cap: Capability): boolean {
  return ((set >> BigInt(capabilityBit(cap))) & 1n) === 1n;
}

/** Names of every bit set in `set`, lowest bit first. */
export function capabilityNames(set: bigint): string[] {
  const names: string[] = [];
  for (let bit = 0; bit < 64; bit++) if ((set >> BigInt(bit)) & 1n) names.push(capabilityName(bit));
  return names;
}

/** The set holding exactly the given capabilities. */
export function capabilitySet(caps: readonly Capability[]): bigint {
  let set = 0n;
  for (const c of caps) set |= 1n << BigInt(capabilityBit(c));
  return set;
}

const HEX_MASK = /^[0-9a-fA-F]{1,16}$/;

/**
 * The capability and uid lines of a /proc/PID/status file. CapEff and CapPrm are required (every
 * kernel since 2.6 prints them); a missing or malformed one is an EINPUT error, so a caller never
 * mistakes an unreadable file for "no capabilities".
 */
export function parseCapabilities(text: string | Buffer): ProcessCapabilities {
  const fields = parseProcStatus(text);
  const masks = new Map<string, bigint>();
  for (const key of ['CapInh', 'CapPrm', 'CapEff', 'CapBnd', 'CapAmb']) {
    const value = fields.get(key);
    if (value === undefined) continue;
    if (!HEX_MASK.test(value)) throw new EbpfprofError('EINPUT', `malformed ${key} line in a /proc status file: '${`${key}:\t${value}`.slice(0, 80)}'`);
    masks.set(key, BigInt(`0x${value}`));
  }
  let uids: ProcessCapabilities['uids'];
  const uid = fields.get('Uid')?.split(/\s+/).map(Number);
  if (uid && uid.length === 4 && uid.every((n) => Number.isInteger(n) && n >= 0)) uids = { real: uid[0]!, effective: uid[1]!, saved: uid[2]!, fs: uid[3]! };
  const effective = masks.get('CapEff');
  const permitted = masks.get('CapPrm');
  if (effective === undefined || permitted === undefined) {
    throw new EbpfprofError('EINPUT', `a /proc status file without ${effective === undefined ? 'CapEff' : 'CapPrm'}: cannot tell which capabilities the process holds`);
  }
  const caps: ProcessCapabilities = { effective, permitted };
  const inh = masks.get('CapInh');
  const bnd = masks.get('CapBnd');
  const amb = masks.get('CapAmb');
  if (inh !== undefined) caps.inheritable = inh;
  if (bnd !== undefined) caps.bounding = bnd;
  if (amb !== undefined) caps.ambient = amb;
  if (uids) caps.uids = uids;
  const nnp = fields.get('NoNewPrivs');
  if (nnp === '0' || nnp === '1') caps.noNewPrivs = nnp === '1';
  return caps;
}

/** Reads and parses /proc/<pid>/status (default: this process). */
export function readCapabilities(pid: number | 'self' = 'self', procRoot = '/proc'): ProcessCapabilities {
  const file = path.join(procRoot, String(pid), 'status');
  let text: Buffer;
  try {
    text = fs.readFileSync(file);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code === 'ENOENT' || code === 'ESRCH') throw new EbpfprofError('ENOPROC', `process ${pid} does not exist (reading ${file})`, { cause: e });
    throw new EbpfprofError('EINPUT', `cannot read ${file}: ${errorMessage(e)}`, { cause: e });
  }
  return parseCapabilities(text);
}
