// SPDX-License-Identifier: Apache-2.0
// Changing a running agent without restarting it: the frequency through the control endpoint (the
// exported sample rate follows within one window), the configuration file (changed on disk, and a
// broken one with SIGHUP that is refused while the agent carries on), runtime overrides cleared,
// and the process filter. Rates are judged against the workload's own CPU time, read from /proc
// while it runs, so a busy machine does not change the verdict.
import t from 'tap';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { readProcStat } from '../src/process/proc';
import { AgentProcess, ReceivedProfile, sampleCount, TestCollector } from './helpers/collector';
import { requireKernelFeature } from './helpers/kernel-feature';
import { buildWorkload, startWorkload } from './helpers/workloads';

const TICK_NS = 1e9 / 100; // USER_HZ

/** CPU time of a process over time, read every 100 ms. */
function cpuTrace(pid: number): { at: (ns: bigint) => number; stop: () => void } {
  const points: { t: bigint; ns: number }[] = [];
  const read = (): void => {
    const st = readProcStat(pid);
    if (st) points.push({ t: BigInt(Date.now()) * 1_000_000n, ns: st.cpuTicks * TICK_NS });
  };
  read();
  const timer = setInterval(read, 100);
  return {
    // CPU time at a wall-clock instant, interpolated between readings.
    at: (ns) => {
      let prev = points[0]!;
      for (const p of points) {
        if (p.t >= ns) {
          if (p.t === prev.t) return p.ns;
          return prev.ns + ((p.ns - prev.ns) * Number(ns - prev.t)) / Number(p.t - prev.t);
        }
        prev = p;
      }
      return prev.ns;
    },
    stop: () => clearInterval(timer),
  };
}

/** Samples per second of CPU the workload used in the profile's window. */
function rate(p: ReceivedProfile, cpu: ReturnType<typeof cpuTrace>): number {
  const used = cpu.at(p.timeUnixNano + BigInt(p.durationNano)) - cpu.at(p.timeUnixNano);
  return sampleCount([p]) / (used / 1e9);
}

const period = (hz: number): number => Math.round(1e9 / hz);

