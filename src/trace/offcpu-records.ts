// SPDX-License-Identifier: Apache-2.0
/**
 * Decoders of what bpf/offcpu.bpf.c writes (layouts in bpf/offcpu.h). Pure over Buffers; sizes are
 * checked against the object's BTF in test/trace-records.test.ts.
 */
import { decodeCString, decodeStack, MAX_STACK_DEPTH, RecordError, TASK_COMM_LEN } from '../sampler/records';

export const OFFCPU_KEY_SIZE = 20;
export const OFFCPU_VALUE_SIZE = 16 + 2 * TASK_COMM_LEN;
export const OFFCPU_START_SIZE = 32 + 2 * TASK_COMM_LEN;
export const OFFCPU_WHOLE_SIZE = 8 + 2 * 8 * MAX_STACK_DEPTH;
export const OFFCPU_EVENT_SIZE = 40 + 2 * TASK_COMM_LEN + OFFCPU_WHOLE_SIZE;
export const OFFCPU_CONTROL_SIZE = 8;
export const OFFCPU_WHOLE_STACKS = 1;

/** enum offcpu_stat, in order. */
export const OFFCPU_STATS = [
  'switches',
  'filtered',
  'preempted',
  'blocks',
  'startFull',
  'short',
  'aggregated',
  'late',
  'kernelStackCollision',
  'userStackCollision',
  'kernelStackError',
  'userStackError',
  'wholeFull',
  'countsFull',
  'ringBufferSent',
  'ringBufferFull',
] as const;
export type OffCpuStats = Record<(typeof OFFCPU_STATS)[number], number>;

export interface OffCpuRow {
  tgid: number;
  tid: number;
  kstackId: number;
  ustackId: number;
  execId: number;
  blocks: number;
  totalNs: number;
  comm: string;
  processComm: string;
}

export function decodeOffCpuRows(keys: Buffer, values: Buffer, count: number): OffCpuRow[] {
  if (keys.length !== count * OFFCPU_KEY_SIZE || values.length !== count * OFFCPU_VALUE_SIZE) {
    throw new RecordError(`off-CPU counts read: ${count} entries but ${keys.length} key bytes and ${values.length} value bytes`);
  }
  const rows: OffCpuRow[] = new Array(count);
  for (let i = 0; i < count; i++) {
    const k = i * OFFCPU_KEY_SIZE;
    const v = i * OFFCPU_VALUE_SIZE;
    rows[i] = {
      tgid: keys.readUInt32LE(k),
      tid: keys.readUInt32LE(k + 4),
      kstackId: keys.readInt32LE(k + 8),
      ustackId: keys.readInt32LE(k + 12),
      execId: keys.readUInt32LE(k + 16),
      blocks: Number(values.readBigUInt64LE(v)),
      totalNs: Number(values.readBigUInt64LE(v + 8)),
      comm: decodeCString(values, v + 16, TASK_COMM_LEN),
      processComm: decodeCString(values, v + 32, TASK_COMM_LEN),
    };
  }
  return rows;
}

/** A thread blocked right now (start map entry). */
export interface OffCpuStart {
  tid: number;
  ts: number;
  tgid: number;
  epoch: number;
  kstackId: number;
  ustackId: number;
  execId: number;
  flags: number;
  comm: string;
  processComm: string;
}

export function decodeOffCpuStarts(keys: Buffer, values: Buffer, count: number): OffCpuStart[] {
  if (keys.length !== count * 4 || values.length !== count * OFFCPU_START_SIZE) {
    throw new RecordError(`off-CPU start map read: ${count} entries but ${keys.length} key bytes and ${values.length} value bytes`);
  }
  const out: OffCpuStart[] = new Array(count);
  for (let i = 0; i < count; i++) {
    const v = i * OFFCPU_START_SIZE;
    out[i] = {
      tid: keys.readUInt32LE(i * 4),
      ts: Number(values.readBigUInt64LE(v)),
      tgid: values.readUInt32LE(v + 8),
      epoch: values.readUInt32LE(v + 12),
      kstackId: values.readInt32LE(v + 16),
      ustackId: values.readInt32LE(v + 20),
      execId: values.readUInt32LE(v + 24),
      flags: values.readUInt32LE(v + 28),
      comm: decodeCString(values, v + 32, TASK_COMM_LEN),
      processComm: decodeCString(values, v + 48, TASK_COMM_LEN),
    };
  }
  return out;
}

/** A block that went through the ring buffer: stack ids of an earlier epoch, or whole stacks. */
export interface OffCpuEvent {
  kind: 'ids' | 'whole';
  tgid: number;
  tid: number;
  epoch: number;
  kstackId: number;
  ustackId: number;
  execId: number;
  blockedNs: number;
  comm: string;
  processComm: string;
  /** kind 'whole': the stacks, leaf first. */
  kernelStack: BigUint64Array;
  userStack: BigUint64Array;
}

const NONE: BigUint64Array = new BigUint64Array(0);

export function decodeOffCpuEvent(rec: Buffer): OffCpuEvent {
  if (rec.length < OFFCPU_EVENT_SIZE) throw new RecordError(`off-CPU event of ${rec.length} bytes, expected ${OFFCPU_EVENT_SIZE}`);
  const type = rec.readUInt32LE(0);
  if (type !== 1 && type !== 2) throw new RecordError(`off-CPU event of unknown type ${type}`);
  const whole = type === 2;
  const base = 40 + 2 * TASK_COMM_LEN;
  let kernelStack: BigUint64Array = NONE;
  let userStack: BigUint64Array = NONE;
  if (whole) {
    const kb = rec.readUInt32LE(base);
    const ub = rec.readUInt32LE(base + 4);
    const max = 8 * MAX_STACK_DEPTH;
    if (kb > max || ub > max || kb % 8 !== 0 || ub % 8 !== 0) throw new RecordError(`off-CPU event with stack sizes ${kb}/${ub}`);
    kernelStack = decodeStack(rec, base + 8, kb);
    userStack = decodeStack(rec, base + 8 + max, ub);
  }
  return {
    kind: whole ? 'whole' : 'ids',
    tgid: rec.readUInt32LE(4),
    tid: rec.readUInt32LE(8),
    epoch: rec.readUInt32LE(12),
    kstackId: rec.readInt32LE(16),
    ustackId: rec.readInt32LE(20),
    execId: rec.readUInt32LE(24),
    blockedNs: Number(rec.readBigUInt64LE(32)),
    comm: decodeCString(rec, 40, TASK_COMM_LEN),
    processComm: decodeCString(rec, 40 + TASK_COMM_LEN, TASK_COMM_LEN),
    kernelStack,
    userStack,
  };
}

export function encodeOffCpuControl(epoch: number): Buffer {
  const b = Buffer.alloc(OFFCPU_CONTROL_SIZE);
  b.writeUInt32LE(epoch >>> 0, 0);
  return b;
}
