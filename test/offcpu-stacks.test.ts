// SPDX-License-Identifier: Apache-2.0
// Stack ids of off-CPU blocks stay valid however long a thread blocks (across many drains), and
// stacks that find no room in the stack map still arrive whole: never another stack, never lost.
import t from 'tap';
import { namesOf } from '../src/profile/analysis';
import { recordOffCpu } from '../src/trace/offcpu-recorder';
import { OffCpuTracer } from '../src/trace/offcpu';
import { Symbolizer } from '../src/symbolize/symbolizer';
import { requireKernelFeature } from './helpers/kernel-feature';
import { buildWorkload, startWorkload } from './helpers/workloads';
import { setTimeout as sleep } from 'node:timers/promises';

t.test('blocks longer than many drains keep their own stacks', async (t) => {
  if (!(await requireKernelFeature(t, 'btf'))) return;
  if (!(await requireKernelFeature(t, 'root'))) return;
  // 700 ms naps with a drain every 100 ms: each nap spans about seven epochs.
  const w = startWorkload(buildWorkload('blocker'), ['30', '700']);
  t.teardown(() => w.child.kill());
  const { profile, summary } = await recordOffCpu({ target: { kind: 'pid', pid: w.pid }, durationMs: 3000, drainIntervalMs: 100 });
  const main = profile.samples.filter((s) => s.tid === w.pid);
  const naps = main.filter((s) => namesOf(profile, s).includes('nap'));
  t.ok(naps.length > 0, 'naps recorded');
  for (const s of naps) {
    const names = namesOf(profile, s);
    t.same(names.slice(names.indexOf('main'), names.indexOf('nap') + 1), ['main', 'work', 'nap'], 'the nap keeps its own stack');
    t.ok(names.includes('do_nanosleep'), 'and its kernel stack');
  }
  t.notOk(main.some((s) => namesOf(profile, s).includes('nap') && namesOf(profile, s).includes('wait_pipe')), 'no stack mixes the two functions');
  t.ok(summary.tracer.late > 0, `blocks crossing drains went the late way (${summary.tracer.late})`);
  t.ok(summary.tracer.stacksHeld > 0, 'stack ids held by blocked threads were kept');
  t.equal(summary.tracer.stackNotFound, 0, 'no id went missing');
  t.equal(summary.lostBlocks, 0);
});

t.test('a stack map with no room: whole stacks through the ring buffer, nothing lost', async (t) => {
  if (!(await requireKernelFeature(t, 'btf'))) return;
  if (!(await requireKernelFeature(t, 'root'))) return;
  const w = startWorkload(buildWorkload('blocker'), ['30']);
  t.teardown(() => w.child.kill());
  // Two buckets: the block's kernel and user stacks collide with each other or with earlier ones.
  const tracer = await OffCpuTracer.open({ targets: [w.pid], stackMapEntries: 2 });
  const rows = [];
  for (let i = 0; i < 4; i++) {
    await sleep(300);
    rows.push(...(await tracer.drain()));
  }
  rows.push(...(await tracer.close()));
  const st = tracer.stats();
  t.ok(st.kernelStackCollision + st.userStackCollision > 0, `collisions happened (${st.kernelStackCollision} kernel, ${st.userStackCollision} user)`);
  t.ok(st.ringBufferSent > 0, 'and went through the ring buffer');
  t.equal(st.wholeFull + st.ringBufferFull + st.startFull, 0, 'nothing lost');
  t.equal(st.stackNotFound, 0);
  const sym = new Symbolizer();
  t.teardown(() => sym.close());
  sym.observeProcess(w.pid);
  const main = rows.filter((r) => r.tid === w.pid && r.userStack.length > 0);
  t.ok(main.length > 0);
  for (const r of main) {
    const names = [...r.userStack].map((a, i) => sym.resolveUser(w.pid, Number(a), i > 0).name);
    t.ok(names.includes('work') && (names.includes('nap') || names.includes('wait_pipe')), `user stack complete: ${names.join(' <- ')}`);
  }
});
