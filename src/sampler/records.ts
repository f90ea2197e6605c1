// SPDX-License-Identifier: Apache-2.0
/**
 * Decoders of the records bpf/profile.bpf.c writes (layouts in bpf/profile.h). Pure functions over
 * Buffers; the sizes are checked against the object's BTF in test/sampler-records.test.ts.
 */
import { EbpfprofError } from '../errors';

export const TASK_COMM_LEN = 16;
export const MAX_STACK_DEPTH = 127;
export const COUNT_KEY_SIZE = 32;
export const COUNT_VALUE_SIZE = 48;
/** u32 tgid, u32 tid, u64 cpu_ns, u32 kstack_bytes, u32 ustack_bytes, u32 exec_id, u32 pad, two comms, two stacks. */
export const SAMPLE_EVENT_SIZE = 32 + 2 * TASK_COMM_LEN + 2 * 8 * MAX_STACK_DEPTH;
export const PROFILE_CONTROL_SIZE = 8;
export const PROCESS_EVENT_SIZE = 16 + TASK_COMM_LEN;
export const PROCESS_EXEC = 1;
export const PROCESS_FORK = 2;
export const PROCESS_MAPS_STALE = 3;
export const STACK_VALUE_SIZE = 8 * MAX_STACK_DEPTH;

/** enum profile_stat, in order. */
export const PROFILE_STATS = [
  'samples',
  'idle',
  'filtered',
  'aggregated',
  'kernelStackCollision',
  'userStackCollision',
  'kernelStackError',
  'userStackError',
  'countsFull',
  'ringBufferSent',
  'ringBufferFull',
  'forksFollowed',
  'targetsFull',
  'eventsFull',
  // Table-driven unwinding (on_sample_dwarf); see docs/unwinding.md.
  'unwindNoProcess',
  'unwindEndOk',
  'unwindEndFpZero',
  'unwindEndTruncated',
  'unwindEndReadFault',
  'unwindEndNoProgress',
  'unwindEndUnsupported',
  'unwindEndUnknownPc',
  'unwindEndNoUserRegs',
  'unwindTableFrames',
  'unwindFpFrames',
  'ustacksFull',
  'unwindRefreshSent',
] as const;
export type ProfileStatName = (typeof PROFILE_STATS)[number];
export type ProfileStats = Record<ProfileStatName, number>;

export interface CountRow {
  tgid: number;
  tid: number;
  /** -1 when the sample had no kernel stack. */
  kstackId: number;
  /** -1 when the sample had no user stack in the stack map (none, or unwound with tables). */
  ustackId: number;
  /** Key of the user stack unwound with tables in ustacks{0,1}; 0n when none. */
  ustackHash: bigint;
  /** Which image of the process ran (the kernel's self_exec_id, grows at each execve). */
  execId: number;
  samples: number;
  /** Sum of the perf event's sample periods: ns of CPU time for cpu-clock. */
  cpuNs: number;
  comm: string;
  processComm: string;
}

export interface SampleEvent {
  tgid: number;
  tid: number;
  execId: number;
  cpuNs: number;
  comm: string;
  processComm: string;
  /** Leaf first. */
  kernelStack: BigUint64Array;
  userStack: BigUint64Array;
}

export type ProcessEvent =
  /** `tgid` replaced its image; `execId` is the new image's (see CountRow.execId). */
  | { type: 'exec'; tgid: number; execId: number; comm: string }
  /** `tgid` was forked by `ppid`; until it execs it runs the parent's image `execId`. */
  | { type: 'fork'; tgid: number; ppid: number; execId: number; comm: string }
  /** The unwinder met a pc outside every mapping it knows of `tgid`: its mappings changed. */
  | { type: 'maps-stale'; tgid: number; execId: number; comm: string };

export class RecordError extends EbpfprofError {
  constructor(message: string) {
    super('EINPUT', message);
    this.name = 'RecordError';
  }
}

