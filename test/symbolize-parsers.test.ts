// SPDX-License-Identifier: Apache-2.0
// Table and fixture tests of the pure parsers: /proc/PID/maps and status, /proc/kallsyms, perf maps,
// ELF headers, notes and .gnu_debuglink, the symbol table and the CRC32 used for debuglinks.
import * as fs from 'node:fs';
import * as path from 'node:path';
import * as zlib from 'node:zlib';
import t from 'tap';
import { crc32 } from '../src/symbolize/crc32';
import { debugFileCandidates } from '../src/symbolize/debuginfo';
import { ElfFormatError, fileOffsetToVaddr, parseDebugLink, parseElfHeader, parseNotes, findBuildId, PT_LOAD, PF_X } from '../src/symbolize/elf';
import { parseKallsyms } from '../src/symbolize/kallsyms';
import { parsePerfMap, parsePerfMapLine } from '../src/symbolize/perf-map';
import { findMapping, parseProcMaps, parseProcMapsLine, parseProcIds } from '../src/symbolize/proc-maps';
import { SymbolTableBuilder } from '../src/symbolize/symbol-table';
import { fixturesDir } from './helpers/paths';

const fixture = (...p: string[]): string => fs.readFileSync(path.join(fixturesDir, ...p), 'utf8');

t.test('/proc/PID/maps: odd lines', async (t) => {
  const { entries, skipped } = parseProcMaps(fixture('proc', 'maps-odd.txt'));
  // "this is not a maps line" and the end-before-start line; [vsyscall] is expected, not an error.
  t.equal(skipped, 2);
  t.equal(entries.length, 12);
  const byStart = new Map(entries.map((e) => [e.start, e]));
  const prog = byStart.get(0x55d0c0a02000)!;
  t.match(prog, { end: 0x55d0c0a05000, executable: true, readable: true, writable: false, shared: false, offset: 0x2000, devMajor: 0xfe, devMinor: 1, inode: 1234567, path: '/usr/bin/my prog', deleted: false, kind: 'file' });
  t.match(byStart.get(0x55d0c0c00000), { kind: 'heap', path: '[heap]', executable: false });
  t.match(byStart.get(0x7f1a00000000), { kind: 'anon', path: '', inode: 0 });
  t.match(byStart.get(0x7f1a10000000), { kind: 'anon', path: '[anon:v8 code space]', executable: true });
  t.match(byStart.get(0x7f1a20000000), { kind: 'memfd', path: '/memfd:jit-code', deleted: true, shared: true });
  t.match(byStart.get(0x7f1a30000000), { kind: 'file', path: '/usr/lib/libold.so.1', deleted: true, offset: 0x1000 });
  t.match(byStart.get(0x7f1a40000000), { kind: 'file', path: '/tmp/new\nline' });
  t.match(byStart.get(0x7f1a50000000), { kind: 'anon', executable: true, writable: true });
  t.match(byStart.get(0x7ffd10000000), { kind: 'stack' });
  t.match(byStart.get(0x7ffd10100000), { kind: 'special', path: '[vvar]' });
  t.match(byStart.get(0x7ffd10104000), { kind: 'vdso', executable: true });
  // sorted, and binary search finds the containing entry
  for (let i = 1; i < entries.length; i++) t.ok(entries[i - 1]!.start <= entries[i]!.start);
  t.equal(entries[findMapping(entries, 0x55d0c0a04fff)]!.start, 0x55d0c0a02000);
  t.equal(findMapping(entries, 0x55d0c0a05000 + 0x1000), -1);
  t.equal(findMapping(entries, 0), -1);
});

t.test('/proc/PID/maps: line table', async (t) => {
  const cases: Array<[string, ReturnType<typeof parseProcMapsLine>]> = [
    ['00400000-00452000 r-xp 00000000 08:02 173521      /usr/bin/dbus-daemon', { start: 0x400000, end: 0x452000, readable: true, writable: false, executable: true, shared: false, offset: 0, devMajor: 8, devMinor: 2, inode: 173521, path: '/usr/bin/dbus-daemon', deleted: false, kind: 'file' }],
    ['7f0000000000-7f0000001000 ---p 00000000 00:00 0', { start: 0x7f0000000000, end: 0x7f0000001000, readable: false, writable: false, executable: false, shared: false, offset: 0, devMajor: 0, devMinor: 0, inode: 0, path: '', deleted: false, kind: 'anon' }],
    ['7f0000000000-7f0000001000 r-xp 00000000 00:05 12 anon_inode:[perf_event]', { start: 0x7f0000000000, end: 0x7f0000001000, readable: true, writable: false, executable: true, shared: false, offset: 0, devMajor: 0, devMinor: 5, inode: 12, path: 'anon_inode:[perf_event]', deleted: false, kind: 'special' }],
    ['1000-2000 r-xp 00000000 fe:01 5 /a path/with  two  spaces (deleted)', { start: 0x1000, end: 0x2000, readable: true, writable: false, executable: true, shared: false, offset: 0, devMajor: 0xfe, devMinor: 1, inode: 5, path: '/a path/with  two  spaces', deleted: true, kind: 'file' }],
  ];
  for (const [line, want] of cases) t.same(parseProcMapsLine(line), want, line);
  for (const bad of ['', '1000-2000', '1000-2000 rwxq 0 0:0 0', 'xyz-2000 r-xp 00000000 00:00 0', '1000-2000 r-xp 00000000 00:00 notanumber', 'ffffffffffffffffff-fffffffffffffffffff r-xp 00000000 00:00 0 /x']) {
    t.equal(parseProcMapsLine(bad), null, JSON.stringify(bad));
  }
});

