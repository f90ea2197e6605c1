// SPDX-License-Identifier: Apache-2.0
// The CPU sampler on the real kernel: what it samples, that it changes rate while running, and that
// every sample is accounted for when maps and the ring buffer run out of room.
import t from 'tap';
import { setTimeout as sleep } from 'node:timers/promises';
import { CpuSampler, DrainedSample, SamplerStats } from '../src/sampler/cpu-sampler';
import { requireKernelFeature } from './helpers/kernel-feature';
import { buildWorkload, startWorkload, waitForExit } from './helpers/workloads';

function sum(rows: DrainedSample[]): number {
  return rows.reduce((n, r) => n + r.samples, 0);
}

/** Every sample that reached the program ends in exactly one of these counters. */
function accounted(s: SamplerStats): number {
  return s.idle + s.filtered + s.aggregated + s.ringBufferSent + s.ringBufferFull;
}

t.test('samples only the target, with user stacks, at the requested rate', async (t) => {
  if (!(await requireKernelFeature(t, 'perf_event'))) return;
  const w = startWorkload(buildWorkload('hotspots'), ['30']);
  t.teardown(() => w.child.kill());
  const sampler = CpuSampler.open({ frequencyHz: 99, targets: [w.pid] });
  try {
    await sleep(2000);
    const rows = await sampler.drain();
    t.ok(rows.length > 0, 'rows drained');
    t.ok(rows.every((r) => r.tgid === w.pid), 'only the target process');
    t.ok(rows.every((r) => r.userStack.length >= 3), 'user stacks of at least leaf, work and main');
    const at99 = sum(rows);
    // One busy thread at 99 Hz for ~2 s: about 200 samples; wide bounds, the machine may be busy.
    t.ok(at99 > 120 && at99 < 260, `~198 samples at 99 Hz, got ${at99}`);
    t.equal(rows.reduce((n, r) => n + r.cpuNs, 0), at99 * Math.round(1e9 / 99), 'cpu time = samples x period');

    sampler.setFrequency(495);
    await sampler.drain(); // discard the window with the switch in it
    await sleep(2000);
    const at495 = sum(await sampler.drain());
    t.ok(at495 > 3 * at99, `5x the rate after setFrequency(495): ${at495} vs ${at99}`);
  } finally {
    await sampler.close();
  }
});

t.test('nothing is dropped silently when stack maps, counts map and ring buffer run out of room', async (t) => {
  if (!(await requireKernelFeature(t, 'perf_event'))) return;
  if (!(await requireKernelFeature(t, 'ringbuf'))) return;
  const w = startWorkload(buildWorkload('threads'), ['30']);
  const w2 = startWorkload(buildWorkload('hotspots'), ['30']);
  t.teardown(() => {
    w.child.kill();
    w2.child.kill();
  });
  for (const sizes of [
    { name: 'tiny stack maps', stackMapEntries: 2, countsMapEntries: 4096, ringBufferBytes: 1 << 20 },
    { name: 'tiny counts map', stackMapEntries: 4096, countsMapEntries: 1, ringBufferBytes: 1 << 20 },
    { name: 'tiny ring buffer too', stackMapEntries: 2, countsMapEntries: 1, ringBufferBytes: 4096 },
  ]) {
    const sampler = CpuSampler.open({ frequencyHz: 499, targets: [w.pid, w2.pid], ...sizes });
    let drained = 0;
    for (let i = 0; i < 4; i++) {
      await sleep(500);
      drained += sum(await sampler.drain());
    }
    drained += sum(await sampler.close());
    const s = sampler.lastStats!;
    t.equal(accounted(s), s.samples, `${sizes.name}: every sample counted once (${JSON.stringify(s)})`);
    t.equal(drained, s.aggregated + s.ringBufferSent - s.recordsMalformed - s.ringBuffer.droppedRecords, `${sizes.name}: drained = aggregated + sent`);
    t.equal(s.stackNotFound, 0, `${sizes.name}: no count row lost its stack`);
    t.equal(s.recordsMalformed, 0);
    if (sizes.name === 'tiny stack maps') t.ok(s.kernelStackCollision + s.userStackCollision > 0 && s.ringBufferSent > 0, 'collisions went through the ring buffer');
    if (sizes.name === 'tiny counts map') t.ok(s.countsFull > 0 && s.ringBufferSent > 0, 'a full counts map went through the ring buffer');
    if (sizes.name === 'tiny ring buffer too') t.ok(s.ringBufferFull > 0, 'a full ring buffer is counted as lost');
  }
});

t.test('follows children of a target (record -- CMD)', async (t) => {
  if (!(await requireKernelFeature(t, 'raw_tracepoints'))) return;
  const hot = buildWorkload('hotspots');
  // The shell is the target; the workload it forks must be sampled too.
  const sh = startWorkload('/bin/sh', ['-c', `sleep 0.5; ${hot} 2; true`]);
  const sampler = CpuSampler.open({ frequencyHz: 99, targets: [sh.pid], followForks: true });
  try {
    await waitForExit(sh.child);
    const rows = await sampler.drain();
    const s = sampler.stats();
    t.ok(s.forksFollowed >= 1, 'the fork was followed');
    // Summed over rows: a row is one stack, and the leaf address differs between samples of the
    // same loop; how many samples the child gets depends on what else runs on the machine.
    const childSamples = rows.filter((r) => r.tgid !== sh.pid).reduce((n, r) => n + r.samples, 0);
    t.ok(childSamples > 0, `the child was sampled (${childSamples} samples)`);
  } finally {
    await sampler.close();
  }
});
