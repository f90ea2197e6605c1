// SPDX-License-Identifier: Apache-2.0
import t from 'tap';
import { ProfileBuilder, totalSamples } from '../src/profile/model';

t.test('ProfileBuilder interns frames and stacks and merges identical rows', async (t) => {
  const b = new ProfileBuilder({ startTimeMs: 0, durationNs: 0, frequencyHz: 99, periodNs: 1e9 / 99, comments: [] });
  const m = b.mapping({ start: 0x1000n, limit: 0x2000n, fileOffset: 0n, path: '/bin/x', buildId: 'ab' });
  t.equal(b.mapping({ start: 0x1000n, limit: 0x2000n, fileOffset: 0n, path: '/bin/x', buildId: 'ab' }), m);
  const f1 = b.frame({ kind: 'native', name: 'hot', systemName: '', mapping: m, address: 0x1010n, symbolized: true });
  const f2 = b.frame({ kind: 'native', name: 'main', systemName: '', mapping: m, address: 0x1100n, symbolized: true });
  t.equal(b.frame({ kind: 'native', name: 'hot', systemName: '', mapping: m, address: 0x1010n, symbolized: true }), f1);
  const s = b.stack([f1, f2]);
  t.equal(b.stack([f1, f2]), s);
  t.not(b.stack([f2, f1]), s);
  const row = { stack: s, pid: 1, tid: 1, processName: 'x', threadName: 'x', count: 2, cpuNs: 20 };
  b.addSample(row);
  b.addSample(row);
  b.addSample({ ...row, tid: 2 });
  const p = b.build();
  t.equal(p.samples.length, 2);
  t.equal(p.samples[0]!.count, 4);
  t.equal(p.samples[0]!.cpuNs, 40);
  t.equal(totalSamples(p), 6);
  t.equal(row.count, 2, 'the caller row is not mutated');
});
