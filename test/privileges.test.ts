// SPDX-License-Identifier: Apache-2.0
// Privilege checks and kernel-error explanations: judged from real status files, then for real,
// by running the CLI's code path as uid 65534 with reduced capabilities (setpriv), and by provoking
// real errno codes from the kernel through the addon.
import t from 'tap';
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { EbpfprofError, type SystemError } from '../src/errors';
import { bpfObjectPath, loadAddon } from '../src/native/addon';
import { parseCapabilities } from '../src/system/capabilities';
import { assertCanProfile, assertKernelSupportsProfiling, explainKernelError, missingProfilingCapabilities } from '../src/system/privileges';
import { cliPath, fixturesDir, repoRoot } from './helpers/paths';
import { requireKernelFeature } from './helpers/kernel-feature';

const caps = (name: string) => parseCapabilities(fs.readFileSync(path.join(fixturesDir, 'proc-status', name)));
const entry = path.join(repoRoot, 'dist', 'test', 'fixtures', 'entry', 'assert-can-profile.js');
const node = process.execPath;

/** The exact line `ebpfprof` prints when `missing` capabilities are lacking on a 5.8+ kernel. */
function privilegeLine(missing: string[], held?: string): string {
  const names = missing.length === 2 ? `${missing[0]} and ${missing[1]}` : missing[0]!;
  return (
    `missing ${names}${held ? ` (${held} is held)` : ''}: profiling needs CAP_BPF and CAP_PERFMON (or root) to load BPF programs and open perf events; ` +
    `run with sudo, or grant them to node: sudo setcap ${missing.map((c) => c.toLowerCase()).join(',')}+ep ${node}`
  );
}

/**
 * Runs `node args` as uid/gid 65534 with exactly `keep` capabilities (ambient, so they survive exec).
 * `env -i`: tap instruments spawned node processes (NODE_OPTIONS --import hooks that write to .tap/,
 * which uid 65534 cannot); the child must run as plainly as a user's shell would run it.
 */
