// SPDX-License-Identifier: Apache-2.0
// Self-confinement on the real kernel, as root: the drop reaches every thread (the SIGUSR1
// inspector thread that blocks all signals included) and every set; the agent keeps sampling and
// still changes its frequency afterwards (PERF_EVENT_IOC_PERIOD and map reads need no capability);
// record symbolizes a root process that started after the drop (its /proc/PID/root is refused
// then); doctor shows the capabilities before and after; --keep-capabilities keeps more, with a
// warning for what strict mode forbids.
import t from 'tap';
import { spawn, spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { capabilityBit } from '../src/system/capabilities';
import { capabilitiesToKeep, parseKeepCapabilities } from '../src/system/confinement';
import { AgentProcess } from './helpers/collector';
import { requireKernelFeature } from './helpers/kernel-feature';
import { cliPath, repoRoot } from './helpers/paths';
import { buildWorkload } from './helpers/workloads';

/** Capability names in the kernel's bit order, as /proc and the commands' log lines list them. */
function inBitOrder(names: string[]): string[] {
  return [...names].sort((a, b) => capabilityBit(a) - capabilityBit(b));
}
const KEPT = inBitOrder(capabilitiesToKeep().map((k) => k.capability));
/** The agent loads tracers while it runs, so it keeps CAP_BPF too. */
const AGENT_KEPT = inBitOrder(capabilitiesToKeep({ loadsWhileRunning: true }).map((k) => k.capability));

interface ThreadCaps {
  tid: string;
  comm: string;
  eff: string;
  prm: string;
  inh: string;
  bnd: string;
  amb: string;
  nnp: string;
  sigblk: string;
}

function threadCaps(pid: number): ThreadCaps[] {
  return fs.readdirSync(`/proc/${pid}/task`).map((tid) => {
    const s = fs.readFileSync(`/proc/${pid}/task/${tid}/status`, 'utf8');
    const f = (k: string): string => new RegExp(`^${k}:\\s+(\\S+)`, 'm').exec(s)?.[1] ?? '';
    return { tid, comm: f('Name'), eff: f('CapEff'), prm: f('CapPrm'), inh: f('CapInh'), bnd: f('CapBnd'), amb: f('CapAmb'), nnp: f('NoNewPrivs'), sigblk: f('SigBlk') };
  });
}

function maskOf(names: string[]): string {
  const bits: Record<string, number> = { CAP_DAC_READ_SEARCH: 2, CAP_SYSLOG: 34, CAP_PERFMON: 38, CAP_BPF: 39, CAP_SYS_ADMIN: 21 };
  let m = 0n;
  for (const n of names) m |= 1n << BigInt(bits[n]!);
  return m.toString(16).padStart(16, '0');
}

t.test('--keep-capabilities parsing and the kept set', async (t) => {
  t.same(parseKeepCapabilities('sys_admin, CAP_SYSLOG'), ['CAP_SYS_ADMIN', 'CAP_SYSLOG']);
  t.equal(parseKeepCapabilities('ALL'), 'all');
  t.throws(() => parseKeepCapabilities('CAP_MAGIC'), { code: 'EBADARG', message: /--keep-capabilities: unknown capability "CAP_MAGIC"/ });
  t.throws(() => parseKeepCapabilities(' , '), { code: 'EBADARG' });
  t.same(capabilitiesToKeep({ kernelRelease: '6.18.0', unprivilegedBpfDisabled: 2, extraKeep: ['CAP_SYSLOG'] }).map((k) => k.capability), ['CAP_PERFMON', 'CAP_DAC_READ_SEARCH', 'CAP_SYSLOG']);
});

t.test('the drop reaches every thread, the inspector thread that blocks every signal included', async (t) => {
  if (!(await requireKernelFeature(t, 'root'))) return;
  // A fresh Node process (the test's own must keep its privileges): drop, start a threadpool thread, report.
  const script = `
    const { confineProcess } = require(${JSON.stringify(path.join(repoRoot, 'dist', 'src', 'system', 'confinement.js'))});
    setTimeout(() => {
      const r = confineProcess();
      require('fs').readFile('/etc/hostname', () => {
        process.stdout.write(JSON.stringify({ threads: r.after.length, kept: r.kept.map((k) => k.capability), dropped: r.dropped, boundingNarrowed: r.boundingNarrowed, problems: r.problems }));
      });
    }, 200);`;
  const child = spawn(process.execPath, ['-e', script], { stdio: ['ignore', 'pipe', 'inherit'] });
  let out = '';
  child.stdout.on('data', (d: Buffer) => (out += d));
  const exited = new Promise((resolve) => child.once('exit', resolve));
  await exited;
  const r = JSON.parse(out) as { threads: number; kept: string[]; dropped: string[]; boundingNarrowed: boolean; problems: string[] };
  t.same(inBitOrder([...r.kept]), KEPT);
  t.ok(r.dropped.includes('CAP_SYS_ADMIN') && r.dropped.includes('CAP_SYS_PTRACE') && r.dropped.includes('CAP_BPF') === !KEPT.includes('CAP_BPF'), 'SYS_ADMIN and SYS_PTRACE dropped');
  t.equal(r.boundingNarrowed, true, 'root holds CAP_SETPCAP: the bounding set is narrowed too');
  t.same(r.problems, []);
  t.ok(r.threads >= 5, `every Node thread (${r.threads}) was read back`);

  // The same, observed from outside on a process that stays up.
  const stay = spawn(process.execPath, ['-e', `require(${JSON.stringify(path.join(repoRoot, 'dist', 'src', 'system', 'confinement.js'))}).confineProcess(); console.log('ready'); setInterval(() => {}, 1000);`], { stdio: ['ignore', 'pipe', 'inherit'] });
  t.teardown(() => stay.kill());
  await new Promise<void>((resolve) => stay.stdout.once('data', () => resolve()));
  const threads = threadCaps(stay.pid!);
  const want = maskOf(KEPT);
  const inspector = threads.filter((x) => /^f{7}/.test(x.sigblk));
  t.ok(inspector.length >= 1, `a thread that blocks every signal exists (${inspector.map((x) => x.tid).join(',')})`);
  for (const x of threads) {
    t.same([x.eff, x.prm, x.bnd, x.inh, x.amb, x.nnp], [want, want, want, '0000000000000000', '0000000000000000', '1'], `thread ${x.tid} (${x.comm}, SigBlk ${x.sigblk}): effective, permitted, bounding = kept; inheritable, ambient empty; no_new_privs`);
  }
});

t.test('the agent after the drop: every thread confined, still sampling, frequency changes', async (t) => {
  if (!(await requireKernelFeature(t, 'root'))) return;
  if (!(await requireKernelFeature(t, 'perf_event'))) return;
  const agent = await AgentProcess.start(['--endpoint', 'http://127.0.0.1:9', '--control', '127.0.0.1:0']);
  t.teardown(() => agent.child.kill('SIGKILL'));
  const line = await agent.waitForLog(/capabilities after loading: /, 30_000);
  t.ok(AGENT_KEPT.includes('CAP_BPF') && !AGENT_KEPT.includes('CAP_SYS_ADMIN'), 'the agent keeps CAP_BPF for its tracers, not CAP_SYS_ADMIN');
  t.match(line, new RegExp(`capabilities after loading: ${AGENT_KEPT.join(', ')} on all \\d+ threads, no_new_privs set; dropped \\d+ \\(.*CAP_SYS_PTRACE, CAP_SYS_ADMIN`));
  const want = maskOf(AGENT_KEPT);
  for (const x of threadCaps(agent.pid)) t.same([x.eff, x.prm, x.bnd, x.amb, x.nnp], [want, want, want, '0000000000000000', '1'], `agent thread ${x.tid} (${x.comm})`);
  // Samples per second of the kernel counter (every CPU, idle included) before and after the change.
  const status = async (): Promise<{ samples: number; at: number }> => {
    const s = JSON.parse((await agent.request('GET', '/status')).text) as { sampler: { samples: number } };
    return { samples: s.sampler.samples, at: Date.now() };
  };
  const rate = async (): Promise<number> => {
    const a = await status();
    await sleep(3000);
    const b = await status();
    return (b.samples - a.samples) / ((b.at - a.at) / 1000);
  };
  await sleep(1500);
  const before = await rate();
  const put = await agent.request('PUT', '/config', { frequencyHz: 9 });
  t.equal(put.status, 200, `the override is accepted: ${put.text.slice(0, 200)}`);
  await agent.waitForMetrics((m) => m.get('ebpfprof_agent_frequency_hz') === 9, 20_000, 'frequency 9 Hz');
  const after = await rate();
  t.ok(before > 0 && after > 0, `sampling goes on after the drop (${before.toFixed(1)} -> ${after.toFixed(1)} samples/s)`);
  t.ok(after / before > 0.25 && after / before < 0.75, `the kernel samples at the new period: ${after.toFixed(1)}/s at 9 Hz vs ${before.toFixed(1)}/s at 19 Hz`);
  const refused = await agent.request('PUT', '/config', { enhanced: ['uprobes'] });
  t.equal(refused.status, 400);
  t.match(refused.text, /enhanced cannot be changed at run time/);
  t.equal(agent.log().includes('internal error'), false, 'no internal error after the drop');
});

t.test('record symbolizes a root process that started after the drop', async (t) => {
  if (!(await requireKernelFeature(t, 'root'))) return;
  if (!(await requireKernelFeature(t, 'perf_event'))) return;
  const dir = t.testdir({});
  const out = path.join(dir, 'host.folded');
  const bin = buildWorkload('hotspots');
  const rec = spawn(process.execPath, [cliPath, 'record', '-a', '-d', '6s', '--format', 'folded', '-o', out], { stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  rec.stderr.on('data', (d: Buffer) => (stderr += d));
  const done = new Promise<number | null>((resolve) => rec.once('exit', (code) => resolve(code)));
  for (let i = 0; i < 300 && !/capabilities after loading/.test(stderr); i++) await sleep(100);
  // Started by the test with full root capabilities after the drop: its /proc/PID/root is refused
  // to ebpfprof now, so its binary is opened by path (same device and inode).
  const late = spawn(bin, ['2'], { stdio: 'ignore' });
  await new Promise((resolve) => late.once('exit', resolve));
  const r = { status: await done, stderr };
  t.equal(r.status, 0, r.stderr);
  t.match(r.stderr, /capabilities after loading: .*CAP_PERFMON on all \d+ threads, no_new_privs set/);
  const hot = fs
    .readFileSync(out, 'utf8')
    .split('\n')
    .filter((l) => l.startsWith(`${path.basename(bin)};`));
  t.ok(hot.some((l) => /;main;work;hot_a( |;)/.test(l)), `its frames are symbolized: ${hot.slice(0, 2).join(' | ').slice(0, 300)}`);
});

t.test('--keep-capabilities all keeps everything, with a warning; doctor shows before and after', async (t) => {
  if (!(await requireKernelFeature(t, 'root'))) return;
  if (!(await requireKernelFeature(t, 'perf_event'))) return;
  const dir = t.testdir({});
  const r = spawnSync(process.execPath, [cliPath, 'record', '-d', '500ms', '--keep-capabilities', 'all', '-o', path.join(dir, 'x.pb.gz'), '--', 'sleep', '1'], { encoding: 'utf8', timeout: 60_000 });
  t.equal(r.status, 0, r.stderr);
  t.match(r.stderr, /warning: keeping .*CAP_SYS_ADMIN.* leaves strict mode \('ebpfprof verify' reports it as a high-severity finding\)/);
  t.match(r.stderr, /kept every capability \(--keep-capabilities all\)/);
  const d = spawnSync(process.execPath, [cliPath, 'doctor', '--json'], { encoding: 'utf8', timeout: 120_000 });
  const rep = JSON.parse(d.stdout) as { capabilities: { before: string[]; after: string[]; kept: { capability: string }[]; noNewPrivs: boolean; threads: number } };
  t.ok(rep.capabilities.before.includes('CAP_SYS_ADMIN'), 'before: full root');
  t.same(rep.capabilities.after, KEPT, 'after: what record keeps');
  t.same(inBitOrder(rep.capabilities.kept.map((k) => k.capability)), KEPT);
  t.equal(rep.capabilities.noNewPrivs, true);
  const text = spawnSync(process.execPath, [cliPath, 'doctor'], { encoding: 'utf8', timeout: 120_000 }).stdout;
  t.match(text, /^capabilities before loading: all \d+ \(full root\)$/m);
  t.match(text, new RegExp(`^capabilities after loading: ${KEPT.join(', ')} \\(dropped here as record does, on all \\d+ threads, no_new_privs set; the agent keeps CAP_BPF as well, for the tracers it loads while running\\)$`, 'm'));
});

t.test('the executable of a process whose exe link is refused: from auxv and maps', async (t) => {
  const { executableFromAuxv } = await import('../src/agent/process-resources.js');
  for (const pid of [process.pid, process.ppid]) {
    const exe = fs.readlinkSync(`/proc/${pid}/exe`);
    t.equal(executableFromAuxv(fs.readFileSync(`/proc/${pid}/auxv`), fs.readFileSync(`/proc/${pid}/maps`, 'latin1')), exe, `pid ${pid}: ${exe}`);
  }
  t.equal(executableFromAuxv(Buffer.alloc(16), ''), null, 'no AT_ENTRY');
  const auxv = Buffer.alloc(32);
  auxv.writeBigUInt64LE(9n, 0);
  auxv.writeBigUInt64LE(0x1000n, 8);
  t.equal(executableFromAuxv(auxv, '00001000-00002000 r-xp 00000000 fe:00 5 /usr/bin/x (deleted)\n'), '/usr/bin/x');
});
