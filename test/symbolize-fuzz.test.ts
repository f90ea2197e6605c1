// SPDX-License-Identifier: Apache-2.0
// Malformed input of every kind: truncations and random byte mutations of real ELF files (headers,
// program and section tables, symbol and string tables, notes, .gnu_debuglink, .gopclntab), random
// /proc/PID/maps, status, stat, kallsyms and perf-map text. Parsers may only throw their documented
// error (ElfFormatError, code EINPUT); the Symbolizer never throws, and every frame is counted.
// Deterministic: a fixed-seed PRNG, so a failure reproduces.
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import t from 'tap';
import { ElfFormatError, SectionHeader } from '../src/symbolize/elf';
import { BufferSource, ElfFile, loadSymbolTable } from '../src/symbolize/elf-file';
import { parseKallsyms } from '../src/symbolize/kallsyms';
import { parsePerfMap } from '../src/symbolize/perf-map';
import { parseProcMaps, parseProcIds } from '../src/symbolize/proc-maps';
import { Symbolizer, SymbolizerStats } from '../src/symbolize/symbolizer';
import { buildFixtures, buildGoFixture, buildIdOf } from './fixtures/elf/fixtures';
import { prng } from './helpers/prng';

const fx = buildFixtures();
const debugFileOf = (binary: string): string => {
  const id = buildIdOf(binary);
  return path.join(fx.debugDir, '.build-id', id.slice(0, 2), `${id.slice(2)}.debug`);
};


const INTERESTING_U64 = [0n, 1n, 0x7fn, 0xffffn, 0xffffffffn, 0x7fffffffffffffffn, 0xffffffffffffffffn, 1n << 53n, 0x40n];

/** Regions of a real ELF file worth hitting: header, tables, and interesting sections. */
function regions(file: Buffer): Array<{ name: string; start: number; end: number }> {
  const elf = new ElfFile(new BufferSource(file));
  const h = elf.header;
  const out = [
    { name: 'ELF header', start: 0, end: 64 },
    { name: 'program headers', start: h.phoff, end: h.phoff + h.phnum * h.phentsize },
    { name: 'section headers', start: h.shoff, end: h.shoff + h.shnum * h.shentsize },
  ];
  const want = (s: SectionHeader): boolean => ['.symtab', '.strtab', '.dynsym', '.dynstr', '.shstrtab', '.gnu_debuglink', '.gopclntab'].includes(s.name) || s.name.startsWith('.note');
  for (const s of elf.sections) if (want(s) && s.type !== 8 && s.size > 0) out.push({ name: s.name, start: s.offset, end: s.offset + s.size });
  return out;
}

interface Outcome {
  parsed: number;
  rejected: number;
  foreign: string[];
}

/** Runs everything a Symbolizer does with an ELF file over `buf`; only ElfFormatError may escape. */
function exercise(buf: Buffer, rnd: () => number, out: Outcome, label: string): void {
  try {
    const elf = new ElfFile(new BufferSource(buf), { maxSectionBytes: 64 << 20 });
    elf.summary();
    const { table } = loadSymbolTable(elf, null);
    for (let i = 0; i < 8; i++) {
      const k = table.lookup(Math.floor(rnd() * 0x100000));
      if (k >= 0 && typeof table.name(k) !== 'string') throw new Error('lookup returned a non-string name');
    }
    out.parsed++;
  } catch (e) {
    if (e instanceof ElfFormatError && e.code === 'EINPUT' && e.message.length > 0) out.rejected++;
    else out.foreign.push(`${label}: ${(e as Error).stack ?? String(e)}`);
  }
}