function runReduced(keep: string[], args: string[]): { status: number | null; stdout: string; stderr: string } {
  const set = ['-all', ...keep.map((c) => `+${c}`)].join(',');
  const r = spawnSync(
    'env',
    [
      '-i',
      `PATH=${process.env.PATH ?? '/usr/bin:/bin'}`,
      'setpriv',
      '--reuid=65534',
      '--regid=65534',
      '--clear-groups',
      `--inh-caps=${set}`,
      ...(keep.length ? [`--ambient-caps=${keep.map((c) => `+${c}`).join(',')}`] : []),
      `--bounding-set=${set}`,
      node,
      ...args,
    ],
    { cwd: repoRoot, encoding: 'utf8', timeout: 120_000 },
  );
  if (r.error) throw r.error;
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

function sysErr(code: string, syscall: string, message: string): SystemError {
  const e: SystemError = new Error(message);
  e.code = code;
  e.syscall = syscall;
  return e;
}

t.test('assertCanProfile judges capability sets (from real status files)', async (t) => {
  const v618 = { kernelRelease: '6.18.44-fc-v669' };
  t.doesNotThrow(() => assertCanProfile({ ...v618, capabilities: caps('root-linux-6.18.status') }), 'root');
  t.doesNotThrow(() => assertCanProfile({ ...v618, capabilities: caps('nobody-bpf-perfmon.status') }), 'CAP_BPF + CAP_PERFMON without root');
  t.same(missingProfilingCapabilities({ ...v618, capabilities: caps('nobody-bpf-perfmon.status') }), []);

  t.throws(() => assertCanProfile({ ...v618, capabilities: caps('nobody-no-caps.status') }), {
    code: 'EPRIVILEGE',
    message: privilegeLine(['CAP_BPF', 'CAP_PERFMON']),
  });
  t.throws(() => assertCanProfile({ ...v618, capabilities: caps('nobody-bpf-only.status') }), {
    code: 'EPRIVILEGE',
    message: privilegeLine(['CAP_PERFMON'], 'CAP_BPF'),
  });
  // uid 0 in a container with Docker's default set: say how to add them there.
  t.throws(() => assertCanProfile({ ...v618, capabilities: caps('docker-default-caps.status') }), {
    code: 'EPRIVILEGE',
    message: /^missing CAP_BPF and CAP_PERFMON: .*\(uid 0 without them: in a container, add --cap-add=BPF --cap-add=PERFMON\); run with sudo/,
  });
  // Before 5.8 only CAP_SYS_ADMIN will do.
  t.doesNotThrow(() => assertCanProfile({ kernelRelease: '5.4.0-150-generic', capabilities: caps('root-linux-5.4.status') }));
  t.throws(() => assertCanProfile({ kernelRelease: '5.4.0-150-generic', capabilities: caps('nobody-bpf-perfmon.status') }), {
    code: 'EPRIVILEGE',
    message: /^missing CAP_SYS_ADMIN: on Linux 5\.4\.0-150-generic \(before 5\.8.*setcap cap_sys_admin\+ep/,
  });
  for (const name of ['nobody-no-caps.status', 'nobody-bpf-only.status', 'docker-default-caps.status']) {
    try {
      assertCanProfile({ ...v618, capabilities: caps(name) });
    } catch (e) {
      t.notMatch((e as Error).message, /\n/, `${name}: one line`);
    }
  }
});

t.test('as uid 65534 without capabilities, the record entry path prints one clear line and exits 1', async (t) => {
  if (!(await requireKernelFeature(t, 'root'))) return;
  const r = runReduced([], [entry]);
  t.equal(r.status, 1, 'exit code 1');
  t.equal(r.stdout, '', 'nothing on stdout');
  t.equal(r.stderr, `ebpfprof: ${privilegeLine(['CAP_BPF', 'CAP_PERFMON'])}\n`, 'exactly one line on stderr');
});

t.test('as uid 65534 with CAP_BPF only, the line names CAP_PERFMON', async (t) => {
  if (!(await requireKernelFeature(t, 'root'))) return;
  const r = runReduced(['bpf'], [entry]);
  t.equal(r.status, 1);
  t.equal(r.stderr, `ebpfprof: ${privilegeLine(['CAP_PERFMON'], 'CAP_BPF')}\n`);
});

t.test('as uid 65534 with CAP_BPF and CAP_PERFMON, the checks pass and the kernel really loads the sampler', async (t) => {
  if (!(await requireKernelFeature(t, 'root'))) return;
  if (!(await requireKernelFeature(t, 'perf_event'))) return;
  const checks = runReduced(['bpf', 'perfmon'], [entry]);
  t.equal(checks.status, 0, checks.stderr);
  t.equal(checks.stdout, 'ok\n');
  const load = runReduced(['bpf', 'perfmon'], [entry, 'load']);
  t.equal(load.status, 0, `the capabilities the message names are enough: ${load.stderr}`);
});

t.test("without capabilities the kernel's own EPERM is explained the same way", async (t) => {
  if (!(await requireKernelFeature(t, 'root'))) return;
  // 'load' skips assertCanProfile: the error comes from bpf() itself, through explainKernelError.
  const r = runReduced([], [entry, 'load']);
  t.equal(r.status, 1);
  t.equal(r.stderr, `ebpfprof: loading the CPU sampler: the bpf() syscall was refused (EPERM): ${privilegeLine(['CAP_BPF', 'CAP_PERFMON'])}\n`);
});

t.test('`ebpfprof record` (once wired) refuses with the same line before loading anything', async (t) => {
  if (!(await requireKernelFeature(t, 'root'))) return;
  const help = spawnSync('env', ['-i', `PATH=${process.env.PATH ?? '/usr/bin:/bin'}`, node, cliPath, 'record', '--help'], { cwd: repoRoot, encoding: 'utf8' });
  if (help.status !== 0 || !/^Usage: ebpfprof record/m.test(help.stdout)) {
    // Not a kernel feature: the command does not exist yet, and the entry script above covers the path.
    t.comment('record is not registered in cli/main.ts yet: covered by the assert-can-profile entry script');
    t.pass('record not wired yet');
    return;
  }
  const r = runReduced([], [cliPath, 'record', '--pid', String(process.pid), '--duration', '1s', '-o', '/tmp/ebpfprof-privileges-test.pb.gz']);
  t.equal(r.status, 1);
  t.equal(r.stderr, `ebpfprof: ${privilegeLine(['CAP_BPF', 'CAP_PERFMON'])}\n`);
});

t.test('ENOBTF: a kernel without BTF (simulated by pointing the check at a missing file)', async (t) => {
  // A kernel without BTF cannot be produced on this machine, so the check's injectable btfPath
  // points at a file that does not exist; the code path is the same as for a missing vmlinux BTF.
  const missing = path.join(fixturesDir, 'no-such-dir', 'vmlinux');
  t.throws(() => assertKernelSupportsProfiling({ btfPath: missing, kernelRelease: '6.18.0' }), {
    code: 'ENOBTF',
    message: /has no BTF type information \(.*no-such-dir\/vmlinux is missing\): ebpfprof's CO-RE BPF programs need it .*CONFIG_DEBUG_INFO_BTF=y/,
  });
  const empty = path.join(fixturesDir, 'proc-status', 'README.md');
  t.doesNotThrow(() => assertKernelSupportsProfiling({ btfPath: empty, kernelRelease: '6.18.0' }), 'a non-empty file counts as present');
  t.throws(() => assertKernelSupportsProfiling({ btfPath: empty, kernelRelease: '5.4.0' }), { code: 'EKERNEL', message: /5\.8 or newer/ });
  if (!(await requireKernelFeature(t, 'btf'))) return;
  t.doesNotThrow(() => assertKernelSupportsProfiling(), 'this kernel has BTF');
});

t.test('explainKernelError: real kernel errors from the addon', async (t) => {
  if (!(await requireKernelFeature(t, 'perf_event'))) return;
  const obj = new (loadAddon().BpfObject)(bpfObjectPath('probes'));
  t.teardown(() => obj.close());
  for (const p of obj.programNames()) obj.setAutoload(p, p === 'probe_perf' || p === 'probe_tp' || p === 'probe_kprobe');
  obj.load();

  // EINVAL from perf_event_open: a frequency above kernel.perf_event_max_sample_rate.
  const max = Number(fs.readFileSync('/proc/sys/kernel/perf_event_max_sample_rate', 'utf8'));
  const freq = max + 1;
  let err: unknown;
  try {
    obj.attachPerfEvent('probe_perf', { type: 1, config: 0, frequency: freq, cpus: [0] }).close();
  } catch (e) {
    err = e;
  }
  t.match(err, { code: 'EINVAL', syscall: 'perf_event_open' }, 'the kernel rejects the frequency');
  const badFreq = explainKernelError(err, 'starting the CPU sampler', { frequencyHz: freq });
  t.equal(badFreq.code, 'EBADARG');
  t.equal(
    badFreq.message,
    `starting the CPU sampler: --freq ${freq} is above the kernel's maximum sample rate of ${max} Hz (/proc/sys/kernel/perf_event_max_sample_rate): use --freq ${max} or less, or raise it with sysctl -w kernel.perf_event_max_sample_rate=${freq}`,
  );
  t.equal(badFreq.cause, err, 'the original error is kept as cause');

  // ENOENT from a tracepoint that does not exist.
  err = undefined;
  try {
    obj.attachTracepoint('probe_tp', 'sched', 'no_such_tracepoint').close();
  } catch (e) {
    err = e;
  }
  t.match(err, { code: 'ENOENT' });
  const noTp = explainKernelError(err, 'starting off-CPU tracing');
  t.equal(noTp.code, 'EKERNEL');
  t.match(noTp.message, fs.existsSync('/sys/kernel/tracing/events') ? /^starting off-CPU tracing: this kernel has no such tracepoint: .*sched:no_such_tracepoint/ : /tracefs is not mounted/);

  // kprobes: explained as missing when the kernel has no kprobe PMU and no kprobe_events; otherwise they attach.
  const kprobesAbsent = !fs.existsSync('/sys/bus/event_source/devices/kprobe') && !fs.existsSync('/sys/kernel/tracing/kprobe_events');
  err = undefined;
  try {
    obj.attachKprobe('probe_kprobe', 'vfs_read').close();
  } catch (e) {
    err = e;
  }
  if (kprobesAbsent) {
    t.match(err, { code: 'ENOENT' }, 'no kprobes on this kernel');
    t.match(explainKernelError(err, 'starting TCP tracing'), { code: 'EKERNEL', message: /^starting TCP tracing: kprobes are not available on this kernel \(built without CONFIG_KPROBE_EVENTS\?\)/ });
  } else {
    t.equal(err, undefined, 'this kernel has kprobes: the attach works');
  }
});

t.test('explainKernelError: errno table', async (t) => {
  const root = { capabilities: caps('root-linux-6.18.status'), kernelRelease: '6.18.0' };
  const nobody = { capabilities: caps('nobody-no-caps.status'), kernelRelease: '6.18.0' };
  const cases: Array<[string, SystemError, object, string, RegExp]> = [
    ['EACCES perf_event_open, no caps', sysErr('EACCES', 'perf_event_open', 'opening perf event: Permission denied'), nobody, 'EPRIVILEGE', /^x: perf_event_open was refused \(EACCES\): missing CAP_BPF and CAP_PERFMON: /],
    ['EPERM bpf, caps held', sysErr('EPERM', 'bpf_object__load', 'loading: Operation not permitted'), root, 'EPRIVILEGE', /although this process holds the needed capabilities: a seccomp profile/],
    [
      'EPERM bpf on 5.4 without CAP_SYS_RESOURCE',
      sysErr('EPERM', 'bpf_object__load', 'loading'),
      { capabilities: caps('root-linux-6.18.status'), kernelRelease: '5.10.0' },
      'EPRIVILEGE',
      /RLIMIT_MEMLOCK; raise it \(ulimit -l unlimited\) or grant CAP_SYS_RESOURCE/,
    ],
    ['ENOENT load without BTF', sysErr('ENOENT', 'bpf_object__load', 'loading'), { ...root, btfPath: '/nonexistent/vmlinux' }, 'ENOBTF', /CONFIG_DEBUG_INFO_BTF=y/],
    ['EINVAL freq within max', sysErr('EINVAL', 'perf_event_open', 'opening perf event: Invalid argument'), { ...root, frequencyHz: 99 }, 'EKERNEL', /rejected the request as invalid \(EINVAL\)/],
    ['ESRCH', sysErr('ESRCH', 'perf_event_open', 'No such process'), { ...root, pid: 4242 }, 'ENOPROC', /^x: process 4242 does not exist/],
    ['ENODEV', sysErr('ENODEV', 'perf_event_open', 'No such device'), root, 'EKERNEL', /software cpu-clock event, which needs no hardware PMU/],
    ['ENOSYS', sysErr('ENOSYS', 'perf_event_open', 'Function not implemented'), root, 'EKERNEL', /CONFIG_PERF_EVENTS=y/],
    ['EMFILE', sysErr('EMFILE', 'perf_event_open', 'Too many open files'), root, 'EKERNEL', /ulimit -n/],
    ['ENOMEM old kernel', sysErr('ENOMEM', 'bpf_object__load', 'Cannot allocate memory'), { ...root, kernelRelease: '5.8.0' }, 'EKERNEL', /RLIMIT_MEMLOCK/],
    ['unknown errno', sysErr('EUNKNOWN', 'bpf_map_update_elem', 'updating map x: Weird error\nlibbpf: detail'), root, 'EKERNEL', /^x: updating map x: Weird error \(EUNKNOWN\)$/],
  ];
  for (const [name, e, ctx, code, message] of cases) {
    const out = explainKernelError(e, 'x', ctx);
    t.equal(out.code, code, `${name}: code`);
    t.match(out.message, message, `${name}: message`);
    t.notMatch(out.message, /\n/, `${name}: one line`);
  }
  const mine = new EbpfprofError('EOUTPUT', 'already clear');
  t.equal(explainKernelError(mine, 'x'), mine, 'EbpfprofError passes through');
  t.match(explainKernelError(new TypeError('bad arg'), 'x'), { code: 'EKERNEL', message: 'x: bad arg' });
});