t.test('/proc/PID/status: NSpid and uid', async (t) => {
  t.same(parseProcIds(fixture('proc', 'status-nspid.txt')), { nsPid: 7, uid: 1000 });
  t.same(parseProcIds('Name:\tx\nNSpid:\t42\nUid:\t0\t0\t0\t0\n'), { nsPid: 42, uid: 0 });
  t.same(parseProcIds('garbage\nNSpid:\tabc\n'), { nsPid: null, uid: null });
});

t.test('kallsyms: fixture with modules, weak and non-text symbols', async (t) => {
  const { table, skipped, restricted } = parseKallsyms(fixture('kallsyms', 'kallsyms-small.txt'));
  t.equal(restricted, false);
  t.equal(skipped, 3, 'the garbage line, the nameless line and the bad hex line');
  const at = (a: bigint): string | null => {
    const i = table.lookup(a);
    return i < 0 ? null : `${table.name(i)}${table.module(i) ? ` [${table.module(i)}]` : ''}`;
  };
  t.equal(at(0xffffffff81000000n), '_stext', 'first text symbol at an address wins over its alias');
  t.equal(at(0xffffffff81001000n), 'do_one_initcall');
  t.equal(at(0xffffffff810011ffn), 'do_one_initcall');
  t.equal(at(0xffffffff81001234n), 'local_helper');
  t.equal(at(0xffffffff81001500n), 'weak_hook');
  t.equal(at(0xffffffff81001650n), null, 'data symbol bounds the text before it');
  t.equal(at(0xffffffff810023ffn), 'schedule');
  t.equal(at(0xffffffff81003010n), null, 'rodata');
  t.equal(at(0xffffffff80000000n), null, 'before the first symbol');
  t.equal(at(0xffffffffc0a00010n), 'nft_do_chain [nf_tables]');
  t.equal(at(0xffffffffc0a00500n), 'nft_register_expr [nf_tables]');
  t.equal(at(0xffffffffc0a00900n), null, 'module data');
  t.equal(at(0xffffffffc0b00100n), 'ext4_fill_super [ext4]');
  t.equal(at(0xffffffffc0b00000n + (4n << 20n)), null, 'far past the last symbol of a module');
  t.same([...table.modules], ['', 'nf_tables', 'ext4']);
  t.same(table.moduleRange(table.lookup(0xffffffffc0a00010n)), { start: 0xffffffffc0a00000n, end: 0xffffffffc0a00400n });
});

t.test('kallsyms: kptr_restrict zeroes are reported as restricted', async (t) => {
  const { table, restricted } = parseKallsyms(fixture('kallsyms', 'kallsyms-restricted.txt'));
  t.equal(restricted, true);
  t.equal(table.count, 0);
  t.equal(table.lookup(0xffffffff81000000n), -1);
  t.same(parseKallsyms('').restricted, false, 'an empty file is not "restricted"');
});

