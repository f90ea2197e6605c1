// SPDX-License-Identifier: Apache-2.0
// `ebpfprof agent` end to end: the whole node sampled on the real kernel, OTLP Profiles sent to a
// real OpenTelemetry Collector (built from upstream modules, see helpers/collector.ts), and what the
// Collector wrote checked: the known hot function of a workload, its process's resource attributes,
// and its Kubernetes attribution from a real cgroup named like a pod's container and a kubelet log
// tree (no API server). Also health, self-metrics, the last window at SIGTERM, and record --format otlp.
import t from 'tap';
import { execFileSync, spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as http from 'node:http';
import * as path from 'node:path';
import { AgentProcess, ReceivedProfile, sampleCount, TestCollector } from './helpers/collector';
import { requireKernelFeature } from './helpers/kernel-feature';
import { cliPath, repoRoot } from './helpers/paths';
import { buildWorkload, startWorkload } from './helpers/workloads';
import { fakePod, PodCgroup, writeKubeletLogs } from './fixtures/otlp/kubernetes';

function leafShares(ps: ReceivedProfile[]): Map<string, number> {
  const total = sampleCount(ps);
  const m = new Map<string, number>();
  for (const p of ps) for (const s of p.samples) if (s.frames[0]) m.set(s.frames[0].name, (m.get(s.frames[0].name) ?? 0) + s.count);
  return new Map([...m].map(([k, v]) => [k, (100 * v) / Math.max(1, total)]));
}

function gnuBuildId(file: string): string {
  const out = execFileSync('readelf', ['-n', file], { encoding: 'utf8' });
  return /Build ID: ([0-9a-f]+)/.exec(out)![1]!;
}

t.test('profiles of the whole node reach a real Collector with hot spots and pod attribution', async (t) => {
  if (!(await requireKernelFeature(t, 'perf_event'))) return;
  if (!(await requireKernelFeature(t, 'root'))) return;
  const dir = t.testdir({});
  const collector = await TestCollector.start(dir);
  t.teardown(() => collector.stop());

  // A pod's container: the workload in a real cgroup with the kubelet's naming, and the log tree.
  const logRoot = path.join(dir, 'var-log');
  const pod = fakePod('shop', 'checkout-7d9f8b6c4-x2x9q', 'checkout');
  writeKubeletLogs(logRoot, [pod]);
  const cgroup = PodCgroup.create(pod);
  const binary = buildWorkload('hotspots');
  const w = startWorkload(binary, ['120']);
  t.teardown(async () => {
    w.child.kill('SIGKILL');
    await w.exited;
    cgroup.remove();
  });
  cgroup.add(w.pid);

  const config = path.join(dir, 'agent.yaml');
  fs.writeFileSync(
    config,
    [
      `endpoint: ${collector.endpoint}`,
      'frequencyHz: 99',
      'interval: 2s',
      'control:',
      '  listen: 127.0.0.1:0',
      'kubernetes:',
      `  logRoot: ${logRoot}`,
      'resourceAttributes:',
      '  deployment.environment.name: ci',
      '',
    ].join('\n'),
  );
  const agent = await AgentProcess.start(['--config', config], { K8S_NODE_NAME: 'node-test-1' });
  t.teardown(() => agent.stop());
  t.match(agent.log(), /sampling every CPU at 99 Hz, exporting every 2s to http:\/\/127\.0\.0\.1:\d+\/v1development\/profiles; control endpoint on 127\.0\.0\.1:\d+; host\.name node-test-1, k8s\.node\.name node-test-1/);

  const all = await collector.waitFor((ps) => sampleCount(ps.filter((p) => p.resource['process.pid'] === w.pid)) >= 300, 120_000, '300 samples of the workload');
  const mine = all.filter((p) => p.resource['process.pid'] === w.pid);

  t.same(mine[0]!.resource, {
    'host.name': 'node-test-1',
    'process.executable.name': 'hotspots-fp',
    'process.executable.path': binary,
    'process.command_line': `${binary} 120`,
    'k8s.node.name': 'node-test-1',
    'container.id': pod.containerId,
    'k8s.pod.uid': pod.podUid,
    'k8s.namespace.name': 'shop',
    'k8s.pod.name': 'checkout-7d9f8b6c4-x2x9q',
    'k8s.container.name': 'checkout',
    'service.name': 'checkout',
    'deployment.environment.name': 'ci',
    'process.pid': w.pid,
  }, 'resource attributes of the workload, Kubernetes ones from cgroup and log tree');
  for (const p of mine) {
    t.equal(p.sampleType, 'samples/count');
    t.equal(p.periodType, 'cpu/nanoseconds');
    t.equal(p.period, Math.round(1e9 / 99));
    t.equal(p.scope, 'ebpfprof');
    t.match(p.profileId, /^[0-9a-f]{32}$/);
  }
  const shares = leafShares(mine);
  t.ok(Math.abs((shares.get('hot_a') ?? 0) - 75) <= 10, `hot_a ~75% of the workload's samples (${(shares.get('hot_a') ?? 0).toFixed(1)}%)`);
  t.ok(Math.abs((shares.get('hot_b') ?? 0) - 25) <= 10, `hot_b ~25% (${(shares.get('hot_b') ?? 0).toFixed(1)}%)`);
  const hot = mine.flatMap((p) => p.samples).find((s) => s.frames[0]?.name === 'hot_a')!;
  t.same(hot.frames.slice(0, 3).map((f) => f.name), ['hot_a', 'work', 'main'], 'stack hot_a <- work <- main, leaf first');
  t.equal(hot.frames[0]!.frameType, 'native');
  t.equal(hot.frames[0]!.mappingFile, binary);
  t.equal(hot.frames[0]!.buildId, gnuBuildId(binary), 'process.executable.build_id.gnu as readelf reads it');
  t.equal(hot.attributes['thread.id'], w.pid);
  t.equal(hot.attributes['thread.name'], 'hotspots-fp');

  // The whole node: other processes, host ones without pod attributes, and kernel frames.
  const pids = new Set(all.map((p) => p.resource['process.pid']));
  t.ok(pids.size >= 2, `more than the workload (${pids.size} processes)`);
  t.ok(all.some((p) => p.resource['k8s.pod.uid'] === undefined && p.resource['host.name'] === 'node-test-1'), 'host processes: host.name, no pod');
  t.ok(
    all.some((p) => p.samples.some((s) => s.frames.some((f) => f.frameType === 'kernel' && !f.name.startsWith('0x')))),
    'symbolized kernel frames of type kernel',
  );

  // Health and self-metrics on the loopback endpoint.
  const health = await agent.request('GET', '/healthz');
  t.same(health, { status: 200, text: 'ok\n' });
  const m = await agent.metrics();
  t.ok((m.get('ebpfprof_agent_samples_total') ?? 0) > 0, 'samples counted');
  t.ok((m.get('ebpfprof_agent_exports_total{result="success"}') ?? 0) >= 1, 'successful exports counted');
  t.equal(m.get('ebpfprof_agent_exports_total{result="dropped"}'), 0);
  t.equal(m.get('ebpfprof_agent_frequency_hz'), 99);
  t.equal(m.get('ebpfprof_agent_degradation_level'), 0);
  for (const name of ['samples_lost_total', 'processes', 'symbolization_hit_ratio', 'cpu_seconds_total', 'resident_memory_bytes', 'export_sent_bytes_total']) {
    t.ok(m.has(`ebpfprof_agent_${name}`), `${name} exported`);
  }
  t.ok((m.get('ebpfprof_agent_symbolization_hit_ratio') ?? 0) > 0.5, 'most frames symbolized');
  const status = JSON.parse((await agent.request('GET', '/status')).text) as { running: { frequencyHz: number }; kubernetes: { identity: { nodeName: string } } };
  t.equal(status.running.frequencyHz, 99);
  t.equal(status.kubernetes.identity.nodeName, 'node-test-1');
  t.equal((await agent.request('GET', '/nope')).status, 404);
  // Only loopback names: a request with another Host (DNS rebinding) is refused.
  const port = Number(new URL(agent.controlUrl).port);
  const foreign = await new Promise<number>((resolve) => http.get({ host: '127.0.0.1', port, path: '/status', headers: { Host: 'evil.example:80' } }, (r) => resolve(r.statusCode ?? 0)));
  t.equal(foreign, 403, 'a foreign Host header is refused');
  t.equal((await fetch(`${agent.controlUrl}/config`, { method: 'PUT', body: '{"frequencyHz":9}', headers: { 'Content-Type': 'text/plain' } })).status, 415, 'changes need application/json');

  // SIGTERM: the last window is sent before the agent exits.
  const before = collector.received().length;
  const stoppedAt = BigInt(Date.now()) * 1_000_000n;
  const exit = await agent.stop();
  t.same(exit, { code: 0, signal: null }, 'exit 0 on SIGTERM');
  t.match(agent.log(), /SIGTERM: sending the last window and stopping/);
  const after = await collector.waitFor((ps) => ps.length > before, 20_000, 'the last window');
  t.ok(after.some((p) => p.timeUnixNano + BigInt(p.durationNano) >= stoppedAt - 3_000_000_000n), 'a window ending at the stop arrived');
});

t.test('the agent walks stacks without frame pointers with unwind tables', async (t) => {
  if (!(await requireKernelFeature(t, 'perf_event'))) return;
  const dir = t.testdir({});
  const collector = await TestCollector.start(dir);
  t.teardown(() => collector.stop());
  const w = startWorkload(buildWorkload('deepchain', ['-O2', '-g', '-fomit-frame-pointer'], 'nofp'), ['120']);
  t.teardown(async () => {
    w.child.kill('SIGKILL');
    await w.exited;
  });
  const agent = await AgentProcess.start(['--endpoint', collector.endpoint, '-F', '99', '-i', '2s', '--control', '127.0.0.1:0']);
  t.teardown(() => agent.stop());
  const all = await collector.waitFor((ps) => ps.filter((p) => p.resource['process.pid'] === w.pid).length >= 3, 120_000, 'three windows of the workload');
  // From the second window on: the process was registered at its first drain (its first second used frame pointers).
  const windows = all.filter((p) => p.resource['process.pid'] === w.pid).sort((a, b) => (a.timeUnixNano < b.timeUnixNano ? -1 : 1)).slice(1);
  const total = sampleCount(windows);
  let complete = 0;
  for (const p of windows) {
    for (const s of p.samples) {
      const names = s.frames.filter((f) => f.frameType !== 'kernel').map((f) => f.name).reverse();
      const at = names.indexOf('main');
      if (names[0] === '_start' && at >= 0 && ['level1', 'level2', 'level3'].every((n, i) => names[at + 1 + i] === n)) complete += s.count;
    }
  }
  t.ok(total > 50, `samples of the workload (${total})`);
  t.ok(complete >= 0.95 * total, `>= 95% of them read _start ... main -> level1 -> level2 -> level3 (${complete} of ${total})`);
  const m = await agent.metrics();
  t.ok((m.get('ebpfprof_agent_unwind_walks_total{end="outermost"}') ?? 0) > 0, 'walks counted in the self-metrics');
  t.ok((m.get('ebpfprof_agent_unwind_table_bytes') ?? 0) > 0, 'kernel memory of the tables reported');
});

t.test('record --format otlp writes what the Collector accepts', async (t) => {
  if (!(await requireKernelFeature(t, 'perf_event'))) return;
  const dir = t.testdir({});
  const out = path.join(dir, 'p.otlp.pb.gz');
  const r = spawnSync(process.execPath, [cliPath, 'record', '-F', '199', '--format', 'otlp', '-o', out, '-q', '--', buildWorkload('hotspots'), '2'], { encoding: 'utf8', timeout: 120_000, cwd: repoRoot });
  t.equal(r.status, 0, r.stderr);
  t.equal(r.stdout.trim(), out);
  const collector = await TestCollector.start(dir);
  t.teardown(() => collector.stop());
  // The file is a gzip'ed ProfilesData, byte for byte the body of an export request.
  const res = await fetch(`${collector.endpoint}/v1development/profiles`, { method: 'POST', body: fs.readFileSync(out), headers: { 'Content-Type': 'application/x-protobuf', 'Content-Encoding': 'gzip' } });
  t.equal(res.status, 200);
  const got = await collector.waitFor((ps) => ps.length > 0, 30_000, 'the recorded profile');
  const mine = got.filter((p) => p.resource['process.executable.name'] === 'hotspots-fp');
  t.equal(mine.length, 1, 'one profile for the command');
  t.ok((leafShares(mine).get('hot_a') ?? 0) > 65, 'hot_a leads');
  t.equal(mine[0]!.period, Math.round(1e9 / 199));
});
