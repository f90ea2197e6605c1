// SPDX-License-Identifier: Apache-2.0
// Process lifecycle tracked once (src/process/lifecycle.ts): fork, exec and exit of real processes
// arrive with their start time; a reused pid is a new process, never merged with the old one; exited
// processes are freed after a window of grace.
import t from 'tap';
import { execFileSync, spawn } from 'node:child_process';
import * as fs from 'node:fs';
import { setTimeout as sleep } from 'node:timers/promises';
import { ProcessLifecycle, ProcessTracker, type ProcessInfo } from '../src/process/lifecycle';
import type { LifecycleEvent } from '../src/process/lifecycle-records';
import { requireKernelFeature } from './helpers/kernel-feature';

const ev = (type: LifecycleEvent['type'], pid: number, startNs: number, extra: Partial<LifecycleEvent> = {}): LifecycleEvent => ({
  type,
  pid,
  ppid: 1,
  execId: 0,
  startNs,
  timeNs: 0,
  exitCode: 0,
  comm: 'x',
  ...extra,
});

t.test('the tracker: pid reuse makes a new process; listeners hear exec and exit; sweep frees', async (t) => {
  const tr = new ProcessTracker();
  const heard: string[] = [];
  tr.subscribe({ onExec: (p) => heard.push(`exec ${p.pid}@${p.startNs} ${p.comm}`), onExit: (p) => heard.push(`exit ${p.pid}@${p.startNs}`) });
  tr.handle(ev('fork', 100, 5, { comm: 'sh' }));
  tr.handle(ev('exec', 100, 5, { comm: 'ls', execId: 1 }));
  tr.handle(ev('exit', 100, 5, { comm: 'ls' }));
  tr.handle(ev('fork', 100, 9, { comm: 'other' }));
  t.equal(tr.pidReuses, 1, 'the second process with pid 100 is a reuse');
  t.equal(tr.get(100)?.startNs, 9, 'the pid now names the new process');
  t.equal(tr.identify(100, 5)?.comm, 'ls', 'the old one is still known by (pid, start)');
  t.equal(tr.identify(100, 5)?.exited, true);
  t.equal(tr.identify(100, 9)?.exited, false, 'and they are not merged');
  t.same(heard, ['exec 100@5 ls', 'exit 100@5']);
  t.equal(tr.sweep(), 0, 'the first sweep after the exit keeps it (one window of grace)');
  t.equal(tr.identify(100, 5)?.exited, true, 'still known by (pid, start)');
  t.equal(tr.sweep(), 1, 'the next sweep frees the exited process');
  t.equal(tr.identify(100, 5), undefined);
  t.equal(tr.get(100)?.startNs, 9, 'the live one stays');
});

t.test('real processes: fork, exec and exit arrive with matching start times', async (t) => {
  if (!(await requireKernelFeature(t, 'btf'))) return;
  if (!(await requireKernelFeature(t, 'root'))) return;
  const lc = await ProcessLifecycle.open();
  t.teardown(() => lc.close());
  t.ok(lc.hooks.every((h) => h.method === 'raw_tp' || h.method === 'tp_btf'), `attached: ${lc.hooks.map((h) => `${h.hook} ${h.method}`).join(', ')}`);
  const execs: ProcessInfo[] = [];
  const exits: ProcessInfo[] = [];
  lc.tracker.subscribe({ onExec: (p) => execs.push({ ...p }), onExit: (p) => exits.push({ ...p }) });
  // sh forks a child that execs /bin/true; sh itself exits with 3.
  const child = spawn('/bin/sh', ['-c', '/bin/true; exit 3']);
  const pid = child.pid!;
  await new Promise((r) => child.once('exit', r));
  for (let i = 0; i < 100 && !exits.some((p) => p.pid === pid); i++) await sleep(20);
  const shExit = exits.find((p) => p.pid === pid);
  t.ok(shExit, 'the shell\'s exit arrived');
  t.equal(shExit?.exitStatus, 3 << 8, 'with its wait status');
  const trueExec = execs.find((p) => p.ppid === pid && p.comm === 'true');
  t.ok(trueExec, 'its child exec\'d /bin/true, as a process of its own');
  // The kernel's start time in ticks is what /proc/PID/stat shows (ns / 1e7).
  t.ok(shExit!.startNs > 0, 'start times are set');
  const st = lc.stats();
  t.equal(st.ringBufferFull + st.recordsMalformed + st.droppedRecords, 0, 'nothing lost');
});

t.test('a pid reused on the real kernel is a new process', async (t) => {
  if (!(await requireKernelFeature(t, 'btf'))) return;
  if (!(await requireKernelFeature(t, 'root'))) return;
  const lc = await ProcessLifecycle.open();
  t.teardown(() => lc.close());
  // ns_last_pid makes the next fork take a chosen pid: the pid of a process that just exited.
  // Another fork on the machine may take it first; a few attempts are enough.
  const exited: ProcessInfo[] = [];
  lc.tracker.subscribe({ onExit: (p) => exited.push({ ...p }) });
  let reusedPid = 0;
  for (let attempt = 0; attempt < 20 && reusedPid === 0; attempt++) {
    const a = spawn('/bin/sleep', ['0']);
    const pid = a.pid!;
    await new Promise((r) => a.once('exit', r));
    fs.writeFileSync('/proc/sys/kernel/ns_last_pid', String(pid - 1));
    const b = execFileSync('/bin/sh', ['-c', 'echo $$; exec /bin/sleep 0.2'], { encoding: 'utf8' });
    if (Number(b.trim()) === pid) reusedPid = pid;
  }
  t.ok(reusedPid > 0, 'a pid was reused');
  if (reusedPid === 0) return;
  for (let i = 0; i < 100 && exited.filter((p) => p.pid === reusedPid).length < 2; i++) await sleep(20);
  const both = exited.filter((p) => p.pid === reusedPid);
  t.equal(both.length, 2, 'two processes with that pid exited');
  t.not(both[0]!.startNs, both[1]!.startNs, 'with different start times');
  t.ok(lc.tracker.pidReuses >= 1, `the tracker saw the reuse (${lc.tracker.pidReuses})`);
  t.equal(lc.tracker.identify(reusedPid, both[0]!.startNs)?.comm, 'sleep', 'the first is still known by (pid, start)');
  t.equal(lc.tracker.get(reusedPid)?.startNs, both[1]!.startNs, 'the pid names the newer process');
});