/** A NUL-terminated char[len] (the kernel's comm). */
export function decodeCString(buf: Buffer, offset: number, len: number): string {
  const end = buf.indexOf(0, offset);
  const stop = end === -1 || end > offset + len ? offset + len : end;
  return buf.toString('utf8', offset, stop);
}

export function decodeCountRows(keys: Buffer, values: Buffer, count: number): CountRow[] {
  if (keys.length !== count * COUNT_KEY_SIZE || values.length !== count * COUNT_VALUE_SIZE) {
    throw new RecordError(`counts map read: ${count} entries but ${keys.length} key bytes and ${values.length} value bytes`);
  }
  const rows: CountRow[] = new Array(count);
  for (let i = 0; i < count; i++) {
    const k = i * COUNT_KEY_SIZE;
    const v = i * COUNT_VALUE_SIZE;
    rows[i] = {
      tgid: keys.readUInt32LE(k),
      tid: keys.readUInt32LE(k + 4),
      kstackId: keys.readInt32LE(k + 8),
      ustackId: keys.readInt32LE(k + 12),
      execId: keys.readUInt32LE(k + 16),
      ustackHash: keys.readBigUInt64LE(k + 24),
      samples: Number(values.readBigUInt64LE(v)),
      cpuNs: Number(values.readBigUInt64LE(v + 8)),
      comm: decodeCString(values, v + 16, TASK_COMM_LEN),
      processComm: decodeCString(values, v + 32, TASK_COMM_LEN),
    };
  }
  return rows;
}

/**
 * A stack as the kernel stores it: up to MAX_STACK_DEPTH u64 addresses, leaf first, ending at the
 * first zero. Copied as bytes into a BigUint64Array (x86-64 is little-endian, like the kernel's
 * layout) rather than read one BigInt at a time: this runs for every stack of every drain.
 */
export function decodeStack(buf: Buffer, offset: number, bytes: number): BigUint64Array {
  if (bytes % 8 !== 0 || offset < 0 || offset + bytes > buf.length) {
    throw new RecordError(`stack of ${bytes} bytes at ${offset} does not fit a ${buf.length}-byte record`);
  }
  let n = 0;
  const max = bytes / 8;
  while (n < max && (buf.readUInt32LE(offset + n * 8) !== 0 || buf.readUInt32LE(offset + n * 8 + 4) !== 0)) n++;
  const out = new BigUint64Array(n);
  new Uint8Array(out.buffer).set(buf.subarray(offset, offset + n * 8));
  return out;
}

/** Unwound-stack map entries (ustacks{0,1}, u64 hash keys) read with mapEntries(): hash -> addresses. */
export function decodeHashedStacks(keys: Buffer, values: Buffer, count: number, valueSize = STACK_VALUE_SIZE): Map<bigint, BigUint64Array> {
  if (keys.length !== count * 8 || values.length !== count * valueSize) {
    throw new RecordError(`unwound-stack map read: ${count} entries but ${keys.length} key bytes and ${values.length} value bytes`);
  }
  const out = new Map<bigint, BigUint64Array>();
  for (let i = 0; i < count; i++) out.set(keys.readBigUInt64LE(i * 8), decodeStack(values, i * valueSize, valueSize));
  return out;
}

/** Stack map entries read with mapEntries(): id -> addresses. */
export function decodeStackEntries(keys: Buffer, values: Buffer, count: number, valueSize = STACK_VALUE_SIZE): Map<number, BigUint64Array> {
  if (keys.length !== count * 4 || values.length !== count * valueSize) {
    throw new RecordError(`stack map read: ${count} entries but ${keys.length} key bytes and ${values.length} value bytes`);
  }
  const out = new Map<number, BigUint64Array>();
  for (let i = 0; i < count; i++) out.set(keys.readUInt32LE(i * 4), decodeStack(values, i * valueSize, valueSize));
  return out;
}

