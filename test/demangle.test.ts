// SPDX-License-Identifier: Apache-2.0
// The symbol demangler against the reference tools: binutils' c++filt for C++ (exact output), and
// `c++filt -i` (no hashes) for Rust, on hand-written tables per grammar area, on every mangled name
// of real binaries on this machine, on a Rust program compiled here with both manglings, and fuzzed.
import t from 'tap';
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import {
  demangle,
  demangleItanium,
  demangleRust,
  tryDemangle,
  ITANIUM_LIMITS,
} from '../src/symbolize/demangle/index';
import { fixturesDir } from './helpers/paths';
import { prng } from './helpers/prng';

const FIXTURES = path.join(fixturesDir, 'demangle');
const REGEN = process.env.EBPFPROF_REGEN === '1';

/* ---------------------------------------------------------------------------------------------
 * Helpers
 */

function haveTool(cmd: string): boolean {
  return spawnSync('sh', ['-c', `command -v ${cmd}`], { encoding: 'utf8' }).status === 0;
}

/** Runs c++filt once over many names (one per line), as its stdin mode is made for. */
function cxxfilt(names: readonly string[], args: readonly string[] = []): string[] {
  const r = spawnSync('c++filt', args, { input: names.join('\n') + '\n', encoding: 'utf8', maxBuffer: 1 << 30 });
  if (r.status !== 0) throw new Error(`c++filt failed: ${r.stderr}`);
  const out = r.stdout.split('\n');
  out.pop();
  if (out.length !== names.length) throw new Error(`c++filt returned ${out.length} lines for ${names.length} names`);
  return out;
}

/** Names c++filt treats as Rust: v0, or legacy with the trailing `17h<16 hex>E` hash segment. */
function isRustName(sym: string): boolean {
  return sym.startsWith('_R') || /^_ZN.*17h[0-9a-f]{16}E(\..*)?$/.test(sym);
}

/**
 * What we print for a Rust name, from `c++filt -i` (libiberty without hashes, disambiguators and
 * const type annotations) plus the documented places where we follow rustc-demangle instead:
 * `.suffix`es other than `.llvm.<n>` are kept, and non-ASCII `$u<hex>$` legacy escapes decoded.
 */
function rustReference(sym: string, filtNoVerbose: string): string {
  if (filtNoVerbose === sym) return sym;
  let s = sym;
  const llvm = s.indexOf('.llvm.');
  if (llvm >= 0 && /^[0-9A-F@]*$/.test(s.slice(llvm + 6))) s = s.slice(0, llvm);
  let suffix = '';
  if (s.startsWith('_R')) {
    const dot = s.indexOf('.');
    if (dot >= 0) suffix = s.slice(dot);
  } else {
    const m = /E(\..*)$/.exec(s);
    if (m) suffix = m[1]!;
  }
  const decoded = filtNoVerbose.replace(/\$u([0-9a-f]{2,6})\$/g, (m: string, hex: string) => {
    const cp = parseInt(hex, 16);
    return cp >= 0x80 && cp <= 0x10ffff ? String.fromCodePoint(cp) : m;
  });
  return decoded + suffix;
}

/** Reference output for any name: c++filt for C++, rustReference() for Rust. */
function referenceFor(names: readonly string[]): string[] {
  const verbose = cxxfilt(names);
  const rustIdx = names.flatMap((n, i) => (isRustName(n) ? [i] : []));
  if (rustIdx.length === 0) return verbose;
  const quiet = cxxfilt(rustIdx.map((i) => names[i]!), ['-i']);
  const out = verbose.slice();
  rustIdx.forEach((i, k) => {
    out[i] = rustReference(names[i]!, quiet[k]!);
  });
  return out;
}

interface Row {
  section: string;
  mangled: string;
  expected: string;
}

/**
 * Reads a `mangled<TAB>expected` table. `# ...` lines name the section of the rows below them
 * (consecutive comment lines form one name); a lone `#` separates sections.
 */
function readTable(file: string): Row[] {
  const rows: Row[] = [];
  let section = '';
  let inComment = false;
  for (const line of fs.readFileSync(file, 'utf8').split('\n')) {
    if (line === '' || line === '#') {
      inComment = false;
      continue;
    }
    if (line.startsWith('#')) {
      const text = line.slice(1).trim();
      section = inComment ? `${section} ${text}` : text;
      inComment = true;
      continue;
    }
    inComment = false;
    const tab = line.indexOf('\t');
    if (tab < 0) throw new Error(`${file}: row without a tab: ${line}`);
    rows.push({ section, mangled: line.slice(0, tab), expected: line.slice(tab + 1) });
  }
  return rows;
}

