// SPDX-License-Identifier: Apache-2.0
// `ebpfprof offcpu`, `sched` and `tcp` as a user runs them: bad input is one line and exit 2, a
// missing process exit 1, and the real commands write what the README documents.
import t from 'tap';
import { spawn, spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';
import { requireKernelFeature } from './helpers/kernel-feature';
import { cliPath } from './helpers/paths';
import { buildWorkload, startWorkload } from './helpers/workloads';

function cli(args: string[]): { status: number | null; stdout: string; stderr: string } {
  const r = spawnSync(process.execPath, [cliPath, ...args], { encoding: 'utf8', env: { PATH: process.env.PATH ?? '' }, timeout: 60_000 });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

function cliAsync(args: string[], onStderr?: (text: string) => void): Promise<{ status: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [cliPath, ...args], { env: { PATH: process.env.PATH ?? '' } });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => {
      stderr += d.toString();
      onStderr?.(stderr);
    });
    child.on('exit', (status) => resolve({ status, stdout, stderr }));
  });
}

t.test('bad input: one line, exit 2', async (t) => {
  const cases: Array<[string[], RegExp]> = [
    [['offcpu'], /^ebpfprof: say whose blocking to trace with exactly one of -p\/--pid PID or -a\/--all\n$/],
    [['offcpu', '-a', '-p', '1'], /exactly one of/],
    [['offcpu', '-a', '--min-block', 'soon'], /^ebpfprof: --min-block must be a time such as 1ms, 250us or 0, got "soon"\n$/],
    [['offcpu', '-a', '--format', 'png'], /--format must be one of pprof, folded, speedscope/],
    [['tcp', '--attach', 'uprobe'], /^ebpfprof: --attach must be one of tp_btf, tracepoint, raw_tp, fentry, kprobe, got "uprobe"\n$/],
    [['tcp', '-p', 'x'], /--pid must be an integer/],
    [['sched', '-d', 'forever'], /--duration must be a duration/],
    [['sched', '--otlp-endpoint', 'localhost:4318'], /--otlp-endpoint must be an http:\/\/ or https:\/\/ URL/],
  ];
  for (const [args, re] of cases) {
    const r = cli(args);
    t.equal(r.status, 2, `${args.join(' ')}: exit 2`);
    t.match(r.stderr, re);
    t.equal(r.stderr.trim().split('\n').length, 1, 'one line');
  }
});

t.test('offcpu for a pid that does not exist: exit 1, one line', async (t) => {
  if (!(await requireKernelFeature(t, 'root'))) return;
  const r = cli(['offcpu', '-p', '4194000', '-d', '1s', '-o', path.join(os.tmpdir(), 'never.pb.gz')]);
  t.equal(r.status, 1);
  t.match(r.stderr, /^ebpfprof: no process with pid 4194000\n$/);
});

t.test('offcpu -p PID --format folded: the blocking functions, weighted by blocked time', async (t) => {
  if (!(await requireKernelFeature(t, 'btf'))) return;
  if (!(await requireKernelFeature(t, 'root'))) return;
  const w = startWorkload(buildWorkload('blocker'), ['30']);
  t.teardown(() => w.child.kill());
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'ebpfprof-offcpu-'));
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
  const out = path.join(dir, 'off.folded');
  const r = await cliAsync(['offcpu', '-p', String(w.pid), '-d', '1500ms', '--format', 'folded', '-o', out, '-v']);
  t.equal(r.status, 0, r.stderr);
  t.equal(r.stdout.trim(), out, 'prints the path');
  t.match(r.stderr, /ebpfprof: offcpu: sched:sched_switch via tp_btf \(first choice\)/, '--verbose says how it attached');
  t.match(r.stderr, /ebpfprof: recorded \d+ blocks, [\d.]+m?s off CPU, from 1 processes/);
  const lines = fs.readFileSync(out, 'utf8').trim().split('\n');
  const weight = (re: RegExp): number => lines.filter((l) => re.test(l)).reduce((n, l) => n + Number(l.slice(l.lastIndexOf(' ') + 1)), 0);
  const pipe = weight(/;main;work;wait_pipe;/);
  const nap = weight(/;main;work;nap;/);
  t.ok(pipe > 0 && nap > 0, 'both blocking functions appear under main;work');
  t.ok(pipe > 2 * nap, `wait_pipe blocks longer than nap (${(pipe / 1e6).toFixed(0)} ms vs ${(nap / 1e6).toFixed(0)} ms)`);
});

t.test('tcp --json: one object per event, then one per process and peer', async (t) => {
  if (!(await requireKernelFeature(t, 'btf'))) return;
  if (!(await requireKernelFeature(t, 'root'))) return;
  const srv = net.createServer((s) => {
    s.on('data', () => {});
    s.on('end', () => s.end('ok'));
  });
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r));
  t.teardown(() => srv.close());
  const port = (srv.address() as net.AddressInfo).port;
  // Connect only once --verbose said the hooks are attached (the duration starts then), not after
  // a guessed delay: a loaded machine may take longer to load the programs.
  let attached: () => void = () => {};
  const ready = new Promise<void>((r) => (attached = r));
  const running = cliAsync(['tcp', '-p', String(process.pid), '-d', '3s', '--json', '-v'], (err) => {
    if (/tcp: sock:inet_sock_set_state via /.test(err)) attached();
  });
  await Promise.race([ready, running]);
  for (let i = 0; i < 3; i++) {
    await new Promise<void>((resolve) => {
      const c = net.connect(port, '127.0.0.1', () => c.end('hello'));
      c.on('data', () => {});
      c.on('close', () => resolve());
    });
  }
  const r = await running;
  t.equal(r.status, 0, r.stderr);
  const rows = r.stdout.trim().split('\n').map((l) => JSON.parse(l) as Record<string, unknown>);
  const connects = rows.filter((x) => x.event === 'connect' && x.remotePort === port);
  t.equal(connects.length, 3, 'three connect events');
  const closes = rows.filter((x) => x.event === 'close' && x.pid === process.pid);
  t.equal(closes.length, 6, 'six closes: both ends of each connection are this process');
  t.ok(closes.every((x) => typeof x.lifetimeNs === 'number' && typeof x.rttNs === 'number'), 'close objects carry lifetime and RTT');
  const agg = rows.filter((x) => x.event === 'aggregate');
  const client = agg.find((x) => x.role === 'active' && x.servicePort === port) as { connects: number; bytesSent: number; bytesReceived: number } | undefined;
  t.ok(client, 'an aggregate row for this process and its peer');
  t.equal(client?.connects, 3);
  t.equal(client?.bytesSent, 15);
  t.equal(client?.bytesReceived, 6);
  t.ok(rows.indexOf(agg[0]!) > rows.indexOf(closes[closes.length - 1]!), 'aggregates come after the events');
});
