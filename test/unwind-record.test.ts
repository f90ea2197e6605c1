// SPDX-License-Identifier: Apache-2.0
// Complete user stacks on the real kernel: code without frame pointers (our workloads built
// -O2 -fomit-frame-pointer, Debian's libc), mixed frame-pointer / table code, Go (stripped and not)
// and Node.js JIT code with and without the perf map the runtime writes. Each workload's call chain
// is known by construction; every test also records with frame pointers only (--call-graph fp) so
// that it could not pass without the unwind tables.
import t from 'tap';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { count, framesOf, leafShares, namesOf, samplesOf, shareWith, shareWithChain } from '../src/profile/analysis';
import type { Profile, Sample } from '../src/profile/model';
import { record, RecordResult } from '../src/record/recorder';
import type { UnwindMode } from '../src/sampler/cpu-sampler';
import { buildGoFixture, nmAddress } from './fixtures/elf/fixtures';
import { requireKernelFeature } from './helpers/kernel-feature';
import { buildDir, buildWorkload, run, spawn, startWorkload, Workload } from './helpers/workloads';
import { workloadsDir } from './helpers/paths';

/** No frame pointers anywhere in our code; unwind tables (.eh_frame) as every GCC build has. */
const NO_FRAME_POINTER_FLAGS = ['-O2', '-g', '-fomit-frame-pointer'];

function recordPid(pid: number, callGraph: UnwindMode, durationMs = 3000): Promise<RecordResult> {
  return record({ target: { kind: 'pid', pid }, frequencyHz: 199, durationMs, callGraph });
}

/** Percent of samples whose stack starts at the process entry and holds `chain` consecutively. */
function fromEntry(p: Profile, samples: Sample[], chains: string[][]): number {
  const total = count(samples);
  let hit = 0;
  for (const s of samples) {
    const names = framesOf(p, s).filter((f) => f.kind !== 'kernel').map((f) => f.name);
    if (names[0] !== '_start') continue;
    if (chains.some((c) => names.some((_, i) => c.every((n, j) => names[i + j] === n)))) hit += s.count;
  }
  return total === 0 ? 0 : (100 * hit) / total;
}

t.test('no frame pointers anywhere: >= 95% of samples reach main and the process entry', async (t) => {
  if (!(await requireKernelFeature(t, 'perf_event'))) return;
  const bin = buildWorkload('deepchain', NO_FRAME_POINTER_FLAGS, 'nofp');
  const w = startWorkload(bin, ['60']);
  t.teardown(() => w.child.kill());
  // The build really has no frame pointers: no function of ours pushes rbp.
  const disasm = run('objdump', ['-d', '--no-show-raw-insn', bin]);
  for (const fn of ['level1', 'level2', 'level3', 'leaf_a']) {
    const body = new RegExp(`<${fn}>:\\n([\\s\\S]*?)\\n\\n`).exec(disasm)?.[1] ?? '';
    t.notMatch(body, /push\s+%rbp/, `${fn} keeps no frame pointer`);
  }

  const { profile, summary } = await recordPid(w.pid, 'dwarf');
  t.equal(summary.callGraph, 'dwarf', 'unwind tables in use');
  t.equal(summary.callGraphFallback, null);
  const mine = samplesOf(profile, w.pid);
  t.ok(count(mine) > 100, `enough samples (${count(mine)})`);
  const chain = [
    ['main', 'level1', 'level2', 'level3', 'leaf_a'],
    ['main', 'level1', 'level2', 'level3', 'leaf_b'],
  ];
  const complete = fromEntry(profile, mine, chain);
  t.ok(complete >= 95, `>= 95% of samples read _start ... main -> level1 -> level2 -> level3 -> leaf (got ${complete.toFixed(1)}%)`);
  const shares = leafShares(profile, mine);
  const a = shares.get('leaf_a') ?? 0;
  const b = shares.get('leaf_b') ?? 0;
  t.ok(Math.abs(a - 75) <= 6, `leaf_a ~75% (got ${a.toFixed(1)}%)`);
  t.ok(Math.abs(b - 25) <= 6, `leaf_b ~25% (got ${b.toFixed(1)}%)`);
  const libc = shareWith(profile, mine, (f) => f.name === '__libc_start_call_main');
  t.ok(libc >= 95, `libc's frames (no frame pointers in Debian's build) are walked too (${libc.toFixed(1)}%)`);
  t.equal(summary.sampler.unwindNoProcess, 0, 'the --pid target was registered before sampling started');
  t.ok(summary.sampler.unwindEndOk >= 0.95 * (summary.sampler.aggregated + summary.sampler.ringBufferSent), 'walks end at the outermost frame');
  t.ok(summary.unwinder !== null && summary.unwinder.binariesWithTables >= 2, 'tables for the executable and libc');
  t.equal(summary.unsymbolizedSamples, 0, 'every frame symbolized');

  // The same process with frame pointers only: the chain is lost, so the numbers above are the tables' doing.
  const fp = await recordPid(w.pid, 'fp', 2000);
  t.equal(fp.summary.callGraph, 'fp');
  t.equal(fp.summary.unwinder, null);
  const fpComplete = fromEntry(fp.profile, samplesOf(fp.profile, w.pid), chain);
  t.ok(fpComplete < 50, `frame pointers alone reach main far less often (${fpComplete.toFixed(1)}%)`);
});

