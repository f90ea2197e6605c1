// SPDX-License-Identifier: Apache-2.0
// Unwind tables: the .eh_frame parser against readelf's interpretation of the same bytes on real
// binaries (Debian's libc and libstdc++, our workload), Go stack deltas, the kernel layouts against
// the compiled object's BTF, the table store against real BPF maps, and fuzzed/truncated input.
import t from 'tap';
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { bpfObjectPath, loadAddon } from '../src/native/addon';
import { BufferSource, ElfFile } from '../src/symbolize/elf-file';
import { CfiFormatError, CfiSink, parseCallFrameInfo } from '../src/unwind/eh-frame';
import { loadUnwindTable, LoadedUnwindTable } from '../src/unwind/elf-unwind';
import { parseGoStackDeltas } from '../src/unwind/go-stack-deltas';
import { CHUNK_SIZE, decodeProc, encodeProc, MAPPING_SIZE, PROC_SIZE, ROWS_PER_CHUNK, TABLE_ENTRY_SIZE, u32Key } from '../src/unwind/kernel-layout';
import { UnwindTableStore } from '../src/unwind/table-store';
import { CFA, formatRule, packRule, RBP, unpackRule } from '../src/unwind/unwind-rule';
import { encodeRows, lookupRule, UnwindTable, UnwindTableBuilder } from '../src/unwind/unwind-table';
import { ElfFormatError } from '../src/symbolize/elf';
import { buildGoFixture, nmSymbols } from './fixtures/elf/fixtures';
import { intPrng } from './helpers/prng';
import { buildWorkload, run, startWorkload } from './helpers/workloads';
import { requireKernelFeature } from './helpers/kernel-feature';
import { samplesOf, shareWithChain } from '../src/profile/analysis';
import { record } from '../src/record/recorder';

const LIBC = '/lib/x86_64-linux-gnu/libc.so.6';
const LIBSTDCXX = '/usr/lib/x86_64-linux-gnu/libstdc++.so.6';

function elfOf(file: string): ElfFile {
  return new ElfFile(new BufferSource(fs.readFileSync(file)));
}

function loadFile(file: string, go = false): LoadedUnwindTable {
  const r = loadUnwindTable(elfOf(file), { maxRows: 1 << 23, go });
  if (typeof r === 'string') throw new Error(`${file}: ${r}`);
  return r;
}

interface ReadelfRow {
  loc: number;
  cfa: string;
  rbp: string;
  ra: string;
  /** The FDE keeps some register in another register (clone, vfork): rules we do not model alike. */
  registerRules: boolean;
}

/**
 * Rows of `readelf --debug-dump=frames-interp` for the .eh_frame section: every LOC line, and for an
 * FDE without instructions its CIE's initial row at the FDE's start.
 */
function readelfRows(file: string): ReadelfRow[] {
  // readelf exits 1 after printing everything for some libraries (a note it cannot parse): the output counts.
  const r = spawnSync('readelf', ['--debug-dump=frames-interp', file], { encoding: 'utf8', maxBuffer: 1 << 28, timeout: 120_000 });
  if (r.stdout === null || !r.stdout.includes('Contents of the .eh_frame section')) throw new Error(`readelf printed no .eh_frame for ${file}: ${r.stderr ?? r.error}`);
  const text = r.stdout;
  const eh = text.split(/\nContents of the /)[0]!; // .eh_frame comes first; stop before .debug_frame
  const rows: ReadelfRow[] = [];
  const cieInitial = new Map<string, ReadelfRow>();
  const blocks = eh.split('\n\n');
  for (const block of blocks) {
    const lines = block.split('\n').filter((l) => l.trim() !== '');
    const head = lines[0] ?? '';
    const cie = /^([0-9a-f]{8}) [0-9a-f]+ [0-9a-f]+ CIE/.exec(head);
    const fde = /FDE cie=([0-9a-f]{8}) pc=([0-9a-f]+)\.\./.exec(head);
    if (!cie && !fde) continue;
    const cols = (lines[1] ?? '').trim().split(/\s+/);
    const parsed: ReadelfRow[] = lines.slice(2).map((l) => {
      const f = l.trim().split(/\s+/);
      const at = (name: string): string => {
        const i = cols.indexOf(name);
        return i < 0 ? 'u' : (f[i] ?? 'u');
      };
      return { loc: parseInt(f[0]!, 16), cfa: f[1]!, rbp: at('rbp'), ra: at('ra'), registerRules: false };
    });
    const registerRules = lines.slice(2).some((l) => /\s\(?r\d+\)?(\s|$)/.test(l));
    for (const p of parsed) p.registerRules = registerRules;
    if (cie) {
      if (parsed[0]) cieInitial.set(cie[1]!, parsed[0]);
    } else if (fde) {
      if (parsed.length > 0) rows.push(...parsed);
      else {
        const init = cieInitial.get(fde[1]!);
        if (init) rows.push({ ...init, loc: parseInt(fde[2]!, 16) });
      }
    }
  }
  return rows;
}

