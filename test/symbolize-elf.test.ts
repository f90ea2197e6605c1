// SPDX-License-Identifier: Apache-2.0
// ELF reading checked against the reference tools (readelf, nm): fixture binaries compiled here
// (PIE, non-PIE, a shared library, stripped binaries with separate debug files found by build id and
// by .gnu_debuglink, a stripped Go binary) and the large real /usr/bin/node, of which only the
// needed parts may be read.
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import t, { Test } from 'tap';
import { BinaryModule, BinaryStore, newBinaryStoreStats } from '../src/symbolize/binaries';
import { ET_DYN, ET_EXEC } from '../src/symbolize/elf';
import { ElfFile, FdSource, loadSymbolTable } from '../src/symbolize/elf-file';
import { SymbolTable, SymbolTableBuilder } from '../src/symbolize/symbol-table';
import { buildFixtures, buildGoFixture, buildIdOf, loadSegments, nmAddress, nmSymbols, readelfFunctions } from './fixtures/elf/fixtures';

const fx = buildFixtures();

function openElf(file: string): { elf: ElfFile; src: FdSource; close: () => void } {
  const fd = fs.openSync(file, 'r');
  const src = new FdSource(fd, fs.fstatSync(fd).size);
  return { elf: new ElfFile(src), src, close: () => fs.closeSync(fd) };
}

function nameAt(table: SymbolTable, address: number): string | null {
  const i = table.lookup(address);
  return i < 0 ? null : table.name(i);
}

/** Every FUNC/IFUNC symbol readelf lists resolves, at its start and its last byte, to a name at that address. */
function checkAgainstReadelf(t: Test, table: SymbolTable, reference: string, dynamic = false): void {
  const funcs = readelfFunctions(reference, dynamic);
  t.ok(funcs.length > 0, `readelf lists functions of ${path.basename(reference)}`);
  const namesAt = new Map<number, Set<string>>();
  for (const f of funcs) namesAt.set(f.address, (namesAt.get(f.address) ?? new Set()).add(f.name));
  const starts = [...namesAt.keys()].sort((a, b) => a - b);
  let bad = 0;
  for (const f of funcs) {
    const got = nameAt(table, f.address);
    if (got === null || !namesAt.get(f.address)!.has(got)) {
      bad++;
      t.fail(`${f.name} at 0x${f.address.toString(16)} resolved to ${got}`);
    }
    // The last byte of a sized function belongs to it unless another function starts inside it.
    const nestedStart = starts.some((s) => s > f.address && s < f.address + f.size);
    if (f.size > 1 && !nestedStart) {
      const last = nameAt(table, f.address + f.size - 1);
      if (last === null || !namesAt.get(f.address)!.has(last)) {
        bad++;
        t.fail(`last byte of ${f.name} resolved to ${last}`);
      }
    }
  }
  t.equal(bad, 0, `all ${funcs.length} functions of ${path.basename(reference)} resolve as readelf says`);
}

t.test('PIE, non-PIE and shared library: header facts and every function against readelf', async (t) => {
  for (const [file, type] of [
    [fx.pie, ET_DYN],
    [fx.nopie, ET_EXEC],
    [fx.lib, ET_DYN],
    [fx.cxx, ET_DYN],
  ] as const) {
    const { elf, close } = openElf(file);
    try {
      t.equal(elf.header.type, type, `${path.basename(file)} type`);
      const s = elf.summary();
      t.equal(s.buildId, buildIdOf(file), 'build id as readelf -n prints it');
      t.same(
        s.segments.map((p) => [p.offset, p.vaddr, p.filesz]),
        loadSegments(file).map((p) => [p.offset, p.vaddr, p.filesz]),
        'PT_LOAD segments as readelf -l prints them',
      );
      t.equal(s.hasSymtab, true);
      t.equal(s.isGo, false);
      const { table, source } = loadSymbolTable(elf, null);
      t.equal(source, 'symtab');
      checkAgainstReadelf(t, table, file);
    } finally {
      close();
    }
  }
});

