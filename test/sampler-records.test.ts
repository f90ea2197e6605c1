// SPDX-License-Identifier: Apache-2.0
// Decoders of the sampler's BPF records: exact layouts (checked against the object's BTF through the
// addon) and malformed input.
import t from 'tap';
import { bpfObjectPath, loadAddon } from '../src/native/addon';
import { intPrng } from './helpers/prng';
import {
  COUNT_KEY_SIZE,
  COUNT_VALUE_SIZE,
  decodeCountRows,
  decodeHashedStacks,
  decodeProcessEvent,
  decodeSampleEvent,
  decodeStack,
  decodeStackEntries,
  MAX_STACK_DEPTH,
  PROCESS_EVENT_SIZE,
  PROFILE_CONTROL_SIZE,
  PROFILE_STATS,
  RecordError,
  SAMPLE_EVENT_SIZE,
  splitRingBufferBatch,
  STACK_VALUE_SIZE,
  sumPerCpu,
} from '../src/sampler/records';

t.test('record sizes match the C structs in the compiled object', async (t) => {
  const obj = new (loadAddon().BpfObject)(bpfObjectPath('profile'));
  try {
    t.equal(obj.typeSize('count_key'), COUNT_KEY_SIZE);
    t.equal(obj.typeSize('count_value'), COUNT_VALUE_SIZE);
    t.equal(obj.typeSize('sample_event'), SAMPLE_EVENT_SIZE);
    t.equal(obj.typeSize('profile_control'), PROFILE_CONTROL_SIZE);
    t.equal(obj.typeSize('process_event'), PROCESS_EVENT_SIZE);
    t.equal(obj.mapInfo('stacks0').valueSize, STACK_VALUE_SIZE);
    t.equal(obj.mapInfo('ustacks0').valueSize, STACK_VALUE_SIZE, 'unwound stacks have the stack maps\' value layout');
    t.equal(obj.mapInfo('stats').maxEntries, PROFILE_STATS.length, 'one name per enum profile_stat entry');
  } finally {
    obj.close();
  }
});

function sampleEvent(k: bigint[], u: bigint[]): Buffer {
  const b = Buffer.alloc(SAMPLE_EVENT_SIZE);
  b.writeUInt32LE(42, 0);
  b.writeUInt32LE(43, 4);
  b.writeBigUInt64LE(10_101_010n, 8);
  b.writeUInt32LE(k.length * 8, 16);
  b.writeUInt32LE(u.length * 8, 20);
  b.writeUInt32LE(3, 24);
  b.write('worker-1', 32, 'latin1');
  b.write('a-process-name-x', 48, 'latin1'); // exactly 16 chars: no NUL inside the field
  k.forEach((a, i) => b.writeBigUInt64LE(a, 64 + i * 8));
  u.forEach((a, i) => b.writeBigUInt64LE(a, 64 + 8 * MAX_STACK_DEPTH + i * 8));
  return b;
}

t.test('sample events decode field by field', async (t) => {
  const e = decodeSampleEvent(sampleEvent([0xffffffff81000010n, 0xffffffff81000020n], [0x401000n]));
  t.equal(e.tgid, 42);
  t.equal(e.tid, 43);
  t.equal(e.cpuNs, 10_101_010);
  t.equal(e.execId, 3);
  t.equal(e.comm, 'worker-1');
  t.equal(e.processComm, 'a-process-name-x', 'a comm that fills its field is not overrun');
  t.same([...e.kernelStack], [0xffffffff81000010n, 0xffffffff81000020n]);
  t.same([...e.userStack], [0x401000n]);
});