t.test('frequency, configuration file, SIGHUP, overrides and filters change while running', async (t) => {
  if (!(await requireKernelFeature(t, 'perf_event'))) return;
  const dir = t.testdir({});
  const collector = await TestCollector.start(dir);
  t.teardown(() => collector.stop());
  const w = startWorkload(buildWorkload('hotspots'), ['600']);
  t.teardown(() => w.child.kill());
  const cpu = cpuTrace(w.pid);
  t.teardown(cpu.stop);
  const config = path.join(dir, 'agent.yaml');
  const writeConfig = (hz: number | string): void => fs.writeFileSync(config, `endpoint: ${collector.endpoint}\nfrequencyHz: ${hz}\ninterval: 2s\ncontrol: {listen: "127.0.0.1:0"}\n`);
  writeConfig(99);
  const agent = await AgentProcess.start(['--config', config]);
  t.teardown(() => agent.stop());
  const workload = (ps: ReceivedProfile[]): ReceivedProfile[] => ps.filter((p) => p.resource['process.pid'] === w.pid && p.durationNano >= 1e9);

  // 99 Hz at first.
  await collector.waitFor((ps) => workload(ps).length >= 2, 60_000, 'two windows at 99 Hz');

  // 99 -> 19 Hz over the control endpoint.
  const changeAt = BigInt(Date.now()) * 1_000_000n;
  const put = await agent.request('PUT', '/config', { frequencyHz: 19 });
  const answeredAt = BigInt(Date.now()) * 1_000_000n;
  t.equal(put.status, 200);
  const view = JSON.parse(put.text) as { running: { frequencyHz: number }; overriddenKeys: string[] };
  t.equal(view.running.frequencyHz, 19, 'in effect when the request returns');
  t.same(view.overriddenKeys, ['frequencyHz']);
  t.match(agent.log(), /runtime override: frequencyHz 99 -> 19/);
  const at19 = await collector.waitFor((ps) => workload(ps).filter((p) => p.timeUnixNano >= changeAt).length >= 2, 60_000, 'two windows at 19 Hz');
  const before = workload(at19).filter((p) => p.timeUnixNano < changeAt);
  const after = workload(at19).filter((p) => p.timeUnixNano >= changeAt);
  t.ok(before.every((p) => p.period === period(99)), 'windows before the change: 99 Hz');
  t.ok(before.every((p) => p.timeUnixNano + BigInt(p.durationNano) <= answeredAt), 'the window running at the change was closed by it');
  t.ok(after.every((p) => p.period === period(19)), 'every window after it: 19 Hz, the first one included');
  for (const p of before.slice(-1).concat(after.slice(0, 2))) {
    const hz = 1e9 / p.period;
    const r = rate(p, cpu);
    t.ok(r > 0.6 * hz && r < 1.4 * hz, `${r.toFixed(1)} samples per CPU second at ${hz.toFixed(0)} Hz`);
  }

  // Clearing the override goes back to the file (99 Hz); then the file changes to 9 Hz on disk.
  const cleared = await agent.request('DELETE', '/config');
  t.equal((JSON.parse(cleared.text) as { running: { frequencyHz: number } }).running.frequencyHz, 99);
  const fileChangeAt = BigInt(Date.now()) * 1_000_000n;
  writeConfig(9);
  await agent.waitForLog(/the configuration file changed \(.*agent\.yaml\): frequencyHz 99 -> 9/, 30_000);
  const at9 = await collector.waitFor((ps) => workload(ps).filter((p) => p.timeUnixNano >= fileChangeAt && p.period === period(9)).length >= 1, 60_000, 'a window at 9 Hz');
  t.ok(workload(at9).some((p) => p.period === period(9)), 'the file change took effect without a restart');

  // A broken file and SIGHUP: refused in one line, the running configuration stays.
  writeConfig('"fast"');
  await agent.waitForLog(/cannot be used, keeping the running configuration: .*frequencyHz must be an integer/, 30_000);
  agent.child.kill('SIGHUP');
  await agent.waitForMetrics((m) => (m.get('ebpfprof_agent_config_reloads_total{result="failure"}') ?? 0) >= 1, 30_000, 'a failed reload counted');
  t.equal((await agent.metrics()).get('ebpfprof_agent_frequency_hz'), 9, 'still 9 Hz');
  writeConfig(29);
  agent.child.kill('SIGHUP');
  await agent.waitForLog(/(SIGHUP|the configuration file changed) .*frequencyHz 9 -> 29/, 30_000);

  // The process filter: only the workload from now on.
  const f = await agent.request('PUT', '/config', { filter: { include: ['process.executable.name=hotspots-fp'] } });
  t.equal(f.status, 200);
  // Windows that start once the change is acknowledged hold only filtered samples.
  const filterAt = BigInt(Date.now()) * 1_000_000n;
  const filtered = await collector.waitFor((ps) => new Set(ps.filter((p) => p.timeUnixNano > filterAt).map((p) => p.request)).size >= 2, 60_000, 'two requests after the filter');
  const later = filtered.filter((p) => p.timeUnixNano > filterAt);
  t.ok(later.length > 0 && later.every((p) => p.resource['process.pid'] === w.pid), 'only the workload is exported');
  t.ok(((await agent.metrics()).get('ebpfprof_agent_samples_filtered_total') ?? 0) >= 0, 'filtered samples counted');
  const bad = await agent.request('PUT', '/config', { filter: { include: ['no requirement'] } });
  t.equal(bad.status, 400);
  t.match(bad.text, /not a requirement/);
  t.equal((await agent.request('PUT', '/config', { control: { listen: '127.0.0.1:1' } })).status, 400, 'the listen address is not a runtime setting');
  const cg = await agent.request('PUT', '/config', { callGraph: 'fp' });
  t.equal(cg.status, 400, 'nor how stacks are walked');
  t.match(cg.text, /callGraph cannot be changed at run time/);
});