t.test('zero-size and IFUNC symbols', async (t) => {
  const { elf, close } = openElf(fx.pie);
  try {
    const { table } = loadSymbolTable(elf, null);
    const zero = readelfFunctions(fx.pie).find((f) => f.name === 'zero_size_fn')!;
    t.equal(zero.size, 0, 'the fixture really has a zero-size symbol');
    t.equal(nameAt(table, zero.address + 4), 'zero_size_fn', 'covers the code up to the next symbol');
    const ifunc = readelfFunctions(fx.pie).find((f) => f.name === 'ifunc_fn')!;
    t.equal(ifunc.type, 'IFUNC');
    t.equal(nameAt(table, ifunc.address), 'ifunc_fn', 'global IFUNC beats the local resolver alias');
  } finally {
    close();
  }
});

t.test('.dynsym only (a binary stripped of .symtab, no debug file anywhere)', async (t) => {
  const { elf, close } = openElf(fx.strippedBuildId);
  try {
    const s = elf.summary();
    t.equal(s.hasSymtab, false);
    t.equal(s.hasDynsym, true);
    const { source, table } = loadSymbolTable(elf, null);
    t.equal(source, 'none', 'an executable exports no functions of its own');
    t.equal(table.count, 0);
  } finally {
    close();
  }
  const { elf: lib, close: closeLib } = openElf(fx.lib);
  try {
    const b = new SymbolTableBuilder();
    lib.addSymbols(11, b);
    checkAgainstReadelf(t, b.build(lib.execRanges()), fx.lib, true);
  } finally {
    closeLib();
  }
});

function storeFor(debugDirs: string[]): BinaryStore {
  return new BinaryStore({ maxOpenFiles: 16, maxCachedBytes: 1 << 26, debugDirs }, newBinaryStoreStats());
}

t.test('stripped binary: debug file found by build id', async (t) => {
  const store = storeFor([fx.debugDir]);
  try {
    const m = store.open([fx.strippedBuildId], 0, fx.strippedBuildId, ['']) as BinaryModule;
    t.type(m, BinaryModule);
    t.equal(m.summary.hasSymtab, false);
    t.match(m.debug, { via: 'build-id' });
    const table = store.symbols(m) as SymbolTable;
    t.type(table, SymbolTable);
    t.equal(store.stats.symbolSources['debug-symtab'], 1);
    // The unstripped original is the reference (same build id, same code).
    t.equal(buildIdOf(path.join(fx.dir, 'spin-bid')), m.summary.buildId);
    checkAgainstReadelf(t, table, path.join(fx.dir, 'spin-bid'));
  } finally {
    store.close();
  }
  const none = storeFor([path.join(fx.dir, 'no-such-debug-dir')]);
  const m2 = none.open([fx.strippedBuildId], 0, fx.strippedBuildId, ['']) as BinaryModule;
  t.equal(m2.debug, null, 'not found elsewhere');
  none.close();
});

