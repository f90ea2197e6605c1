// SPDX-License-Identifier: Apache-2.0
// TCP and run-queue results as OTLP metrics over HTTP/protobuf, received by a real OpenTelemetry
// Collector (test/helpers/collector.ts builds it; its metrics pipeline's file exporter writes what it
// decoded as OTLP JSON); and the exporter's behaviour against a plain HTTP server (status, content type, errors).
import t from 'tap';
import { spawn, spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as http from 'node:http';
import * as net from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { OtlpHttpMetricsExporter, metricsUrl } from '../src/telemetry/otlp-http';
import { buildResourceMetrics, METRIC } from '../src/telemetry/otlp-metrics';
import { TracingSession } from '../src/telemetry/tracing-session';
import { JsonResourceMetrics, metricAttr, TestCollector } from './helpers/collector';
import { freePort } from './helpers/servers';
import { requireKernelFeature } from './helpers/kernel-feature';
import { cliPath } from './helpers/paths';

const attr = metricAttr;

t.test('a window of TCP and run-queue metrics reaches the Collector intact', async (t) => {
  if (!(await requireKernelFeature(t, 'btf'))) return;
  if (!(await requireKernelFeature(t, 'root'))) return;
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'ebpfprof-otlp-metrics-'));
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
  const collector = await TestCollector.start(dir);
  t.teardown(() => collector.stop());
  const session = await TracingSession.start({ tcp: { pid: process.pid }, sched: {}, resource: { 'host.name': 'test-host', 'service.name': 'ebpfprof-test' } });
  // One connection with known bytes, from and to this process.
  const srv = net.createServer((s) => {
    s.on('data', () => {});
    s.on('end', () => s.end(Buffer.alloc(777)));
  });
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r));
  const port = (srv.address() as net.AddressInfo).port;
  await new Promise<void>((resolve) => {
    const c = net.connect(port, '127.0.0.1', () => c.end(Buffer.alloc(4321)));
    c.on('data', () => {});
    c.on('close', () => resolve());
  });
  srv.close();
  await sleep(300);
  const resources = await session.stop();
  const exporter = new OtlpHttpMetricsExporter(collector.endpoint);
  const result = await exporter.export(resources);
  t.equal(result.rejectedDataPoints, 0, 'the Collector took every data point');

  let got: JsonResourceMetrics[] = [];
  for (let i = 0; i < 100 && got.length < resources.length; i++) {
    await sleep(100);
    got = collector.receivedMetrics();
  }
  t.equal(got.length, resources.length, `every resource arrived (${resources.length})`);
  const host = got.find((r) => attr(r.resource.attributes, 'process.pid') === undefined)!;
  t.equal(attr(host.resource.attributes, 'host.name'), 'test-host', 'base resource attributes');
  const runq = host.scopeMetrics[0]!.metrics.find((m) => m.name === METRIC.runqueueLatency)!;
  t.equal(runq.unit, 's');
  t.ok(runq.histogram!.dataPoints.length >= 1, 'per-CPU run-queue histograms');
  for (const dp of runq.histogram!.dataPoints) {
    t.match(attr(dp.attributes, 'cpu.logical_number'), /^\d+$/, 'each with its CPU');
    t.equal(dp.explicitBounds!.length, 39, 'the kernel\'s log2 slots as bounds');
    t.equal(dp.explicitBounds![10], 1024e-9, 'bound 10 is 1024 ns, in seconds');
    t.equal(dp.bucketCounts!.reduce((n, c) => n + Number(c), 0), Number(dp.count), 'buckets add up');
  }
  const me = got.find((r) => attr(r.resource.attributes, 'process.pid') === String(process.pid));
  t.ok(me, 'a resource for this process');
  t.equal(attr(me?.resource.attributes, 'process.executable.name'), 'node');
  const metrics = new Map(me!.scopeMetrics.flatMap((s) => s.metrics).map((m) => [m.name, m]));
  for (const name of [METRIC.tcpConnectDuration, METRIC.tcpConnectionDuration, METRIC.tcpRtt, METRIC.tcpConnectionIo, METRIC.runqueueLatency]) t.ok(metrics.has(name), `${name} present`);
  const connect = metrics.get(METRIC.tcpConnectDuration)!.histogram!.dataPoints.find((dp) => attr(dp.attributes, 'server.port') === String(port))!;
  t.equal(attr(connect.attributes, 'server.address'), '127.0.0.1');
  t.equal(attr(connect.attributes, 'network.transport'), 'tcp');
  t.equal(attr(connect.attributes, 'network.type'), 'ipv4');
  t.equal(connect.count, '1', 'one connect');
  const io = metrics.get(METRIC.tcpConnectionIo)!.sum!;
  t.equal(io.isMonotonic, true);
  const ioOf = (role: string, dir: string): number =>
    io.dataPoints
      .filter((dp) => attr(dp.attributes, 'ebpfprof.tcp.role') === role && attr(dp.attributes, 'network.io.direction') === dir && attr(dp.attributes, 'server.port') === String(port))
      .reduce((n, dp) => n + Number(dp.asInt ?? 0), 0);
  t.equal(ioOf('client', 'transmit'), 4321, 'client bytes sent');
  t.equal(ioOf('client', 'receive'), 777, 'client bytes received');
  t.equal(ioOf('server', 'transmit'), 777, 'server bytes sent');
  t.equal(ioOf('server', 'receive'), 4321, 'server bytes received');
});

