// SPDX-License-Identifier: Apache-2.0
// The native addon's contract: clear errors at its boundary, the verifier's reasons on a failed
// load, deterministic release of kernel objects, and a clean exit with objects still open.
import t from 'tap';
import { execFileSync, spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { bpfObjectPath, loadAddon, NativeBpfObject } from '../src/native/addon';
import { requireKernelFeature } from './helpers/kernel-feature';
import { repoRoot } from './helpers/paths';

const addon = loadAddon();

function thrown(fn: () => unknown): Error & { code?: string; syscall?: string } {
  try {
    fn();
  } catch (e) {
    return e as Error;
  }
  throw new Error('expected an exception');
}

t.test('arguments are checked at the boundary, naming the field', async (t) => {
  t.throws(() => new addon.BpfObject(42 as unknown as string), { name: 'TypeError', message: 'path must be a string' });
  const missing = thrown(() => new addon.BpfObject('/nonexistent/x.bpf.o'));
  t.match(missing.message, /^opening BPF object \/nonexistent\/x\.bpf\.o: No such file or directory/);
  t.equal(missing.code, 'ENOENT');
  t.equal(missing.syscall, 'bpf_object__open_file');
  const obj = new addon.BpfObject(bpfObjectPath('profile'));
  try {
    t.throws(() => obj.setGlobal('filter_mode', Buffer.alloc(2)), { name: 'TypeError', message: 'global filter_mode is 4 bytes, value has 2' });
    t.throws(() => obj.setGlobal('no_such_global', Buffer.alloc(4)), { message: /has no global variable named no_such_global/ });
    t.throws(() => obj.setMaxEntries('no_such_map', 1), { message: /has no map named no_such_map/ });
    t.throws(() => obj.mapLookup('stats', Buffer.alloc(4)), { message: /is not loaded yet: call load\(\) first/ });
    t.throws(() => obj.setAutoload('on_sample', 'yes' as unknown as boolean), { name: 'TypeError', message: 'autoload must be a boolean' });
  } finally {
    obj.close();
  }
  t.throws(() => obj.programNames(), { message: /is closed/ }, 'use after close is an error, not a crash');
  obj.close(); // twice is harmless
});

t.test('a program the verifier rejects: the error quotes the verifier', async (t) => {
  if (!(await requireKernelFeature(t, 'raw_tracepoints'))) return;
  const dir = t.testdir({});
  const out = path.join(dir, 'rejected.bpf.o');
  execFileSync('clang', ['-g', '-O2', '-target', 'bpf', '-D__TARGET_ARCH_x86', '-I', path.join(repoRoot, 'bpf'), '-c', path.join(repoRoot, 'test', 'fixtures', 'bpf', 'rejected.bpf.c'), '-o', out]);
  const obj = new addon.BpfObject(out);
  try {
    const e = thrown(() => obj.load());
    t.match(e.message, new RegExp(`^loading BPF object ${out}: `));
    t.match(e.message, /invalid mem access 'map_value_or_null'/, 'the verifier line is in the message');
    t.equal(e.syscall, 'bpf_object__load');
  } finally {
    obj.close();
  }
});

t.test('maps: lookup, update, delete, entries (batch and iteration), per-CPU sizes', async (t) => {
  if (!(await requireKernelFeature(t, 'perf_event'))) return;
  const obj: NativeBpfObject = new addon.BpfObject(bpfObjectPath('profile'));
  try {
    obj.setMaxEntries('targets', 16);
    obj.load();
    const key = (n: number): Buffer => {
      const b = Buffer.alloc(4);
      b.writeUInt32LE(n);
      return b;
    };
    for (const pid of [11, 22, 33]) obj.mapUpdate('targets', key(pid), Buffer.from([1]));
    t.throws(() => obj.mapUpdate('targets', key(11), Buffer.from([1]), 1 /* BPF_NOEXIST */), { code: 'EEXIST' });
    t.same(obj.mapLookup('targets', key(22)), Buffer.from([1]));
    t.equal(obj.mapLookup('targets', key(44)), null);
    t.equal(obj.mapDelete('targets', key(33)), true);
    t.equal(obj.mapDelete('targets', key(33)), false);
    const read = obj.mapEntries('targets');
    t.equal(read.count, 2);
    t.same(new Set([read.keys.readUInt32LE(0), read.keys.readUInt32LE(4)]), new Set([11, 22]));
    const drained = obj.mapEntries('targets', { delete: true });
    t.equal(drained.count, 2);
    t.equal(obj.mapEntries('targets').count, 0, 'delete: true empties the map');
    const info = obj.mapInfo('stats');
    t.equal(info.perCpu, true);
    t.equal(info.valueBytes, 8 * addon.numPossibleCpus(), 'per-CPU values: one 8-byte slot per possible CPU');
    t.equal(obj.mapLookup('stats', key(0))!.length, info.valueBytes);
    t.throws(() => obj.mapLookup('stats', Buffer.alloc(3)), { name: 'TypeError', message: 'key for map stats must be 4 bytes' });
  } finally {
    obj.close();
  }
});

t.test('a process that exits with the sampler and its ring buffers still open exits cleanly', async (t) => {
  if (!(await requireKernelFeature(t, 'perf_event'))) return;
  const script = `
    const { CpuSampler } = require(${JSON.stringify(path.join(repoRoot, 'dist', 'src', 'sampler', 'cpu-sampler.js'))});
    CpuSampler.open({ frequencyHz: 99, targets: 'all', onProcessEvent: () => {} });
    setTimeout(() => process.exit(0), 300);`;
  for (let i = 0; i < 3; i++) {
    const r = spawnSync(process.execPath, ['-e', script], { encoding: 'utf8', timeout: 30_000, env: { PATH: process.env.PATH ?? '' } });
    t.equal(r.status, 0, `run ${i}: exit 0 (${r.signal ?? ''} ${r.stderr.slice(0, 300)})`);
  }
  t.ok(fs.existsSync('/proc/self'), 'still here');
});