/** Rewrites the expected column of a table in place, keeping comments and order. */
function regenerateTable(file: string): void {
  const lines = fs.readFileSync(file, 'utf8').split('\n');
  if (lines[lines.length - 1] === '') lines.pop();
  const dataIdx = lines.flatMap((l, i) => (l !== '' && !l.startsWith('#') ? [i] : []));
  const names = dataIdx.map((i) => lines[i]!.split('\t')[0]!);
  const refs = referenceFor(names);
  dataIdx.forEach((i, k) => {
    lines[i] = `${names[k]}\t${refs[k]}`;
  });
  fs.writeFileSync(file, lines.join('\n') + '\n');
}

/** Defined symbol names of a binary (dynamic and static tables), without version suffixes. */
function symbolsOf(file: string): string[] {
  const names = new Set<string>();
  for (const args of [['-D', '--defined-only'], ['--defined-only']]) {
    const r = spawnSync('nm', [...args, file], { encoding: 'utf8', maxBuffer: 1 << 30 });
    if (r.status !== 0) continue; // e.g. no .symtab in a stripped library
    for (const line of r.stdout.split('\n')) {
      const name = line.slice(line.lastIndexOf(' ') + 1);
      const at = name.indexOf('@');
      if (name !== '') names.add(at > 0 ? name.slice(0, at) : name);
    }
  }
  return [...names];
}

interface Rate {
  total: number;
  exact: number;
  mismatches: { mangled: string; expected: string; actual: string }[];
}

function compare(names: readonly string[], expected: readonly string[]): Rate {
  const rate: Rate = { total: names.length, exact: 0, mismatches: [] };
  names.forEach((n, i) => {
    const actual = demangle(n);
    if (actual === expected[i]) rate.exact++;
    else rate.mismatches.push({ mangled: n, expected: expected[i]!, actual });
  });
  return rate;
}

function report(t: tap.Test, what: string, rate: Rate, minRate: number): void {
  const pct = rate.total === 0 ? 100 : (100 * rate.exact) / rate.total;
  t.comment(`${what}: ${rate.exact}/${rate.total} exact (${pct.toFixed(3)}%)`);
  for (const m of rate.mismatches.slice(0, 10)) {
    t.comment(`  mismatch ${m.mangled}\n    c++filt: ${m.expected}\n    ours:    ${m.actual}`);
  }
  t.ok(rate.total > 0, `${what}: has mangled names`);
  t.ok(pct >= minRate, `${what}: exact-match rate ${pct.toFixed(3)}% >= ${minRate}%`);
}

/** Deterministic PRNG so a failing fuzz case can be reproduced from the printed seed. */

const haveCxxfilt = haveTool('c++filt');
const haveNm = haveTool('nm');

if (REGEN) {
  if (!haveCxxfilt) throw new Error('EBPFPROF_REGEN=1 needs c++filt (binutils)');
  // rust-extensions.txt is hand-written: it holds what c++filt cannot produce.
  for (const f of ['itanium.txt', 'rust.txt']) regenerateTable(path.join(FIXTURES, f));
}

/* ---------------------------------------------------------------------------------------------
 * Tables
 */

t.test('C++ (Itanium): every grammar area of the table matches c++filt', async (t) => {
  const rows = readTable(path.join(FIXTURES, 'itanium.txt'));
  t.ok(rows.length > 400, 'table is loaded');
  const sections = [...new Set(rows.map((r) => r.section))];
  for (const section of sections) {
    t.test(section, async (t) => {
      for (const r of rows.filter((x) => x.section === section)) t.equal(demangle(r.mangled), r.expected, r.mangled);
    });
  }
});

t.test('Rust (legacy and v0): table matches `c++filt -i` with the documented differences', async (t) => {
  const rows = readTable(path.join(FIXTURES, 'rust.txt'));
  for (const section of [...new Set(rows.map((r) => r.section))]) {
    t.test(section, async (t) => {
      for (const r of rows.filter((x) => x.section === section)) t.equal(demangle(r.mangled), r.expected, r.mangled);
    });
  }
});

t.test('Rust: where we follow rustc-demangle rather than c++filt', async (t) => {
  for (const r of readTable(path.join(FIXTURES, 'rust-extensions.txt'))) {
    t.equal(demangle(r.mangled), r.expected, `${r.section}: ${r.mangled}`);
  }
});

