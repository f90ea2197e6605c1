// SPDX-License-Identifier: Apache-2.0
// `record` on the real kernel with real workloads whose hot spots are known by construction.
import t from 'tap';
import * as fs from 'node:fs';
import { record } from '../src/record/recorder';
import { requireKernelFeature } from './helpers/kernel-feature';
import { count, framesOf, leafShares, namesOf, samplesOf, shareWith, shareWithChain } from '../src/profile/analysis';
import { buildWorkload, spawn, startWorkload } from './helpers/workloads';

t.test('hot spots: shares match the construction and stacks read main -> work -> hot', async (t) => {
  if (!(await requireKernelFeature(t, 'perf_event'))) return;
  const w = startWorkload(buildWorkload('hotspots'), ['60']);
  t.teardown(() => w.child.kill());
  const { profile, summary } = await record({ target: { kind: 'pid', pid: w.pid }, frequencyHz: 199, durationMs: 4000 });
  const mine = samplesOf(profile, w.pid);
  t.equal(count(mine), summary.samples, 'only the target was sampled');
  t.ok(summary.samples > 300, `enough samples (${summary.samples})`);
  const shares = leafShares(profile, mine);
  const a = shares.get('hot_a') ?? 0;
  const b = shares.get('hot_b') ?? 0;
  t.ok(Math.abs(a - 75) <= 5, `hot_a ~75% (got ${a.toFixed(1)}%)`);
  t.ok(Math.abs(b - 25) <= 5, `hot_b ~25% (got ${b.toFixed(1)}%)`);
  const chain = shareWithChain(profile, mine, ['main', 'work', 'hot_a']) + shareWithChain(profile, mine, ['main', 'work', 'hot_b']);
  t.ok(chain >= 95, `>= 95% of samples read main -> work -> hot_a|hot_b (got ${chain.toFixed(1)}%)`);
  t.equal(summary.unsymbolizedSamples, 0, 'every frame of the workload symbolized');
  t.equal(summary.lostSamples, 0);
  const sample = mine.find((s) => namesOf(profile, s).includes('hot_a'))!;
  t.equal(sample.processName, 'hotspots-fp');
  t.equal(sample.threadName, 'hotspots-fp');
  t.equal(sample.cpuNs, sample.count * Math.round(1e9 / 199), 'cpu time is samples x period');
  const hot = framesOf(profile, sample).at(-1)!;
  t.equal(hot.kind, 'native');
  const mapping = profile.mappings[hot.mapping]!;
  t.match(mapping.path, /hotspots-fp$/);
  t.match(mapping.buildId, /^[0-9a-f]{40}$/, 'build id read');
});

t.test('a syscall-heavy program: kernel frames appear under it', async (t) => {
  if (!(await requireKernelFeature(t, 'perf_event'))) return;
  const w = startWorkload(buildWorkload('syscalls'), ['60']);
  t.teardown(() => w.child.kill());
  const { profile } = await record({ target: { kind: 'pid', pid: w.pid }, frequencyHz: 199, durationMs: 3000 });
  const mine = samplesOf(profile, w.pid);
  // Kernel frames sit below (leafward of) do_reads in the same stack.
  const underReads = shareWith(profile, mine, (f, i, all) => f.kind === 'kernel' && all.slice(0, i).some((g) => g.name === 'do_reads'));
  t.ok(underReads > 50, `most samples have kernel frames under do_reads (${underReads.toFixed(1)}%)`);
  const kernelNames = new Set(mine.flatMap((s) => framesOf(profile, s).filter((f) => f.kind === 'kernel').map((f) => f.name)));
  t.ok([...kernelNames].some((n) => /read/.test(n)), `a read path in the kernel: ${[...kernelNames].slice(0, 12).join(', ')}`);
  t.ok(
    [...kernelNames].every((n) => !/^\[kernel\]\+0x/.test(n)),
    'kernel frames symbolized from kallsyms',
  );
});

t.test('a process in its own mount namespace, binary at a path the host does not have', async (t) => {
  if (!(await requireKernelFeature(t, 'perf_event'))) return;
  const bin = buildWorkload('hotspots');
  // A tmpfs mounted, inside the namespace only, on an empty directory of ours: what is under it
  // exists for the process and not for the host.
  const mountPoint = t.testdir({});
  const hidden = `${mountPoint}/only-in-the-namespace/hotspots-ns`;
  t.notOk(fs.existsSync(hidden), 'the path does not exist on the host');
  const child = spawn(
    'unshare',
    ['--mount', '--propagation', 'private', 'sh', '-c', `mount -t tmpfs none ${mountPoint} && mkdir ${mountPoint}/only-in-the-namespace && cp ${bin} ${hidden} && exec ${hidden} 60`],
    { stdio: 'ignore' },
  );
  t.teardown(() => child.kill());
  // unshare execs sh, which execs the binary: same pid. Wait until it runs the hidden binary.
  const pid = child.pid!;
  for (let i = 0; i < 200 && !fs.readlinkSync(`/proc/${pid}/exe`).endsWith('hotspots-ns'); i++) await new Promise((r) => setTimeout(r, 10));
  const { profile, summary } = await record({ target: { kind: 'pid', pid }, frequencyHz: 199, durationMs: 3000 });
  const mine = samplesOf(profile, pid);
  t.ok(count(mine) > 100, 'sampled');
  t.ok(shareWithChain(profile, mine, ['main', 'work']) > 95, 'symbols resolved through /proc/PID/root');
  t.equal(summary.unsymbolizedSamples, 0);
  const paths = new Set(profile.mappings.map((m) => m.path));
  t.ok(paths.has(hidden), `mapping path as the process sees it (${[...paths].join(', ')})`);
  t.notOk(fs.existsSync(hidden), 'still absent on the host');
});