t.test('ELF parser: truncations and byte mutations of real files throw only ElfFormatError', async (t) => {
  const go = buildGoFixture(fx.dir);
  const bases = [fx.pie, fx.lib, fx.cxx, debugFileOf(path.join(fx.dir, 'spin-bid')), fx.strippedDebugLink, go.stripped];
  for (const [n, file] of bases.entries()) {
    const base = fs.readFileSync(file);
    const rnd = prng(0xe1f + n);
    const out: Outcome = { parsed: 0, rejected: 0, foreign: [] };
    const regs = regions(base);
    // Truncations: at every region boundary and inside each region, plus random lengths.
    const cuts = new Set<number>([0, 1, 3, 4, 5, 16, 63, 64, 65, base.length - 1]);
    for (const r of regs) for (const c of [r.start, r.start + 1, r.start + 13, Math.floor((r.start + r.end) / 2), r.end - 1, r.end]) cuts.add(Math.max(0, Math.min(base.length, c)));
    for (let i = 0; i < 40; i++) cuts.add(Math.floor(rnd() * base.length));
    for (const c of cuts) exercise(base.subarray(0, c), rnd, out, `${path.basename(file)} cut at ${c}`);
    // Mutations inside the regions: random bytes, and interesting 64-bit values at aligned spots.
    for (let i = 0; i < 400; i++) {
      const buf = Buffer.from(base);
      const r = regs[Math.floor(rnd() * regs.length)]!;
      const span = Math.max(1, r.end - r.start);
      const what: string[] = [];
      for (let k = 1 + Math.floor(rnd() * 4); k > 0; k--) {
        const at = r.start + Math.floor(rnd() * span);
        if (rnd() < 0.5 && at + 8 <= buf.length) {
          const v = INTERESTING_U64[Math.floor(rnd() * INTERESTING_U64.length)]!;
          buf.writeBigUInt64LE(v, (at & ~7) >= r.start ? at & ~7 : at);
          what.push(`u64 0x${v.toString(16)}@${at}`);
        } else if (at < buf.length) {
          buf[at] = Math.floor(rnd() * 256);
          what.push(`byte@${at}`);
        }
      }
      exercise(buf, rnd, out, `${path.basename(file)} ${r.name} ${what.join(',')}`);
    }
    t.same(out.foreign, [], `${path.basename(file)}: nothing but ElfFormatError (${out.parsed} parsed, ${out.rejected} rejected)`);
    t.ok(out.rejected > 0 && out.parsed > 0, `${path.basename(file)}: both outcomes occur`);
  }
});

const TOKENS = ['7f00', '-', ' ', 'r-xp', 'rw-p', '---s', '00000000', 'fe:01', '00:00', '0', '123', '/bin/x', '[vdso]', '[stack]', '[heap]', ' (deleted)', '\t', 'ffffffffffffffffffff', 'T', 't', 'd', '[mod]', 'name', '0x', '\\012', 'é', '\0', '1000', 'NSpid:', 'Uid:', '(', ')'];

function soup(rnd: () => number, lines: number): string {
  const out: string[] = [];
  for (let i = 0; i < lines; i++) {
    let l = '';
    for (let k = Math.floor(rnd() * 12); k > 0; k--) l += TOKENS[Math.floor(rnd() * TOKENS.length)]!;
    out.push(l);
  }
  return out.join('\n');
}

t.test('text parsers never throw on random /proc/maps, status, kallsyms and perf-map text', async (t) => {
  const rnd = prng(0x7e47);
  for (let i = 0; i < 300; i++) {
    const text = soup(rnd, 1 + Math.floor(rnd() * 30));
    const maps = parseProcMaps(text);
    for (const e of maps.entries) t.ok(Number.isSafeInteger(e.start) && e.end >= e.start, 'sane entry') || t.comment(JSON.stringify(text));
    parseProcIds(text);
    const k = parseKallsyms(text);
    k.table.lookup(BigInt(Math.floor(rnd() * 2 ** 32)));
    const p = parsePerfMap(text);
    p.table.lookup(Math.floor(rnd() * 2 ** 32));
  }
  t.pass('300 random texts parsed without an exception');
});

function totalFrames(s: SymbolizerStats): number {
  return Object.values(s.framesResolved).reduce((a, b) => a + b, 0) + Object.values(s.framesUnresolved).reduce((a, b) => a + b, 0);
}

/** A /proc look-alike for one process: maps, stat, status, and a root directory holding its files. */
function fakeProc(root: string, pid: number, maps: string, extra: { status?: string; stat?: string } = {}): void {
  const dir = path.join(root, String(pid));
  fs.mkdirSync(path.join(dir, 'root', 'bin'), { recursive: true });
  fs.mkdirSync(path.join(dir, 'root', 'tmp'), { recursive: true });
  fs.writeFileSync(path.join(dir, 'maps'), maps);
  fs.writeFileSync(path.join(dir, 'stat'), extra.stat ?? `${pid} (fake prog) S 1 ${pid} ${pid} 0 -1 4194560 0 0 0 0 0 0 0 0 20 0 1 0 4242 0 0`);
  fs.writeFileSync(path.join(dir, 'status'), extra.status ?? `Name:\tfake\nUid:\t0\t0\t0\t0\nNSpid:\t${pid}\t9\n`);
}