t.test('the exporter: protobuf POST to /v1/metrics, clear errors', async (t) => {
  const seen: Array<{ url: string; type: string; bytes: number }> = [];
  let status = 200;
  const srv = http.createServer((req, res) => {
    let n = 0;
    req.on('data', (d: Buffer) => (n += d.length));
    req.on('end', () => {
      seen.push({ url: req.url ?? '', type: req.headers['content-type'] ?? '', bytes: n });
      res.writeHead(status);
      res.end(status === 200 ? '' : 'nope');
    });
  });
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r));
  t.teardown(() => srv.close());
  const port = (srv.address() as net.AddressInfo).port;
  t.equal(metricsUrl('http://h:4318').pathname, '/v1/metrics', 'no path: /v1/metrics appended');
  t.equal(metricsUrl('http://h:4318/custom/path').pathname, '/custom/path', 'a path is used as given');
  t.throws(() => metricsUrl('grpc://h:4317'), { code: 'EBADARG' });
  t.throws(() => metricsUrl('not a url'), { code: 'EBADARG' });
  const exporter = new OtlpHttpMetricsExporter(`http://127.0.0.1:${port}`);
  const window = { startMs: Date.now() - 1000, endMs: Date.now(), cpus: [{ cpu: 0, hist: { slots: new Array(40).fill(0).map((_, i) => (i === 12 ? 3 : 0)), count: 3, sum: 9000, max: 4000 } }] };
  await exporter.export(buildResourceMetrics(window));
  t.same(seen.map((s) => [s.url, s.type]), [['/v1/metrics', 'application/x-protobuf']]);
  t.ok(seen[0]!.bytes > 100, 'a body was sent');
  status = 500;
  await t.rejects(exporter.export(buildResourceMetrics(window)), { code: 'EOUTPUT', message: /HTTP 500/ });
  const dead = new OtlpHttpMetricsExporter(`http://127.0.0.1:${await freePort()}`);
  await t.rejects(dead.export(buildResourceMetrics(window)), { code: 'EOUTPUT', message: /is an OTLP\/HTTP receiver listening there\?/ });
});