/** readelf's rule as ours, or null for one we do not model the same way (expressions, other registers). */
function expected(r: ReadelfRow): number | null {
  if (r.registerRules) return null;
  if (r.ra === 'u') return packRule(CFA.end, 0, RBP.same, 0);
  if (r.ra !== 'c-8') return null; // return address elsewhere: ours is 'unsupported'
  const cfa = /^(rsp|rbp)\+(\d+)$/.exec(r.cfa);
  if (cfa === null) return null;
  const rbp = /^c(-?\d+)$/.exec(r.rbp);
  if (r.rbp !== 'u' && rbp === null) return null;
  return packRule(cfa[1] === 'rsp' ? CFA.rsp : CFA.rbp, Number(cfa[2]), rbp ? RBP.atCfa : RBP.same, rbp ? Number(rbp[1]) : 0);
}

t.test('.eh_frame rules agree with readelf on real binaries', async (t) => {
  const workload = buildWorkload('deepchain', ['-O2', '-g', '-fomit-frame-pointer'], 'nofp');
  for (const file of [workload, LIBC, LIBSTDCXX]) {
    const loaded = loadFile(file);
    t.equal(loaded.source, '.eh_frame', `${path.basename(file)}: from .eh_frame`);
    const rows = readelfRows(file);
    let compared = 0;
    let expressions = 0;
    const mismatches: string[] = [];
    for (const r of rows) {
      const want = expected(r);
      const got = lookupRule(loaded.table, r.loc);
      if (want === null) {
        expressions++;
        // An expression CFA (PLT entries, realigned stacks) is one of the special rules, never a plain offset.
        if (got !== null && !r.registerRules && (unpackRule(got).cfa === CFA.rsp || unpackRule(got).cfa === CFA.rbp) && r.cfa === 'exp') mismatches.push(`${r.loc.toString(16)}: readelf exp, ours ${formatRule(got)}`);
        continue;
      }
      compared++;
      if (got !== want) mismatches.push(`${r.loc.toString(16)}: readelf ${r.cfa} rbp=${r.rbp} ra=${r.ra}, ours ${got === null ? 'none' : formatRule(got)}`);
    }
    t.ok(compared > 20, `${path.basename(file)}: ${compared} rows compared, ${expressions} rows with expressions or register rules`);
    t.same(mismatches.slice(0, 10), [], `${path.basename(file)}: every row agrees (${mismatches.length} differ)`);
    t.equal(loaded.cfi.fdesMalformed, 0, `${path.basename(file)}: no FDE refused`);
  }
});

