// SPDX-License-Identifier: Apache-2.0
// The parts of `ebpfprof verify` that are pure functions: the checks on hand-made snapshots (one
// intrusion at a time, each a finding that names its cause), the /proc parsers, the usage
// arithmetic, the manifest rules, the verdict and exit status; and that the docs list every check
// id and every row of the capability matrix.
import t from 'tap';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { CAPABILITY_MATRIX, capabilitiesAfterLoad, judgeCapability } from '../src/verify/capability-matrix';
import { runChecks, THRESHOLDS, type CheckInput, type PhaseObservation } from '../src/verify/checks';
import { parseProcNetTcp, quantiles } from '../src/verify/load';
import { judgeManifests, manifestChecks, readManifests, type ManifestObject } from '../src/verify/manifests';
import { usageOf, type ProfilerProcess, type ProfilerSample } from '../src/verify/monitor';
import { EXIT_HIGH_FINDING, formatSummary, summarize, exitCodeOf, type CheckResult, type VerifyReport } from '../src/verify/report';
import { mappedFiles, splitNul, type TargetSnapshot } from '../src/verify/snapshot';
import { deviceOf, parseLinkFdinfo, parseUprobeEvents, uprobesOnTarget } from '../src/verify/uprobes';
import { repoRoot } from './helpers/paths';

const MAPS = [
  '55d0c0000000-55d0c0010000 r--p 00000000 fe:00 1001 /usr/sbin/nginx',
  '55d0c0010000-55d0c0080000 r-xp 00010000 fe:00 1001 /usr/sbin/nginx',
  '7f0000000000-7f0000020000 r-xp 00000000 fe:00 2002 /usr/lib/x86_64-linux-gnu/libc.so.6',
  '7f0000100000-7f0000101000 r--s 00000000 fe:00 3003 /var/cache/data.bin',
  '7ffd00000000-7ffd00002000 r-xp 00000000 00:00 0 [vdso]',
].join('\n');

function snapshot(over: Partial<TargetSnapshot> = {}): TargetSnapshot {
  const m = mappedFiles(MAPS);
  return {
    pid: 100,
    alive: true,
    startTicks: 5000,
    exe: '/usr/sbin/nginx',
    cmdline: ['nginx', '-c', '/etc/nginx.conf'],
    environ: ['PATH=/usr/bin', 'HOME=/root'],
    files: m.files,
    specials: m.specials,
    threads: [{ tid: 100, comm: 'nginx', tracerPid: 0 }],
    fds: 20,
    takenAtMs: 0,
    ...over,
  };
}

function phase(s: TargetSnapshot, over: Partial<PhaseObservation> = {}): PhaseObservation {
  return {
    before: s,
    after: s,
    watch: { tracers: [], threadsSeen: new Map(s.threads.map((x) => [x.tid, x.comm])), samples: 10 },
    load: { kind: 'http', description: 'x', requests: 1000, errors: 0, throughput: 1000, latencyMs: { mean: 1, p50: 1, p90: 1, p99: 2, max: 3 } },
    uprobes: [],
    uprobeProblems: [],
    ...over,
  };
}

const agentProcess: ProfilerProcess = { pid: 900, comm: 'ebpfprof', cmdline: 'ebpfprof agent', uid: 0, effective: ['CAP_DAC_READ_SEARCH', 'CAP_PERFMON'], permitted: ['CAP_DAC_READ_SEARCH', 'CAP_PERFMON'], ambient: [], bounding: ['CAP_DAC_READ_SEARCH', 'CAP_PERFMON'], noNewPrivs: true, startupEffective: [] };

function input(over: Partial<CheckInput> = {}): CheckInput {
  const s = snapshot();
  const samples: ProfilerSample[] = [0, 1, 2, 3, 4, 5, 6].map((i) => ({ atMs: i * 1000, cpuTicks: i, rssBytes: 50 << 20, writtenBytes: i * 1000, processes: 1 }));
  return {
    baseline: phase(s),
    withProfiler: phase(s),
    replacement: null,
    profiler: { ...usageOf(samples, [agentProcess], 5000, 6000), warmupCpuSeconds: 1 },
    collectorMiBPerMinute: 0.01,
    ...over,
  };
}

function byId(checks: CheckResult[], id: string): CheckResult {
  return checks.find((c) => c.id === id)!;
}

t.test('a profiler that changes nothing: every check passes', async (t) => {
  const checks = runChecks(input());
  for (const c of checks) t.equal(c.status, 'pass', `${c.id}: ${c.message}`);
  const s = summarize(checks);
  t.same([s.verdict, s.high, exitCodeOf(s)], ['pass', 0, 0]);
});