t.test('Symbolizer over mutated binaries, random maps, kallsyms and perf maps: never throws, counts everything', async (t) => {
  const procRoot = fs.mkdtempSync(path.join(os.tmpdir(), 'ebpfprof-fakeproc-'));
  const rnd = prng(0x5e1f);
  const base = fs.readFileSync(fx.pie);
  const regs = regions(base);
  let calls = 0;
  const sym = new Symbolizer({ procRoot, kallsymsPath: path.join(procRoot, 'kallsyms'), debugDirs: [path.join(procRoot, 'debug')] });
  fs.writeFileSync(path.join(procRoot, 'kallsyms'), soup(rnd, 200) + '\nffffffff81000000 T _stext\nffffffff81000100 T fuzz_target\n');

  // 1. Mutated binaries mapped executable at a known base.
  for (let pid = 1000; pid < 1120; pid++) {
    const buf = Buffer.from(base);
    if (pid % 3 === 0) {
      const cut = Math.floor(rnd() * buf.length);
      buf.fill(0, cut); // truncated (zero tail keeps the size, the tables are gone)
    }
    const r = regs[Math.floor(rnd() * regs.length)]!;
    for (let k = 0; k < 4; k++) {
      const at = r.start + Math.floor(rnd() * Math.max(1, r.end - r.start));
      if (at < buf.length) buf[at] = Math.floor(rnd() * 256);
    }
    const dir = path.join(procRoot, String(pid));
    fakeProc(procRoot, pid, '');
    const bin = path.join(dir, 'root', 'bin', 'prog');
    fs.writeFileSync(bin, pid % 7 === 0 ? buf.subarray(0, Math.floor(rnd() * 200)) : buf);
    const ino = fs.statSync(bin).ino;
    fs.writeFileSync(
      path.join(dir, 'maps'),
      `555555554000-555555555000 r--p 00000000 fe:01 ${ino} /bin/prog\n555555555000-555555556000 r-xp 00001000 fe:01 ${ino} /bin/prog\n7f0000000000-7f0000010000 r-xp 00000000 00:00 0 \n`,
    );
    for (let k = 0; k < 10; k++) {
      sym.resolveUser(pid, 0x555555555000 + Math.floor(rnd() * 0x1000), rnd() < 0.5);
      calls++;
    }
  }
  let s = sym.stats();
  t.equal(totalFrames(s), calls, 'every frame counted once, resolved or by reason');
  t.ok(s.framesUnresolved['malformed-elf'] > 0, 'malformed binaries are counted');
  t.ok(s.binaries.filesFailed.malformed > 0);
  t.ok(s.framesResolved.native > 0, 'mutations outside what matters still resolve');

  // 2. Random maps, status and stat text.
  for (let pid = 2000; pid < 2200; pid++) {
    fakeProc(procRoot, pid, soup(rnd, 1 + Math.floor(rnd() * 20)), { status: soup(rnd, 5), stat: soup(rnd, 1) });
    for (let k = 0; k < 5; k++) {
      sym.resolveUser(pid, Math.floor(rnd() * 2 ** 47), rnd() < 0.5);
      calls++;
    }
    if (pid % 10 === 0) sym.forgetProcess(pid);
  }
  // Odd inputs the API may receive: negative, fractional, NaN addresses; a pid that never existed.
  for (const a of [-1, 0.5, Number.NaN, 2 ** 60, Infinity]) {
    sym.resolveUser(2001, a, true);
    sym.resolveUser(999999, a, false);
    calls += 2;
  }

  // 3. A process with anonymous executable memory and a random perf map in its /tmp.
  for (let pid = 3000; pid < 3040; pid++) {
    fakeProc(procRoot, pid, '7f0000000000-7f0000100000 r-xp 00000000 00:00 0 \n7f0000100000-7f0000200000 rw-p 00000000 00:00 0 \n');
    const lines = soup(rnd, 30) + `\n7f0000000100 40 good_jit_fn\n` + soup(rnd, 5);
    fs.writeFileSync(path.join(procRoot, String(pid), 'root', 'tmp', 'perf-9.map'), lines + '\n');
    sym.observeProcess(pid);
    for (let k = 0; k < 5; k++) {
      sym.resolveUser(pid, 0x7f0000000000 + Math.floor(rnd() * 0x200000), rnd() < 0.5);
      calls++;
    }
    const f = sym.resolveUser(pid, 0x7f0000000110, false);
    calls++;
    t.match(f, { kind: 'jit', symbolized: true }, 'the valid perf-map line among garbage resolves');
  }

  // 4. Kernel addresses against a kallsyms full of garbage.
  for (let i = 0; i < 200; i++) {
    sym.resolveKernel(0xffffffff80000000n + BigInt(Math.floor(rnd() * 2 ** 26)), rnd() < 0.5);
    calls++;
  }
  t.equal(sym.resolveKernel(0xffffffff81000104n, false).name, 'fuzz_target');
  calls++;

  s = sym.stats();
  t.equal(totalFrames(s), calls, 'every frame counted once, resolved or by reason');
  t.ok(s.mapsLinesSkipped > 0, 'odd maps lines counted');
  t.ok(s.perfMapLinesSkipped > 0, 'odd perf-map lines counted');
  t.ok(s.kallsymsLinesSkipped > 0, 'odd kallsyms lines counted');
  t.equal(s.framesUnresolved['internal-error'], 0, 'no unexpected exception inside the Symbolizer');
  sym.close();
  fs.rmSync(procRoot, { recursive: true, force: true });
});