t.test('Go: stack deltas from .gopclntab, the same for stripped and unstripped builds', async (t) => {
  const go = buildGoFixture(t.testdir({}));
  const full = loadFile(go.full, true);
  const stripped = loadFile(go.stripped, true);
  t.ok(full.go !== null && full.go.functions > 1000, `every Go function has rows (${full.go?.functions})`);
  t.equal(full.go!.functionsMalformed, 0);
  t.same([...stripped.table.pcs], [...full.table.pcs], 'stripped: the same rows');
  t.same([...stripped.table.rules], [...full.table.rules], 'stripped: the same rules');
  const syms = nmSymbols(go.full);
  // Assembly functions carry their ABI in .symtab ("runtime.goexit.abi0"), not in .gopclntab.
  const at = (name: string): number => syms.find((s) => s.name === name || s.name === `${name}.abi0`)!.address;
  // At every function's entry nothing is pushed yet: CFA = rsp + 8.
  // Where goroutines and threads begin, where the runtime switches stacks, and its signal handlers.
  const outermostNames = ['runtime.goexit', 'runtime.mstart', 'runtime.rt0_go', 'runtime.mcall', 'runtime.morestack', 'runtime.systemstack_switch', 'runtime.sigtramp', 'runtime.cgoSigtramp'];
  const outermost = outermostNames.map(at);
  const notAtEntry = syms
    .filter((s) => s.type === 'T' && !outermost.includes(s.address) && !s.name.startsWith('go:'))
    .map((s) => ({ name: s.name, rule: lookupRule(full.table, s.address) }))
    .filter((x) => x.rule === null || formatRule(x.rule) !== 'rsp+8');
  t.same(notAtEntry.slice(0, 5).map((x) => `${x.name}: ${x.rule === null ? 'none' : formatRule(x.rule)}`), [], `every Go function: rsp+8 at its entry (${notAtEntry.length} differ)`);
  t.same(
    outermostNames.filter((_, i) => formatRule(lookupRule(full.table, outermost[i]!)!) !== 'end'),
    [],
    'walks end at goexit, mstart, rt0_go, the stack switches and the signal handlers',
  );
  // main.main's frame: the deepest delta is its frame size as the disassembly sets it up.
  const disasm = run('objdump', ['-d', '--no-show-raw-insn', '--disassemble=main.main', go.full]);
  const sub = /sub\s+\$0x([0-9a-f]+),%rsp/.exec(disasm);
  t.ok(sub !== null, 'main.main sets up a frame');
  const frame = parseInt(sub![1]!, 16) + 8; // push %rbp, then sub
  const rules = new Set<string>();
  const mainStart = at('main.main');
  for (let pc = mainStart; pc < mainStart + 64; pc++) {
    const r = lookupRule(full.table, pc);
    if (r !== null) rules.add(formatRule(r));
  }
  t.ok(rules.has(`rsp+${frame + 8} rbp@cfa-16`), `main.main's body: CFA = rsp + ${frame + 8}, rbp saved at CFA-16 (${[...rules].join(', ')})`);
});

t.test('unwind structs match the compiled object', async (t) => {
  const obj = new (loadAddon().BpfObject)(bpfObjectPath('profile'));
  try {
    t.equal(obj.typeSize('unwind_row'), 8);
    t.equal(obj.typeSize('unwind_chunk'), CHUNK_SIZE);
    t.equal(obj.typeSize('unwind_table'), TABLE_ENTRY_SIZE);
    t.equal(obj.typeSize('unwind_mapping'), MAPPING_SIZE);
    t.equal(obj.typeSize('unwind_proc'), PROC_SIZE);
    t.equal(obj.mapInfo('unwind_chunks').valueSize, CHUNK_SIZE);
    t.equal(obj.mapInfo('unwind_procs').valueSize, PROC_SIZE);
  } finally {
    obj.close();
  }
  const proc = encodeProc([{ start: 0x400000, size: 0x1000, bias: -0x1000n, tableId: 3 }], true);
  t.same(decodeProc(proc), { complete: true, mappings: [{ start: 0x400000, size: 0x1000, bias: BigInt.asUintN(64, -0x1000n), tableId: 3 }] }, 'a process entry round-trips');
});

/** A table of exactly `rows` rows: rows - 1 distinct rules and the end-of-FDE marker. */
function syntheticTable(rows: number, seed: number): UnwindTable {
  const b = new UnwindTableBuilder(1 << 23);
  b.fde(0x1000, 0x1000 + (rows - 1) * 4);
  for (let i = 0; i < rows - 1; i++) b.row(0x1000 + i * 4, packRule(CFA.rsp, 8 * (1 + ((i + seed) % 7)), RBP.same, 0));
  return b.build().table;
}

