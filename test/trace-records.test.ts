// SPDX-License-Identifier: Apache-2.0
// Decoders of the tracing programs' records: their sizes match the C structs (from each object's
// BTF), tables of hand-made records decode to what was written, and random bytes never crash them
// (a RecordError or a value, nothing else). Also the log2 histogram arithmetic the kernel shares.
import t from 'tap';
import { loadAddon, bpfObjectPath } from '../src/native/addon';
import { decodeLifecycleEvent, LIFECYCLE_EVENT_SIZE } from '../src/process/lifecycle-records';
import { RecordError } from '../src/sampler/records';
import { addValue, emptyHistogram, log2Slot, mergeHistogram, quantileUpperBound, renderHistogram } from '../src/trace/histogram';
import {
  decodeOffCpuEvent,
  decodeOffCpuRows,
  decodeOffCpuStarts,
  OFFCPU_CONTROL_SIZE,
  OFFCPU_EVENT_SIZE,
  OFFCPU_KEY_SIZE,
  OFFCPU_START_SIZE,
  OFFCPU_STATS,
  OFFCPU_VALUE_SIZE,
  OFFCPU_WHOLE_SIZE,
} from '../src/trace/offcpu-records';
import { decodeRunqCpuRows, decodeRunqProcRows, RUNQ_CONTROL_SIZE, RUNQ_HIST_SIZE, RUNQ_PROC_KEY_SIZE, RUNQLAT_STATS } from '../src/trace/runqlat-records';
import { TcpAggregator } from '../src/trace/tcp-aggregate';
import { decodeTcpEvent, TCP_EVENT_SIZE, TCP_STATS } from '../src/trace/tcp-records';
import { intPrng } from './helpers/prng';

function typeSizes(object: string, names: string[]): Record<string, number> {
  const obj = new (loadAddon().BpfObject)(bpfObjectPath(object));
  try {
    return Object.fromEntries(names.map((n) => [n, obj.typeSize(n)]));
  } finally {
    obj.close();
  }
}

function statsEntries(object: string): number {
  const obj = new (loadAddon().BpfObject)(bpfObjectPath(object));
  try {
    return obj.mapInfo('stats').maxEntries;
  } finally {
    obj.close();
  }
}

t.test('decoder sizes are the C structs\' sizes (BTF of each object)', async (t) => {
  t.same(typeSizes('lifecycle', ['lifecycle_event']), { lifecycle_event: LIFECYCLE_EVENT_SIZE });
  t.same(typeSizes('offcpu', ['offcpu_key', 'offcpu_value', 'offcpu_start', 'offcpu_whole', 'offcpu_event', 'offcpu_control']), {
    offcpu_key: OFFCPU_KEY_SIZE,
    offcpu_value: OFFCPU_VALUE_SIZE,
    offcpu_start: OFFCPU_START_SIZE,
    offcpu_whole: OFFCPU_WHOLE_SIZE,
    offcpu_event: OFFCPU_EVENT_SIZE,
    offcpu_control: OFFCPU_CONTROL_SIZE,
  });
  t.same(typeSizes('runqlat', ['runq_hist', 'runq_proc_key', 'runq_control']), { runq_hist: RUNQ_HIST_SIZE, runq_proc_key: RUNQ_PROC_KEY_SIZE, runq_control: RUNQ_CONTROL_SIZE });
  t.same(typeSizes('tcp', ['tcp_event']), { tcp_event: TCP_EVENT_SIZE });
  t.equal(statsEntries('offcpu'), OFFCPU_STATS.length, 'one name per offcpu stat');
  t.equal(statsEntries('runqlat'), RUNQLAT_STATS.length, 'one name per runqlat stat');
  t.equal(statsEntries('tcp'), TCP_STATS.length, 'one name per tcp stat');
});

t.test('a TCP event, field by field; IPv6 addresses in RFC 5952 form', async (t) => {
  const b = Buffer.alloc(TCP_EVENT_SIZE);
  b.writeUInt32LE(3, 0); // close
  b.writeUInt32LE(4242, 4);
  b.writeBigUInt64LE(77n, 8);
  b.writeBigUInt64LE(1000n, 16);
  b.writeBigUInt64LE(5000n, 24);
  b.writeBigUInt64LE(9000n, 32);
  b.writeBigUInt64LE(123n, 40);
  b.writeBigUInt64LE(456n, 48);
  b.writeBigUInt64LE(300n, 56);
  b.writeUInt32LE(3, 64);
  b.writeUInt32LE(90, 68);
  b.writeUInt32LE(110, 72);
  b.writeUInt32LE(100, 76);
  b.writeUInt32LE(2, 80);
  b.writeUInt32LE(2, 84);
  b.writeUInt16LE(1, 88);
  b.writeUInt16LE(0, 90);
  b.writeUInt16LE(10, 92); // AF_INET6
  b.writeUInt16LE(40000, 94);
  b.writeUInt16LE(443, 96);
  b[98] = 1;
  b[99] = 1; // ESTABLISHED
  b.writeInt32LE(104, 100);
  Buffer.from('20010db8000000000000000000000001', 'hex').copy(b, 104);
  Buffer.from('00000000000000000000ffff0a000002', 'hex').copy(b, 120);
  b.write('curl', 136);
  const e = decodeTcpEvent(b);
  t.same(
    { ...e },
    {
      type: 'close',
      pid: 4242,
      processStartNs: 77,
      timeNs: 1000,
      connectNs: 5000,
      lifetimeNs: 9000,
      bytesSent: 123,
      bytesReceived: 456,
      rttSamples: 3,
      rttMinUs: 90,
      rttMaxUs: 110,
      rttMeanUs: 100,
      srttUs: 100,
      retransmits: 2,
      totalRetrans: 2,
      resetsReceived: 1,
      resetsSent: 0,
      family: 6,
      localPort: 40000,
      remotePort: 443,
      role: 'active',
      closedFrom: 'ESTABLISHED',
      error: 'ECONNRESET',
      localAddress: '2001:db8::1',
      remoteAddress: '::ffff:10.0.0.2',
      comm: 'curl',
    },
  );
  b.writeUInt32LE(9, 0);
  t.throws(() => decodeTcpEvent(b), RecordError, 'unknown type');
  t.throws(() => decodeTcpEvent(b.subarray(0, 10)), RecordError, 'short record');
});