t.test('mixed stacks: frame-pointer executable -> library without frame pointers -> callback', async (t) => {
  if (!(await requireKernelFeature(t, 'perf_event'))) return;
  const lib = path.join(buildDir, 'libmixed.so');
  fs.mkdirSync(buildDir, { recursive: true });
  run('gcc', [...NO_FRAME_POINTER_FLAGS, '-fPIC', '-shared', '-o', lib, path.join(workloadsDir, 'mixed-lib.c')]);
  // -fno-asynchronous-unwind-tables: no unwind info for the executable's own functions, so the
  // walker must step by frame pointer there and by table in the library.
  // No -g either: .debug_frame would describe them.
  const bin = buildWorkload('mixed', ['-O0', '-fno-omit-frame-pointer', '-fno-asynchronous-unwind-tables', '-fno-unwind-tables'], 'fp-nocfi', [`-L${buildDir}`, '-lmixed', `-Wl,-rpath,${buildDir}`]);
  const outer = nmAddress(bin, 'outer');
  const covered = [...run('readelf', ['--debug-dump=frames', bin]).matchAll(/pc=([0-9a-f]+)\.\.([0-9a-f]+)/g)].some((m) => outer >= parseInt(m[1]!, 16) && outer < parseInt(m[2]!, 16));
  t.notOk(covered, 'no FDE covers the executable\'s own functions');
  const w = startWorkload(bin, ['60']);
  t.teardown(() => w.child.kill());
  const chain = [['main', 'outer', 'middle', 'callback', 'spin']];

  const { profile, summary } = await recordPid(w.pid, 'dwarf');
  const mine = samplesOf(profile, w.pid);
  t.ok(count(mine) > 100, `enough samples (${count(mine)})`);
  const complete = fromEntry(profile, mine, chain);
  t.ok(complete >= 95, `>= 95% read _start ... main -> outer -> middle -> callback -> spin (got ${complete.toFixed(1)}%)`);
  t.ok(summary.sampler.unwindFpFrames > 0, `frame-pointer steps where no table covers the pc (${summary.sampler.unwindFpFrames})`);
  t.ok(summary.sampler.unwindTableFrames > 0, `table steps in the library and libc (${summary.sampler.unwindTableFrames})`);

  const fp = await recordPid(w.pid, 'fp', 2000);
  const fpMine = samplesOf(fp.profile, w.pid);
  const fpComplete = shareWithChain(fp.profile, fpMine, chain[0]!);
  t.ok(fpComplete < 50, `frame pointers alone lose 'outer', which called the library (${fpComplete.toFixed(1)}%)`);
});

/** Names of the stack under the hottest leaf, root first, from the first frame of `from` on. */
function hottestChain(p: Profile, samples: Sample[], from: string): string {
  const byStack = new Map<string, number>();
  for (const s of samples) {
    const names = namesOf(p, s).filter((_, i) => framesOf(p, s)[i]!.kind !== 'kernel');
    const at = names.indexOf(from);
    if (at < 0) continue;
    const key = names.slice(at).join(';');
    byStack.set(key, (byStack.get(key) ?? 0) + s.count);
  }
  return [...byStack.entries()].sort((a, b) => b[1] - a[1])[0]?.[0] ?? '';
}

async function spawnGo(binary: string): Promise<Workload> {
  const child = spawn(binary, [], { stdio: ['ignore', 'pipe', 'ignore'] });
  await new Promise<void>((resolve, reject) => {
    child.stdout!.once('data', () => resolve());
    child.once('exit', () => reject(new Error(`${binary} exited early`)));
  });
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  return { child, pid: child.pid!, exited };
}

t.test('Go, stripped and not: the same function names on top', async (t) => {
  if (!(await requireKernelFeature(t, 'perf_event'))) return;
  const go = buildGoFixture(t.testdir({}));
  const chains: Record<string, string> = {};
  for (const [name, binary] of Object.entries({ full: go.full, stripped: go.stripped })) {
    const w = await spawnGo(binary);
    try {
      const { profile, summary } = await recordPid(w.pid, 'dwarf', 2500);
      const mine = samplesOf(profile, w.pid);
      const leaf = leafShares(profile, mine);
      t.ok((leaf.get('main.spinGopher') ?? 0) >= 80, `${name}: main.spinGopher on top (${(leaf.get('main.spinGopher') ?? 0).toFixed(1)}%)`);
      const top = framesOf(profile, mine.find((s) => namesOf(profile, s).at(-1) === 'main.spinGopher')!).at(-1)!;
      t.equal(top.kind, 'go', `${name}: frames of Go code are of kind go`);
      chains[name] = hottestChain(profile, mine, 'runtime.main');
      const unnamed = [...new Set(mine.flatMap((s) => framesOf(profile, s)).filter((f) => !f.symbolized).map((f) => f.name))];
      t.equal(summary.unsymbolizedSamples, 0, `${name}: every frame named (.symtab or .gopclntab) ${unnamed.join(', ')}`);
    } finally {
      w.child.kill('SIGKILL');
      await w.exited;
    }
  }
  t.equal(chains['full'], 'runtime.main;main.main;main.spinGopher', `unstripped: runtime.main -> main.main -> main.spinGopher (${chains['full']})`);
  t.equal(chains['stripped'], chains['full'], 'stripped: the same chain from .gopclntab alone');
});