t.test('the table store writes rows into real BPF maps, evicts unused tables, refuses when full', async (t) => {
  const obj = new (loadAddon().BpfObject)(bpfObjectPath('profile'));
  t.teardown(() => obj.close());
  obj.setMaxEntries('unwind_chunks', 8); // 4096 rows
  obj.setMaxEntries('unwind_tables', 4);
  obj.setAutoload('on_sample', false);
  for (const p of ['on_fork', 'on_exec', 'on_exit']) obj.setAutoload(p, false);
  obj.load();
  // Every write goes to the real maps; the log keeps their order.
  const writes: string[] = [];
  const writer = {
    mapUpdate(map: string, key: Buffer, value: Buffer, flags?: number): void {
      writes.push(`${map}[${key.readUInt32LE(0)}]${map === 'unwind_tables' ? `=${value.readUInt32LE(4)} rows` : ''}`);
      if (flags === undefined) obj.mapUpdate(map, key, value);
      else obj.mapUpdate(map, key, value, flags);
    },
    mapDelete: (map: string, key: Buffer): boolean => obj.mapDelete(map, key),
  };
  const store = new UnwindTableStore(writer, 8, 4);
  const a = syntheticTable(1500, 1); // 3 chunks
  t.equal(a.pcs.length, 1500);
  const ta = store.load('a', a)!;
  t.ok(ta !== null, 'loaded');
  // What the kernel holds is exactly the encoded rows, and the table entry points at them.
  const entry = obj.mapLookup('unwind_tables', u32Key(ta.id))!;
  t.equal(entry.readUInt32LE(0), ta.firstChunk * ROWS_PER_CHUNK);
  t.equal(entry.readUInt32LE(4), 1500);
  const chunk = obj.mapLookup('unwind_chunks', u32Key(ta.firstChunk + 1))!;
  const want = Buffer.alloc(CHUNK_SIZE);
  encodeRows(a, ROWS_PER_CHUNK, 2 * ROWS_PER_CHUNK, want);
  t.ok(chunk.equals(want), 'second chunk holds rows 512..1023');
  ta.refs = 1;
  const tb = store.load('b', syntheticTable(2048, 2))!; // 4 chunks: 7 of 8 used
  t.ok(tb !== null);
  tb.refs = 1;
  t.equal(store.load('c', syntheticTable(1024, 3)), null, 'no room and every table in use: refused');
  t.equal(store.stats.tablesRefused, 1);
  tb.refs = 0;
  writes.length = 0;
  const tc = store.load('c', syntheticTable(1024, 3));
  t.ok(tc !== null, 'room made by evicting the unused table');
  t.equal(store.stats.tablesEvicted, 1);
  t.equal(store.get('b'), undefined, 'b is gone');
  t.same(
    writes,
    [`unwind_tables[${tb.id}]=0 rows`, `unwind_chunks[${tc!.firstChunk}]`, `unwind_chunks[${tc!.firstChunk + 1}]`, `unwind_tables[${tc!.id}]=1024 rows`],
    "b's entry is cleared before its rows are reused, and c's rows are written before its entry",
  );
  t.equal(obj.mapLookup('unwind_tables', u32Key(tc!.id))!.readUInt32LE(4), 1024, 'the kernel holds c');
  t.equal(store.stats.residentBytes, (3 + 2) * CHUNK_SIZE);
  t.equal(store.freeChunks, 3);
  t.equal(store.stats.writeErrors, 0);
});

/** Collects nothing; checks the sink contract (rows inside an open FDE). */
class CheckingSink implements CfiSink {
  open = false;
  rows = 0;
  fde(): void {
    this.open = true;
  }
  row(): void {
    if (!this.open) throw new Error('row outside an FDE');
    this.rows++;
  }
  abandon(): void {
    this.open = false;
  }
}

function ehFrameRange(file: string): { offset: number; size: number; addr: number } {
  const s = elfOf(file).section('.eh_frame')!;
  return { offset: s.offset, size: s.size, addr: s.addr };
}