t.test('random bytes: a RecordError or a value, never a crash', async (t) => {
  const rnd = intPrng(0x7ace);
  const decoders: Array<[string, (b: Buffer) => unknown, number]> = [
    ['tcp', decodeTcpEvent, TCP_EVENT_SIZE],
    ['lifecycle', decodeLifecycleEvent, LIFECYCLE_EVENT_SIZE],
    ['offcpu event', decodeOffCpuEvent, OFFCPU_EVENT_SIZE],
    ['offcpu rows', (b) => decodeOffCpuRows(b.subarray(0, OFFCPU_KEY_SIZE), b.subarray(0, OFFCPU_VALUE_SIZE), 1), OFFCPU_VALUE_SIZE],
    ['offcpu starts', (b) => decodeOffCpuStarts(b.subarray(0, 4), b.subarray(0, OFFCPU_START_SIZE), 1), OFFCPU_START_SIZE],
    ['runq procs', (b) => decodeRunqProcRows(b.subarray(0, RUNQ_PROC_KEY_SIZE), b.subarray(0, RUNQ_HIST_SIZE), 1), RUNQ_HIST_SIZE],
    ['runq cpus', (b) => decodeRunqCpuRows(b.subarray(0, 4), b.subarray(0, RUNQ_HIST_SIZE), 1), RUNQ_HIST_SIZE],
  ];
  for (const [name, decode, size] of decoders) {
    let threw = 0;
    for (let i = 0; i < 500; i++) {
      const len = rnd(3) === 0 ? rnd(size + 1) : size + rnd(16);
      const b = Buffer.alloc(len);
      for (let j = 0; j < len; j++) b[j] = rnd(256);
      // Make valid type fields common enough to reach the rest of the decoder.
      if (len >= 4 && rnd(2) === 0) b.writeUInt32LE(1 + rnd(3), 0);
      if (len >= 94 && name === 'tcp' && rnd(2) === 0) b.writeUInt16LE(rnd(2) ? 2 : 10, 92);
      try {
        decode(b);
      } catch (e) {
        threw++;
        if (!(e instanceof RecordError)) {
          t.fail(`${name}: ${(e as Error).message}`);
          return;
        }
      }
    }
    t.pass(`${name}: 500 inputs, ${threw} refused with RecordError`);
  }
});

t.test('log2 histograms: upper-inclusive slots as the kernel computes them', async (t) => {
  const cases: Array<[number, number]> = [
    [0, 0],
    [1, 0],
    [2, 1],
    [3, 2],
    [4, 2],
    [5, 3],
    [1024, 10],
    [1025, 11],
    [2 ** 40, 39],
  ];
  for (const [v, slot] of cases) t.equal(log2Slot(v, 40), slot, `${v} ns -> slot ${slot}`);
  // Every power of two and its neighbours, fractions included (RTT means), against the definition:
  // the smallest k with v <= 2^k, capped at the last slot.
  const bySearch = (v: number): number => {
    if (!(v > 1)) return 0;
    let k = 0;
    while (2 ** k < v) k++;
    return Math.min(k, 39);
  };
  let wrong = 0;
  for (let k = 0; k <= 45; k++) {
    for (const v of [2 ** k - 1, 2 ** k - 0.5, 2 ** k, 2 ** k + 0.25, 2 ** k + 1, 1.5 * 2 ** k]) if (log2Slot(v, 40) !== bySearch(v)) wrong++;
  }
  t.equal(wrong, 0, 'integer and fractional values around every power of two up to 2^45');
  const h = emptyHistogram(40);
  for (const v of [100, 200, 300, 5000, 1e6]) addValue(h, v);
  t.equal(h.count, 5);
  t.equal(h.max, 1e6);
  t.equal(quantileUpperBound(h, 0.5), 512, 'the median is in (256, 512]');
  t.equal(quantileUpperBound(h, 1), 1e6, 'capped at the max');
  const g = emptyHistogram(40);
  mergeHistogram(g, h);
  mergeHistogram(g, h);
  t.equal(g.count, 10);
  t.equal(g.sum, 2 * h.sum);
  t.match(renderHistogram(h).join('\n'), /256ns -> 512ns :\s+1 \|/);
});

