// SPDX-License-Identifier: Apache-2.0
// `ebpfprof agent` with TCP and run-queue latency tracing next to profiling, against a real
// OpenTelemetry Collector (helpers/collector.ts; its metrics pipeline writes what it decoded as OTLP
// JSON): a known number of loopback connections with known byte counts from a client in a real cgroup
// named like a pod's container, failed connects to a closed port, and CPU-bound processes that
// contend for the two CPUs. The Collector's metrics hold exactly those counts, with the same
// resource attributes as the profiles of the same processes. Process lifecycle is tracked once for
// profiling and tracing (one set of sched_process_* links in the agent). Then tracers turned on and
// off while the agent runs: control endpoint, configuration file with SIGHUP.
import t from 'tap';
import { ChildProcess, execFileSync, spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { METRIC } from '../src/telemetry/otlp-metrics';
import { AgentProcess, JsonDataPoint, JsonResourceMetrics, metricAttr, metricAttrs, metricPoints, TestCollector } from './helpers/collector';
import { freePort } from './helpers/servers';
import { requireKernelFeature } from './helpers/kernel-feature';
import { tcpPeer } from './helpers/tcp-trace';
import { buildWorkload, startWorkload, Workload } from './helpers/workloads';
import { fakePod, PodCgroup, writeKubeletLogs } from './fixtures/otlp/kubernetes';

const CONNECTIONS = 25;
const SEND = 3000;
const REPLY = 777;
const REFUSED = 3;
const SPINNERS = 4;

/** A loopback server in this process: reads until the client half-closes, replies REPLY bytes, closes. */
async function replyServer(): Promise<{ port: number; accepted: () => number; close: () => void }> {
  let accepted = 0;
  const srv = net.createServer((s) => {
    accepted++;
    s.on('data', () => {});
    s.on('end', () => s.end(Buffer.alloc(REPLY, 0x61)));
    s.on('error', () => {});
  });
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r));
  return { port: (srv.address() as net.AddressInfo).port, accepted: () => accepted, close: () => srv.close() };
}

function connectRefused(port: number): Promise<string> {
  return new Promise((resolve) => {
    const c = net.connect(port, '127.0.0.1');
    c.once('connect', () => {
      c.destroy();
      resolve('connected');
    });
    c.once('error', (e: NodeJS.ErrnoException) => resolve(e.code ?? e.message));
  });
}

const sum = (points: JsonDataPoint[], f: (p: JsonDataPoint) => number): number => points.reduce((n, p) => n + f(p), 0);
const count = (p: JsonDataPoint): number => Number(p.count ?? 0);
const asInt = (p: JsonDataPoint): number => Number(p.asInt ?? 0);

/** Data points of `name` for one process (by pid) whose attributes `pred` accepts. */
function pointsOf(all: JsonResourceMetrics[], name: string, pid: number | null, pred: (p: JsonDataPoint) => boolean = () => true): JsonDataPoint[] {
  return metricPoints(all, name, (r) => (pid === null ? r['process.pid'] === undefined : r['process.pid'] === pid)).filter(pred);
}

/** raw_tracepoint links a process holds, by tracepoint (from /proc/PID/fdinfo). */
/** Raw tracepoint links a process holds, by "tracepoint program" (program names from bpftool). */
function rawTracepointLinks(pid: number): Map<string, number> {
  const names = new Map<number, string>();
  for (const p of JSON.parse(execFileSync('bpftool', ['prog', 'show', '-j'], { encoding: 'utf8', maxBuffer: 64 << 20 })) as Array<{ id: number; name?: string }>) names.set(p.id, p.name ?? '?');
  const out = new Map<string, number>();
  for (const fd of fs.readdirSync(`/proc/${pid}/fdinfo`)) {
    let text = '';
    try {
      text = fs.readFileSync(`/proc/${pid}/fdinfo/${fd}`, 'utf8');
    } catch {
      continue; // closed meanwhile
    }
    if (!/^link_type:\s+raw_tracepoint$/m.test(text)) continue;
    const tp = /^tp_name:\s+(\S+)$/m.exec(text)?.[1] ?? '?';
    const prog = names.get(Number(/^prog_id:\s+(\d+)$/m.exec(text)?.[1])) ?? '?';
    const key = `${tp} ${prog}`;
    out.set(key, (out.get(key) ?? 0) + 1);
  }
  return out;
}