t.test('perf maps', async (t) => {
  t.same(parsePerfMapLine('3ef414c0 80 JS:*hotLoop /app/index.js:12'), { start: 0x3ef414c0, size: 0x80, name: 'JS:*hotLoop /app/index.js:12' });
  t.same(parsePerfMapLine('0x10 0x20 a'), { start: 0x10, size: 0x20, name: 'a' });
  t.same(parsePerfMapLine('10 20 name\r'), { start: 0x10, size: 0x20, name: 'name' });
  for (const bad of ['', '10', '10 20', '10 20 ', 'g0 20 x', '10 0 zero', '10000000000000000 1 toolong', ' 10 20 x']) t.equal(parsePerfMapLine(bad), null, JSON.stringify(bad));
  const { table, skipped } = parsePerfMap(fixture('perfmap', 'perf-1234.map'));
  t.equal(skipped, 3, 'garbage, zero size, nameless');
  const at = (a: number): string | null => {
    const i = table.lookup(a);
    return i < 0 ? null : table.name(i);
  };
  t.equal(at(0x3ef414c0), 'JS:*hotLoopReoptimized /app/index.js:12', 'a later line for the same start replaces the earlier');
  t.equal(at(0x3ef414c0 + 0x5f), 'JS:*hotLoopReoptimized /app/index.js:12');
  t.equal(at(0x3ef414c0 + 0x60), null, 'the replacement size counts');
  t.equal(at(0x3ef41610), 'Builtin:ArgumentsAdaptorTrampoline');
  t.equal(at(0x3ef41700 + 0xff), 'LazyCompile:~render file:///app/a b.js:3:9');
  t.equal(at(0x3ef41800), null);
  t.equal(at(0x7fffffff0005), 'Stub:CEntry');
});

/** A minimal ELF64 header for the table below. */
function elfHeader(patch: (b: Buffer) => void = () => {}): Buffer {
  const b = Buffer.alloc(64);
  b.set([0x7f, 0x45, 0x4c, 0x46, 2, 1, 1], 0);
  b.writeUInt16LE(3, 16); // ET_DYN
  b.writeUInt16LE(62, 18); // x86-64
  b.writeBigUInt64LE(0x1040n, 24);
  b.writeBigUInt64LE(64n, 32);
  b.writeBigUInt64LE(0x3000n, 40);
  b.writeUInt16LE(56, 54);
  b.writeUInt16LE(2, 56);
  b.writeUInt16LE(64, 58);
  b.writeUInt16LE(30, 60);
  b.writeUInt16LE(29, 62);
  patch(b);
  return b;
}

t.test('ELF header table', async (t) => {
  t.match(parseElfHeader(elfHeader()), { type: 3, machine: 62, entry: 0x1040, phoff: 64, shoff: 0x3000, phnum: 2, shnum: 30, shstrndx: 29 });
  const rejects: Array<[string, Buffer, RegExp]> = [
    ['empty', Buffer.alloc(0), /not an ELF file/],
    ['not ELF', Buffer.from('#!/bin/sh\necho hello world, this is a script and not an ELF file at all......'), /not an ELF file/],
    ['32-bit', elfHeader((b) => (b[4] = 1)), /only 64-bit/],
    ['big-endian', elfHeader((b) => (b[5] = 2)), /only little-endian/],
    ['truncated', elfHeader().subarray(0, 40), /truncated/],
    ['bad phentsize', elfHeader((b) => b.writeUInt16LE(20, 54)), /program header entry size/],
    ['huge offset', elfHeader((b) => b.writeBigUInt64LE(0xffffffffffffffffn, 40)), /larger than 2\^53/],
  ];
  for (const [what, buf, re] of rejects) {
    t.throws(() => parseElfHeader(buf), ElfFormatError, what);
    try {
      parseElfHeader(buf);
    } catch (e) {
      t.match((e as Error).message, re, what);
      t.equal((e as ElfFormatError).code, 'EINPUT');
    }
  }
});

t.test('ELF notes, build id and debuglink', async (t) => {
  const note = (name: string, type: number, desc: Buffer): Buffer => {
    const n = Buffer.from(name + '\0');
    const pad = (x: Buffer): Buffer => Buffer.concat([x, Buffer.alloc((4 - (x.length % 4)) % 4)]);
    const h = Buffer.alloc(12);
    h.writeUInt32LE(n.length, 0);
    h.writeUInt32LE(desc.length, 4);
    h.writeUInt32LE(type, 8);
    return Buffer.concat([h, pad(n), pad(desc)]);
  };
  const id = Buffer.from('0123456789abcdef0123456789abcdef01234567', 'hex');
  const notes = parseNotes(Buffer.concat([note('GNU', 1, Buffer.alloc(16)), note('Go', 4, Buffer.from('abc')), note('GNU', 3, id)]));
  t.same(notes.map((n) => [n.name, n.type, n.desc.length]), [['GNU', 1, 16], ['Go', 4, 3], ['GNU', 3, 20]]);
  t.equal(findBuildId(notes), id.toString('hex'));
  t.equal(findBuildId([]), '');
  t.throws(() => parseNotes(note('GNU', 3, id).subarray(0, 20)), ElfFormatError);

  const link = Buffer.concat([Buffer.from('prog.debug\0\0'), Buffer.from([0x78, 0x56, 0x34, 0x12])]);
  t.same(parseDebugLink(link), { fileName: 'prog.debug', crc: 0x12345678 });
  t.throws(() => parseDebugLink(Buffer.from('prog.debug\0')), ElfFormatError, 'no CRC');
  t.throws(() => parseDebugLink(Buffer.from('../x\0\0\0\0\0\0\0\0')), ElfFormatError, 'a slash');
});

