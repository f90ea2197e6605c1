// SPDX-License-Identifier: Apache-2.0
// The Symbolizer on real processes: compiled fixtures spinning in known functions (PIE, non-PIE,
// shared library at an ASLR base, C++, Go), a process in its own mount namespace whose binary exists
// only there, a process that exits (and whose binary is deleted) before its addresses are resolved,
// Node.js JIT code through the perf map it writes itself (also from inside a pid+mount namespace),
// anonymous executable memory without a perf map, the vdso, and the running kernel.
import { execFileSync, spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import t from 'tap';
import { demangle } from '../src/symbolize/demangle';
import { Symbolizer } from '../src/symbolize/symbolizer';
import { fixturesDir } from './helpers/paths';
import { buildFixtures, buildGoFixture, buildIdOf, loadSegments, nmAddress, nmSymbols, printedAddresses, readMaps, runtimeAddress, spawnReady } from './fixtures/elf/fixtures';

const fx = buildFixtures();

t.test('PIE and non-PIE executables: names at nm address + load bias, return addresses look up the call', async (t) => {
  for (const file of [fx.pie, fx.nopie]) {
    const proc = await spawnReady(file);
    const sym = new Symbolizer();
    try {
      const printed = printedAddresses(proc.lines);
      const alpha = runtimeAddress(proc.pid, file, file, nmAddress(file, 'spin_alpha'));
      const beta = runtimeAddress(proc.pid, file, file, nmAddress(file, 'spin_beta'));
      t.equal(alpha, printed.get('spin_alpha'), `${path.basename(file)}: nm + load bias equals the address the process printed`);
      t.equal(beta, printed.get('spin_beta'));
      sym.observeProcess(proc.pid);
      const f = sym.resolveUser(proc.pid, alpha + 7, false);
      t.match(f, { kind: 'native', name: 'spin_alpha', systemName: '', symbolized: true });
      t.equal(f.mapping!.path, file);
      t.equal(f.mapping!.buildId, buildIdOf(file));
      t.ok(f.mapping!.start <= BigInt(alpha) && BigInt(alpha) < f.mapping!.limit, 'the mapping holds the address');
      // spin_beta follows spin_alpha directly: a return address at beta's first byte is a call in alpha.
      const a = nmSymbols(file).find((s) => s.name === 'spin_alpha')!;
      t.equal(a.address + a.size, nmAddress(file, 'spin_beta'), 'precondition: adjacent functions');
      t.equal(sym.resolveUser(proc.pid, beta, false).name, 'spin_beta');
      t.equal(sym.resolveUser(proc.pid, beta, true).name, 'spin_alpha');
      const again = sym.resolveUser(proc.pid, alpha + 7, false);
      t.equal(again, f, 'repeated lookups come from the cache');
      const st = sym.stats();
      t.equal(st.cacheHits, 1);
      t.equal(st.framesResolved.native, 4);
      t.equal(st.binaries.symbolTablesLoaded, 1);
    } finally {
      sym.close();
      await proc.stop();
    }
  }
});

t.test('shared library at an ASLR base', async (t) => {
  const proc = await spawnReady(fx.withLib);
  const sym = new Symbolizer();
  try {
    const printed = printedAddresses(proc.lines);
    const work = runtimeAddress(proc.pid, fx.lib, fx.lib, nmAddress(fx.lib, 'spinlib_work'));
    t.equal(work, printed.get('spinlib_work'), 'nm + load bias equals the printed address');
    const inner = runtimeAddress(proc.pid, fx.lib, fx.lib, nmAddress(fx.lib, 'spinlib_inner'));
    const libMap = readMaps(proc.pid).find((m) => m.path === fx.lib && m.perms.includes('x'))!;
    t.not(libMap.start, 0x1000 + libMap.offset, 'loaded at a randomized base');
    t.match(sym.resolveUser(proc.pid, work + 2, false), { name: 'spinlib_work', kind: 'native', symbolized: true, mapping: { path: fx.lib, buildId: buildIdOf(fx.lib) } });
    t.match(sym.resolveUser(proc.pid, inner + 9, true), { name: 'spinlib_inner', symbolized: true });
    const main = runtimeAddress(proc.pid, fx.withLib, fx.withLib, nmAddress(fx.withLib, 'main'));
    t.match(sym.resolveUser(proc.pid, main + 4, false), { name: 'main', mapping: { path: fx.withLib } });
    // libc through .dynsym or a debug file: whatever it is, a known export resolves to its own name.
    const libc = readMaps(proc.pid).find((m) => /\/libc\.so\.6$/.test(m.path) && m.perms.includes('x'))!;
    const real = fs.realpathSync(libc.path);
    const pause = nmSymbols(real, true).find((s) => s.name === 'pause' || s.name === '__libc_pause')!;
    const addr = runtimeAddress(proc.pid, real, libc.path, pause.address);
    t.match(sym.resolveUser(proc.pid, addr + 1, false), { symbolized: true, kind: 'native' });
  } finally {
    sym.close();
    await proc.stop();
  }
});

t.test('C++: names go through demangle(), systemName keeps the mangled symbol', async (t) => {
  const proc = await spawnReady(fx.cxx);
  const sym = new Symbolizer();
  try {
    const mangled = nmSymbols(fx.cxx).filter((s) => s.name.startsWith('_ZN7fixture'));
    t.ok(mangled.length >= 4, 'method, template instance and two overloads');
    for (const s of mangled) {
      const f = sym.resolveUser(proc.pid, runtimeAddress(proc.pid, fx.cxx, fx.cxx, s.address) + 1, false);
      const want = demangle(s.name);
      t.equal(f.name, want, s.name);
      t.equal(f.systemName, want === s.name ? '' : s.name);
      t.equal(f.symbolized, true);
    }
  } finally {
    sym.close();
    await proc.stop();
  }
});

t.test('Go: kind go, names from .gopclntab of a stripped binary', async (t) => {
  const go = buildGoFixture(fx.dir);
  const proc = await spawnReady(go.stripped);
  const sym = new Symbolizer();
  try {
    const vaddr = nmAddress(go.full, 'main.spinGopher');
    const addr = runtimeAddress(proc.pid, go.stripped, go.stripped, vaddr);
    t.match(sym.resolveUser(proc.pid, addr + 3, false), { name: 'main.spinGopher', kind: 'go', symbolized: true });
    t.equal(sym.stats().binaries.symbolSources.gopclntab, 1);
  } finally {
    sym.close();
    await proc.stop();
  }
});

t.test('a process in its own mount namespace, binary at a path the host does not have', async (t) => {
  const inside = '/mnt/only-here/spin-pie';
  t.equal(fs.existsSync(inside), false, 'precondition: the host has no such path');
  const proc = await spawnReady('unshare', ['--mount', '--propagation', 'private', 'sh', '-c', `mount -t tmpfs none /mnt && mkdir /mnt/only-here && cp ${fx.pie} /mnt/only-here/ && exec ${inside}`]);
  const sym = new Symbolizer();
  try {
    t.ok(readMaps(proc.pid).some((m) => m.path === inside), 'the process maps the namespaced path');
    t.equal(fs.existsSync(inside), false, 'still not on the host');
    const alpha = runtimeAddress(proc.pid, fx.pie, inside, nmAddress(fx.pie, 'spin_alpha'));
    t.equal(alpha, printedAddresses(proc.lines).get('spin_alpha'));
    t.match(sym.resolveUser(proc.pid, alpha + 5, false), { name: 'spin_alpha', symbolized: true, mapping: { path: inside, buildId: buildIdOf(fx.pie) } });
  } finally {
    sym.close();
    await proc.stop();
  }
});

t.test('a process that exited after observeProcess(), its binary deleted: symbols still resolve', async (t) => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'ebpfprof-exit-'));
  const bin = path.join(dir, 'short-lived');
  fs.copyFileSync(fx.withLib, bin);
  const proc = await spawnReady(bin);
  const sym = new Symbolizer();
  const late = new Symbolizer();
  try {
    const alpha = runtimeAddress(proc.pid, bin, bin, nmAddress(bin, 'spin_alpha'));
    const work = runtimeAddress(proc.pid, fx.lib, fx.lib, nmAddress(fx.lib, 'spinlib_work'));
    sym.observeProcess(proc.pid);
    await proc.stop();
    fs.rmSync(dir, { recursive: true });
    t.equal(fs.existsSync(`/proc/${proc.pid}`), false, 'the process is gone');
    t.equal(fs.existsSync(bin), false, 'its binary is gone');
    t.match(sym.resolveUser(proc.pid, alpha + 5, false), { name: 'spin_alpha', symbolized: true, mapping: { path: bin } });
    t.match(sym.resolveUser(proc.pid, work + 5, false), { name: 'spinlib_work', symbolized: true });
    t.equal(sym.stats().binaries.symbolTablesLoaded, 2, 'tables were built after the exit, from kept descriptors');
    // Without the snapshot there is nothing to go on, and that is counted.
    t.match(late.resolveUser(proc.pid, alpha + 5, false), { symbolized: false, name: `[unknown]+0x${(alpha + 5).toString(16)}`, mapping: null });
    t.equal(late.stats().framesUnresolved['no-process'], 1);
    // forgetProcess drops the per-process state.
    sym.forgetProcess(proc.pid);
    t.match(sym.resolveUser(proc.pid, alpha + 5, false), { symbolized: false });
    t.equal(sym.stats().processesForgotten, 1);
  } finally {
    sym.close();
    late.close();
  }
});

