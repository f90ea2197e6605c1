// SPDX-License-Identifier: Apache-2.0
// The ebpfprof command as users run it: real recordings read by the reference consumer, the viewer
// page in headless Chromium, and one clear line with a non-zero exit for every kind of bad input.
import t from 'tap';
import { spawn, spawnSync, SpawnSyncReturns } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { decodeProfile } from '../src/decode';
import { chromiumMissing, launchOffline, sandwichRow, waitForText, watch } from './helpers/chromium';
import { requireKernelFeature } from './helpers/kernel-feature';
import { cliPath, repoRoot } from './helpers/paths';
import { leafShares } from '../src/profile/analysis';
import { goBinary } from './helpers/tools';
import { buildWorkload, startWorkload } from './helpers/workloads';

function ebpfprof(args: string[], timeoutMs = 60_000): SpawnSyncReturns<string> {
  return spawnSync(process.execPath, [cliPath, ...args], { encoding: 'utf8', timeout: timeoutMs, cwd: repoRoot });
}

/** stderr minus progress lines. */
function errorLines(r: SpawnSyncReturns<string>): string[] {
  return r.stderr.split('\n').filter((l) => l.trim() !== '');
}

t.test('record -- CMD writes pprof that go tool pprof reads, hot function on top', async (t) => {
  if (!(await requireKernelFeature(t, 'perf_event'))) return;
  const dir = t.testdir({});
  const out = path.join(dir, 'cmd.pb.gz');
  const r = ebpfprof(['record', '-F', '199', '-o', out, '--', buildWorkload('hotspots'), '2']);
  t.equal(r.status, 0, r.stderr);
  t.equal(r.stdout.trim(), out, 'the profile path on stdout');
  t.match(r.stderr, /recorded \d+ samples .* from 1 processes/);
  // The only unsymbolized frames can be a sample inside the command's execve (old user registers,
  // new image): well under 1%.
  t.match(r.stderr, /lost 0 samples; 0 \(0\.0%\) had truncated stacks; \d+ \(0\.\d%\) had unsymbolized frames/);
  const top = spawnSync(goBinary(), ['tool', 'pprof', '-top', '-nodecount=5', out], { encoding: 'utf8' });
  t.equal(top.status, 0, top.stderr);
  const rows = top.stdout.split('\n').filter((l) => /^\s+[\d.]+m?s\s/.test(l));
  t.match(rows[0] ?? '', /\bhot_a$/, 'hot_a first');
  t.match(rows[1] ?? '', /\bhot_b$/, 'hot_b second');
  const flat = (row: string): number => Number(/([\d.]+)%/.exec(row)?.[1]);
  t.ok(Math.abs(flat(rows[0]!) - 75) <= 5 && Math.abs(flat(rows[1]!) - 25) <= 5, `flat 75/25: ${rows.slice(0, 2).join(' | ')}`);
  const traces = spawnSync(goBinary(), ['tool', 'pprof', '-traces', out], { encoding: 'utf8' }).stdout;
  t.match(traces, /process_name:\s+hotspots-fp\n\s*thread_name:\s+hotspots-fp\n\s*pid:\s+\d+\n\s*tid:\s+\d+/, 'process, thread, pid and tid labels');
  t.match(traces, /hot_a\n\s+work\n\s+main/, 'stack hot_a <- work <- main');
});

t.test('folded and speedscope output, and view: the page in Chromium shows the hot function', async (t) => {
  if (!(await requireKernelFeature(t, 'perf_event'))) return;
  const dir = t.testdir({});
  const w = startWorkload(buildWorkload('hotspots'), ['30']);
  t.teardown(() => w.child.kill());
  for (const format of ['folded', 'speedscope'] as const) {
    const out = path.join(dir, `p.${format}`);
    const r = ebpfprof(['record', '-p', String(w.pid), '-d', '2s', '-F', '199', '--format', format, '-o', out, '-q']);
    t.equal(r.status, 0, r.stderr);
    t.equal(r.stderr, '', '--quiet prints nothing on stderr');
    const p = decodeProfile(fs.readFileSync(out), out);
    t.ok((leafShares(p, p.samples).get('hot_a') ?? 0) > 65, `${format}: hot_a leads`);
    if (format === 'folded') t.match(fs.readFileSync(out, 'utf8'), /^hotspots-fp;.*main;work;hot_a \d+$/m, 'process;root;...;leaf count');
  }

  const pprof = path.join(dir, 'p.pb.gz');
  t.equal(ebpfprof(['record', '-p', String(w.pid), '-d', '2s', '-o', pprof, '-q']).status, 0);
  const v = ebpfprof(['view', pprof]);
  t.equal(v.status, 0, v.stderr);
  const page = v.stdout.trim();
  t.equal(page, path.join(dir, 'p.html'), 'page next to the profile, path on stdout');
  const missing = chromiumMissing();
  if (missing) return t.fail(missing);
  const context = await launchOffline(dir);
  try {
    const tab = context.pages()[0] ?? (await context.newPage());
    const seen = watch(tab);
    await tab.goto(`file://${page}#view=sandwich`);
    await waitForText(tab, 'hot_a');
    t.match((await sandwichRow(tab, 'hot_a'))?.row ?? '', /hot_a/, 'hot_a listed in the viewer');
    t.same(seen.errors, [], 'no page errors');
  } finally {
    await context.close();
  }
});