t.test('file offset to ELF address through PT_LOAD', async (t) => {
  const seg = (offset: number, vaddr: number, filesz: number, flags: number) => ({ type: PT_LOAD, flags, offset, vaddr, filesz, memsz: filesz });
  // Typical PIE: text at file 0x1000, vaddr 0x1000; data shifted by a page.
  const pie = [seg(0, 0, 0x600, 4), seg(0x1000, 0x1000, 0x2000, 4 | PF_X), seg(0x3db8, 0x4db8, 0x260, 6)];
  t.equal(fileOffsetToVaddr(pie, 0x1234), 0x1234);
  t.equal(fileOffsetToVaddr(pie, 0x3dc0), 0x4dc0);
  t.equal(fileOffsetToVaddr(pie, 0x9000), null);
  // Non-PIE with a large base (like /usr/bin/node).
  t.equal(fileOffsetToVaddr([seg(0x772000, 0xb72000, 0x1a8bca0, 5)], 0x800000), 0xc00000);
});

t.test('symbol table: aliases, zero sizes, nesting', async (t) => {
  const b = new SymbolTableBuilder();
  b.add(0x1000, 0x100, 'local_alias', 0);
  b.add(0x1000, 0x100, 'global_name', 1);
  b.add(0x1000, 0, 'zero_size_alias', 1);
  b.add(0x1200, 0, 'asm_no_size', 1); // bounded by the next symbol
  b.add(0x1300, 0x10, 'after');
  b.add(0x1400, 0x200, 'outer');
  b.add(0x1480, 0x10, 'inner');
  b.add(0x2000, 0, 'last_no_size'); // bounded by the end of the executable range
  const tab = b.build([{ start: 0x1000, end: 0x2010 }]);
  const at = (a: number): string | null => {
    const i = tab.lookup(a);
    return i < 0 ? null : tab.name(i);
  };
  t.equal(tab.count, 6, 'one symbol per address');
  t.equal(at(0x1000), 'global_name', 'sized global beats local alias and zero-size alias');
  t.equal(at(0x10ff), 'global_name');
  t.equal(at(0x1100), null, 'gap after a sized symbol');
  t.equal(at(0x12ff), 'asm_no_size');
  t.equal(at(0x1485), 'inner');
  t.equal(at(0x1490), 'outer', 'back in the enclosing symbol after a nested one');
  t.equal(at(0x200f), 'last_no_size');
  t.equal(at(0x2010), null, 'past the executable range');
  t.equal(at(0xfff), null);
  t.ok(tab.byteSize > 0 && tab.byteSize < 1024);
});

t.test('crc32 matches zlib', async (t) => {
  const data = Buffer.from('The quick brown fox jumps over the lazy dog');
  t.equal(crc32(data), 0x414fa339);
  t.equal(crc32(data.subarray(10), crc32(data.subarray(0, 10))), 0x414fa339, 'incremental');
  const z = (zlib as unknown as { crc32?: (d: Buffer) => number }).crc32;
  if (z !== undefined) t.equal(crc32(data), z(data));
});

t.test('debug file candidates follow GDB order, process root first', async (t) => {
  const c = debugFileCandidates({
    buildId: 'abcdef0123',
    debugLink: { fileName: 'prog.debug', crc: 1 },
    binaryPath: '/usr/bin/prog',
    debugDirs: ['/usr/lib/debug'],
    roots: ['/proc/7/root', ''],
  });
  t.same(c, [
    { path: '/proc/7/root/usr/lib/debug/.build-id/ab/cdef0123.debug', via: 'build-id' },
    { path: '/proc/7/root/usr/bin/prog.debug', via: 'debuglink' },
    { path: '/proc/7/root/usr/bin/.debug/prog.debug', via: 'debuglink' },
    { path: '/proc/7/root/usr/lib/debug/usr/bin/prog.debug', via: 'debuglink' },
    { path: '/usr/lib/debug/.build-id/ab/cdef0123.debug', via: 'build-id' },
    { path: '/usr/bin/prog.debug', via: 'debuglink' },
    { path: '/usr/bin/.debug/prog.debug', via: 'debuglink' },
    { path: '/usr/lib/debug/usr/bin/prog.debug', via: 'debuglink' },
  ]);
  t.same(debugFileCandidates({ buildId: 'zz/../x', debugLink: null, binaryPath: '/x', debugDirs: ['/d'], roots: [''] }), [], 'a bogus build id yields no path');
});