t.test('tcp and sched metrics from the agent reach a real Collector with the profiles\' resource attributes', async (t) => {
  if (!(await requireKernelFeature(t, 'btf'))) return;
  if (!(await requireKernelFeature(t, 'perf_event'))) return;
  if (!(await requireKernelFeature(t, 'root'))) return;
  const dir = t.testdir({});
  const collector = await TestCollector.start(dir);
  t.teardown(() => collector.stop());

  const logRoot = path.join(dir, 'var-log');
  const pod = fakePod('shop', 'checkout-5c6d7e8f9-ab12c', 'checkout');
  writeKubeletLogs(logRoot, [pod]);
  const cgroup = PodCgroup.create(pod);
  const spinners: Workload[] = [];
  const clients: ChildProcess[] = [];
  t.teardown(async () => {
    for (const w of spinners) w.child.kill('SIGKILL');
    for (const c of clients) c.kill('SIGKILL');
    await Promise.all(spinners.map((w) => w.exited));
    cgroup.remove();
  });
  // More CPU-bound processes than CPUs: each waits in a run queue while the others run.
  const hotspots = buildWorkload('hotspots');
  for (let i = 0; i < SPINNERS; i++) spinners.push(startWorkload(hotspots, ['120']));
  const inPod = spinners[0]!;
  cgroup.add(inPod.pid);

  const server = await replyServer();
  t.teardown(() => server.close());
  const closedPort = await freePort();

  const config = path.join(dir, 'agent.yaml');
  fs.writeFileSync(
    config,
    [
      `endpoint: ${collector.endpoint}`,
      'frequencyHz: 49',
      'interval: 2s',
      'control: {listen: "127.0.0.1:0"}',
      // Generous: this test is about what is exported, not about degrading (agent-budget.test.ts).
      'budget: {cpuPercent: 100, checkInterval: 1s, window: 2s}',
      `kubernetes: {logRoot: ${logRoot}}`,
      'resourceAttributes: {deployment.environment.name: ci}',
      'tracing: {tcp: true, sched: true}',
      '',
    ].join('\n'),
  );
  const agent = await AgentProcess.start(['--config', config], { K8S_NODE_NAME: 'node-test-1' });
  t.teardown(() => agent.stop());
  t.match(agent.log(), /tcp and sched metrics to http:\/\/127\.0\.0\.1:\d+\/v1\/metrics/, 'the start-up line says where metrics go');
  await agent.waitForLog(/configuration: TCP tracing attached \(sock:inet_sock_set_state via \w+/, 30_000);
  await agent.waitForLog(/configuration: run-queue latency tracing attached/, 30_000);

  // The client: parked until it is in the pod's cgroup, then node (exec: same pid) makes the
  // connections one after another. env -i keeps tap's NODE_OPTIONS away from it. It stays 2 s after
  // its connections: its attributes are read from /proc when the agent handles its first TCP event,
  // and a process gone by then keeps only pid and comm (docs/agent.md) — how long the agent takes
  // to get there depends on what else it is doing, which this test does not control.
  const client = spawn('/bin/sh', ['-c', 'read go; exec env -i PATH="$PATH" "$@"', 'sh', process.execPath, tcpPeer, 'client', '127.0.0.1', String(server.port), '--send', String(SEND), '--count', String(CONNECTIONS), '--linger-ms', '2000'], {
    stdio: ['pipe', 'pipe', 'inherit'],
  });
  clients.push(client);
  let out = '';
  client.stdout!.on('data', (d: Buffer) => (out += d.toString()));
  const clientExit = new Promise<number | null>((r) => client.once('exit', (code) => r(code)));
  cgroup.add(client.pid!);
  client.stdin!.end('go\n');
  t.equal(await clientExit, 0, 'the client made its connections');
  const results = JSON.parse(out.trim()) as Array<{ sent: number; received: number; error: string }>;
  t.same(results.map((r) => [r.sent, r.received, r.error]), Array.from({ length: CONNECTIONS }, () => [SEND, REPLY, '']), 'exact bytes each way');
  for (let i = 0; i < REFUSED; i++) t.equal(await connectRefused(closedPort), 'ECONNREFUSED');

  const clientPid = client.pid!;
  const isOurs = (p: JsonDataPoint): boolean => metricAttr(p.attributes, 'server.port') === String(server.port);
  const all = await collector.waitForMetrics(
    (m) =>
      sum(pointsOf(m, METRIC.tcpConnectionDuration, clientPid, isOurs), count) >= CONNECTIONS &&
      sum(pointsOf(m, METRIC.tcpConnectionIo, process.pid, isOurs), asInt) >= CONNECTIONS * (SEND + REPLY) &&
      sum(pointsOf(m, METRIC.tcpConnectFailures, process.pid), asInt) >= REFUSED &&
      sum(pointsOf(m, METRIC.runqueueLatency, inPod.pid), count) > 0 &&
      collector.received().some((p) => p.resource['process.pid'] === inPod.pid),
    90_000,
    `${CONNECTIONS} closed connections, their bytes, ${REFUSED} failed connects, run-queue latency and a profile of the spinner in the pod`,
  );

  // TCP, client side: one resource for the client process, with the pod's attributes.
  const clientResource = all.find((r) => metricAttr(r.resource.attributes, 'process.pid') === String(clientPid))!;
  t.same(
    metricAttrs(clientResource.resource.attributes),
    {
      'host.name': 'node-test-1',
      'process.executable.name': path.basename(fs.realpathSync(process.execPath)),
      'process.executable.path': fs.realpathSync(process.execPath),
      'process.command_line': `${process.execPath} ${tcpPeer} client 127.0.0.1 ${server.port} --send ${SEND} --count ${CONNECTIONS} --linger-ms 2000`,
      'k8s.node.name': 'node-test-1',
      'container.id': pod.containerId,
      'k8s.pod.uid': pod.podUid,
      'k8s.namespace.name': 'shop',
      'k8s.pod.name': 'checkout-5c6d7e8f9-ab12c',
      'k8s.container.name': 'checkout',
      'service.name': 'checkout',
      'deployment.environment.name': 'ci',
      'process.pid': clientPid,
    },
    'the client\'s resource: process, container and pod attributes as for profiles',
  );
  const connects = pointsOf(all, METRIC.tcpConnectDuration, clientPid, isOurs);
  t.equal(sum(connects, count), CONNECTIONS, `${CONNECTIONS} connects`);
  for (const p of connects) {
    t.same(
      { ...metricAttrs(p.attributes) },
      { 'network.transport': 'tcp', 'network.type': 'ipv4', 'server.port': server.port, 'server.address': '127.0.0.1', 'ebpfprof.tcp.role': 'client' },
      'connect attributes: semantic conventions where they exist',
    );
    t.equal(sum([p], (x) => (x.bucketCounts ?? []).reduce((n, c) => n + Number(c), 0)), count(p), 'buckets add up to the count');
    t.equal(p.explicitBounds?.length, 39, 'log2 bounds');
  }
  t.equal(sum(pointsOf(all, METRIC.tcpConnectionDuration, clientPid, isOurs), count), CONNECTIONS, `${CONNECTIONS} lifetimes`);
  t.equal(sum(pointsOf(all, METRIC.tcpRtt, clientPid, isOurs), count), CONNECTIONS, `${CONNECTIONS} RTTs`);
  const io = (pid: number, dir: string): number => sum(pointsOf(all, METRIC.tcpConnectionIo, pid, (p) => isOurs(p) && metricAttr(p.attributes, 'network.io.direction') === dir), asInt);
  t.equal(io(clientPid, 'transmit'), CONNECTIONS * SEND, 'client bytes sent');
  t.equal(io(clientPid, 'receive'), CONNECTIONS * REPLY, 'client bytes received');
  // Server side: this test process accepted them.
  t.equal(server.accepted(), CONNECTIONS);
  t.equal(io(process.pid, 'receive'), CONNECTIONS * SEND, 'server bytes received');
  t.equal(io(process.pid, 'transmit'), CONNECTIONS * REPLY, 'server bytes sent');
  const served = pointsOf(all, METRIC.tcpConnectionDuration, process.pid, isOurs);
  t.equal(sum(served, count), CONNECTIONS, 'server-side lifetimes');
  t.ok(served.every((p) => metricAttr(p.attributes, 'ebpfprof.tcp.role') === 'server' && metricAttr(p.attributes, 'client.address') === '127.0.0.1'), 'as the server, with client.address');
  const refused = pointsOf(all, METRIC.tcpConnectFailures, process.pid, (p) => metricAttr(p.attributes, 'server.port') === String(closedPort));
  t.equal(sum(refused, asInt), REFUSED, `${REFUSED} failed connects`);
  t.ok(refused.every((p) => metricAttr(p.attributes, 'error.type') === 'ECONNREFUSED'), 'error.type ECONNREFUSED');

  // Run-queue latency: per CPU under the node's resource, per process under the process's.
  const host = all.filter((r) => metricAttr(r.resource.attributes, 'process.pid') === undefined && r.scopeMetrics.some((s) => s.metrics.some((m) => m.name === METRIC.runqueueLatency)));
  t.ok(host.length > 0, 'per-CPU run-queue latency');
  t.same(metricAttrs(host[0]!.resource.attributes), { 'host.name': 'node-test-1', 'k8s.node.name': 'node-test-1', 'deployment.environment.name': 'ci' }, 'the node\'s resource attributes');
  const cpuPoints = pointsOf(all, METRIC.runqueueLatency, null);
  t.ok(cpuPoints.every((p) => /^\d+$/.test(metricAttr(p.attributes, 'cpu.logical_number') ?? '')), 'each with cpu.logical_number');
  const spinnerPoints = spinners.flatMap((w) => pointsOf(all, METRIC.runqueueLatency, w.pid));
  t.ok(sum(spinnerPoints, count) > 0, `the spinners waited in run queues (${sum(spinnerPoints, count)} latencies)`);
  // Four CPU-bound processes on two CPUs: a spinner that became runnable waits for another one's
  // time slice (0.75 ms or more) at some point.
  const maxWait = Math.max(...spinnerPoints.map((p) => p.max ?? 0));
  t.ok(maxWait >= 0.5e-3, `contention shows: longest wait ${(maxWait * 1e3).toFixed(2)} ms`);

  // The same process under profiles and metrics: the same resource attributes.
  const profiled = collector.received().find((p) => p.resource['process.pid'] === inPod.pid)!;
  const spinnerResource = all.find((r) => metricAttr(r.resource.attributes, 'process.pid') === String(inPod.pid))!;
  t.same(metricAttrs(spinnerResource.resource.attributes), profiled.resource, 'metrics and profiles of the spinner carry the same resource attributes');
  t.equal(profiled.resource['k8s.pod.name'], 'checkout-5c6d7e8f9-ab12c');

  // Self-metrics: attached, counted, what was lost, the tracers' in-kernel cost in the budget.
  const m = await agent.waitForMetrics((x) => (x.get('ebpfprof_agent_bpf_cpu_percent') ?? 0) > 0, 30_000, 'a budget check that measured the BPF programs');
  t.equal(m.get('ebpfprof_agent_tracing_attached{collector="tcp"}'), 1);
  t.equal(m.get('ebpfprof_agent_tracing_attached{collector="sched"}'), 1);
  t.ok((m.get('ebpfprof_agent_tracing_events_total{collector="tcp"}') ?? 0) >= 2 * CONNECTIONS + REFUSED, 'TCP events counted');
  t.ok((m.get('ebpfprof_agent_tracing_events_total{collector="sched"}') ?? 0) > 0, 'latencies counted');
  for (const k of ['collector="tcp",reason="ring_buffer_full"', 'collector="tcp",reason="records_dropped"', 'collector="tcp",reason="connection_map_full"', 'collector="sched",reason="start_map_full"', 'collector="sched",reason="process_map_full"']) {
    t.ok(m.has(`ebpfprof_agent_tracing_lost_total{${k}}`), `losses counted: ${k}`);
  }
  t.ok((m.get('ebpfprof_agent_metrics_exports_total{result="success"}') ?? 0) >= 1, 'metrics exports counted');
  t.equal(m.get('ebpfprof_agent_export_data_points_total{result="dropped"}'), 0);
  t.equal(m.get('ebpfprof_agent_bpf_run_time_counted'), 1, 'run-time statistics on while tracers are attached (root)');
  t.ok((m.get('ebpfprof_agent_tracing_bpf_cpu_seconds_total{collector="sched"}') ?? 0) > 0, 'the sched tracer\'s in-kernel time is measured');
  t.ok((m.get('ebpfprof_agent_cpu_percent') ?? 0) >= (m.get('ebpfprof_agent_bpf_cpu_percent') ?? 0), 'the budget\'s CPU includes the BPF programs');

  // One lifecycle tracker for profiling and tracing: one lifecycle program per sched_process_*
  // tracepoint. Besides it, only the sampler's unwinder bookkeeping (on_fork/on_exec/on_exit: they
  // drop a process's unwind registration in the kernel and send no events to the agent).
  const links = rawTracepointLinks(agent.pid);
  const lifecycle = [...links].filter(([k]) => k.startsWith('sched_process_'));
  t.same(
    lifecycle.filter(([k]) => !/ on_(fork|exec|exit)$/.test(k)).sort(),
    [['sched_process_exec raw_exec', 1], ['sched_process_exit raw_exit', 1], ['sched_process_fork raw_fork', 1]],
    `the agent tracks fork, exec and exit once (raw_tracepoint links: ${JSON.stringify([...links])})`,
  );
  const status = JSON.parse((await agent.request('GET', '/status')).text) as {
    tracing: { tcp: { attached: boolean; hooks: { hook: string }[] }; sched: { attached: boolean } };
    lifecycle: { exits: number; tracked: number };
  };
  t.ok(status.tracing.tcp.attached && status.tracing.sched.attached, '/status: both attached');
  t.ok(status.tracing.tcp.hooks.some((h) => h.hook === 'sock:inet_sock_set_state'), '/status: the hooks');
  t.ok(status.lifecycle.exits > 0, 'exits tracked (the client exited)');
  // The client exited two windows ago or more by now: what the agent held about it is freed.
  const freed = await agent.waitForMetrics((x) => (x.get('ebpfprof_agent_processes_freed_total') ?? 0) > 0, 30_000, 'exited processes freed');
  t.ok((freed.get('ebpfprof_agent_processes_freed_total') ?? 0) > 0, 'exited processes freed after a window of grace');

  const exit = await agent.stop();
  t.same(exit, { code: 0, signal: null });
});

t.test('tracers attach and detach while the agent runs: control endpoint, then the file and SIGHUP', async (t) => {
  if (!(await requireKernelFeature(t, 'btf'))) return;
  if (!(await requireKernelFeature(t, 'perf_event'))) return;
  if (!(await requireKernelFeature(t, 'root'))) return;
  const dir = t.testdir({});
  const collector = await TestCollector.start(dir);
  t.teardown(() => collector.stop());
  const server = await replyServer();
  t.teardown(() => server.close());
  // Connections all along, one every 50 ms, from and to this process.
  let stop = false;
  const loop = (async () => {
    while (!stop) {
      await new Promise<void>((resolve) => {
        const c = net.connect(server.port, '127.0.0.1', () => c.end(Buffer.alloc(10)));
        c.on('data', () => {});
        c.on('close', () => resolve());
        c.on('error', () => resolve());
      });
      await sleep(50);
    }
  })();
  t.teardown(async () => {
    stop = true;
    await loop;
  });

  const config = path.join(dir, 'agent.yaml');
  const write = (tracing: string): void =>
    fs.writeFileSync(config, [`endpoint: ${collector.endpoint}`, 'interval: 1s', 'control: {listen: "127.0.0.1:0"}', 'budget: {cpuPercent: 100}', tracing, ''].join('\n'));
  write('tracing: {tcp: false, sched: false}');
  const agent = await AgentProcess.start(['--config', config]);
  t.teardown(() => agent.stop());
  const isOurs = (p: JsonDataPoint): boolean => metricAttr(p.attributes, 'server.port') === String(server.port);
  const tcpPoints = (): JsonDataPoint[] => pointsOf(collector.receivedMetrics(), METRIC.tcpConnectDuration, process.pid, isOurs);
  const windows = async (): Promise<number> => (await agent.metrics()).get('ebpfprof_agent_windows_total') ?? 0;

  const w0 = await windows();
  await agent.waitForMetrics((m) => (m.get('ebpfprof_agent_windows_total') ?? 0) >= w0 + 2, 30_000, 'two windows');
  t.equal(tcpPoints().length, 0, 'tracing off: no TCP metrics');
  t.equal((await agent.metrics()).get('ebpfprof_agent_tracing_attached{collector="tcp"}'), 0);

  const on = await agent.request('PUT', '/config', { tracing: { tcp: true } });
  t.equal(on.status, 200, on.text);
  const running = (JSON.parse(on.text) as { running: { tcp: boolean; sched: boolean } }).running;
  t.same([running.tcp, running.sched], [true, false], 'GET/PUT /config: running with TCP tracing, without sched');
  t.match(agent.log(), /runtime override: TCP tracing attached/);
  t.equal((await agent.metrics()).get('ebpfprof_agent_tracing_attached{collector="tcp"}'), 1);
  await collector.waitForMetrics(() => sum(tcpPoints(), count) > 0, 30_000, 'TCP metrics after the tracer was attached');
  t.ok(sum(tcpPoints(), count) > 0, `TCP metrics appear (${sum(tcpPoints(), count)} connects)`);

  const off = await agent.request('PUT', '/config', { tracing: { tcp: false } });
  t.equal(off.status, 200, off.text);
  const offAt = BigInt(Date.now()) * 1_000_000n;
  t.match(agent.log(), /runtime override: TCP tracing detached/);
  t.equal((await agent.metrics()).get('ebpfprof_agent_tracing_attached{collector="tcp"}'), 0);
  const w1 = await windows();
  await agent.waitForMetrics((m) => (m.get('ebpfprof_agent_windows_total') ?? 0) >= w1 + 3, 30_000, 'three more windows');
  await sleep(500); // the Collector's file exporter flushes every 100 ms
  const late = tcpPoints().filter((p) => BigInt(p.startTimeUnixNano ?? '0') >= offAt);
  t.equal(late.length, 0, 'no TCP metrics for windows that started after the tracer was detached, although connections go on');
  const connectsSeen = sum(tcpPoints(), count);

  // The configuration file: sched on, applied at SIGHUP without a restart (the override keeps tcp off).
  write('tracing: {tcp: false, sched: true}');
  process.kill(agent.pid, 'SIGHUP');
  await agent.waitForLog(/run-queue latency tracing attached/, 30_000);
  const runq = await collector.waitForMetrics((m) => pointsOf(m, METRIC.runqueueLatency, null).length > 0, 30_000, 'run-queue latency after SIGHUP');
  t.ok(pointsOf(runq, METRIC.runqueueLatency, null).length > 0, 'run-queue latency metrics appear');
  t.equal(sum(tcpPoints(), count), connectsSeen, 'and TCP stays off');
  const m = await agent.metrics();
  t.equal(m.get('ebpfprof_agent_tracing_attached{collector="sched"}'), 1);
  t.equal(m.get('ebpfprof_agent_tracing_attach_failures_total'), 0);
  t.same(await agent.stop(), { code: 0, signal: null });
});