const NODE_SCRIPT = `
function hotJsFunction(n) { let s = 0; for (let i = 0; i < n; i++) s += Math.sqrt(i) * (i & 7); return s; }
let total = 0;
for (let i = 0; i < 2000; i++) total += hotJsFunction(1000);
console.log('ready');
setInterval(() => { total += hotJsFunction(1000); }, 50);
`;

/**
 * Waits (bounded number of polls, no timing assertion) until a perf map names hotJsFunction as
 * compiled code ("JS:*" optimized or "JS:^" baseline, in executable memory) — `interpreted` asks for
 * the "JS:~" entry instead, which V8 lists at the function's bytecode in the (non-executable) heap.
 */
async function perfMapLine(file: string, interpreted = false): Promise<{ start: number; size: number; name: string }> {
  const want = interpreted ? /^([0-9a-f]+) ([0-9a-f]+) (JS:~hotJsFunction.*)$/ : /^([0-9a-f]+) ([0-9a-f]+) (JS:[*^]hotJsFunction.*)$/;
  for (let i = 0; i < 400; i++) {
    if (fs.existsSync(file)) {
      for (const line of fs.readFileSync(file, 'utf8').split('\n')) {
        const m = want.exec(line);
        if (m !== null) return { start: parseInt(m[1]!, 16), size: parseInt(m[2]!, 16), name: m[3]! };
      }
    }
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`${file} never named hotJsFunction`);
}