t.test('fuzzed and truncated .eh_frame: no crash, a table or a counted reason', async (t) => {
  const file = buildWorkload('deepchain', ['-O2', '-g', '-fomit-frame-pointer'], 'nofp');
  const bytes = fs.readFileSync(file);
  const eh = ehFrameRange(file);
  const rand = intPrng(0xe4f);
  const outcomes = new Map<string, number>();
  for (let i = 0; i < 400; i++) {
    const b = Buffer.from(bytes);
    const flips = 1 + rand(8);
    for (let j = 0; j < flips; j++) b[eh.offset + rand(eh.size)] = rand(256);
    let r: ReturnType<typeof loadUnwindTable>;
    try {
      r = loadUnwindTable(new ElfFile(new BufferSource(b)), { maxRows: 1 << 20 });
    } catch (e) {
      t.fail(`mutation ${i} threw ${(e as Error).message}`);
      break;
    }
    const k = typeof r === 'string' ? r : 'table';
    outcomes.set(k, (outcomes.get(k) ?? 0) + 1);
  }
  t.ok((outcomes.get('table') ?? 0) > 0, `outcomes: ${JSON.stringify(Object.fromEntries(outcomes))}`);

  // The parser itself on truncated sections: rows stay inside FDEs; only CfiFormatError escapes.
  const section = bytes.subarray(eh.offset, eh.offset + eh.size);
  let truncatedErrors = 0;
  for (let cut = 0; cut < section.length; cut += Math.max(1, Math.floor(section.length / 97))) {
    const sink = new CheckingSink();
    try {
      parseCallFrameInfo({ kind: 'eh_frame', data: Buffer.from(section.subarray(0, cut)), address: eh.addr }, sink);
    } catch (e) {
      if (!(e instanceof CfiFormatError)) t.fail(`cut at ${cut}: ${(e as Error).message}`);
      truncatedErrors++;
    }
  }
  t.ok(truncatedErrors > 0, `truncations mid-entry are refused as malformed (${truncatedErrors})`);

  // Random bytes as a whole section, and as a .gopclntab.
  for (let i = 0; i < 300; i++) {
    const junk = Buffer.alloc(rand(512));
    for (let j = 0; j < junk.length; j++) junk[j] = rand(256);
    try {
      parseCallFrameInfo({ kind: i % 2 ? 'eh_frame' : 'debug_frame', data: junk, address: 0x1000 }, new CheckingSink());
    } catch (e) {
      if (!(e instanceof CfiFormatError)) t.fail(`random section ${i}: ${(e as Error).message}`);
    }
  }
  const go = buildGoFixture(t.testdir({}));
  const goElf = elfOf(go.stripped);
  const pcln = goElf.sectionData(goElf.section('.gopclntab')!);
  const text = goElf.section('.text')!.addr;
  for (let i = 0; i < 200; i++) {
    const b = Buffer.from(pcln);
    for (let j = 0; j < 16; j++) b[rand(b.length)] = rand(256);
    const cut = i % 3 === 0 ? b.subarray(0, rand(b.length)) : b;
    try {
      parseGoStackDeltas(cut, text, new UnwindTableBuilder(1 << 23));
    } catch (e) {
      if (!(e instanceof ElfFormatError) && !(e instanceof RangeError && /out of range/.test(e.message))) t.fail(`pclntab mutation ${i}: ${(e as Error).message}`);
    }
  }
  t.pass('no crash on mutated .gopclntab');
});

t.test('a binary whose .eh_frame is broken falls back to frame pointers, counted', async (t) => {
  const fp = buildWorkload('hotspots');
  const broken = path.join(t.testdir({}), 'hotspots-broken-cfi');
  const b = fs.readFileSync(fp);
  const eh = ehFrameRange(fp);
  b.writeUInt32LE(0xfffffff0, eh.offset); // the first entry's length runs past the section
  fs.writeFileSync(broken, b, { mode: 0o755 });
  t.equal(loadUnwindTable(new ElfFile(new BufferSource(b)), { maxRows: 1 << 20 }), 'malformed-cfi');
  if (!(await requireKernelFeature(t, 'perf_event'))) return;
  const w = startWorkload(broken, ['30']);
  t.teardown(() => w.child.kill('SIGKILL'));
  const { profile, summary } = await record({ target: { kind: 'pid', pid: w.pid }, frequencyHz: 199, durationMs: 2000 });
  t.ok(summary.unwinder!.binariesWithoutTables['malformed-cfi'] >= 1, 'the broken binary is counted');
  const mine = samplesOf(profile, w.pid);
  const chain = shareWithChain(profile, mine, ['main', 'work', 'hot_a']) + shareWithChain(profile, mine, ['main', 'work', 'hot_b']);
  t.ok(chain >= 90, `its frame pointers still give main -> work -> hot (${chain.toFixed(1)}%)`);
});