t.test('each intrusion is a high finding naming its cause', async (t) => {
  const base = snapshot();
  const cases: [string, Partial<CheckInput>, string, RegExp][] = [
    [
      'a library injected',
      { withProfiler: phase(snapshot({ files: [...base.files, { path: '/tmp/libagent.so', dev: 'fe:00', inode: 77, executable: true, deleted: false }] })) },
      'target.maps.new_files',
      /^new code mapped into the target: \/tmp\/libagent\.so$/,
    ],
    ['LD_PRELOAD added', { withProfiler: phase(snapshot({ environ: [...base.environ, 'LD_PRELOAD=/x/libdd.so'] })) }, 'target.environ', /^LD_PRELOAD was added to the target's environment/],
    ['a known agent mapped', { withProfiler: phase(snapshot({ files: [...base.files, { path: '/opt/datadog/libddprof.so', dev: 'fe:00', inode: 9, executable: true, deleted: false }] })) }, 'target.maps.agent_patterns', /^Datadog mapped in the target: \/opt\/datadog\/libddprof\.so$/],
    ['the command line rewritten', { withProfiler: phase(snapshot({ cmdline: ['nginx', '-c', '/etc/nginx.conf', '--perf-basic-prof'] })) }, 'target.cmdline', /command line changed/],
    ['a foreign thread', { withProfiler: phase(snapshot({ threads: [...base.threads, { tid: 101, comm: 'Attach Listener', tracerPid: 0 }] })) }, 'target.threads', /not the target's own .*"Attach Listener" \(tid 101\)/],
    [
      'a tracer',
      { withProfiler: phase(base, { watch: { tracers: [{ tid: 100, tracerPid: 555, tracerComm: 'gdb', tracerCmdline: 'gdb -p 100', firstSeenMs: 0 }], threadsSeen: new Map([[100, 'nginx']]), samples: 3 } }) },
      'target.tracer_pid',
      /TracerPid 555 \(gdb: gdb -p 100\)/,
    ],
    ['a restart', { withProfiler: phase(snapshot({ alive: false })), replacement: snapshot({ pid: 200, startTicks: 9000 }) }, 'target.identity', /restarted: pid 100 exited .* pid 200 now runs the same command/],
    ['an exit', { withProfiler: phase(snapshot({ alive: false })) }, 'target.identity', /the target \(pid 100\) exited during the profiler phase/],
    ['an [uprobes] page', { withProfiler: phase(snapshot({ specials: ['[uprobes]', '[vdso]'] })) }, 'target.maps.new_files', /\[uprobes\] \(a uprobe fired in it/],
    [
      "a uprobe held by the profiler",
      { withProfiler: phase(base, { uprobes: [{ source: 'bpf-perf-event', path: '/usr/lib/x86_64-linux-gnu/libc.so.6', offset: 0x1234, retprobe: false, holderPid: 900, holderComm: 'ebpfprof' }] }) },
      'target.uprobes',
      /^uprobe on \/usr\/lib\/x86_64-linux-gnu\/libc\.so\.6\+0x1234, which the target maps, held by pid 900 \(ebpfprof\), the profiler$/,
    ],
    ['CAP_SYS_ADMIN kept', { profiler: { ...input().profiler!, processes: [{ ...agentProcess, effective: [...agentProcess.effective, 'CAP_SYS_ADMIN'] }] } }, 'capabilities.profiler', /^CAP_SYS_ADMIN held by pid 900 \(ebpfprof\): strict mode never holds it/],
    ['CAP_SYS_PTRACE in a root bounding set without no_new_privs', { profiler: { ...input().profiler!, processes: [{ ...agentProcess, bounding: ['CAP_SYS_PTRACE'], noNewPrivs: false }] } }, 'capabilities.profiler', /CAP_SYS_PTRACE is in the bounding set of pid 900 .*regains it/],
  ];
  for (const [name, over, id, cause] of cases) {
    const c = byId(runChecks(input(over)), id);
    t.equal(c.status, 'fail', `${name}: ${id} fails`);
    t.equal(c.severity, 'high', `${name}: high`);
    t.match(c.message, cause, `${name}: ${c.message}`);
  }
});

t.test('what is not the profiler stays below high', async (t) => {
  const base = snapshot();
  const preloaded = snapshot({ environ: [...base.environ, 'LD_PRELOAD=/usr/lib/libjemalloc.so'] });
  const c = byId(runChecks(input({ baseline: phase(preloaded), withProfiler: phase(preloaded) })), 'target.maps.agent_patterns');
  t.equal(c.status, 'pass', 'LD_PRELOAD set before the profiler ran: recorded, not failed');
  t.equal(c.findings[0]?.severity, 'info');
  const other = byId(runChecks(input({ withProfiler: phase(base, { uprobes: [{ source: 'tracefs', path: '/usr/sbin/nginx', offset: 16, retprobe: false, holderPid: null, holderComm: null }] }) })), 'target.uprobes');
  t.equal(other.severity, 'low', 'a uprobe of someone else is reported low');
  const data = byId(runChecks(input({ withProfiler: phase(snapshot({ files: [...base.files, { path: '/var/cache/new.bin', dev: 'fe:00', inode: 5, executable: false, deleted: false }] })) })), 'target.maps.new_files');
  t.equal(data.severity, 'medium', 'a new data file (not code) is medium');
  const more = byId(runChecks(input({ withProfiler: phase(snapshot({ fds: 30 })) })), 'target.fds');
  t.same([more.status, more.severity], ['fail', 'medium'], `fds +50%: ${more.message}`);
  const fewer = byId(runChecks(input({ withProfiler: phase(snapshot({ fds: 21 })) })), 'target.fds');
  t.equal(fewer.status, 'pass', `fds +5% is within ${THRESHOLDS.countTolerancePercent}%`);
});

t.test('profiler usage: averages, 5 s peaks, thresholds', async (t) => {
  const steady = (ticksPerSecond: number[]): ProfilerSample[] => {
    let c = 0;
    return [0, ...ticksPerSecond].map((x, i) => ({ atMs: i * 1000, cpuTicks: (c += x), rssBytes: 0, writtenBytes: i * 60 * 1024, processes: 1 }));
  };
  const u = usageOf(steady([1, 1, 1, 1, 1, 1, 1, 1, 1, 1]), [], 5000, 10000);
  t.equal(u.cpuAvgPercent, 1);
  t.equal(u.cpuPeakPercent, 1);
  t.ok(Math.abs(u.writtenMiBPerMinute! - 60 * 60 / 1024) < 1e-9, 'bytes per minute');
  const burst = usageOf(steady([0, 0, 0, 0, 50, 0, 0, 0, 0, 0]), [], 5000, 10000);
  t.equal(burst.cpuAvgPercent, 5);
  t.equal(burst.cpuPeakPercent, 10, 'a 0.5 s burst is 10% of a 5 s window');
  const over = runChecks(input({ profiler: { ...burst, processes: [agentProcess] } }));
  t.same([byId(over, 'profiler.cpu_avg').severity, byId(over, 'profiler.cpu_peak').severity], ['high', 'medium'], 'average over 3% is high, a peak over 10% medium');
  t.equal(usageOf([], [], 5000, 0).cpuAvgPercent, null);
});

t.test('workload changes are medium at most', async (t) => {
  const slow = phase(snapshot(), { load: { kind: 'http', description: 'x', requests: 100, errors: 0, throughput: 500, latencyMs: { mean: 2, p50: 2, p90: 2, p99: 4, max: 5 } } });
  const c = runChecks(input({ withProfiler: slow }));
  t.same([byId(c, 'workload.throughput').severity, byId(c, 'workload.latency').severity], ['medium', 'medium']);
  t.match(byId(c, 'workload.throughput').message, /throughput fell by 50\.0% \(1000 -> 500 req\/s\)/);
  const cmd = runChecks(input({ baseline: phase(snapshot(), { load: { kind: 'command', description: 'x', exitCode: 0 } }), withProfiler: phase(snapshot(), { load: { kind: 'command', description: 'x', exitCode: 0 } }) }));
  t.equal(byId(cmd, 'workload.throughput').status, 'skipped');
});

t.test('/proc parsers: maps, NUL lists, listening sockets, uprobe_events, link fdinfo', async (t) => {
  const m = mappedFiles(MAPS);
  t.same(m.files.map((f) => [f.path, f.executable]), [['/usr/lib/x86_64-linux-gnu/libc.so.6', true], ['/usr/sbin/nginx', true], ['/var/cache/data.bin', false]]);
  t.same(m.specials, ['[vdso]']);
  t.same(splitNul(Buffer.from('a\0b c\0')), ['a', 'b c']);
  t.same(splitNul(Buffer.alloc(0)), []);
  const tcp = [
    '  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode',
    '   0: 0100007F:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 12345 1 0000000000000000 100 0 0 10 0',
    '   1: 0100007F:1F90 0100007F:D3A2 01 00000000:00000000 00:00000000 00000000     0        0 12346 1 0000000000000000 20 4 30 10 -1',
  ].join('\n');
  t.same(parseProcNetTcp(tcp, false), [{ address: '127.0.0.1', port: 8080, inode: 12345 }], 'LISTEN only, address little-endian');
  const tcp6 = '  sl  local_address ...\n   0: 00000000000000000000000001000000:0050 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 777 1';
  t.same(parseProcNetTcp(tcp6, true), [{ address: '::1', port: 80, inode: 777 }]);
  t.same(parseUprobeEvents('p:uprobes/p_libc_0x1234 /usr/lib/libc.so.6:0x0000000000001234\nr:probe_x/ret /bin/bash:0x10 arg1=%ax\n'), [
    { source: 'tracefs', path: '/usr/lib/libc.so.6', offset: 0x1234, retprobe: false, holderPid: null, holderComm: null },
    { source: 'tracefs', path: '/bin/bash', offset: 0x10, retprobe: true, holderPid: null, holderComm: null },
  ]);
  t.same(parseLinkFdinfo('link_type:\tuprobe_multi\nlink_id:\t4\nprog_tag:\tx\npath:\t/usr/bin/python3\n'), { uprobeMulti: true, path: '/usr/bin/python3', retprobe: false });
  t.equal(parseLinkFdinfo('link_type:\tperf_event\n').uprobeMulti, false);
  const files = m.files;
  const byInode = uprobesOnTarget({ registrations: [{ source: 'tracefs', path: '/other/view/libc.so.6', offset: 1, retprobe: false, holderPid: null, holderComm: null }], problems: [] }, files, () => ({ dev: deviceOf('fe:00'), ino: 2002 }));
  t.equal(byInode.length, 1, 'the same file by device and inode under another path (another mount namespace)');
  t.equal(uprobesOnTarget({ registrations: [{ source: 'tracefs', path: '/x', offset: 1, retprobe: false, holderPid: null, holderComm: null }], problems: [] }, files, () => ({ dev: 1, ino: 2002 })).length, 0, 'same inode on another device: not the file');
  t.same(quantiles([1, 2, 3, 4]), { mean: 2.5, p50: 2, p90: 4, p99: 4, max: 4 });
});

t.test('manifests: privileged, runtime sockets, capabilities, RBAC; deploy/ is clean', async (t) => {
  const obj = (kind: string, body: Record<string, unknown>): ManifestObject => ({ file: 'x.yaml', kind, name: 'x', body: { kind, ...body } });
  const pod = (container: Record<string, unknown>, extra: Record<string, unknown> = {}): ManifestObject => obj('Pod', { spec: { containers: [{ name: 'c', securityContext: { allowPrivilegeEscalation: false, capabilities: { drop: ['ALL'] } }, ...container }], ...extra } });
  const f = judgeManifests([
    pod({ securityContext: { privileged: true } }),
    pod({ securityContext: { allowPrivilegeEscalation: false, capabilities: { drop: ['ALL'], add: ['SYS_PTRACE', 'NET_ADMIN', 'BPF'] } } }),
    pod({ volumeMounts: [{ name: 'sock', mountPath: '/run/containerd/containerd.sock' }, { name: 'root', mountPath: '/host', readOnly: true }] }, { hostNetwork: true, volumes: [{ name: 'sock', hostPath: { path: '/run/containerd/containerd.sock' } }, { name: 'root', hostPath: { path: '/' } }] }),
    obj('ClusterRole', { rules: [{ apiGroups: [''], resources: ['pods/exec'], verbs: ['create'] }, { apiGroups: [''], resources: ['secrets'], verbs: ['list'] }] }),
    obj('ClusterRoleBinding', { roleRef: { kind: 'ClusterRole', name: 'cluster-admin' } }),
  ]);
  const msgs = (xs: { severity: string; message: string }[]): string[] => xs.filter((x) => x.severity !== 'info').map((x) => `${x.severity}: ${x.message}`);
  t.ok(msgs(f.privileged).includes('high: Pod/x container c: privileged: true: every capability and every device of the host'));
  t.ok(msgs(f.capabilities).some((m) => /^high: .*capabilities\.add: CAP_SYS_PTRACE \(forbidden/.test(m)));
  t.ok(msgs(f.capabilities).some((m) => /^medium: .*capabilities\.add: CAP_NET_ADMIN \(unneeded/.test(m)));
  t.notOk(msgs(f.capabilities).some((m) => /CAP_BPF/.test(m)), 'CAP_BPF is required: info only');
  t.ok(msgs(f.hostMounts).some((m) => /^high: .*container runtime socket \/run\/containerd\/containerd\.sock/.test(m)));
  t.ok(msgs(f.hostMounts).some((m) => /^high: .*mounts the host's \/ read-only/.test(m)), 'the whole host filesystem, even read-only');
  t.ok(msgs(f.hostNamespaces).some((m) => /^medium: .*hostNetwork: true/.test(m)));
  t.ok(msgs(f.rbac).some((m) => /^high: ClusterRole\/x: may use pods\/exec/.test(m)));
  t.ok(msgs(f.rbac).some((m) => /^medium: ClusterRole\/x: may read secrets/.test(m)));
  t.ok(msgs(f.rbac).some((m) => /^high: ClusterRoleBinding\/x: binds the ClusterRole cluster-admin/.test(m)));
  const shipped = manifestChecks('deploy', readManifests(path.join(repoRoot, 'deploy')));
  for (const c of shipped) t.same([c.id, c.status, c.findings.filter((x) => x.severity !== 'info').length], [c.id, 'pass', 0], `${c.id}: ${c.message}`);
});

t.test('the capability matrix: what is kept after loading, and how holding a capability is judged', async (t) => {
  t.same(capabilitiesAfterLoad({ kernelRelease: '6.18.44', unprivilegedBpfDisabled: 2 }).map((c) => c.capability), ['CAP_PERFMON', 'CAP_DAC_READ_SEARCH']);
  t.same(capabilitiesAfterLoad({ kernelRelease: '5.15.0', unprivilegedBpfDisabled: 2 }).map((c) => c.capability), ['CAP_BPF', 'CAP_PERFMON', 'CAP_DAC_READ_SEARCH'], 'older kernels check bpf() calls themselves');
  t.same(capabilitiesAfterLoad({ kernelRelease: '5.15.0', unprivilegedBpfDisabled: 0 }).map((c) => c.capability), ['CAP_PERFMON', 'CAP_DAC_READ_SEARCH']);
  t.same([judgeCapability('SYS_ADMIN').severity, judgeCapability('CAP_SYS_PTRACE').severity, judgeCapability('bpf').severity, judgeCapability('CAP_KILL').severity], ['high', 'high', 'info', 'medium']);
  for (const doc of ['README.md', 'docs/verify.md']) {
    const text = fs.readFileSync(path.join(repoRoot, doc), 'utf8');
    for (const r of CAPABILITY_MATRIX) t.match(text, new RegExp(`\\| \`${r.capability}\` \\| ${r.class} \\|`), `${doc} lists ${r.capability} as ${r.class}`);
  }
});

t.test('verdict, exit status, summary; docs/verify.md explains every check', async (t) => {
  const checks = runChecks(input({ withProfiler: phase(snapshot({ environ: ['LD_PRELOAD=/x.so'] })) }));
  const summary = summarize(checks);
  t.equal(summary.verdict, 'fail');
  t.equal(exitCodeOf(summary), EXIT_HIGH_FINDING);
  t.equal(EXIT_HIGH_FINDING, 3);
  const report = { target: { pid: 100, executable: '/usr/sbin/nginx' }, profiler: { command: ['ebpfprof', 'agent'] }, phases: { baseline: { load: null }, withProfiler: { load: null } }, checks, summary, exitCode: 3 } as unknown as VerifyReport;
  const text = formatSummary(report, '/tmp/r.json');
  t.match(text, /^FAIL HIGH +target\.environ +\d+ -> \d+ +LD_PRELOAD was added/m);
  t.match(text, /\nverdict: FAIL: \d+ high, \d+ medium, \d+ low-severity findings \(exit 3\); report: \/tmp\/r\.json\n$/);
  const doc = fs.readFileSync(path.join(repoRoot, 'docs', 'verify.md'), 'utf8');
  const ids = [...checks.map((c) => c.id), 'manifests.privileged', 'manifests.capabilities', 'manifests.host_mounts', 'manifests.host_namespaces', 'manifests.rbac'];
  for (const id of ids) t.match(doc, new RegExp(`\\| \`${id.replace(/\./g, '\\.')}\` \\|`), `docs/verify.md explains ${id}`);
  const readme = fs.readFileSync(path.join(repoRoot, 'README.md'), 'utf8');
  for (const id of ids) t.match(readme, new RegExp(`\`${id.replace(/\./g, '\\.')}\``), `README.md names ${id}`);
});