function inAnonymousMapping(pid: number, address: number): boolean {
  const m = readMaps(pid).find((x) => address >= x.start && address < x.end);
  return m !== undefined && (m.path === '' || m.path.startsWith('[anon:'));
}

t.test('Node.js JIT code through the perf map the runtime writes itself', async (t) => {
  const proc = await spawnReady(process.execPath, ['--perf-basic-prof', '-e', NODE_SCRIPT]);
  const mapFile = `/tmp/perf-${proc.pid}.map`;
  const sym = new Symbolizer();
  try {
    const line = await perfMapLine(mapFile);
    t.ok(inAnonymousMapping(proc.pid, line.start), 'JIT code lives in anonymous memory');
    t.ok(readMaps(proc.pid).find((m) => line.start >= m.start && line.start < m.end)!.perms.includes('x'), 'compiled code is executable');
    sym.observeProcess(proc.pid);
    const f = sym.resolveUser(proc.pid, line.start + Math.min(3, line.size - 1), false);
    t.match(f, { kind: 'jit', symbolized: true, systemName: '', mapping: { path: '[jit]' } });
    // Several lines can cover the address over time (recompilation); the newest for that start wins.
    const names = fs.readFileSync(mapFile, 'utf8').split('\n').filter((l) => l.startsWith(`${line.start.toString(16)} `)).map((l) => l.split(' ').slice(2).join(' '));
    t.ok(names.includes(f.name), `${f.name} is a perf map name at that address`);
    t.match(f.name, /hotJsFunction/);
    t.equal(sym.stats().perfMapHits, 1);
    t.equal(sym.stats().perfMapsLoaded, 1);
    const bytecode = await perfMapLine(mapFile, true);
    t.match(sym.resolveUser(proc.pid, bytecode.start + 1, false), { kind: 'jit', symbolized: true, name: bytecode.name, mapping: { path: '[jit]' } }, 'interpreted function at its bytecode');
  } finally {
    sym.close();
    await proc.stop();
    fs.rmSync(mapFile, { force: true });
  }
});

