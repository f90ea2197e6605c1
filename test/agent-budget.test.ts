// SPDX-License-Identifier: Apache-2.0
// The budget on a real agent: a CPU budget no process can keep makes it degrade step by step in the
// documented order (frequency, symbolized processes, export interval; the tracer levels 1 and 2 are
// stepped over when no tracer is configured), each step in a log line and a metric and visible in
// what it exports; a generous budget set at run time brings it back to full service the same way.
import t from 'tap';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { levelApplies, MAX_LEVEL } from '../src/agent/budget';
import { AgentProcess, TestCollector } from './helpers/collector';
import { requireKernelFeature } from './helpers/kernel-feature';
import { buildWorkload, startWorkload } from './helpers/workloads';

t.test('over budget: degrades in order with log lines and metrics, recovers when it can', async (t) => {
  if (!(await requireKernelFeature(t, 'perf_event'))) return;
  const dir = t.testdir({});
  const collector = await TestCollector.start(dir);
  t.teardown(() => collector.stop());
  const w = startWorkload(buildWorkload('hotspots'), ['600']);
  t.teardown(() => w.child.kill());
  const config = path.join(dir, 'agent.yaml');
  fs.writeFileSync(
    config,
    [
      `endpoint: ${collector.endpoint}`,
      'frequencyHz: 99',
      'interval: 1s',
      'control: {listen: "127.0.0.1:0"}',
      // Any CPU use is over this budget; judge every half second over one-second windows.
      'budget: {cpuPercent: 0.001, checkInterval: 500ms, window: 1s}',
      '',
    ].join('\n'),
  );
  const agent = await AgentProcess.start(['--config', config]);
  t.teardown(() => agent.stop());

  await agent.waitForLog(/over budget \(cpu [\d.]+% > 0\.001%\): degrading to level 3 of 8: sampling frequency halved$/, 60_000);
  await agent.waitForLog(/degrading to level 4 of 8: sampling frequency quartered$/, 60_000);
  const quarterAt = BigInt(Date.now()) * 1_000_000n;
  await agent.waitForLog(/degrading to level 5 of 8: .*symbols for the 20 busiest processes only/, 60_000);
  await agent.waitForLog(/degrading to level 7 of 8: .*export interval doubled/, 60_000);
  await agent.waitForLog(/still over budget at the last degradation level/, 60_000);
  const m = await agent.metrics();
  t.equal(m.get('ebpfprof_agent_degradation_level'), MAX_LEVEL, 'the level is a metric');
  const steps = [...Array(MAX_LEVEL + 1).keys()].filter((l) => l > 0 && levelApplies(l, { tcp: false, sched: false })).length;
  t.equal(steps, 6, 'six levels give up something without tracers');
  t.equal(m.get('ebpfprof_agent_degradations_total'), steps);
  t.notMatch(agent.log(), /level [12] of 8/, 'the tracer levels were stepped over');
  t.equal(m.get('ebpfprof_agent_frequency_hz'), 25, '99 Hz quartered');
  t.equal(m.get('ebpfprof_agent_configured_frequency_hz'), 99);
  t.equal(m.get('ebpfprof_agent_interval_seconds'), 4, 'interval quadrupled');
  t.match(agent.log(), /now sampling at 50 Hz/);
  const degraded = await collector.waitFor((ps) => ps.some((p) => p.timeUnixNano > quarterAt && p.period === Math.round(1e9 / 25)), 60_000, 'a window at 25 Hz');
  t.ok(degraded.some((p) => p.period === Math.round(1e9 / 50)), 'a window at 50 Hz was exported on the way');

  // A budget it can keep, set while running: one step back per window, to full service.
  const put = await agent.request('PUT', '/config', { budget: { cpuPercent: 100, rssMiB: 100000, egressMiBPerMinute: 100000 } });
  t.equal(put.status, 200);
  await agent.waitForLog(/back under budget .*: recovering to level 0: full service/, 120_000);
  const after = await agent.waitForMetrics((x) => x.get('ebpfprof_agent_frequency_hz') === 99, 30_000, 'back to 99 Hz');
  t.equal(after.get('ebpfprof_agent_degradation_level'), 0);
  t.equal(after.get('ebpfprof_agent_recoveries_total'), steps);
  t.equal(after.get('ebpfprof_agent_interval_seconds'), 1);
  const recoveredAt = BigInt(Date.now()) * 1_000_000n;
  await collector.waitFor((ps) => ps.some((p) => p.timeUnixNano >= recoveredAt && p.period === Math.round(1e9 / 99)), 60_000, 'a window at 99 Hz again');
});
