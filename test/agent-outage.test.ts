// SPDX-License-Identifier: Apache-2.0
// A real Collector stopped for a while and started again under a running agent: the agent keeps
// sampling, keeps what its bounded buffer holds, drops (and counts, and logs) the oldest beyond it,
// and delivers again once the Collector is back: first what it kept, then new windows.
import t from 'tap';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { AgentProcess, TestCollector } from './helpers/collector';
import { requireKernelFeature } from './helpers/kernel-feature';
import { buildWorkload, startWorkload } from './helpers/workloads';

t.test('collector down: sampling goes on, drops are counted, export resumes after recovery', async (t) => {
  if (!(await requireKernelFeature(t, 'perf_event'))) return;
  const dir = t.testdir({});
  const collector = await TestCollector.start(dir);
  t.teardown(() => collector.stop());
  const w = startWorkload(buildWorkload('hotspots'), ['300']);
  t.teardown(() => w.child.kill());
  const config = path.join(dir, 'agent.yaml');
  fs.writeFileSync(
    config,
    [
      `endpoint: ${collector.endpoint}`,
      'frequencyHz: 99',
      'interval: 1s',
      'control: {listen: "127.0.0.1:0"}',
      'export: {maxQueuedRequests: 3, retryInitial: 200ms, retryMax: 1s, timeout: 2s}',
      // Only the workload: small requests, and a count of windows that is easy to follow.
      'filter: {include: ["process.executable.name=hotspots-fp"]}',
      '',
    ].join('\n'),
  );
  const agent = await AgentProcess.start(['--config', config]);
  t.teardown(() => agent.stop());
  await collector.waitFor((ps) => ps.length >= 2, 60_000, 'the first windows');

  await collector.stop();
  const downAt = BigInt(Date.now()) * 1_000_000n;
  const m1 = await agent.waitForMetrics((m) => (m.get('ebpfprof_agent_exports_total{result="dropped"}') ?? 0) >= 2, 60_000, 'two dropped requests');
  const m2 = await agent.waitForMetrics((m) => (m.get('ebpfprof_agent_samples_total') ?? 0) > (m1.get('ebpfprof_agent_samples_total') ?? 0), 30_000, 'more samples');
  t.ok((m2.get('ebpfprof_agent_samples_total') ?? 0) > (m1.get('ebpfprof_agent_samples_total') ?? 0), 'still sampling while the collector is down');
  t.ok((m2.get('ebpfprof_agent_exports_total{result="failure"}') ?? 0) >= 1, 'failed attempts counted');
  t.ok((m2.get('ebpfprof_agent_export_profiles_total{result="dropped"}') ?? 0) >= 2, 'dropped profiles counted');
  t.ok((m2.get('ebpfprof_agent_export_queue_requests') ?? 99) <= 3, 'the queue stays within its bound');
  t.match(agent.log(), /export to http:\/\/127\.0\.0\.1:\d+\/v1development\/profiles failed \(.*ECONNREFUSED.*\); retrying with backoff/);
  t.match(agent.log(), /export buffer full \(\d+ requests, [\d.]+ MiB pending while .* fails: .*\): dropped the oldest window/);
  t.same(await agent.request('GET', '/healthz'), { status: 200, text: 'ok\n' }, 'healthy: a dead collector is not a reason to restart the agent');

  const received = collector.received().length;
  await collector.start();
  const upAt = BigInt(Date.now()) * 1_000_000n;
  const after = await collector.waitFor((ps) => ps.slice(received).some((p) => p.timeUnixNano > upAt), 60_000, 'windows after the restart');
  const delivered = after.slice(received);
  t.ok(delivered.some((p) => p.timeUnixNano >= downAt && p.timeUnixNano < upAt), 'windows kept in the buffer while it was down arrive');
  t.ok(delivered.some((p) => p.timeUnixNano > upAt), 'and new ones');
  const times = delivered.map((p) => p.timeUnixNano);
  t.same(times, [...times].sort((a, b) => (a < b ? -1 : a > b ? 1 : 0)), 'in order');
  await agent.waitForMetrics((m) => m.get('ebpfprof_agent_export_consecutive_failures') === 0, 30_000, 'no failures after recovery');
  t.match(agent.log(), /works again after \d+ failed attempts/);
});