t.test('Node.js in its own pid and mount namespace: perf map found by NSpid inside the process root', async (t) => {
  // --kill-child: node is pid 1 of the new namespace and ignores the signals we do not SIGKILL it with.
  // `env -i`: tap adds its NODE_OPTIONS to every child it sees spawned; they load modules from the
  // checkout, which the tmpfs over /tmp hides when the checkout lives under /tmp.
  const child = spawn(
    'env',
    ['-i', `PATH=${process.env['PATH'] ?? '/usr/bin:/bin'}`, 'unshare', '--pid', '--fork', '--kill-child', '--mount', '--propagation', 'private', 'sh', '-c', `mount -t tmpfs none /tmp && exec ${process.execPath} --perf-basic-prof -e "$0"`, NODE_SCRIPT],
    { stdio: ['ignore', 'pipe', 'inherit'] },
  );
  const exited = new Promise<void>((r) => child.once('exit', () => r()));
  const sym = new Symbolizer();
  let pid = 0;
  try {
    await new Promise<void>((resolve, reject) => {
      let out = '';
      child.stdout!.on('data', (d: Buffer) => {
        out += d.toString();
        if (out.includes('ready\n')) resolve();
      });
      child.once('exit', () => reject(new Error('namespaced node exited early')));
    });
    const children = fs.readFileSync(`/proc/${child.pid}/task/${child.pid}/children`, 'utf8').trim().split(/\s+/).map(Number);
    pid = children[0]!;
    const nsPid = /NSpid:\s+\d+\s+(\d+)/.exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'))![1]!;
    t.equal(nsPid, '1', 'node is pid 1 in its namespace');
    t.equal(fs.existsSync(`/tmp/perf-${pid}.map`), false, 'no perf map under the host pid on the host');
    const line = await perfMapLine(`/proc/${pid}/root/tmp/perf-1.map`);
    const f = sym.resolveUser(pid, line.start + 1, false);
    t.match(f, { kind: 'jit', symbolized: true, name: /hotJsFunction/ });
  } finally {
    sym.close();
    if (pid > 0) process.kill(pid, 'SIGKILL');
    child.kill('SIGKILL');
    await exited;
  }
});

t.test('anonymous executable memory without a perf map: one labelled jit frame', async (t) => {
  const proc = await spawnReady(fx.jit);
  const sym = new Symbolizer();
  try {
    const code = printedAddresses(proc.lines).get('code')!;
    t.ok(inAnonymousMapping(proc.pid, code));
    const f = sym.resolveUser(proc.pid, code + 0x10, false);
    t.same(f, { kind: 'jit', name: '[jit]+0x10', systemName: '', symbolized: false, mapping: { start: BigInt(code), limit: BigInt(code + 65536), fileOffset: 0n, path: '[jit]', buildId: '' } });
    t.equal(sym.stats().framesUnresolved['jit-no-perf-map'], 1);
    // The stack is no code: labelled, not a random symbol.
    const stack = readMaps(proc.pid).find((m) => m.path === '[stack]')!;
    t.match(sym.resolveUser(proc.pid, stack.start + 8, false), { symbolized: false, name: '[stack]+0x8', kind: 'unknown' });
    t.equal(sym.stats().framesUnresolved['not-executable'], 1);
    t.match(sym.resolveUser(proc.pid, 0x10, false), { symbolized: false, mapping: null });
    t.equal(sym.stats().framesUnresolved['no-mapping'], 1);
  } finally {
    sym.close();
    await proc.stop();
  }
});

t.test('[vdso] resolves through our own vdso image', async (t) => {
  // Reference: dump our vdso and ask nm (the test may read its own memory like the library does).
  const self = readMaps(process.pid).find((m) => m.path === '[vdso]')!;
  const fd = fs.openSync('/proc/self/mem', 'r');
  const image = Buffer.alloc(self.end - self.start);
  fs.readSync(fd, image, 0, image.length, self.start);
  fs.closeSync(fd);
  const dump = path.join(fx.dir, 'vdso.so');
  fs.writeFileSync(dump, image);
  const syms = nmSymbols(dump, true);
  const target = syms.find((s) => s.name === '__vdso_clock_gettime')!;
  const aliases = syms.filter((s) => s.address === target.address).map((s) => s.name);
  const seg = loadSegments(dump).find((s) => s.flags.includes('E'))!;

  const proc = await spawnReady(fx.pie);
  const sym = new Symbolizer();
  try {
    const vdso = readMaps(proc.pid).find((m) => m.path === '[vdso]')!;
    const addr = vdso.start + (target.address - seg.vaddr + seg.offset) + 2;
    const f = sym.resolveUser(proc.pid, addr, false);
    t.ok(aliases.includes(f.name), `${f.name} is one of ${aliases.join(', ')}`);
    t.match(f, { symbolized: true, kind: 'native', mapping: { path: '[vdso]', buildId: buildIdOf(dump) } });
    t.equal(sym.stats().framesResolved.vdso, 1);
  } finally {
    sym.close();
    await proc.stop();
  }
});

