// SPDX-License-Identifier: Apache-2.0
// `ebpfprof verify` end to end, as root on the real kernel, against a real nginx under the built-in
// HTTP load: the default agent passes with every check measured; intrusive "agents" (gdb injecting
// a library, a tracer that stays attached, a restart with LD_PRELOAD, ebpfprof keeping
// CAP_SYS_ADMIN) and bad manifests each end in a high-severity finding that names the cause.
// No timing is asserted: CPU, memory and throughput are only checked to be measured numbers.
import t from 'tap';
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import type { CheckResult, VerifyReport } from '../src/verify/report';
import { requireKernelFeature } from './helpers/kernel-feature';
import { cliPath, fixturesDir, repoRoot } from './helpers/paths';
import { compileFixture, freePort, nginxCommand } from './helpers/servers';

type Tap = typeof t;

const EVERY_CHECK = [
  'target.identity',
  'target.maps.new_files',
  'target.maps.agent_patterns',
  'target.environ',
  'target.cmdline',
  'target.threads',
  'target.fds',
  'target.tracer_pid',
  'target.uprobes',
  'profiler.cpu_avg',
  'profiler.cpu_peak',
  'profiler.rss',
  'profiler.egress',
  'workload.throughput',
  'workload.latency',
  'capabilities.profiler',
];

interface Run {
  status: number | null;
  stdout: string;
  stderr: string;
  report: VerifyReport;
}

/** Runs verify against a fresh nginx, everything in `dir` (a test's testdir). */
async function verify(dir: string, args: string[], phaseSeconds = 4, warmupSeconds = 3): Promise<Run> {
  const port = await freePort();
  const json = path.join(dir, 'non_intrusive_report.json');
  const argv = [cliPath, 'verify', '-d', `${phaseSeconds}s`, '--warmup', `${warmupSeconds}s`, '--json', json, ...args, '--', ...nginxCommand(path.join(dir, 'nginx'), port)];
  const r = spawnSync(process.execPath, argv, { encoding: 'utf8', timeout: 300_000, cwd: dir });
  if (!fs.existsSync(json)) throw new Error(`verify wrote no report (exit ${r.status}): ${r.stderr}`);
  return { status: r.status, stdout: r.stdout, stderr: r.stderr, report: JSON.parse(fs.readFileSync(json, 'utf8')) as VerifyReport };
}

function check(r: Run, id: string): CheckResult {
  const c = r.report.checks.find((x) => x.id === id);
  if (!c) throw new Error(`no check ${id} in the report`);
  return c;
}

function highFinding(t: Pick<Tap, 'equal' | 'ok'>, r: Run, id: string, cause: RegExp): void {
  const c = check(r, id);
  t.equal(c.status, 'fail', `${id} fails`);
  t.equal(c.severity, 'high', `${id} is high severity`);
  t.ok(
    c.findings.some((f) => f.severity === 'high' && cause.test(f.message)),
    `${id} names the cause (${cause}): ${c.findings.map((f) => f.message).join(' | ')}`,
  );
  t.equal(r.status, 3, 'exit status 3: a high-severity finding');
  t.equal(r.report.exitCode, 3);
  t.equal(r.report.summary.verdict, 'fail');
}

const built = (name: string, shared = false): string => {
  const out = path.join(repoRoot, 'test', 'workloads', 'build', `verify-${name}${shared ? '.so' : ''}`);
  fs.mkdirSync(path.dirname(out), { recursive: true });
  return compileFixture(path.join(fixturesDir, 'verify', `${name}.c`), out, shared);
};