t.test('entry points: dispatch, unchanged input, null results', async (t) => {
  for (const s of ['', '_', '_Z', 'main', '_start', 'memcpy@plt', 'foo.cold', '_R', 'ZN3foo3barE', '\u00e9\u0000']) {
    t.equal(demangle(s), s, `not mangled: ${JSON.stringify(s)}`);
    t.equal(tryDemangle(s), null, `tryDemangle null: ${JSON.stringify(s)}`);
  }
  // Legacy Rust names are valid C++ names too: recognised by the hash segment, as c++filt does.
  t.equal(demangle('_ZN4core3fmt5write17h5a5b2f1e8c1f9a3bE'), 'core::fmt::write');
  t.equal(demangleItanium('_ZN4core3fmt5write17h5a5b2f1e8c1f9a3bE'), 'core::fmt::write::h5a5b2f1e8c1f9a3b');
  t.equal(demangleRust('_ZN3foo3barE'), null, 'no hash: not Rust');
  t.equal(demangle('_ZN3foo3barE'), 'foo::bar', '... but C++');
  t.equal(demangleRust('_Z3foov'), null);
  t.equal(demangleItanium('_RNvC3foo3bar'), null);
  t.equal(demangle('_Z3foov'), 'foo()');
  t.equal(demangle('_RNvCs1234_7mycrate3foo'), 'mycrate::foo');
  const long = '_Z1f' + 'i'.repeat(ITANIUM_LIMITS.maxInput);
  t.equal(demangle(long), long, 'over-long input comes back unchanged');
});

/* ---------------------------------------------------------------------------------------------
 * Real binaries
 */

/** Shared libraries of a few well-known C++ code bases, found in the usual library directories. */
function cxxLibraries(): { name: string; file: string | null }[] {
  const dirs = [
    '/lib/x86_64-linux-gnu',
    '/usr/lib/x86_64-linux-gnu',
    '/lib/aarch64-linux-gnu',
    '/usr/lib/aarch64-linux-gnu',
    '/usr/lib64',
    '/usr/lib',
  ];
  const entries = dirs.flatMap((d) => {
    try {
      return fs.readdirSync(d).map((f) => path.join(d, f));
    } catch {
      return [];
    }
  });
  // The newest version when several are installed.
  const pick = (re: RegExp): string | null => {
    const hits = entries.filter((f) => re.test(path.basename(f)));
    hits.sort((a, b) => path.basename(b).localeCompare(path.basename(a), 'en', { numeric: true }));
    return hits[0] ?? null;
  };
  return [
    { name: 'libstdc++', file: pick(/^libstdc\+\+\.so\.6$/) },
    { name: 'LLVM', file: pick(/^libLLVM-\d+\.so\.1$/) },
    { name: 'clang-cpp', file: pick(/^libclang-cpp\.so\.\d+$/) },
    { name: 'Boost regex', file: pick(/^libboost_regex\.so\.[\d.]+$/) },
    { name: 'ICU common', file: pick(/^libicuuc\.so\.\d+$/) },
    { name: 'ICU i18n', file: pick(/^libicui18n\.so\.\d+$/) },
  ];
}

// The reference tools are part of the test set-up (.ci/run installs binutils; rustup's rustc is on
// every machine of this kind): a missing one fails the tests that need it, it never skips them.
const binutilsMissing = !haveCxxfilt || !haveNm ? 'c++filt and nm (binutils) are required as reference tools: apt-get install binutils' : null;

t.test('real corpus: mangled names of binaries on this machine vs c++filt', async (t) => {
  if (binutilsMissing) return t.fail(binutilsMissing);
  const nodeBin = fs.realpathSync(process.execPath);
  const corpora = [{ name: `node (${nodeBin})`, file: nodeBin as string | null }, ...cxxLibraries()];
  for (const c of corpora) {
    if (!c.file) {
      // node and libstdc++ are always there; the other libraries widen the corpus where installed.
      if (c.name === 'libstdc++') t.fail('libstdc++.so.6 not found');
      else t.comment(`${c.name}: not installed here, not part of this run's corpus`);
      continue;
    }
    t.test(`${c.name} (${c.file})`, async (t) => {
      const mangled = (n: string): boolean => n.startsWith('_Z') || n.startsWith('_R') || n.startsWith('_GLOBAL_');
      const names = symbolsOf(c.file!).filter(mangled);
      const expected = referenceFor(names);
      const start = process.hrtime.bigint();
      const rate = compare(names, expected);
      const ms = Number(process.hrtime.bigint() - start) / 1e6;
      t.comment(`demangled ${names.length} names in ${ms.toFixed(0)} ms (informational)`);
      report(t, c.name, rate, 99.5);
    });
  }
});

