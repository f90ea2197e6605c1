// SPDX-License-Identifier: Apache-2.0
// decodeProfile recognizes formats by content and reads files written by other tools.
import t from 'tap';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { gzipSync } from 'node:zlib';
import { decodeProfile, detectFormat } from '../src/decode/index';
import { decodeFolded } from '../src/decode/folded';
import { frameKindForPath, looksUnsymbolized, unsymbolizedName } from '../src/decode/pprof';
import { encodePprof, encodePprofUncompressed } from '../src/encode/pprof';
import { encodeFolded } from '../src/encode/folded';
import { encodeSpeedscope } from '../src/encode/speedscope';
import type { Profile } from '../src/profile/model';
import { basicProfile, canonicalRows, profileFixturesDir } from './fixtures/profiles/sample-profiles';

const fixture = (name: string): Buffer => fs.readFileSync(path.join(profileFixturesDir, name));

function rows(p: Profile): string[] {
  return p.samples.map((s) => {
    const stack = p.stacks[s.stack]!.map((i) => p.frames[i]!.name).reverse().join(';');
    return `${s.processName}[${s.pid}/${s.tid}] ${stack} count=${s.count} cpuNs=${s.cpuNs}`;
  });
}

t.test('format detection by content, whatever the file name', async (t) => {
  const p = basicProfile();
  t.equal(detectFormat(encodePprofUncompressed(p)), 'pprof');
  t.equal(detectFormat(Buffer.from(encodeSpeedscope(p))), 'speedscope');
  t.equal(detectFormat(Buffer.from(`\uFEFF  \n${encodeSpeedscope(p)}`)), 'speedscope', 'BOM and whitespace before JSON');
  t.equal(detectFormat(Buffer.from(encodeFolded(p))), 'folded');
  const expected = canonicalRows(p, { tid: false, thread: false, pid: false, cpuNs: false });
  t.same(
    canonicalRows(decodeProfile(Buffer.from(`\uFEFF${encodeSpeedscope(p, { weight: 'samples' })}`))),
    canonicalRows(p, { tid: false, thread: false, cpuNs: false }),
    'speedscope JSON with a BOM',
  );
  t.same(canonicalRows(decodeProfile(Buffer.from(`\uFEFF${encodeFolded(p)}`))), expected, 'folded text with a BOM');
  // Misleading names on purpose: content decides.
  t.same(canonicalRows(decodeProfile(encodePprof(p), 'profile.txt')), canonicalRows(p), 'gzip pprof');
  t.same(canonicalRows(decodeProfile(encodePprofUncompressed(p), 'x.json')), canonicalRows(p), 'raw protobuf');
  t.same(canonicalRows(decodeProfile(gzipSync(encodeFolded(p)), 'x.pb.gz')), expected, 'gzip-compressed folded text');
  t.same(
    canonicalRows(decodeProfile(gzipSync(encodeSpeedscope(p, { weight: 'samples' })))),
    canonicalRows(p, { tid: false, thread: false, cpuNs: false }),
    'gzip-compressed speedscope JSON',
  );
});

t.test('perf stackcollapse output (--all --tid) with kind annotations', async (t) => {
  const p = decodeProfile(fixture('perf-collapsed.folded'), 'perf-collapsed.folded');
  t.same(rows(p), [
    'app[100/100] _start;__libc_start_main;main;work;hot_a count=50 cpuNs=0',
    'app[100/101] _start;__libc_start_main;main;work;hot_b count=20 cpuNs=0',
    'app[100/101] _start;__libc_start_main;main;__GI___libc_write;entry_SYSCALL_64_after_hwframe;do_syscall_64;ksys_write count=7 cpuNs=0',
    'java[300/301] [unknown];Interpreter;LazyCompile:*foo count=3 cpuNs=0',
    'java[300/301] [unknown];Interpreter;inlined_helper count=2 cpuNs=0',
  ]);
  const kind = (n: string): string | undefined => p.frames.find((f) => f.name === n)?.kind;
  t.equal(kind('ksys_write'), 'kernel');
  t.equal(kind('LazyCompile:*foo'), 'jit');
  t.equal(kind('inlined_helper'), 'native');
  t.equal(kind('main'), 'unknown', 'no annotation, no claim');
  t.equal(p.frames.find((f) => f.name === '[unknown]')?.symbolized, false);

  const noProcess = decodeFolded(fixture('perf-collapsed.folded'), 'x', { firstFrameIsProcess: false });
  t.equal(rows(noProcess)[0], '[0/0] app-100/100;_start;__libc_start_main;main;work;hot_a count=50 cpuNs=0', 'firstFrameIsProcess: false keeps the first frame');
});

t.test('CRLF line ends and blank lines', async (t) => {
  t.same(rows(decodeProfile(fixture('crlf.folded'))), ['app[0/0] main;work;hot_a count=3 cpuNs=0', 'app[0/0] main;cold count=1 cpuNs=0']);
});

t.test('speedscope evented profile becomes self time per stack', async (t) => {
  const p = decodeProfile(fixture('evented.speedscope.json'), 'evented.speedscope.json');
  t.same(rows(p).sort(), [
    'app[42/0] main count=0 cpuNs=20000000',
    'app[42/0] main;parse count=0 cpuNs=15000000',
    'app[42/0] main;parse;sys_read count=0 cpuNs=5000000',
  ]);
  t.equal(p.frames.find((f) => f.name === 'sys_read')?.kind, 'kernel');
  t.equal(p.mappings[p.frames.find((f) => f.name === 'parse')!.mapping]?.path, '/usr/bin/app');
});

t.test('helpers', async (t) => {
  t.equal(frameKindForPath('[kernel.kallsyms]'), 'kernel');
  t.equal(frameKindForPath('/tmp/perf-1234.map'), 'jit');
  t.equal(frameKindForPath('[jit]'), 'jit');
  t.equal(frameKindForPath('/usr/lib/libc.so.6'), 'native');
  t.equal(frameKindForPath(''), 'unknown');
  t.equal(unsymbolizedName(0x7f00001234n, { start: 0x7f00000000n, fileOffset: 0x1000n, path: '/lib/libx.so' }), 'libx.so+0x2234');
  t.equal(unsymbolizedName(0x1234n), '0x1234');
  t.ok(looksUnsymbolized('libx.so+0x2234'));
  t.ok(looksUnsymbolized('0xdeadbeef'));
  t.ok(looksUnsymbolized('[unknown]'));
  t.notOk(looksUnsymbolized('operator+(int)'));
  t.notOk(looksUnsymbolized('main'));
});