t.test('the default agent against nginx under load: passes, every check measured', async (t) => {
  if (!(await requireKernelFeature(t, 'root'))) return;
  if (!(await requireKernelFeature(t, 'perf_event'))) return;
  const r = await verify(t.testdir({}), [], 8, 20);
  t.equal(r.status, 0, `exit 0: ${r.report.summary.failedChecks.join(', ')}\n${r.stdout}`);
  const rep = r.report;
  t.equal(rep.schema, 'ebpfprof.verify/v1');
  t.equal(rep.summary.verdict, 'pass');
  t.equal(rep.summary.high, 0);
  t.equal(rep.profiler.kind, 'ebpfprof-agent');
  t.ok(rep.target.startedByVerify, 'verify started the target');
  t.match(rep.target.executable ?? '', /nginx$/);
  t.same(
    rep.checks.map((c) => c.id),
    EVERY_CHECK,
    'every check, in order',
  );
  for (const c of rep.checks) {
    t.ok(c.description.length > 20, `${c.id}: described`);
    t.ok(['pass', 'fail'].includes(c.status), `${c.id}: measured (${c.status}: ${c.message})`);
    t.ok(['high', 'medium', 'low', 'info'].includes(c.severity), `${c.id}: severity`);
    t.ok(c.threshold && 'op' in c.threshold, `${c.id}: threshold`);
    t.ok(c.message.length > 0, `${c.id}: message`);
    t.not(c.values.withProfiler, null, `${c.id}: a value with the profiler`);
  }
  const num = (id: string): number => {
    const v = check(r, id).values.withProfiler as { value?: number } | number;
    return typeof v === 'number' ? v : v.value!;
  };
  for (const id of ['profiler.cpu_avg', 'profiler.cpu_peak', 'profiler.rss', 'profiler.egress']) t.ok(Number.isFinite(num(id)) && num(id) >= 0, `${id} is a number: ${num(id)}`);
  t.ok(num('profiler.rss') > 10, 'the agent is resident (MiB)');
  for (const phase of ['baseline', 'withProfiler'] as const) {
    const l = rep.phases[phase].load!;
    t.equal(l.kind, 'http');
    t.ok(l.requests! > 100 && l.throughput! > 0 && l.latencyMs!.p99 > 0, `${phase}: ${l.requests} requests, ${l.throughput!.toFixed(0)} req/s`);
  }
  // The agent dropped everything outside the matrix after loading (self-confinement).
  const caps = check(r, 'capabilities.profiler');
  t.equal(caps.status, 'pass', caps.message);
  const procs = caps.values.withProfiler as { comm: string; effective: string[]; bounding: string[]; noNewPrivs: boolean; startupEffective: string[] }[];
  t.equal(procs.length, 1, 'one process: the agent');
  t.notOk(procs[0]!.effective.includes('CAP_SYS_ADMIN') || procs[0]!.effective.includes('CAP_SYS_PTRACE'), `no SYS_ADMIN or SYS_PTRACE: ${procs[0]!.effective.join(',')}`);
  t.ok(procs[0]!.effective.includes('CAP_PERFMON'), 'keeps CAP_PERFMON');
  t.equal(procs[0]!.noNewPrivs, true, 'no_new_privs');
  t.ok(procs[0]!.startupEffective.includes('CAP_SYS_ADMIN'), 'it started as full root (reported, not judged)');
  t.match(r.stdout, /^verdict: PASS: 0 high/m, 'the summary ends with the verdict');
  for (const id of EVERY_CHECK) t.match(r.stdout, new RegExp(`^(PASS|FAIL [A-Z]+|SKIP) +${id.replace(/\./g, '\\.')} `, 'm'), `summary line for ${id}`);
  t.match(r.stderr, /baseline \(without the profiler\): \d+ s of load/, 'progress on stderr');
});

