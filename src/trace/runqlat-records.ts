// SPDX-License-Identifier: Apache-2.0
/**
 * Decoders of bpf/runqlat.bpf.c's histogram maps (layouts in bpf/runqlat.h). Pure over Buffers;
 * sizes are checked against the object's BTF in test/trace-records.test.ts.
 */
import { decodeCString, RecordError, TASK_COMM_LEN } from '../sampler/records';
import { Log2Histogram } from './histogram';

export const RUNQ_SLOTS = 40;
export const RUNQ_HIST_SIZE = 8 * RUNQ_SLOTS + 24 + TASK_COMM_LEN;
export const RUNQ_PROC_KEY_SIZE = 16;
export const RUNQ_CONTROL_SIZE = 8;

/** enum runqlat_stat, in order. */
export const RUNQLAT_STATS = ['enqueued', 'filtered', 'latencies', 'startFull', 'procFull', 'cpuOutOfRange'] as const;
export type RunqlatStats = Record<(typeof RUNQLAT_STATS)[number], number>;

export interface RunqHistRow {
  hist: Log2Histogram;
  comm: string;
}

/** One struct runq_hist at `offset`. */
export function decodeRunqHist(buf: Buffer, offset: number): RunqHistRow {
  if (offset < 0 || offset + RUNQ_HIST_SIZE > buf.length) throw new RecordError(`run-queue histogram at ${offset} overruns ${buf.length} bytes`);
  const slots = new Array<number>(RUNQ_SLOTS);
  for (let i = 0; i < RUNQ_SLOTS; i++) slots[i] = Number(buf.readBigUInt64LE(offset + 8 * i));
  const at = offset + 8 * RUNQ_SLOTS;
  return {
    hist: {
      slots,
      count: Number(buf.readBigUInt64LE(at)),
      sum: Number(buf.readBigUInt64LE(at + 8)),
      max: Number(buf.readBigUInt64LE(at + 16)),
    },
    comm: decodeCString(buf, at + 24, TASK_COMM_LEN),
  };
}

export interface RunqProcRow extends RunqHistRow {
  pid: number;
  startNs: number;
}

export function decodeRunqProcRows(keys: Buffer, values: Buffer, count: number): RunqProcRow[] {
  if (keys.length !== count * RUNQ_PROC_KEY_SIZE || values.length !== count * RUNQ_HIST_SIZE) {
    throw new RecordError(`run-queue process histograms read: ${count} entries but ${keys.length} key bytes and ${values.length} value bytes`);
  }
  const out: RunqProcRow[] = [];
  for (let i = 0; i < count; i++) {
    const k = i * RUNQ_PROC_KEY_SIZE;
    out.push({ pid: keys.readUInt32LE(k), startNs: Number(keys.readBigUInt64LE(k + 8)), ...decodeRunqHist(values, i * RUNQ_HIST_SIZE) });
  }
  return out;
}

/** The per-CPU histograms (an array map: index = CPU); CPUs with no latency are left out. */
export function decodeRunqCpuRows(keys: Buffer, values: Buffer, count: number): Array<RunqHistRow & { cpu: number }> {
  if (keys.length !== count * 4 || values.length !== count * RUNQ_HIST_SIZE) {
    throw new RecordError(`run-queue CPU histograms read: ${count} entries but ${keys.length} key bytes and ${values.length} value bytes`);
  }
  const out: Array<RunqHistRow & { cpu: number }> = [];
  for (let i = 0; i < count; i++) {
    const row = decodeRunqHist(values, i * RUNQ_HIST_SIZE);
    if (row.hist.count > 0) out.push({ cpu: keys.readUInt32LE(i * 4), ...row });
  }
  return out;
}

export function encodeRunqControl(activeSet: 0 | 1): Buffer {
  const b = Buffer.alloc(RUNQ_CONTROL_SIZE);
  b.writeUInt32LE(activeSet, 0);
  return b;
}