t.test('threads that start and end during the recording', async (t) => {
  if (!(await requireKernelFeature(t, 'perf_event'))) return;
  const w = startWorkload(buildWorkload('threads'), ['60']);
  t.teardown(() => w.child.kill());
  const { profile, summary } = await record({ target: { kind: 'pid', pid: w.pid }, frequencyHz: 499, durationMs: 3000 });
  const mine = samplesOf(profile, w.pid);
  const workers = mine.filter((s) => namesOf(profile, s).includes('thread_work'));
  const tids = new Set(workers.map((s) => s.tid));
  t.ok(tids.size >= 10, `samples from many short-lived threads (${tids.size})`);
  t.ok(workers.every((s) => /^worker-\d+$/.test(s.threadName)), 'thread names labelled');
  t.ok(workers.every((s) => s.processName === 'threads-fp'), 'process name labelled');
  t.ok(shareWithChain(profile, workers, ['start_thread']) > 0 || shareWithChain(profile, workers, ['worker', 'thread_work']) > 90, 'worker -> thread_work');
  t.equal(summary.threads >= tids.size, true);
});

t.test('the target exits during the recording: the profile so far is kept', async (t) => {
  if (!(await requireKernelFeature(t, 'perf_event'))) return;
  const w = startWorkload(buildWorkload('hotspots'), ['1.5']);
  const { profile, summary } = await record({ target: { kind: 'pid', pid: w.pid }, frequencyHz: 199, durationMs: 20_000 });
  t.equal(summary.endReason, 'target-exited');
  t.ok(summary.elapsedMs < 10_000, `stopped when the process ended (${summary.elapsedMs} ms)`);
  const mine = samplesOf(profile, w.pid);
  t.ok(count(mine) > 100, 'samples kept');
  t.ok((leafShares(profile, mine).get('hot_a') ?? 0) > 60, 'and symbolized, also those drained after the exit');
});

t.test('a command started by ebpfprof, followed through its children', async (t) => {
  if (!(await requireKernelFeature(t, 'perf_event'))) return;
  const bin = buildWorkload('hotspots');
  const { profile, summary } = await record({
    target: { kind: 'command', argv: ['/bin/sh', '-c', `${bin} 1; ${bin} 1`] },
    frequencyHz: 199,
    commandStdio: 'ignore',
  });
  t.equal(summary.endReason, 'command-exited');
  t.same(summary.commandExit, { code: 0, signal: null });
  const pids = new Set(profile.samples.filter((s) => s.processName === 'hotspots-fp').map((s) => s.pid));
  t.equal(pids.size, 2, 'both children sampled');
  t.ok(summary.sampler.forksFollowed >= 2);
  t.ok((leafShares(profile, profile.samples.filter((s) => pids.has(s.pid))).get('hot_a') ?? 0) > 65, 'short-lived children symbolized');
  // A sample taken inside execve() has the kernel's new image but the old image's user registers, and
  // ld.so has stripped local functions: a rare frame stays unsymbolized, counted. The parked shell
  // before its exec is not part of the profile at all.
  t.ok(summary.unsymbolizedSamples <= summary.samples * 0.01, `at most 1% unsymbolized (${summary.unsymbolizedSamples} of ${summary.samples})`);
  t.notOk(profile.samples.some((s) => s.processName === 'sh' && namesOf(profile, s).some((n) => /^\[unknown image\]/.test(n))), 'no frames of an unknown image');
});

t.test('whole host: the workload and other processes, each labelled', async (t) => {
  if (!(await requireKernelFeature(t, 'perf_event'))) return;
  const w = startWorkload(buildWorkload('hotspots'), ['60']);
  t.teardown(() => w.child.kill());
  const { profile, summary } = await record({ target: { kind: 'all' }, frequencyHz: 99, durationMs: 2500 });
  t.ok(summary.processes >= 2, `several processes (${summary.processes})`);
  const mine = samplesOf(profile, w.pid);
  t.ok((leafShares(profile, mine).get('hot_a') ?? 0) > 60, 'the workload is symbolized in a host-wide profile');
  t.ok(profile.samples.some((s) => s.pid === process.pid), 'the recording process sees itself too');
  t.equal(summary.lostSamples, 0);
});