t.test('bad input: one clear line and a non-zero exit', async (t) => {
  const dir = t.testdir({ 'existing-dir': {} });
  const cases: Array<[string, string[], number, RegExp]> = [
    ['no such pid', ['record', '-p', '4000000', '-d', '1s', '-o', path.join(dir, 'x.pb.gz')], 1, /^ebpfprof: no process with pid 4000000$/],
    ['pid not a number', ['record', '-p', 'abc'], 2, /^ebpfprof: --pid must be an integer/],
    ['frequency 0', ['record', '-a', '-F', '0', '-o', path.join(dir, 'x.pb.gz')], 2, /^ebpfprof: --freq must be from 1 to 1000 Hz, got 0$/],
    ['frequency 1001', ['record', '-a', '-F', '1001', '-o', path.join(dir, 'x.pb.gz')], 2, /^ebpfprof: --freq must be from 1 to 1000 Hz, got 1001$/],
    ['unwritable output', ['record', '-a', '-d', '1s', '-o', '/nonexistent-dir/x.pb.gz'], 1, /^ebpfprof: cannot write \/nonexistent-dir\/x\.pb\.gz: its directory does not exist; choose another path with -o$/],
    ['output is a directory', ['record', '-a', '-d', '1s', '-o', path.join(dir, 'existing-dir')], 1, /^ebpfprof: cannot write .*existing-dir: it exists and is not a regular file/],
    ['two targets', ['record', '-a', '-p', '1'], 2, /^ebpfprof: say what to profile with exactly one of/],
    ['no target', ['record'], 2, /^ebpfprof: say what to profile with exactly one of/],
    ['bad duration', ['record', '-a', '-d', '10 parsecs'], 2, /^ebpfprof: --duration must be a duration such as 10s/],
    ['bad format', ['record', '-a', '--format', 'svg'], 2, /^ebpfprof: --format must be one of pprof, folded, speedscope, otlp, got "svg"$/],
    ['command not found', ['record', '-o', path.join(dir, 'x.pb.gz'), '--', 'no-such-command-xyz'], 2, /^ebpfprof: command not found: no-such-command-xyz$/],
    ['view a missing file', ['view', path.join(dir, 'missing.pb.gz')], 1, /^ebpfprof: cannot read .*missing\.pb\.gz: no such file$/],
    ['view garbage', ['view', path.join(repoRoot, 'package.json')], 1, /^ebpfprof: .*package\.json/],
    ['unknown option', ['record', '--frobnicate'], 2, /unknown option '--frobnicate'/],
  ];
  for (const [name, args, status, message] of cases) {
    const r = ebpfprof(args);
    const lines = errorLines(r);
    t.equal(r.status, status, `${name}: exit ${status}`);
    t.equal(lines.length, 1, `${name}: one line (${JSON.stringify(lines)})`);
    t.match(lines[0] ?? '', message, name);
    t.notOk(fs.existsSync(path.join(dir, 'x.pb.gz')), `${name}: nothing written`);
  }
});

t.test('the pid exits during recording: the profile so far is written, exit 1 with one line', async (t) => {
  if (!(await requireKernelFeature(t, 'perf_event'))) return;
  const dir = t.testdir({});
  const out = path.join(dir, 'gone.pb.gz');
  // The target ends once the recording has sampled it for a while, not after a fixed time: on a
  // loaded machine, starting ebpfprof (loading and verifying its programs) can take seconds.
  const w = startWorkload(buildWorkload('hotspots'), ['60']);
  t.teardown(() => w.child.kill('SIGKILL'));
  const rec = spawn(process.execPath, [cliPath, 'record', '-p', String(w.pid), '-F', '199', '-d', '60s', '-o', out], { cwd: repoRoot, stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  rec.stderr!.on('data', (d: Buffer) => {
    stderr += d.toString();
    const progress = [...stderr.matchAll(/samples (\d+)/g)].at(-1);
    if (progress && Number(progress[1]) >= 100) w.child.kill('SIGKILL');
  });
  const status = await new Promise<number | null>((resolve) => rec.once('exit', (code) => resolve(code)));
  t.equal(status, 1, stderr);
  t.match(stderr, new RegExp(`ebpfprof: process ${w.pid} exited after [\\d.]+ s; the profile of its \\d+ samples was written`));
  const p = decodeProfile(fs.readFileSync(out), out);
  const hotA = leafShares(p, p.samples).get('hot_a') ?? 0;
  t.ok(hotA > 60, `the samples before the exit are in the file (hot_a ${hotA.toFixed(1)}%)`);
});

t.test('npx ebpfprof works from the checkout (package bin)', async (t) => {
  const r = spawnSync('npx', ['--no-install', 'ebpfprof', '--help'], { encoding: 'utf8', cwd: repoRoot, timeout: 60_000 });
  t.equal(r.status, 0, r.stderr);
  for (const cmd of ['record', 'view', 'doctor']) t.match(r.stdout, new RegExp(`^\\s+${cmd}\\b`, 'm'), `lists ${cmd}`);
});