t.test('count rows and stacks decode', async (t) => {
  const keys = Buffer.alloc(2 * COUNT_KEY_SIZE);
  const values = Buffer.alloc(2 * COUNT_VALUE_SIZE);
  keys.writeUInt32LE(7, 0);
  keys.writeUInt32LE(8, 4);
  keys.writeInt32LE(-1, 8);
  keys.writeInt32LE(3, 12);
  keys.writeUInt32LE(2, 16);
  keys.writeBigUInt64LE(0xfedcba9876543210n, COUNT_KEY_SIZE + 24); // second row: a table-unwound user stack
  values.writeBigUInt64LE(5n, 0);
  values.writeBigUInt64LE(50_000_000n, 8);
  values.write('thr', 16);
  values.write('proc', 32);
  const rows = decodeCountRows(keys, values, 2);
  t.same(rows[0], { tgid: 7, tid: 8, kstackId: -1, ustackId: 3, execId: 2, ustackHash: 0n, samples: 5, cpuNs: 50_000_000, comm: 'thr', processComm: 'proc' });
  t.equal(rows[1]!.ustackHash, 0xfedcba9876543210n, 'ustack_hash is the last 8 bytes of the key');
  t.throws(() => decodeCountRows(keys, values, 3), RecordError);

  const stackKeys = Buffer.alloc(4);
  stackKeys.writeUInt32LE(3, 0);
  const stackValues = Buffer.alloc(STACK_VALUE_SIZE);
  stackValues.writeBigUInt64LE(0x1234n, 0);
  stackValues.writeBigUInt64LE(0x5678n, 8);
  t.same([...decodeStackEntries(stackKeys, stackValues, 1).get(3)!], [0x1234n, 0x5678n], 'zero tail trimmed');
  t.throws(() => decodeStack(stackValues, 8, STACK_VALUE_SIZE), RecordError, 'a stack past the end is refused');

  const hashKeys = Buffer.alloc(8);
  hashKeys.writeBigUInt64LE(0x8000000000000001n, 0);
  t.same([...decodeHashedStacks(hashKeys, stackValues, 1).get(0x8000000000000001n)!], [0x1234n, 0x5678n], 'unwound stacks by 64-bit hash');
  t.throws(() => decodeHashedStacks(hashKeys, stackValues, 2), RecordError, 'unwound-stack entries must fill the buffers');
});

t.test('process events decode; others are refused', async (t) => {
  const e = Buffer.alloc(PROCESS_EVENT_SIZE);
  e.writeUInt32LE(1, 0);
  e.writeUInt32LE(4242, 4);
  e.writeUInt32LE(7, 8);
  e.write('bash', 16);
  t.same(decodeProcessEvent(e), { type: 'exec', tgid: 4242, execId: 7, comm: 'bash' });
  e.writeUInt32LE(2, 0);
  e.writeUInt32LE(4000, 12);
  t.same(decodeProcessEvent(e), { type: 'fork', tgid: 4242, ppid: 4000, execId: 7, comm: 'bash' });
  e.writeUInt32LE(3, 0);
  t.same(decodeProcessEvent(e), { type: 'maps-stale', tgid: 4242, execId: 7, comm: 'bash' });
  e.writeUInt32LE(9, 0);
  t.throws(() => decodeProcessEvent(e), RecordError, 'unknown type');
  t.throws(() => decodeProcessEvent(e.subarray(1)), RecordError, 'wrong size');
});

t.test('ring-buffer batches split by their framing', async (t) => {
  const rec = (n: number, fill: number): Buffer => {
    const head = Buffer.alloc(8);
    head.writeUInt32LE(n, 0);
    const body = Buffer.alloc((n + 7) & ~7, 0);
    body.fill(fill, 0, n);
    return Buffer.concat([head, body]);
  };
  const batch = Buffer.concat([rec(5, 1), rec(16, 2), rec(0, 0)]);
  const parts = splitRingBufferBatch(batch, 3);
  t.same(parts.map((p) => p.length), [5, 16, 0]);
  t.equal(parts[1]![15], 2);
  t.throws(() => splitRingBufferBatch(batch, 2), RecordError, 'record count mismatch');
  t.throws(() => splitRingBufferBatch(batch.subarray(0, 20), 3), RecordError, 'truncated batch');
});

t.test('per-cpu counters sum', async (t) => {
  const v = Buffer.alloc(24);
  v.writeBigUInt64LE(1n, 0);
  v.writeBigUInt64LE(2n, 8);
  v.writeBigUInt64LE(3n, 16);
  t.equal(sumPerCpu(v), 6);
});

t.test('fuzz: truncated and mutated records only ever raise RecordError', async (t) => {
  const valid = sampleEvent([0xffffffff81000010n], [0x401000n, 0x402000n]);
  const rand = intPrng(12345);
  let decoded = 0;
  let refused = 0;
  for (let i = 0; i < 5000; i++) {
    let b: Buffer = Buffer.from(valid);
    if (rand(2) === 0) b = b.subarray(0, rand(b.length + 1));
    for (let m = rand(8); m > 0 && b.length > 0; m--) b[rand(b.length)] = rand(256);
    try {
      const e = decodeSampleEvent(b);
      t.ok(e.kernelStack.length <= MAX_STACK_DEPTH && e.userStack.length <= MAX_STACK_DEPTH);
      decoded++;
    } catch (err) {
      if (!(err instanceof RecordError)) throw err;
      refused++;
    }
  }
  t.ok(decoded > 0 && refused > 0, `both outcomes exercised (${decoded} decoded, ${refused} refused)`);
});