t.test('`ebpfprof sched --otlp-endpoint` sends its windows', async (t) => {
  if (!(await requireKernelFeature(t, 'btf'))) return;
  if (!(await requireKernelFeature(t, 'root'))) return;
  const bodies: number[] = [];
  const srv = http.createServer((req, res) => {
    let n = 0;
    req.on('data', (d: Buffer) => (n += d.length));
    req.on('end', () => {
      bodies.push(n);
      res.writeHead(200, { 'content-type': 'application/x-protobuf' });
      res.end();
    });
  });
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r));
  t.teardown(() => srv.close());
  const port = (srv.address() as net.AddressInfo).port;
  const r = await new Promise<{ status: number | null; stdout: string; stderr: string }>((resolve) => {
    const child = spawn(process.execPath, [cliPath, 'sched', '-d', '2s', '--export-interval', '500ms', '--otlp-endpoint', `http://127.0.0.1:${port}`, '--json'], { env: { PATH: process.env.PATH ?? '' } });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    child.on('exit', (status) => resolve({ status, stdout, stderr }));
  });
  t.equal(r.status, 0, r.stderr);
  t.ok(bodies.length >= 3, `several windows sent (${bodies.length})`);
  t.match(r.stderr, /OTLP: \d+ sent, 0 failed/);
  const rows = r.stdout.trim().split('\n').map((l) => JSON.parse(l) as { kind: string });
  t.ok(rows.some((x) => x.kind === 'cpu') && rows.some((x) => x.kind === 'process'), 'and still prints its rows');
  const bad = spawnSync(process.execPath, [cliPath, 'sched', '--otlp-endpoint', 'ftp://x'], { encoding: 'utf8' });
  t.equal(bad.status, 2);
  t.match(bad.stderr, /^ebpfprof: --otlp-endpoint must be an http:\/\/ or https:\/\/ URL/);
});

t.test('a session turns collectors off and on: the last events reach the next window, counters carry over', async (t) => {
  if (!(await requireKernelFeature(t, 'btf'))) return;
  if (!(await requireKernelFeature(t, 'root'))) return;
  const session = await TracingSession.start({});
  t.teardown(() => session.stopWindow());
  t.same(session.enabled, { tcp: false, sched: false }, 'nothing attached');
  const srv = net.createServer((s) => {
    s.on('data', () => {});
    s.on('end', () => s.end());
  });
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r));
  t.teardown(() => srv.close());
  const port = (srv.address() as net.AddressInfo).port;
  const connectOnce = (): Promise<void> =>
    new Promise((resolve) => {
      const c = net.connect(port, '127.0.0.1', () => c.end('x'));
      c.on('data', () => {});
      c.on('close', () => resolve());
    });
  const mine = (rows: { servicePort: number; role: string; connects: number }[]): number => rows.filter((r) => r.servicePort === port && r.role === 'active').reduce((n, r) => n + r.connects, 0);

  await session.enable('tcp', { pid: process.pid });
  await session.enable('sched', { pid: process.pid });
  await session.enable('tcp', { pid: process.pid }); // already attached: nothing happens
  t.same(session.enabled, { tcp: true, sched: true });
  await connectOnce();
  await session.disable('tcp'); // delivers what was read before it detached
  await session.disable('sched');
  const w = await session.takeWindow();
  t.equal(mine(w.tcp), 1, 'the connect made before the detach is in the next window');
  t.equal(session.stats().tcp?.connects, 1, 'the detached tracer\'s counters are kept');
  await connectOnce();
  t.equal(mine((await session.takeWindow()).tcp), 0, 'detached: nothing seen');
  await session.enable('tcp', { pid: process.pid });
  await connectOnce();
  await session.disable('tcp');
  t.equal(mine((await session.takeWindow()).tcp), 1, 'attached again: seen again');
  const st = session.stats();
  t.equal(st.tcp?.connects, 2, 'counters add up over attach cycles');
  t.same(st.attaches, { tcp: 2, sched: 1 });
  t.ok(session.runTimeNs().tcp >= 0 && session.runTimeNs().sched >= 0, 'run time kept per collector');
});
