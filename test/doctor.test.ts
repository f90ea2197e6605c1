// SPDX-License-Identifier: Apache-2.0
// `ebpfprof doctor` on the real kernel: every verdict is compared with what the test derives on its
// own (sysfs, tracefs, /proc, bpftool's and bpftrace's feature probes), never with a hard-coded
// yes/no; the probes must leave no program, link, perf event or fd behind; the CLI's output and
// exit code as root, as nobody, and as nobody with exactly CAP_BPF + CAP_PERFMON. Also the
// kernel-feature test helper itself.
import t from 'tap';
import { execFileSync, spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { bpfObjectPath, loadAddon } from '../src/native/addon';
import {
  chooseAttachMethods,
  FEATURE_IDS,
  FeatureProber,
  parseCpuList,
  parseKernelRelease,
  type AttachAvailability,
  type DoctorReport,
  type FeatureCheck,
  type FeatureId,
} from '../src/system/kernel-features';
import { formatDoctorReport } from '../cli/commands/doctor';
import { repoRoot } from './helpers/paths';
import {
  CI_EXPECTED_FEATURES,
  decideFeature,
  expectedFeatures,
  requireKernelFeature,
  type FeatureGate,
} from './helpers/kernel-feature';

const node = process.execPath;
const doctorEntry = path.join(repoRoot, 'dist', 'test', 'fixtures', 'entry', 'doctor.js');
const helperChild = path.join(repoRoot, 'dist', 'test', 'fixtures', 'kernel-feature', 'child.js');
const PATH = `PATH=${process.env.PATH ?? '/usr/bin:/bin'}`;

/** Runs a command with a clean environment (`env -i`): tap instruments the node processes it
 * spawns, and those children must run as a user's shell would run them. */
function run(argv: string[], env: string[] = []): { status: number | null; stdout: string; stderr: string } {
  const r = spawnSync('env', ['-i', PATH, ...env, ...argv], { cwd: repoRoot, encoding: 'utf8', timeout: 120_000 });
  if (r.error) throw r.error;
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

function asNobody(keep: string[], argv: string[]): ReturnType<typeof run> {
  const set = ['-all', ...keep.map((c) => `+${c}`)].join(',');
  const ambient = keep.length ? [`--ambient-caps=${keep.map((c) => `+${c}`).join(',')}`] : [];
  return run(['setpriv', '--reuid=65534', '--regid=65534', '--clear-groups', `--inh-caps=${set}`, ...ambient, `--bounding-set=${set}`, ...argv]);
}

function byId(report: DoctorReport, id: FeatureId): FeatureCheck {
  const c = report.checks.find((x) => x.id === id);
  if (!c) throw new Error(`no check ${id}`);
  return c;
}

const exists = (p: string): boolean => fs.existsSync(p);

function canRead(p: string): boolean {
  try {
    fs.readFileSync(p);
    return true;
  } catch {
    return false;
  }
}

/** bpftool's own feature probe (its libbpf, not our addon): program and map types this kernel loads. */
function bpftoolFeatures(): Record<string, boolean> {
  const j = JSON.parse(execFileSync('bpftool', ['feature', 'probe', 'kernel', '-j'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] })) as {
    program_types: Record<string, boolean>;
    map_types: Record<string, boolean>;
  };
  return { ...j.program_types, ...j.map_types };
}

/** bpftrace's verdict on fentry ("kfunc"), found by loading a program of its own; undefined without bpftrace. */
function bpftraceKfunc(): boolean | undefined {
  const r = spawnSync('bpftrace', ['--info'], { encoding: 'utf8', timeout: 60_000 });
  if (r.error || r.status !== 0) return undefined;
  const m = /^\s*kfunc: (yes|no)/m.exec(`${r.stdout}${r.stderr}`);
  return m ? m[1] === 'yes' : undefined;
}

let sharedReport: Promise<DoctorReport> | undefined;
const report = (): Promise<DoctorReport> => (sharedReport ??= new FeatureProber().report());

t.test('doctor on this machine agrees with what the test finds on its own', async (t) => {
  if (!(await requireKernelFeature(t, 'root'))) return;
  const r = await report();
  t.same(
    r.checks.map((c) => c.id),
    FEATURE_IDS,
    'every check once, in order',
  );
  for (const c of r.checks) {
    t.ok(c.detail.length > 10, `${c.id}: has a reason`);
    t.equal(typeof c.ok, 'boolean');
  }
  const features = bpftoolFeatures();
  const version = parseKernelRelease(os.release())!;

  t.equal(byId(r, 'kernel_version').ok, version[0] > 5 || (version[0] === 5 && version[1] >= 8), 'kernel version >= 5.8');
  t.equal(byId(r, 'btf').ok, exists('/sys/kernel/btf/vmlinux'), 'BTF <=> /sys/kernel/btf/vmlinux');
  t.equal(byId(r, 'capabilities').ok, true, 'root holds what profiling needs');

  const perfExpected = exists('/sys/bus/event_source/devices/software') && features.have_perf_event_prog_type === true;
  t.equal(byId(r, 'perf_event_open').ok, perfExpected, 'perf_event_open <=> software PMU');
  t.equal(byId(r, 'perf_event').ok, perfExpected, 'perf_event programs <=> software PMU and bpftool');
  t.match(byId(r, 'perf_event_open').detail, new RegExp(`cpu-clock at 99 Hz on CPUs ${fs.readFileSync('/sys/devices/system/cpu/online', 'utf8').trim()}`));
  if (!exists('/sys/bus/event_source/devices/cpu')) t.match(byId(r, 'perf_event_open').detail, /no hardware PMU/, 'says there is no hardware PMU');
  t.equal(byId(r, 'stack_maps').ok, perfExpected && features.have_stack_trace_map_type === true, 'stack maps');
  t.equal(byId(r, 'ringbuf').ok, features.have_ringbuf_map_type === true, 'ring buffer <=> bpftool');
  t.equal(byId(r, 'raw_tracepoints').ok, features.have_raw_tracepoint_prog_type === true, 'raw tracepoints <=> bpftool');
  t.equal(byId(r, 'uprobes').ok, exists('/sys/bus/event_source/devices/uprobe'), 'uprobes <=> uprobe PMU');

  const tracefsId = ['/sys/kernel/debug/tracing', '/sys/kernel/tracing'].map((d) => `${d}/events/sched/sched_switch/id`).find(canRead);
  t.equal(byId(r, 'tracefs').ok, tracefsId !== undefined, 'tracefs <=> a readable sched_switch id');
  t.equal(byId(r, 'tracepoints').ok, tracefsId !== undefined, 'tracepoints <=> tracefs');
  if (!tracefsId) t.match(byId(r, 'tracepoints').fix, /mount -t tracefs/);

  // kprobes: none of the two ways libbpf creates them exists <=> doctor says no, and why.
  const kprobesAbsent = !exists('/sys/bus/event_source/devices/kprobe') && !exists('/sys/kernel/tracing/kprobe_events') && !exists('/sys/kernel/debug/tracing/kprobe_events');
  const kprobes = byId(r, 'kprobes');
  t.equal(kprobes.ok, !kprobesAbsent, 'kprobes <=> kprobe PMU or kprobe_events');
  if (kprobesAbsent) {
    t.match(kprobes.detail, /the kernel was built without CONFIG_KPROBE/, 'says why');
    t.match(kprobes.detail, /CONFIG_KPROBE_EVENTS/);
    t.match(kprobes.detail, /fallback: /, 'says which fallback is used');
    t.equal(kprobes.required, false, 'kprobes are optional');
    let config = '';
    try {
      config = (await import('node:zlib')).gunzipSync(fs.readFileSync('/proc/config.gz')).toString('utf8');
    } catch {
      config = '';
    }
    if (/^# CONFIG_KPROBES is not set$/m.test(config)) t.match(kprobes.detail, /without CONFIG_KPROBES, hence without CONFIG_KPROBE_EVENTS/);
  }

  // fentry: bpftrace's kfunc probe is an independent loader of an fentry program.
  const kfunc = bpftraceKfunc();
  const fentry = byId(r, 'fentry');
  if (kfunc === undefined) {
    t.comment('bpftrace is not installed: fentry is only checked for consistency');
  } else {
    t.equal(fentry.ok, kfunc, `fentry <=> bpftrace kfunc: ${kfunc ? 'yes' : 'no'}`);
  }
  if (!fentry.ok) t.match(fentry.detail, /fallback: /, 'fentry failure says which fallback is used');

  // kallsyms: real addresses <=> a non-zero address among the first lines.
  const head = fs.readFileSync('/proc/kallsyms', 'latin1').slice(0, 4096).split('\n').slice(0, 20);
  t.equal(byId(r, 'kallsyms').ok, head.some((l) => /^[0-9a-f]+ /.test(l) && !/^0+ /.test(l)), 'kallsyms addresses');

  // Attach methods follow from the checks.
  const cpu = r.attachMethods.find((a) => a.feature === 'cpu_sampling')!;
  t.equal(cpu.method, perfExpected ? 'perf_event' : null);
  const life = r.attachMethods.find((a) => a.feature === 'process_lifecycle')!;
  t.equal(life.method, byId(r, 'raw_tracepoints').ok ? 'raw_tp' : byId(r, 'tp_btf').ok ? 'tp_btf' : null);
  const tcp = r.attachMethods.find((a) => a.feature === 'tcp_tracing')!;
  t.same(tcp.extras, fentry.ok ? ['fentry'] : kprobes.ok ? ['kprobe'] : []);
  if (tracefsId) {
    const tcpTracepoint = exists(path.join(path.dirname(path.dirname(path.dirname(path.dirname(tracefsId)))), 'events/sock/inet_sock_set_state'));
    // Typed (tp_btf) first where it works, the classic tracepoint otherwise.
    t.equal(tcp.method, !tcpTracepoint ? null : byId(r, 'tp_btf').ok ? 'tp_btf' : 'tracepoint');
  }
  t.equal(byId(r, 'attach_cpu_sampling').ok, cpu.method !== null);

  const required = r.checks.filter((c) => c.required);
  t.equal(r.canProfile, required.every((c) => c.ok), 'canProfile <=> every required check');
  t.equal(r.canProfile, exists('/sys/kernel/btf/vmlinux') && perfExpected && features.have_ringbuf_map_type === true, 'and that is what this machine has');
});

/** What the probes could leave behind, seen from this process and from bpftool. */
function snapshot(): { fds: Record<string, number>; probeProgs: Set<number>; probeLinks: Set<number>; perfOfMine: number; tracefsMine: string[] } {
  const fds: Record<string, number> = {};
  for (const fd of fs.readdirSync('/proc/self/fd')) {
    let target = '';
    try {
      target = fs.readlinkSync(`/proc/self/fd/${fd}`);
    } catch {
      continue;
    }
    const m = /^anon_inode:(bpf-prog|bpf-map|bpf_link|\[perf_event\]|btf)$/.exec(target);
    if (m) fds[m[1]!] = (fds[m[1]!] ?? 0) + 1;
  }
  const progs = JSON.parse(execFileSync('bpftool', ['prog', 'show', '-j'], { encoding: 'utf8' }) || '[]') as Array<{ id: number; name?: string }>;
  const probeProgs = new Set(progs.filter((p) => p.name?.startsWith('probe_')).map((p) => p.id));
  const links = JSON.parse(execFileSync('bpftool', ['link', 'show', '-j'], { encoding: 'utf8' }) || '[]') as Array<{ id: number; prog_id: number }>;
  const probeLinks = new Set(links.filter((l) => probeProgs.has(l.prog_id)).map((l) => l.id));
  const perf = JSON.parse(execFileSync('bpftool', ['perf', 'show', '-j'], { encoding: 'utf8' }) || '[]') as Array<{ pid: number }>;
  const tracefsMine: string[] = [];
  for (const f of ['/sys/kernel/tracing/uprobe_events', '/sys/kernel/tracing/kprobe_events']) {
    let text = '';
    try {
      text = fs.readFileSync(f, 'utf8');
    } catch {
      continue;
    }
    // libbpf's legacy (tracefs) probes are named libbpf_<pid>_...
    tracefsMine.push(...text.split('\n').filter((l) => l.includes(`libbpf_${process.pid}_`)));
  }
  return { fds, probeProgs, probeLinks, perfOfMine: perf.filter((p) => p.pid === process.pid).length, tracefsMine };
}

t.test('the probes leave nothing attached or open', async (t) => {
  if (!(await requireKernelFeature(t, 'root'))) return;
  if (!(await requireKernelFeature(t, 'raw_tracepoints'))) return;
  const before = snapshot();

  // First show that the snapshot sees a probe while it is loaded and attached.
  const obj = new (loadAddon().BpfObject)(bpfObjectPath('probes'));
  for (const p of obj.programNames()) obj.setAutoload(p, p === 'probe_raw_tp');
  obj.load();
  const link = obj.attachRawTracepoint('probe_raw_tp', 'sched_switch');
  const during = snapshot();
  t.ok((during.fds['bpf-prog'] ?? 0) > (before.fds['bpf-prog'] ?? 0), 'a loaded probe shows as a bpf-prog fd');
  t.ok((during.fds['bpf_link'] ?? 0) > (before.fds['bpf_link'] ?? 0), 'an attached probe shows as a bpf_link fd');
  t.ok([...during.probeProgs].some((id) => !before.probeProgs.has(id)), 'bpftool lists the probe program');
  t.ok([...during.probeLinks].some((id) => !before.probeLinks.has(id)), 'bpftool lists its link');
  t.ok(during.perfOfMine > before.perfOfMine, 'bpftool perf shows the attachment for this pid');
  link.close();
  obj.close();

  // A fresh prober (no cache) runs every probe for real.
  const r = await new FeatureProber().report();
  t.ok(r.checks.length > 0);
  const after = snapshot();
  t.same(after.fds, before.fds, 'no bpf-prog, bpf-map, bpf_link, perf_event or btf fd left in this process');
  t.equal(after.perfOfMine, before.perfOfMine, 'no perf-event attachment of this pid left (bpftool perf show)');
  t.same(after.tracefsMine, before.tracefsMine, 'no libbpf_<pid>_ uprobe/kprobe events left in tracefs');
  // Other processes on the machine may be running probes of their own right now: a probe program
  // of ours would stay, theirs go away; look again until only leftovers remain.
  let progs = new Set<number>();
  let links = new Set<number>();
  for (let attempt = 0; attempt < 20; attempt++) {
    const s = snapshot();
    progs = new Set([...s.probeProgs].filter((id) => !before.probeProgs.has(id)));
    links = new Set([...s.probeLinks].filter((id) => !before.probeLinks.has(id)));
    if (progs.size === 0 && links.size === 0) break;
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  t.same([...progs], [], 'no probe_* program left loaded (bpftool prog show)');
  t.same([...links], [], 'no link to a probe_* program left (bpftool link show)');
});

t.test('`ebpfprof doctor` as root: one line per check, exit 0, and --json says the same', async (t) => {
  if (!(await requireKernelFeature(t, 'root'))) return;
  const text = run([node, doctorEntry, 'doctor']);
  const json = run([node, doctorEntry, 'doctor', '--json']);
  const r = JSON.parse(json.stdout) as DoctorReport;
  t.equal(r.canProfile, (await report()).canProfile, 'the CLI sees what the in-process doctor sees');
  t.equal(text.status, r.canProfile ? 0 : 1, 'exit code follows canProfile');
  t.equal(json.status, text.status, '--json exits the same way');
  t.equal(text.stderr, '');
  t.same(
    r.checks.map((c) => c.id),
    FEATURE_IDS,
  );
  const lines = text.stdout.trimEnd().split('\n');
  t.match(lines[0], new RegExp(`^ebpfprof doctor: Linux ${os.release().replace(/[.+]/g, '\\$&')} \\(`));
  const cliReport = r as DoctorReport & { capabilities: { kept: unknown[] } };
  // header, one line per check, summary, capabilities before and after (one line per kept one), strict mode
  t.equal(lines.length, r.checks.length + 2 + 2 + cliReport.capabilities.kept.length + 1, 'header, checks, summary, capabilities, strict mode');
  r.checks.forEach((c, i) => {
    const line = lines[i + 1]!;
    t.ok(line.startsWith(c.ok ? 'yes  ' : 'no   '), `${c.id}: ${c.ok ? 'yes' : 'no'}`);
    t.ok(line.includes(` ${c.name} `), `${c.id}: names the check`);
    // Two runs: event counts and waiting times in the reasons differ, the rest must not.
    const n = (s: string): string => s.replace(/\d+/g, 'N').replace(/\b(time|sample|record)s\b/g, '$1');
    t.ok(n(line).includes(n(c.detail)), `${c.id}: gives the reason`);
    if (!c.ok && c.fix) t.ok(n(line).endsWith(n(`-- fix: ${c.fix}`)), `${c.id}: gives the fix`);
  });
  t.match(lines[r.checks.length + 1], r.canProfile ? /^CPU profiling: ready/ : /^CPU profiling: not possible here: /);
  const kprobes = r.checks.find((c) => c.id === 'kprobes')!;
  if (!kprobes.ok) t.equal(text.status, r.checks.filter((c) => c.required).every((c) => c.ok) ? 0 : 1, 'missing kprobes alone does not fail doctor');
});

t.test('`ebpfprof doctor` as nobody without capabilities: exit 1, and it says what to grant', async (t) => {
  if (!(await requireKernelFeature(t, 'root'))) return;
  const res = asNobody([], [node, doctorEntry, 'doctor', '--json']);
  t.equal(res.status, 1);
  const r = JSON.parse(res.stdout) as DoctorReport;
  t.equal(r.canProfile, false);
  const caps = byId(r, 'capabilities');
  t.equal(caps.ok, false);
  t.match(caps.detail, /^uid 65534 holds none of the relevant capabilities; profiling needs CAP_BPF and CAP_PERFMON/);
  t.equal(caps.fix, `run as root (sudo), or grant them to node: sudo setcap cap_bpf,cap_perfmon+ep ${node}`);
  for (const id of ['perf_event', 'stack_maps', 'ringbuf'] as const) {
    t.equal(byId(r, id).ok, false, `${id} fails`);
    t.match(byId(r, id).detail, /\(EPERM\): this process lacks CAP_BPF\/CAP_PERFMON/, `${id}: says the kernel refused and why`);
  }
  t.ok(r.missing.includes('capabilities') && r.missing.includes('perf_event programs'));
  const text = asNobody([], [node, doctorEntry, 'doctor']);
  t.equal(text.status, 1);
  t.match(text.stdout, /^no   capabilities +uid 65534 holds none.* -- fix: run as root \(sudo\), or grant them to node: sudo setcap cap_bpf,cap_perfmon\+ep /m);
  t.match(text.stdout, /\nCPU profiling: not possible here: capabilities, /);
});

t.test('`ebpfprof doctor` as nobody with exactly CAP_BPF + CAP_PERFMON: CPU profiling works', async (t) => {
  if (!(await requireKernelFeature(t, 'root'))) return;
  if (!(await requireKernelFeature(t, 'perf_event'))) return;
  const res = asNobody(['bpf', 'perfmon'], [node, doctorEntry, 'doctor', '--json']);
  const r = JSON.parse(res.stdout) as DoctorReport;
  t.equal(res.status, 0, `the capabilities doctor asks for are enough: ${r.missing.join(', ')}`);
  t.equal(r.canProfile, true);
  for (const id of ['capabilities', 'perf_event_open', 'perf_event', 'stack_maps', 'ringbuf', 'raw_tracepoints'] as const) t.equal(byId(r, id).ok, true, id);
  // tracefs is root-only (0700) by default: then classic tracepoints need CAP_DAC_READ_SEARCH.
  const tracefsMode = fs.statSync('/sys/kernel/tracing').mode & 0o777;
  if ((tracefsMode & 0o005) !== 0o005) {
    t.equal(byId(r, 'tracepoints').ok, false, `tracefs is ${tracefsMode.toString(8)}: not readable by uid 65534`);
    t.match(byId(r, 'tracepoints').detail, /not readable by uid 65534 \(EACCES\).*CAP_DAC_READ_SEARCH/);
    t.equal(r.attachMethods.find((a) => a.feature === 'sched_tracing')!.method, byId(r, 'tp_btf').ok ? 'tp_btf' : 'raw_tp', 'scheduler tracing falls back');
  }
  t.equal(byId(r, 'kallsyms').ok, Number(fs.readFileSync('/proc/sys/kernel/perf_event_paranoid', 'utf8')) <= 1 && fs.readFileSync('/proc/sys/kernel/kptr_restrict', 'utf8').trim() === '0', 'kallsyms addresses need CAP_SYSLOG unless paranoid <= 1');
});

t.test('without tracefs (unmounted in a private mount namespace): tracepoints say how to mount it, tracing falls back', async (t) => {
  if (!(await requireKernelFeature(t, 'root'))) return;
  // The umount happens in a mount namespace of the child only; the machine keeps its tracefs.
  const script = 'umount /sys/kernel/tracing 2>/dev/null; umount /sys/kernel/debug/tracing 2>/dev/null; exec "$@"';
  const res = run(['unshare', '--mount', '--propagation', 'private', 'sh', '-c', script, 'sh', node, doctorEntry, 'doctor', '--json']);
  const r = JSON.parse(res.stdout) as DoctorReport;
  t.equal(byId(r, 'tracefs').ok, false);
  t.match(byId(r, 'tracefs').fix, /^mount -t tracefs nodev \/sys\/kernel\/tracing/);
  t.equal(byId(r, 'tracepoints').ok, false);
  t.match(byId(r, 'tracepoints').detail, /^tracefs is not mounted, so tracepoint ids cannot be read \(ENOENT\)/);
  t.equal(byId(r, 'raw_tracepoints').ok, (await report()).checks.find((c) => c.id === 'raw_tracepoints')!.ok, 'raw tracepoints do not need tracefs');
  const fallback = byId(r, 'tp_btf').ok ? 'tp_btf' : 'raw_tp';
  t.equal(r.attachMethods.find((a) => a.feature === 'sched_tracing')!.method, fallback, 'scheduler tracing falls back');
  t.equal(r.attachMethods.find((a) => a.feature === 'tcp_tracing')!.method, fallback, 'TCP tracepoints are found through BTF and attached the same way');
  t.equal(r.canProfile, (await report()).canProfile, 'CPU profiling does not need tracefs');
  t.equal(res.status, r.canProfile ? 0 : 1);
});

t.test('chooseAttachMethods: tracepoints first, fentry/kprobe only where present', async (t) => {
  const all: AttachAvailability = {
    perfEvent: true,
    stackMaps: true,
    tracepoints: true,
    rawTracepoints: true,
    tpBtf: true,
    fentry: true,
    kprobes: true,
    tcpTracepoints: ['sock:inet_sock_set_state', 'tcp:tcp_probe', 'tcp:tcp_retransmit_skb', 'tcp:tcp_receive_reset'],
  };
  const pick = (a: AttachAvailability): Record<string, string> =>
    Object.fromEntries(chooseAttachMethods(a).map((c) => [c.feature, `${c.method}${c.extras.length ? `+${c.extras.join('+')}` : ''}`]));
  t.same(pick(all), { cpu_sampling: 'perf_event', process_lifecycle: 'raw_tp', sched_tracing: 'tp_btf', tcp_tracing: 'tp_btf+fentry' });
  t.same(pick({ ...all, fentry: false }), { cpu_sampling: 'perf_event', process_lifecycle: 'raw_tp', sched_tracing: 'tp_btf', tcp_tracing: 'tp_btf+kprobe' });
  t.same(pick({ ...all, fentry: false, kprobes: false }).tcp_tracing, 'tp_btf', 'this VM: no kernel-function extras');
  t.same(pick({ ...all, tracepoints: false }), { cpu_sampling: 'perf_event', process_lifecycle: 'raw_tp', sched_tracing: 'tp_btf', tcp_tracing: 'tp_btf+fentry' }, 'no tracefs');
  t.same(
    pick({ ...all, tpBtf: false }),
    { cpu_sampling: 'perf_event', process_lifecycle: 'raw_tp', sched_tracing: 'raw_tp', tcp_tracing: 'tracepoint+fentry' },
    'no tp_btf: TCP on classic tracepoints, the scheduler (task pointers) on raw tracepoints',
  );
  t.same(pick({ ...all, rawTracepoints: false }).process_lifecycle, 'tp_btf', 'lifecycle falls back to tp_btf');
  t.same(pick({ ...all, tracepoints: false, tpBtf: false }), { cpu_sampling: 'perf_event', process_lifecycle: 'raw_tp', sched_tracing: 'raw_tp', tcp_tracing: 'raw_tp+fentry' });
  t.same(pick({ ...all, tracepoints: false, tpBtf: false, rawTracepoints: false }).process_lifecycle, 'null');
  t.same(pick({ ...all, stackMaps: false }).cpu_sampling, 'null', 'no stack maps, no CPU profiles');
  t.same(pick({ ...all, perfEvent: false }).cpu_sampling, 'null');
  t.same(pick({ ...all, tcpTracepoints: [] }).tcp_tracing, 'null+fentry');
  t.match(chooseAttachMethods({ ...all, tcpTracepoints: ['sock:inet_sock_set_state'] })[3]!.reason, /missing: tcp:tcp_probe, tcp:tcp_retransmit_skb, tcp:tcp_receive_reset/);
});

t.test('small parsers', async (t) => {
  t.same(parseCpuList('0-3,5\n'), [0, 1, 2, 3, 5]);
  t.same(parseCpuList('0'), [0]);
  t.same(parseCpuList(''), []);
  t.same(parseKernelRelease('6.18.44-fc-v669'), [6, 18, 44]);
  t.same(parseKernelRelease('5.4'), [5, 4, 0]);
  t.equal(parseKernelRelease('x'), undefined);
});

t.test('formatDoctorReport: yes/no, name, reason, fix for failures, summary', async (t) => {
  const checks: FeatureCheck[] = [
    { id: 'btf', name: 'BTF', ok: true, required: true, detail: 'present' },
    { id: 'kprobes', name: 'kprobes', ok: false, required: false, detail: 'built without CONFIG_KPROBE_EVENTS', fix: 'optional' },
  ];
  const text = formatDoctorReport({ kernelRelease: '6.18.0', canProfile: true, missing: [], checks, attachMethods: [] });
  const lines = text.trimEnd().split('\n');
  t.equal(lines[1], 'yes  BTF      present');
  t.equal(lines[2], 'no   kprobes  built without CONFIG_KPROBE_EVENTS -- fix: optional');
  t.equal(lines[3], 'CPU profiling: ready (optional, not available: kprobes)');
  const bad = formatDoctorReport({ kernelRelease: '6.18.0', canProfile: false, missing: ['BTF'], checks: [{ ...checks[0]!, ok: false }], attachMethods: [] });
  t.match(bad, /\nCPU profiling: not possible here: BTF failed\n$/);
});

t.test('kernel-feature helper: who is expected, and the decision', async (t) => {
  t.same(expectedFeatures({}, { euid: 0, hasBtf: true }).features, CI_EXPECTED_FEATURES, 'unset, root on a BTF kernel: the CI list');
  t.same(expectedFeatures({}, { euid: 1000, hasBtf: true }).features, [], 'unset, not root: nothing');
  t.same(expectedFeatures({}, { euid: 0, hasBtf: false }).features, [], 'unset, no BTF: nothing');
  t.same(expectedFeatures({ EBPFPROF_EXPECT_FEATURES: 'btf, kprobes,,' }, { euid: 0, hasBtf: true }).features, ['btf', 'kprobes']);
  t.same(expectedFeatures({ EBPFPROF_EXPECT_FEATURES: 'none' }, { euid: 0, hasBtf: true }).features, [], 'explicit none');
  t.same(expectedFeatures({ EBPFPROF_EXPECT_FEATURES: '' }, { euid: 0, hasBtf: true }).features, [], 'explicit empty');
  const exp = { features: ['kprobes'], source: 'test' };
  t.same(decideFeature('kprobes', { present: true, reason: '' }, exp), { action: 'run' });
  t.match(decideFeature('kprobes', { present: false, reason: 'no PMU' }, exp), { action: 'fail', message: /expected on this machine \(test\) but missing: no PMU/ });
  t.same(decideFeature('fentry', { present: false, reason: 'EPERM' }, exp), { action: 'skip', message: 'fentry not available: EPERM' });
});

t.test('kernel-feature helper: after assertions it records a skipped assertion; typos fail', async (t) => {
  const calls: string[] = [];
  const gate: FeatureGate = {
    count: 2,
    plan: (n, c) => void calls.push(`plan ${n} ${c}`),
    pass: (m, e) => calls.push(`pass ${m} skip=${e.skip}`) > 0,
    fail: (m) => calls.push(`fail ${m}`) > 0,
  };
  const probe = async (): Promise<{ present: boolean; reason: string }> => ({ present: false, reason: 'made up' });
  t.equal(await requireKernelFeature(gate, 'fake_feature', { probe, expected: { features: [], source: 's' } }), false);
  t.same(calls, ['pass fake_feature not available skip=fake_feature not available: made up']);
  calls.length = 0;
  t.equal(await requireKernelFeature({ ...gate, count: 0 }, 'fake_feature', { probe, expected: { features: [], source: 's' } }), false);
  t.same(calls, ['plan 0 fake_feature not available: made up'], 'before any assertion the whole test is skipped');
  calls.length = 0;
  t.equal(await requireKernelFeature(gate, 'kprobe', { expected: { features: [], source: 's' } }), false);
  t.match(calls, [/^fail unknown kernel feature 'kprobe' \(known: root, btf, /], 'a misspelt feature fails instead of skipping');
});

t.test('kernel-feature helper in a real tap test: skip, fail or run', async (t) => {
  const child = (env: string[]): ReturnType<typeof run> => run([node, helperChild], env);

  const skipped = child(['EBPFPROF_EXPECT_FEATURES=btf']);
  t.equal(skipped.status, 0, 'missing and not expected: the file passes');
  t.match(skipped.stdout, /^ok 1 - a test that needs fake_feature # SKIP fake_feature not available: the fake probe says so$/m);
  t.notMatch(skipped.stdout, /body ran/);

  const failed = child(['EBPFPROF_EXPECT_FEATURES=btf,fake_feature']);
  t.equal(failed.status, 1, 'missing but expected: the file fails');
  t.match(failed.stdout, /not ok 1 - kernel feature fake_feature is expected on this machine \(EBPFPROF_EXPECT_FEATURES="btf,fake_feature"\) but missing: the fake probe says so/);
  t.match(failed.stdout, /^not ok 1 - a test that needs fake_feature/m);

  const ran = child(['EBPFPROF_EXPECT_FEATURES=fake_feature', 'FAKE_FEATURE_PRESENT=1']);
  t.equal(ran.status, 0, 'present: the body runs');
  t.match(ran.stdout, /ok 1 - fake_feature body ran/);
});