t.test('an agent that injects a library with gdb (dlopen, detach): new code, a foreign thread, a tracer', async (t) => {
  if (!(await requireKernelFeature(t, 'root'))) return;
  const lib = built('inject', true);
  const r = await verify(t.testdir({}), ['--agent', `gdb -p {pid} -batch -ex 'call (void*)dlopen("${lib}", 2)' -ex detach`]);
  highFinding(t, r, 'target.maps.new_files', new RegExp(`new code mapped into the target: ${lib.replace(/[.]/g, '\\.')}`));
  highFinding(t, r, 'target.threads', /not the target's own .*"inj-agent"/);
  highFinding(t, r, 'target.tracer_pid', /ptrace-attached: .*TracerPid \d+ \(gdb/);
});

t.test('an agent that stays ptrace-attached: TracerPid names it', async (t) => {
  if (!(await requireKernelFeature(t, 'root'))) return;
  const seize = built('seize');
  const r = await verify(t.testdir({}), ['--agent', `exec ${seize} {pid}`]);
  highFinding(t, r, 'target.tracer_pid', new RegExp(`TracerPid \\d+ \\(verify-seize: ${seize.replace(/[.]/g, '\\.')} \\d+\\)`));
  t.equal(check(r, 'target.maps.new_files').status, 'pass', 'nothing mapped: the tracer is the one finding of the target');
});

t.test('an agent that restarts the target with LD_PRELOAD: restart, environment, new code', async (t) => {
  if (!(await requireKernelFeature(t, 'root'))) return;
  const lib = built('inject', true);
  const dir = t.testdir({});
  const port = await freePort();
  const nginx = nginxCommand(path.join(dir, 'nginx'), port);
  const json = path.join(dir, 'report.json');
  // The same command line, started again in its own session with the library preloaded.
  const restart = `kill {pid}; while kill -0 {pid} 2>/dev/null; do sleep 0.05; done; LD_PRELOAD=${lib} setsid -f ${nginx.join(' ')}`;
  const res = spawnSync(process.execPath, [cliPath, 'verify', '-d', '4s', '--warmup', '3s', '--json', json, '--agent', restart, '--', ...nginx], { encoding: 'utf8', timeout: 300_000 });
  const r: Run = { status: res.status, stdout: res.stdout, stderr: res.stderr, report: JSON.parse(fs.readFileSync(json, 'utf8')) as VerifyReport };
  highFinding(t, r, 'target.identity', /the target was restarted: pid \d+ exited during the profiler phase and pid \d+ now runs the same command/);
  highFinding(t, r, 'target.environ', new RegExp(`^LD_PRELOAD was added to the target's environment \\(LD_PRELOAD=${lib.replace(/[.]/g, '\\.')}\\)`));
  highFinding(t, r, 'target.maps.new_files', /libinject|verify-inject\.so/);
});

t.test('ebpfprof run with CAP_SYS_ADMIN kept, and manifests with privileged: true and a Docker socket', async (t) => {
  if (!(await requireKernelFeature(t, 'root'))) return;
  if (!(await requireKernelFeature(t, 'perf_event'))) return;
  const dir = t.testdir({
    'agent.yaml': [
      'apiVersion: apps/v1',
      'kind: DaemonSet',
      'metadata: {name: bad-agent}',
      'spec:',
      '  selector: {matchLabels: {app: a}}',
      '  template:',
      '    metadata: {labels: {app: a}}',
      '    spec:',
      '      containers:',
      '        - name: agent',
      '          image: agent',
      '          securityContext: {privileged: true}',
      '          volumeMounts: [{name: docker, mountPath: /var/run/docker.sock}]',
      '      volumes: [{name: docker, hostPath: {path: /var/run/docker.sock}}]',
      '',
    ].join('\n'),
  });
  const agent = `exec ${process.execPath} ${cliPath} agent --endpoint http://127.0.0.1:9 --control off --keep-capabilities CAP_SYS_ADMIN`;
  const r = await verify(dir, ['--agent', agent, '--manifests', path.join(dir, 'agent.yaml')], 4, 5);
  highFinding(t, r, 'capabilities.profiler', /^CAP_SYS_ADMIN held by pid \d+ \(ebpfprof\): strict mode never holds it/);
  highFinding(t, r, 'manifests.privileged', /DaemonSet\/bad-agent container agent: privileged: true/);
  highFinding(t, r, 'manifests.host_mounts', /DaemonSet\/bad-agent container agent: mounts the container runtime socket \/var\/run\/docker\.sock/);
});

t.test('the shipped manifests (deploy/) pass the manifest checks', async (t) => {
  if (!(await requireKernelFeature(t, 'root'))) return;
  if (!(await requireKernelFeature(t, 'perf_event'))) return;
  const r = await verify(t.testdir({}), ['--manifests', path.join(repoRoot, 'deploy')], 3, 3);
  for (const id of ['manifests.privileged', 'manifests.capabilities', 'manifests.host_mounts', 'manifests.host_namespaces', 'manifests.rbac']) {
    const c = check(r, id);
    t.equal(c.status, 'pass', `${id}: ${c.message}`);
  }
});