t.test('stripped binary: debug file found by .gnu_debuglink (same dir, .debug/, debugdir/dir/), CRC checked', async (t) => {
  const reference = path.join(fx.dir, 'spin-dl');
  const check = (store: BinaryStore, binary: string, label: string): void => {
    const m = store.open([binary], 0, binary, ['']) as BinaryModule;
    t.equal(m.summary.buildId, '', `${label}: no build id, only the link`);
    t.match(m.summary.debugLink, { fileName: fx.debugLinkName });
    t.match(m.debug, { via: 'debuglink' }, label);
    const table = store.symbols(m) as SymbolTable;
    t.type(table, SymbolTable, label);
    t.equal(nameAt(table, nmAddress(reference, 'spin_alpha') + 3), 'spin_alpha', label);
    checkAgainstReadelf(t, table, reference);
    store.close();
  };
  check(storeFor([]), fx.strippedDebugLink, 'next to the binary');

  const sub = fs.mkdtempSync(path.join(os.tmpdir(), 'ebpfprof-dl-'));
  fs.copyFileSync(fx.strippedDebugLink, path.join(sub, 'prog'));
  fs.mkdirSync(path.join(sub, '.debug'));
  fs.copyFileSync(fx.debugLinkDebugFile, path.join(sub, '.debug', fx.debugLinkName));
  check(storeFor([]), path.join(sub, 'prog'), 'in .debug/');

  const global = fs.mkdtempSync(path.join(os.tmpdir(), 'ebpfprof-dl-'));
  const dbg = fs.mkdtempSync(path.join(os.tmpdir(), 'ebpfprof-dbg-'));
  fs.copyFileSync(fx.strippedDebugLink, path.join(global, 'prog'));
  fs.mkdirSync(path.join(dbg, global), { recursive: true });
  fs.copyFileSync(fx.debugLinkDebugFile, path.join(dbg, global, fx.debugLinkName));
  check(storeFor([dbg]), path.join(global, 'prog'), 'under <debugdir>/<dir>/');

  // A file with the linked name but other contents: the CRC refuses it.
  const wrong = fs.mkdtempSync(path.join(os.tmpdir(), 'ebpfprof-dl-'));
  fs.copyFileSync(fx.strippedDebugLink, path.join(wrong, 'prog'));
  fs.copyFileSync(path.join(fx.dir, 'spin-nopie'), path.join(wrong, fx.debugLinkName));
  const store = storeFor([]);
  const m = store.open([path.join(wrong, 'prog')], 0, path.join(wrong, 'prog'), ['']) as BinaryModule;
  t.equal(m.debug, null, 'mismatching CRC: not used');
  t.equal(store.stats.debugFilesRejected['crc-mismatch'], 1);
  store.close();
  for (const d of [sub, global, dbg, wrong]) fs.rmSync(d, { recursive: true, force: true });
});

t.test('stripped Go binary: functions from .gopclntab', async (t) => {
  const go = buildGoFixture(fx.dir);
  const { elf, close } = openElf(go.stripped);
  try {
    const s = elf.summary();
    t.equal(s.isGo, true);
    t.equal(s.hasSymtab, false);
    const { table, source } = loadSymbolTable(elf, null);
    t.equal(source, 'gopclntab');
    // -s -w drops only symbols and DWARF: code addresses equal the unstripped build's.
    const ref = nmSymbols(go.full).filter((x) => x.type === 'T' || x.type === 't');
    for (const name of ['main.spinGopher', 'main.main', 'runtime.main', 'runtime.mallocgc', 'fmt.Fprintln']) {
      const sym = ref.find((x) => x.name === name);
      t.ok(sym, `nm lists ${name}`);
      t.equal(nameAt(table, sym!.address), name);
      t.equal(nameAt(table, sym!.address + 1), name);
    }
    let agree = 0;
    for (const sym of ref) if (nameAt(table, sym.address) === sym.name) agree++;
    t.ok(agree / ref.length > 0.9, `most Go functions agree with nm (${agree}/${ref.length})`);
  } finally {
    close();
  }
});

t.test('/usr/bin/node: a handful of .dynsym addresses, reading only the needed parts', async (t) => {
  const node = fs.realpathSync('/usr/bin/node');
  const size = fs.statSync(node).size;
  const dyn = readelfFunctions(node, true).filter((f) => f.size > 16);
  t.ok(dyn.length > 1000, 'node exports many functions');
  const pick = [0, 1, 2, 3, 4, 5].map((k) => dyn[Math.floor((k * (dyn.length - 1)) / 5)]!);
  const namesAt = new Map<number, Set<string>>();
  for (const f of readelfFunctions(node)) namesAt.set(f.address, (namesAt.get(f.address) ?? new Set()).add(f.name));
  for (const f of readelfFunctions(node, true)) namesAt.set(f.address, (namesAt.get(f.address) ?? new Set()).add(f.name));

  const heapBefore = process.memoryUsage();
  const t0 = process.hrtime.bigint();
  const { elf, src, close } = openElf(node);
  try {
    const { table, source } = loadSymbolTable(elf, null);
    const ms = Number(process.hrtime.bigint() - t0) / 1e6;
    const after = process.memoryUsage();
    t.comment(
      `node: ${table.count} symbols from ${source} in ${ms.toFixed(0)} ms, table ${(table.byteSize / 1048576).toFixed(1)} MiB, read ${(src.bytesRead / 1048576).toFixed(1)} of ${(size / 1048576).toFixed(1)} MiB, heap+external delta ${((after.heapUsed + after.external - heapBefore.heapUsed - heapBefore.external) / 1048576).toFixed(1)} MiB`,
    );
    t.ok(table.count > 50000);
    for (const f of pick) {
      const got = nameAt(table, f.address + Math.floor(f.size / 2));
      t.ok(got !== null && namesAt.get(f.address)!.has(got), `${f.name}+${Math.floor(f.size / 2)} -> ${got}`);
    }
    t.ok(src.bytesRead < size * 0.2, `read ${src.bytesRead} bytes of a ${size}-byte binary`);
    t.ok(table.byteSize < 32 * 1048576, 'compact table');
  } finally {
    close();
  }
});