const NODE_SCRIPT = `
function hotJsFunction(n) { let s = 0; for (let i = 0; i < n; i++) s += Math.sqrt(i) * (i & 7); return s; }
function callerJsFunction() { return hotJsFunction(200000); }
let total = 0;
console.log('ready');
const end = Date.now() + 60000;
while (Date.now() < end) total += callerJsFunction();
`;

async function spawnNode(flags: string[]): Promise<Workload> {
  // Without tap's NODE_OPTIONS: the workload is a plain node process.
  const env = { PATH: process.env['PATH'] ?? '/usr/bin:/bin' };
  const child = spawn(process.execPath, [...flags, '-e', NODE_SCRIPT], { stdio: ['ignore', 'pipe', 'ignore'], env });
  await new Promise<void>((resolve, reject) => {
    child.stdout!.once('data', () => resolve());
    child.once('exit', () => reject(new Error('node exited early')));
  });
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  return { child, pid: child.pid!, exited };
}

t.test('Node.js: JavaScript names from the perf map it writes; without one, labelled JIT frames', async (t) => {
  if (!(await requireKernelFeature(t, 'perf_event'))) return;
  // --no-turbo-inlining: each JavaScript function keeps its own frame (else V8 folds the whole
  // loop into one compiled frame and there is no JavaScript call chain to check);
  // --interpreted-frames-native-stack: a function still in the interpreter is named too (else it
  // is one of V8's shared interpreter trampolines).
  const withMap = await spawnNode(['--perf-basic-prof', '--interpreted-frames-native-stack', '--no-turbo-inlining']);
  const mapFile = `/tmp/perf-${withMap.pid}.map`;
  try {
    // Let the hot function be compiled (and its map line written) before recording.
    await new Promise((r) => setTimeout(r, 1000));
    const { profile } = await recordPid(withMap.pid, 'dwarf', 3000);
    const mine = samplesOf(profile, withMap.pid);
    const named = shareWith(profile, mine, (f) => f.kind === 'jit' && /hotJsFunction/.test(f.name));
    t.ok(named >= 60, `hotJsFunction named in ${named.toFixed(1)}% of samples`);
    const chained = shareWith(profile, mine, (f, i, all) => /hotJsFunction/.test(f.name) && /callerJsFunction/.test(all[i - 1]?.name ?? ''));
    t.ok(chained >= 60, `with its JavaScript caller right under it (${chained.toFixed(1)}%)`);
    const rooted = shareWith(profile, mine, (f) => f.name === 'main' || f.name === '_start');
    t.ok(rooted >= 80, `stacks go on through V8 to node's main (${rooted.toFixed(1)}%)`);
  } finally {
    withMap.child.kill('SIGKILL');
    await withMap.exited;
    fs.rmSync(mapFile, { force: true });
  }

  const without = await spawnNode(['--no-turbo-inlining']);
  try {
    await new Promise((r) => setTimeout(r, 1000));
    t.notOk(fs.existsSync(`/tmp/perf-${without.pid}.map`), 'this process writes no perf map');
    const { profile } = await recordPid(without.pid, 'dwarf', 3000);
    const mine = samplesOf(profile, without.pid);
    const jit = shareWith(profile, mine, (f) => f.kind === 'jit');
    t.ok(jit >= 50, `JIT frames present in ${jit.toFixed(1)}% of samples, counted`);
    const jitFrames = mine.flatMap((s) => framesOf(profile, s)).filter((f) => f.kind === 'jit');
    t.ok(jitFrames.every((f) => /^\[jit\]\+0x[0-9a-f]+$/.test(f.name)), 'each is labelled [jit]+0x..., not given a random native name');
    t.ok(jitFrames.every((f) => !f.symbolized), 'and counted as unsymbolized');
    // No JIT address was passed off as a symbol of a file: native frames all come from file mappings.
    const native = mine.flatMap((s) => framesOf(profile, s)).filter((f) => f.kind === 'native' && f.symbolized);
    t.ok(native.every((f) => f.mapping >= 0 && !profile.mappings[f.mapping]!.path.startsWith('[')), 'symbolized native frames are all file-backed');
  } finally {
    without.child.kill('SIGKILL');
    await without.exited;
  }
});