/* ---------------------------------------------------------------------------------------------
 * Rust, compiled here
 */

/** rustc from PATH or rustup's default location (CI's PATH may not include ~/.cargo/bin). */
const RUSTC = haveTool('rustc') ? 'rustc' : path.join(os.homedir(), '.cargo', 'bin', 'rustc');

function rustcSysroot(): string | null {
  const r = spawnSync(RUSTC, ['--print', 'sysroot'], { encoding: 'utf8' });
  return r.status === 0 ? r.stdout.trim() : null;
}

const sysroot = rustcSysroot();
const rustMissing = !sysroot ? `rustc is required to build the Rust sample (looked for ${RUSTC}): install it with rustup` : binutilsMissing;

t.test('Rust: a program compiled with legacy and v0 mangling', async (t) => {
  if (rustMissing) return t.fail(rustMissing);
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'ebpfprof-demangle-'));
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
  const src = path.join(FIXTURES, 'rust-sample.rs');
  const build = (mangling: 'v0' | 'legacy'): { bin: string | null; error: string } => {
    const out = path.join(dir, `sample-${mangling}`);
    // Legacy mangling is an unstable option on current stable rustc; RUSTC_BOOTSTRAP unlocks it.
    const unstable = mangling === 'legacy' ? ['-Z', 'unstable-options'] : [];
    const args = ['--edition', '2021', '--crate-name', 'sample', '-C', 'opt-level=0', ...unstable];
    const r = spawnSync(RUSTC, [...args, '-C', `symbol-mangling-version=${mangling}`, '-o', out, src], {
      encoding: 'utf8',
      env: { ...process.env, RUSTC_BOOTSTRAP: '1' },
    });
    return r.status === 0 ? { bin: out, error: '' } : { bin: null, error: r.stderr };
  };
  const wanted: Record<'v0' | 'legacy', string[]> = {
    v0: [
      'sample::main',
      'sample::main::{closure#0}',
      'sample::generic::<u64, char>',
      'sample::generic::<alloc::string::String, (i32, i32)>',
      '<sample::Circle<f64> as sample::Shape>::area',
      '<sample::Circle<&str>>::show',
      '<sample::Arr<7>>::len',
      "sample::boolconst::<true, 'x', -3>",
      'sample::generic_arr::<u16, 4>',
      'sample::nested::deeper::hot_ñame',
      'sample::nested::deeper::東京',
      'sample::with_closure::{closure#1}',
    ],
    legacy: [
      'sample::main',
      'sample::main::{{closure}}',
      'sample::generic',
      '<sample::Circle<f64> as sample::Shape>::area',
      'sample::Circle<T>::show',
      'sample::Arr<_>::len',
      'sample::nested::deeper::hot_ñame',
      'sample::nested::deeper::東京',
    ],
  };
  const v0 = build('v0');
  const legacy = build('legacy');
  for (const [mangling, built] of [['v0', v0], ['legacy', legacy]] as const) {
    t.ok(built.bin, `rustc builds the sample with ${mangling} mangling${built.error ? `:\n${built.error}` : ''}`);
    if (!built.bin) continue;
    t.test(mangling, async (t) => {
      const names = symbolsOf(built.bin!).filter(isRustName);
      const ours = new Set(names.map(demangle));
      for (const w of wanted[mangling]) t.ok(ours.has(w), `demangles to ${w}`);
      report(t, `rust sample (${mangling})`, compare(names, referenceFor(names)), 99.5);
    });
  }
});

const rustcDriver = ((): string | null => {
  const libDir = sysroot ? path.join(sysroot, 'lib') : null;
  if (!libDir || !fs.existsSync(libDir)) return null;
  const lib = fs.readdirSync(libDir).find((f) => /^librustc_driver-.*\.so$/.test(f));
  return lib ? path.join(libDir, lib) : null;
})();