t.test('the symbol table cache is bounded and keyed by build id', async (t) => {
  const store = new BinaryStore({ maxOpenFiles: 2, maxCachedBytes: 1, debugDirs: [] }, newBinaryStoreStats());
  try {
    const a = store.open([fx.pie], 0, fx.pie, ['']) as BinaryModule;
    const copy = path.join(fx.dir, 'spin-pie-copy');
    fs.copyFileSync(fx.pie, copy);
    const a2 = store.open([copy], 0, copy, ['']) as BinaryModule;
    t.not(a2, a, 'another file');
    t.equal(a2.symbolKey, a.symbolKey, 'same build id, same cache key');
    const ta = store.symbols(a);
    t.equal(store.symbols(a2), ta, 'the table is shared');
    t.equal(store.stats.symbolTableCacheHits, 1);
    const b = store.open([fx.nopie], 0, fx.nopie, ['']) as BinaryModule;
    store.symbols(b);
    t.equal(store.cachedTables, 1, 'over budget: only the newest table stays');
    t.equal(store.stats.symbolTablesEvicted, 1);
    store.open([fx.lib], 0, fx.lib, ['']);
    t.equal(store.openFiles, 2, 'descriptors bounded');
    t.ok(store.stats.descriptorsEvicted >= 2);
    // The evicted descriptor is reopened through the remembered path.
    t.type(store.symbols(a), SymbolTable);
  } finally {
    store.close();
  }
});

t.test('a held binary serves a mapping by device and inode without opening it; not once its descriptor is gone', async (t) => {
  const store = new BinaryStore({ maxOpenFiles: 2, maxCachedBytes: 1 << 26, debugDirs: [] }, newBinaryStoreStats());
  try {
    const st = fs.statSync(fx.pie);
    t.equal(store.openHeld(st.dev, st.ino), null, 'nothing held yet');
    const a = store.open([fx.pie], st.ino, fx.pie, ['']) as BinaryModule;
    t.type(a, BinaryModule);
    const opened = store.stats.binariesOpened;
    t.equal(store.openHeld(st.dev, st.ino), a, 'the same module, by device and inode');
    t.equal(store.stats.heldDescriptorHits, 1);
    t.equal(store.stats.binariesOpened, opened, 'nothing opened');
    t.equal(store.openHeld(st.dev + 1, st.ino), null, 'another device: not this file');
    t.equal(store.openHeld(st.dev, 0), null, 'inode 0 (anonymous, unknown) never matches');
    // A copy has another inode: never served by the original.
    const copy = path.join(fx.dir, 'spin-pie-held-copy');
    fs.copyFileSync(fx.pie, copy);
    t.equal(store.openHeld(st.dev, fs.statSync(copy).ino), null, 'a copy is another file');
    // Two more binaries evict the first descriptor (maxOpenFiles 2): the inode is no longer pinned.
    store.open([fx.nopie], 0, fx.nopie, ['']);
    store.open([fx.lib], 0, fx.lib, ['']);
    t.equal(store.openHeld(st.dev, st.ino), null, 'descriptor evicted: opened again the ordinary way');
    t.equal(store.open([fx.pie], st.ino, fx.pie, ['']), a, 'which finds the module it knew');
    t.equal(store.openHeld(st.dev, st.ino), a, 'and holds it again');
    store.close();
    t.equal(store.openHeld(st.dev, st.ino), null, 'nothing held after close()');
  } finally {
    store.close();
  }
});