export function decodeSampleEvent(rec: Buffer): SampleEvent {
  if (rec.length !== SAMPLE_EVENT_SIZE) {
    throw new RecordError(`sample record of ${rec.length} bytes, expected ${SAMPLE_EVENT_SIZE}`);
  }
  const kbytes = rec.readUInt32LE(16);
  const ubytes = rec.readUInt32LE(20);
  const stackBytes = 8 * MAX_STACK_DEPTH;
  if (kbytes > stackBytes || ubytes > stackBytes || kbytes % 8 !== 0 || ubytes % 8 !== 0) {
    throw new RecordError(`sample record with stack lengths ${kbytes}/${ubytes} bytes (max ${stackBytes}, multiples of 8)`);
  }
  const kstackAt = 32 + 2 * TASK_COMM_LEN;
  return {
    tgid: rec.readUInt32LE(0),
    tid: rec.readUInt32LE(4),
    execId: rec.readUInt32LE(24),
    cpuNs: Number(rec.readBigUInt64LE(8)),
    comm: decodeCString(rec, 32, TASK_COMM_LEN),
    processComm: decodeCString(rec, 32 + TASK_COMM_LEN, TASK_COMM_LEN),
    kernelStack: decodeStack(rec, kstackAt, kbytes),
    userStack: decodeStack(rec, kstackAt + stackBytes, ubytes),
  };
}

export function decodeProcessEvent(rec: Buffer): ProcessEvent {
  if (rec.length !== PROCESS_EVENT_SIZE) throw new RecordError(`process event of ${rec.length} bytes, expected ${PROCESS_EVENT_SIZE}`);
  const type = rec.readUInt32LE(0);
  const tgid = rec.readUInt32LE(4);
  const execId = rec.readUInt32LE(8);
  const comm = decodeCString(rec, 16, TASK_COMM_LEN);
  if (type === PROCESS_EXEC) return { type: 'exec', tgid, execId, comm };
  if (type === PROCESS_FORK) return { type: 'fork', tgid, ppid: rec.readUInt32LE(12), execId, comm };
  if (type === PROCESS_MAPS_STALE) return { type: 'maps-stale', tgid, execId, comm };
  throw new RecordError(`process event of unknown type ${type}`);
}

/**
 * Splits a ring-buffer batch from the addon (records as `u32 length, u32 reserved, bytes, padding to
 * 8`) into record views. A batch whose framing is inconsistent throws: the addon wrote it, so that
 * would be a bug, not bad input from the kernel.
 */
export function splitRingBufferBatch(batch: Buffer, records: number): Buffer[] {
  const out: Buffer[] = [];
  let at = 0;
  while (at < batch.length) {
    if (at + 8 > batch.length) throw new RecordError(`ring buffer batch truncated at byte ${at} of ${batch.length}`);
    const len = batch.readUInt32LE(at);
    const end = at + 8 + len;
    if (end > batch.length) throw new RecordError(`ring buffer record of ${len} bytes overruns its batch at byte ${at}`);
    out.push(batch.subarray(at + 8, end));
    at = at + 8 + ((len + 7) & ~7);
  }
  if (out.length !== records) throw new RecordError(`ring buffer batch holds ${out.length} records, addon said ${records}`);
  return out;
}

/** Sums a per-CPU array value of u64 counters (one 8-byte slot per possible CPU). */
export function sumPerCpu(value: Buffer): number {
  let sum = 0n;
  for (let at = 0; at + 8 <= value.length; at += 8) sum += value.readBigUInt64LE(at);
  return Number(sum);
}

export function encodeControl(activeSet: 0 | 1): Buffer {
  const b = Buffer.alloc(PROFILE_CONTROL_SIZE);
  b.writeUInt32LE(activeSet, 0);
  return b;
}

export function u32Key(n: number): Buffer {
  const b = Buffer.alloc(4);
  b.writeUInt32LE(n >>> 0, 0);
  return b;
}