t.test('kernel: known kallsyms entries, a module symbol, return addresses, restricted kallsyms', async (t) => {
  const lines = fs.readFileSync('/proc/kallsyms', 'utf8').split('\n');
  const parse = (l: string): { address: bigint; type: string; name: string; module: string } | null => {
    const m = /^([0-9a-f]+) (\w) (\S+)(?:\t\[(\S+)\])?$/.exec(l);
    return m === null ? null : { address: BigInt('0x' + m[1]!), type: m[2]!, name: m[3]!, module: m[4] ?? '' };
  };
  const all = lines.map(parse).filter((x) => x !== null);
  const sched = all.find((s) => s.name === 'schedule' && s.module === '')!;
  t.ok(sched.address > 0n, 'precondition: kallsyms readable (root, kptr_restrict allows it)');
  const sym = new Symbolizer();
  const f = sym.resolveKernel(sched.address + 4n, false);
  t.match(f, { kind: 'kernel', name: 'schedule', systemName: '', symbolized: true, mapping: { path: '[kernel.kallsyms]' } });
  t.ok(f.mapping!.start <= sched.address && sched.address < f.mapping!.limit);
  // The next text symbol after schedule: its first byte as a return address is a call in schedule.
  const next = all.filter((s) => s.address > sched.address && s.module === '').sort((a, b) => (a.address < b.address ? -1 : 1))[0]!;
  t.equal(sym.resolveKernel(next.address, true).name, 'schedule');
  for (const name of ['do_syscall_64', 'vfs_read']) {
    const s = all.find((x) => x.name === name && x.module === '');
    if (s) t.equal(sym.resolveKernel(s.address + 1n, false).name, name);
  }
  const mod = all.find((s) => s.module !== '' && /[tT]/.test(s.type));
  if (mod !== undefined) {
    t.match(sym.resolveKernel(mod.address, false), { name: mod.name, symbolized: true, mapping: { path: `[${mod.module}]` } });
  } else {
    t.comment('this kernel lists no module symbols');
  }
  const st = sym.stats();
  t.equal(st.kallsymsRestricted, false);
  t.ok(st.kallsymsSymbols > 10000);
  t.equal(st.framesUnresolved['kernel-no-symbol'], 0);

  const restricted = new Symbolizer({ kallsymsPath: path.join(fixturesDir, 'kallsyms', 'kallsyms-restricted.txt') });
  t.same(restricted.resolveKernel(0xffffffff81002010n, false), { kind: 'kernel', name: '[kernel]+0xffffffff81002010', systemName: '', mapping: null, symbolized: false });
  t.equal(restricted.stats().kallsymsRestricted, true);
  t.equal(restricted.stats().framesUnresolved['kernel-restricted'], 1);
  const missing = new Symbolizer({ kallsymsPath: path.join(fx.dir, 'no-kallsyms') });
  t.match(missing.resolveKernel(0xffffffff81002010n, true), { symbolized: false, name: '[kernel]+0xffffffff8100200f' });
  t.equal(missing.stats().framesUnresolved['kallsyms-unavailable'], 1);
});

t.test('observeProcess again after dlopen-like changes and pid checks', async (t) => {
  const sym = new Symbolizer();
  sym.observeProcess(process.pid);
  sym.observeProcess(process.pid);
  const st = sym.stats();
  t.equal(st.processesObserved, 1, 'the same process observed twice is one process');
  sym.observeProcess(2 ** 22 + 12345); // no such pid
  t.equal(sym.stats().processObserveFailures, 1);
  const node = execFileSync('readlink', ['-f', '/proc/self/exe']).toString().trim();
  t.ok(node.length > 0);
  sym.close();
});
