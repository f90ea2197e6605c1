// SPDX-License-Identifier: Apache-2.0
// `ebpfprof offcpu` on the real kernel: a program that blocks in known functions for known shares
// of its time; the off-CPU profile attributes those shares to those functions' stacks.
import t from 'tap';
import * as zlib from 'node:zlib';
import { decodeProfile } from '../src/decode';
import { encodePprof } from '../src/encode/pprof';
import { encodeFolded } from '../src/encode/folded';
import { buildSpeedscope } from '../src/encode/speedscope';
import { namesOf } from '../src/profile/analysis';
import type { Profile, Sample } from '../src/profile/model';
import { recordOffCpu } from '../src/trace/offcpu-recorder';
import { requireKernelFeature } from './helpers/kernel-feature';
import { buildWorkload, startWorkload } from './helpers/workloads';

function blockedNs(rows: Sample[]): number {
  return rows.reduce((n, s) => n + s.cpuNs, 0);
}

function withFrame(p: Profile, rows: Sample[], name: string): Sample[] {
  return rows.filter((s) => namesOf(p, s).includes(name));
}

t.test('blocked time goes to the function that blocked, in the shares built in', async (t) => {
  if (!(await requireKernelFeature(t, 'btf'))) return;
  if (!(await requireKernelFeature(t, 'root'))) return;
  const w = startWorkload(buildWorkload('blocker'), ['30']);
  t.teardown(() => w.child.kill());
  const { profile, summary } = await recordOffCpu({ target: { kind: 'pid', pid: w.pid }, durationMs: 3000, drainIntervalMs: 500 });
  t.equal(profile.meta.timeKind, 'off-cpu', 'the profile says its value is off-CPU time');
  const main = profile.samples.filter((s) => s.pid === w.pid && s.tid === w.pid);
  const total = blockedNs(main);
  // The main thread does almost nothing but block: its blocked time is nearly the whole recording.
  t.ok(total >= 0.8 * summary.elapsedMs * 1e6 && total <= 1.05 * summary.elapsedMs * 1e6, `main thread blocked ${(total / 1e9).toFixed(2)} s of ${(summary.elapsedMs / 1000).toFixed(2)} s`);
  const pipe = blockedNs(withFrame(profile, main, 'wait_pipe')) / total;
  const nap = blockedNs(withFrame(profile, main, 'nap')) / total;
  t.ok(Math.abs(pipe - 0.75) <= 0.08, `wait_pipe ~75% of blocked time (got ${(pipe * 100).toFixed(1)}%)`);
  t.ok(Math.abs(nap - 0.25) <= 0.08, `nap ~25% (got ${(nap * 100).toFixed(1)}%)`);
  const napRow = withFrame(profile, main, 'nap')[0]!;
  const names = namesOf(profile, napRow);
  t.same(names.slice(names.indexOf('main'), names.indexOf('nap') + 1), ['main', 'work', 'nap'], 'user stack main -> work -> nap');
  t.ok(names.some((n) => /nanosleep/.test(n)), `kernel frames of the sleep under it (${names.join(';')})`);
  t.equal(names.at(-1), '__schedule', 'the leaf is where the thread left the CPU (tracing frames cut)');
  t.ok(main.every((s) => s.count >= 1), 'counts are blocks');
  t.equal(summary.lostBlocks, 0, 'nothing lost');
  t.equal(summary.tracer.stackNotFound, 0, 'every stack id resolved');
  t.equal(summary.unsymbolizedBlocks, 0, 'every frame symbolized');
  // The helper thread blocks too, on its own tid.
  t.ok(profile.samples.some((s) => s.pid === w.pid && s.tid !== w.pid), 'the helper thread has its own rows');
  t.ok(summary.tracer.late > 0 || summary.tracer.aggregated > 0, 'blocks went through the counts map (and across drains)');
});

t.test('--min-block leaves short blocks out and counts them', async (t) => {
  if (!(await requireKernelFeature(t, 'btf'))) return;
  if (!(await requireKernelFeature(t, 'root'))) return;
  // Naps of 2 ms against a 20 ms threshold: a nap is kept only if its thread then waited 18 ms for
  // a CPU (off-CPU time runs from switch-out to switch-in), which a loaded CI machine can do rarely.
  const w = startWorkload(buildWorkload('blocker'), ['30', '2']);
  t.teardown(() => w.child.kill());
  const { profile, summary } = await recordOffCpu({ target: { kind: 'pid', pid: w.pid }, durationMs: 1500, minBlockNs: 20e6 });
  const main = profile.samples.filter((s) => s.tid === w.pid);
  t.ok(withFrame(profile, main, 'wait_pipe').length > 0, 'the 30 ms blocks stay');
  t.ok(summary.tracer.short > 0, `short blocks are counted (${summary.tracer.short})`);
  const napsKept = withFrame(profile, main, 'nap').reduce((n, s) => n + s.count, 0);
  t.ok(napsKept <= Math.max(1, 0.05 * summary.tracer.short), `the 2 ms naps are left out (${napsKept} kept, ${summary.tracer.short} short blocks counted)`);
  for (const s of profile.samples) t.ok(s.cpuNs >= s.count * 20e6, `every kept block is at least 20 ms (${s.count} blocks, ${(s.cpuNs / 1e6).toFixed(1)} ms)`);
});

t.test('an off-CPU profile is labelled as off-CPU time in every format', async (t) => {
  if (!(await requireKernelFeature(t, 'btf'))) return;
  if (!(await requireKernelFeature(t, 'root'))) return;
  const w = startWorkload(buildWorkload('blocker'), ['30']);
  t.teardown(() => w.child.kill());
  const { profile } = await recordOffCpu({ target: { kind: 'pid', pid: w.pid }, durationMs: 1000 });
  const pprof = zlib.gunzipSync(encodePprof(profile)).toString('latin1');
  t.ok(pprof.includes('off_cpu') && pprof.includes('blocks'), 'pprof sample types blocks/count, off_cpu/nanoseconds');
  const back = decodeProfile(encodePprof(profile), 'x.pb.gz');
  t.equal(blockedNs(back.samples), blockedNs(profile.samples), 'pprof round trip keeps the blocked time');
  const ss = buildSpeedscope(profile);
  t.equal(ss.name, 'ebpfprof off-CPU profile');
  t.ok(ss.profiles.every((p) => p.name.startsWith('off-CPU: ') && p.unit === 'nanoseconds'), 'speedscope profiles say off-CPU, in ns');
  const folded = encodeFolded(profile);
  const sum = folded.trim().split('\n').reduce((n, l) => n + Number(l.slice(l.lastIndexOf(' ') + 1)), 0);
  t.equal(sum, blockedNs(profile.samples), 'folded weights are blocked ns by default');
});