t.test('Rust: the toolchain’s own rustc_driver library (v0, a hundred thousand names)', async (t) => {
  if (rustMissing) return t.fail(rustMissing);
  if (!rustcDriver) return t.fail(`librustc_driver not found in the rustc sysroot ${sysroot}`);
  const lib = path.basename(rustcDriver!);
  const names = symbolsOf(rustcDriver!).filter(isRustName);
  const expected = referenceFor(names);
  const rate = compare(names, expected);
  // libiberty prints const generics wider than 64 bits incorrectly (`-0x000…_`); rustc-demangle,
  // which we follow, prints the full value. Those rows have no usable reference.
  const usable = rate.mismatches.filter((m) => !/0x[0-9a-f]*_/.test(m.expected));
  const unusable = rate.mismatches.length - usable.length;
  t.comment(`${unusable} names with >64-bit const generics have no c++filt reference`);
  report(t, `rustc_driver (${lib})`, { ...rate, total: rate.total - unusable, mismatches: usable }, 99.5);
});

/* ---------------------------------------------------------------------------------------------
 * Robustness
 */

t.test('fuzz: random and mutated names never throw and always return a string', async (t) => {
  const seed = Number(process.env.EBPFPROF_FUZZ_SEED ?? 20240601);
  t.comment(`seed ${seed} (set EBPFPROF_FUZZ_SEED to reproduce another run)`);
  const rnd = prng(seed);
  const pick = <T>(xs: readonly T[]): T => xs[Math.floor(rnd() * xs.length)]!;
  const valid = [
    ...readTable(path.join(FIXTURES, 'itanium.txt')),
    ...readTable(path.join(FIXTURES, 'rust.txt')),
    ...readTable(path.join(FIXTURES, 'rust-extensions.txt')),
  ].map((r) => r.mangled);
  const alphabet = 'NEIJXLZKVrROPFAMCDUBGSTtsp_0123456789abcdefghijlmnoquvwxyzHKQW.$';
  const inputs: string[] = [];
  // Random strings over the mangling alphabet, behind the real prefixes.
  for (let i = 0; i < 6000; i++) {
    let s = pick(['_Z', '_ZN', '_R', '_RN', '_GLOBAL__I_', '']);
    const n = Math.floor(rnd() * 80);
    for (let j = 0; j < n; j++) s += alphabet[Math.floor(rnd() * alphabet.length)];
    inputs.push(s);
  }
  // Arbitrary UTF-16, including lone surrogates and control characters.
  for (let i = 0; i < 1000; i++) {
    let s = pick(['_Z', '_R', '_ZN']);
    const n = Math.floor(rnd() * 40);
    for (let j = 0; j < n; j++) s += String.fromCharCode(Math.floor(rnd() * 0x10000));
    inputs.push(s);
  }
  // Mutations and truncations of valid names.
  for (let i = 0; i < 20000; i++) {
    let s = pick(valid);
    const edits = 1 + Math.floor(rnd() * 3);
    for (let e = 0; e < edits; e++) {
      const at = 2 + Math.floor(rnd() * Math.max(1, s.length - 2));
      const r = rnd();
      const ch = alphabet[Math.floor(rnd() * alphabet.length)]!;
      if (r < 0.25) s = s.slice(0, at);
      else if (r < 0.5) s = s.slice(0, at) + ch + s.slice(at + 1);
      else if (r < 0.7) s = s.slice(0, at) + ch + s.slice(at);
      else if (r < 0.85) s = s.slice(0, at) + s.slice(at + 1 + Math.floor(rnd() * 4));
      else {
        const o = pick(valid);
        s = s.slice(0, at) + o.slice(2 + Math.floor(rnd() * Math.max(1, o.length - 2)));
      }
    }
    inputs.push(s);
  }
  let threw = 0;
  let notString = 0;
  let firstThrow = '';
  for (const s of inputs) {
    try {
      const r = demangle(s);
      if (typeof r !== 'string') notString++;
      const r2 = tryDemangle(s);
      if (r2 !== null && r2 !== r) notString++;
    } catch (e) {
      if (threw++ === 0) firstThrow = `${JSON.stringify(s)}: ${String(e)}`;
    }
  }
  t.equal(threw, 0, `no input throws${firstThrow ? ` (first: ${firstThrow})` : ''}`);
  t.equal(notString, 0, 'every result is a string, and tryDemangle agrees with demangle');
  t.comment(`${inputs.length} inputs`);
});

/** A base-36 C++ substitution reference to substitution number `i`. */
function cxxSub(i: number): string {
  return i === 0 ? 'S_' : `S${(i - 1).toString(36).toUpperCase()}_`;
}

/** A base-62 Rust v0 backref to byte offset `i` (counted after `_R`). */
function rustBackref(i: number): string {
  if (i === 0) return 'B_';
  const digits = '0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ';
  let n = i - 1;
  let s = '';
  do {
    s = digits[n % 62] + s;
    n = Math.floor(n / 62);
  } while (n > 0);
  return `B${s}_`;
}

