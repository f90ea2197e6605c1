// SPDX-License-Identifier: Apache-2.0
/**
 * Decoder of the records bpf/lifecycle.bpf.c writes (struct lifecycle_event in bpf/lifecycle.h).
 * Pure over Buffers; the size is checked against the object's BTF in test/trace-records.test.ts.
 */
import { decodeCString, RecordError, TASK_COMM_LEN } from '../sampler/records';

/** u32 type, pid, ppid, exec_id; u64 start_ns, time_ns; s32 exit_code; u32 pad; comm. */
export const LIFECYCLE_EVENT_SIZE = 16 + 16 + 8 + TASK_COMM_LEN;
export const LIFECYCLE_STATS = ['forks', 'execs', 'exits', 'ringBufferFull'] as const;
export type LifecycleStats = Record<(typeof LIFECYCLE_STATS)[number], number>;

export type LifecycleEventType = 'fork' | 'exec' | 'exit';
const TYPES: Record<number, LifecycleEventType> = { 1: 'fork', 2: 'exec', 3: 'exit' };

export interface LifecycleEvent {
  type: LifecycleEventType;
  /** Process id (tgid). */
  pid: number;
  /** fork: the parent's pid; exec/exit: the real parent's pid. */
  ppid: number;
  /** Which image of the process (the kernel's self_exec_id, low 32 bits; grows at each execve). */
  execId: number;
  /** Process start, ns since boot (CLOCK_BOOTTIME): with pid, it names one process across pid reuse. */
  startNs: number;
  /** When the event happened, bpf_ktime_get_ns() (CLOCK_MONOTONIC) ns. */
  timeNs: number;
  /** exit: the wait status (exit code << 8 | terminating signal). */
  exitCode: number;
  /** The process's name (its group leader's comm). */
  comm: string;
}

export function decodeLifecycleEvent(rec: Buffer): LifecycleEvent {
  if (rec.length < LIFECYCLE_EVENT_SIZE) throw new RecordError(`lifecycle event of ${rec.length} bytes, expected ${LIFECYCLE_EVENT_SIZE}`);
  const type = TYPES[rec.readUInt32LE(0)];
  if (type === undefined) throw new RecordError(`lifecycle event of unknown type ${rec.readUInt32LE(0)}`);
  return {
    type,
    pid: rec.readUInt32LE(4),
    ppid: rec.readUInt32LE(8),
    execId: rec.readUInt32LE(12),
    startNs: Number(rec.readBigUInt64LE(16)),
    timeNs: Number(rec.readBigUInt64LE(24)),
    exitCode: rec.readInt32LE(32),
    comm: decodeCString(rec, 40, TASK_COMM_LEN),
  };
}