t.test('TCP rows from raw records (addRecord) are the rows of decoded events (add)', async (t) => {
  const rnd = intPrng(7);
  const record = (type: number, pid: number, role: number, v6: boolean, peer: number, port: number): Buffer => {
    const b = Buffer.alloc(TCP_EVENT_SIZE);
    b.writeUInt32LE(type, 0);
    b.writeUInt32LE(pid, 4);
    b.writeBigUInt64LE(BigInt(pid) * 1_000_000_007n + 5_000_000_000n, 8); // above 2^32: both halves matter
    b.writeBigUInt64LE(BigInt(1 + rnd(1e9)), 24);
    b.writeBigUInt64LE(BigInt(rnd(4)) === 0n ? 0n : BigInt(1 + rnd(1e10)), 32);
    b.writeBigUInt64LE(BigInt(rnd(1e7)) + 2n ** 33n, 40);
    b.writeBigUInt64LE(BigInt(rnd(1e7)), 48);
    const rttCount = rnd(3);
    b.writeBigUInt64LE(BigInt(rttCount * (50 + rnd(500))), 56);
    b.writeUInt32LE(rttCount, 64);
    b.writeUInt32LE(rnd(2) === 0 ? 0 : 37 + rnd(1000), 76);
    b.writeUInt32LE(rnd(3), 80);
    b.writeUInt16LE(rnd(2), 88);
    b.writeUInt16LE(rnd(2), 90);
    b.writeUInt16LE(v6 ? 10 : 2, 92);
    b.writeUInt16LE(role === 2 ? 8080 : 30000 + rnd(30000), 94); // our listening port, or an ephemeral one
    b.writeUInt16LE(port, 96);
    b[98] = role;
    b[99] = 2;
    b.writeInt32LE([0, 111, 110, 104, 7][rnd(5)]!, 100);
    b.writeUInt32LE(0x0100007f, 104);
    if (v6) Buffer.from(`20010db8${peer.toString(16).padStart(24, '0')}`, 'hex').copy(b, 120);
    else b.writeUInt32LE(0x0a000000 + peer, 120);
    b.write(`proc${pid}`, 136);
    return b;
  };
  const records: Buffer[] = [];
  for (let i = 0; i < 3000; i++) {
    const pid = 100 + rnd(5);
    const role = rnd(3);
    // Accepted connections from many client ports share a row (the listening port is ours).
    records.push(record(1 + rnd(3), pid, role, rnd(3) === 0, rnd(4), role === 2 ? 20000 + rnd(500) : [80, 443, 5432][rnd(3)]!));
  }
  const decoded = new TcpAggregator();
  const raw = new TcpAggregator();
  const opened: string[] = [];
  raw.onNewRow = (e) => opened.push(`${e.pid}|${e.role}|${e.remoteAddress}`);
  for (const r of records) {
    decoded.add(decodeTcpEvent(r));
    t.equal(raw.addRecord(r), true);
  }
  // One window taken in the middle: the raw index starts again with the rows.
  const mid = new TcpAggregator();
  for (const r of records.slice(0, 1000)) mid.addRecord(r);
  const first = mid.take();
  for (const r of records.slice(1000)) mid.addRecord(r);
  const merged = new TcpAggregator();
  merged.merge(first);
  merged.merge(mid.take());
  const byKey = (rows: ReturnType<TcpAggregator['snapshot']>): typeof rows => [...rows].sort((a, b) => `${a.pid}|${a.role}|${a.peerAddress}|${a.servicePort}`.localeCompare(`${b.pid}|${b.role}|${b.peerAddress}|${b.servicePort}`));
  const rows = byKey(decoded.snapshot());
  t.ok(rows.length > 20 && rows.length < 400, `${rows.length} rows`);
  t.same(byKey(raw.snapshot()), rows, 'the same rows, field by field');
  t.same(byKey(merged.snapshot()), rows, 'and across windows');
  t.equal(raw.events, decoded.events);
  t.equal(opened.length, rows.length, 'onNewRow: once per row');
  t.same(new Set(opened), new Set(rows.map((r) => `${r.pid}|${r.role}|${r.peerAddress}`)), 'with the event that opened it');
  // What decodeTcpEvent refuses, addRecord refuses, adding nothing.
  const bad = [Buffer.alloc(10), (() => { const b = record(1, 1, 1, false, 1, 80); b.writeUInt32LE(9, 0); return b; })(), (() => { const b = record(1, 1, 1, false, 1, 80); b.writeUInt16LE(7, 92); return b; })()];
  for (const b of bad) {
    t.throws(() => decodeTcpEvent(b), RecordError);
    t.equal(raw.addRecord(b), false);
  }
  t.equal(raw.events, decoded.events, 'nothing added for them');
});