t.test('pathological inputs finish and come back unchanged', async (t) => {
  const cases: [string, string][] = [];
  cases.push(['deep pointer nesting', '_Z1f' + 'P'.repeat(60000) + 'v']);
  cases.push(['deep template nesting', '_Z1f' + '1AI'.repeat(20000) + 'i' + 'E'.repeat(20000)]);
  cases.push(['deep function types', '_Z1f' + 'PF'.repeat(15000) + 'v' + 'vE'.repeat(15000)]);
  cases.push(['deep expression', '_Z1fILi1EEvN1AIX' + 'pl'.repeat(20000) + 'Li1E'.repeat(20001) + 'EE1TE']);
  cases.push(['huge identifier length', '_Z99999999999999999x']);
  cases.push(['huge substitution index', '_Z1fS99999999999999999999_']);
  cases.push(['huge template parameter index', '_Z1fIiEvT999999999999999999_']);
  cases.push(['huge pack', '_Z1fIJ' + 'i'.repeat(30000) + 'EEvDpT_']);
  cases.push(['nested packs', '_Z1fI' + 'J'.repeat(30000) + 'E'.repeat(30000) + 'Evv']);
  cases.push(['thunks of thunks', '_Z' + 'Thn8_'.repeat(12000) + '1fv']);
  cases.push(['local names in local names', '_Z' + 'Z'.repeat(20000) + '1fv' + 'E1x'.repeat(20000)]);
  // Each substitution doubles the previous one: 2^45 characters if printed in full.
  let doubling = '_Z1f1A';
  for (let i = 1; i <= 45; i++) doubling += `${cxxSub(i - 1)}I${cxxSub(i - 1)}${cxxSub(i - 1)}E`;
  cases.push(['exponential substitutions', doubling]);
  // Template argument that refers to itself.
  cases.push(['self-referential template parameter', '_Z1fIT_EvT_']);
  cases.push(['Rust backref loop', '_RNvB_3foo']);
  cases.push(['Rust deep generics', '_RINvC1a1b' + 'INtC1a1c'.repeat(5000) + 'u' + 'E'.repeat(5001)]);
  cases.push(['Rust huge identifier', '_RNvC1a99999999999x']);
  cases.push(['Rust deep references', '_RINvC1a1b' + 'R'.repeat(40000) + 'uE']);
  cases.push(['Rust deep const arrays', '_RINvC1a1bKA' + 'A'.repeat(30000) + 'E'.repeat(30001) + 'E']);
  // Rust types built from two backrefs to the previous type: exponential if printed in full.
  let v0 = 'INvC1a1b';
  let prev = v0.length;
  v0 += 'u';
  for (let i = 0; i < 40; i++) {
    const at = v0.length;
    v0 += 'T' + rustBackref(prev) + rustBackref(prev) + 'E';
    prev = at;
  }
  cases.push(['Rust exponential backrefs', '_R' + v0 + 'E']);
  for (const [what, input] of cases) {
    let out: string | undefined;
    t.doesNotThrow(() => {
      out = demangle(input);
    }, what);
    t.equal(out, input, `${what}: unchanged`);
  }
  // Aborted calls leave no state behind: ordinary names still demangle afterwards. (Shared builtin
  // type nodes used to keep a stale "being printed" mark when the output limit hit inside them.)
  for (let extra = 0; extra < 8; extra++) {
    let s = '_Z1f1AIiE' + 'i'.repeat(extra);
    for (let i = 1; i <= 30; i++) s += `${cxxSub(i)}I${cxxSub(i)}i${cxxSub(i)}E`;
    t.equal(demangle(s), s, `builtin-heavy exponential substitutions (${extra}): unchanged`);
  }
  for (const [m, d] of [['_Z1fi', 'f(int)'], ['_Z1fl', 'f(long)'], ['_Z1fPKc', 'f(char const*)']]) {
    t.equal(demangle(m!), d, `${m} still demangles after the aborted calls`);
  }
  // Array bounds are printed as written, however large, like c++filt does.
  t.equal(demangle('_Z1fA99999999999999999999999_i'), 'f(int [99999999999999999999999])', 'huge array bound');
  // Bounded but real: a long, legitimately nested name still demangles.
  const nested = '_Z1f' + 'P'.repeat(200) + 'i';
  t.equal(demangle(nested), 'f(int' + '*'.repeat(200) + ')', 'moderately deep nesting is fine');
});
