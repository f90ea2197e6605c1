// SPDX-License-Identifier: Apache-2.0
// pprof encoder: read back by the reference consumer (go tool pprof), by an independent decoder
// (protobufjs with profile.proto written from the spec, sharing nothing with pprof-format), and
// round-tripped through our own decoder.
import { goBinary } from './helpers/tools';
import t, { type Test } from 'tap';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { gunzipSync } from 'node:zlib';
import { execFileSync } from 'node:child_process';
import * as protobuf from 'protobufjs';
import { encodePprof, encodePprofUncompressed } from '../src/encode/pprof';
import { decodeProfile } from '../src/decode/index';
import type { Profile } from '../src/profile/model';
import {
  PERIOD_NS,
  RICH,
  START_TIME_MS,
  basicProfile,
  canonicalRows,
  kernelWithoutMappingProfile,
  profileFixturesDir,
  richProfile,
} from './fixtures/profiles/sample-profiles';

const GO = goBinary();

// Field names as protobufjs reports them (camelCase of the .proto names); 64-bit values as strings.
interface PbValueType { type: string; unit: string }
interface PbLabel { key: string; str: string; num: string; numUnit: string }
interface PbSample { locationId: string[]; value: string[]; label: PbLabel[] }
interface PbMapping {
  id: string;
  memoryStart: string;
  memoryLimit: string;
  fileOffset: string;
  filename: string;
  buildId: string;
  hasFunctions: boolean;
}
interface PbLine { functionId: string; line: string }
interface PbLocation { id: string; mappingId: string; address: string; line: PbLine[] }
interface PbFunction { id: string; name: string; systemName: string; filename: string }
interface PbProfile {
  sampleType: PbValueType[];
  sample: PbSample[];
  mapping: PbMapping[];
  location: PbLocation[];
  function: PbFunction[];
  stringTable: string[];
  timeNanos: string;
  durationNanos: string;
  periodType: PbValueType;
  period: string;
  comment: string[];
}

function independentDecode(gz: Buffer): PbProfile {
  const root = protobuf.loadSync(path.join(profileFixturesDir, 'profile.proto'));
  const type = root.lookupType('perftools.profiles.Profile');
  const msg = type.decode(gunzipSync(gz));
  return type.toObject(msg, { longs: String, defaults: true, arrays: true }) as unknown as PbProfile;
}

function goPprof(args: string[], file: string): string {
  return execFileSync(GO, ['tool', 'pprof', ...args, file], {
    encoding: 'utf8',
    // A toolchain download or a proxy lookup would make the test depend on the network.
    env: { ...process.env, GOTOOLCHAIN: 'local', GOFLAGS: '', GOPROXY: 'off', PPROF_TMPDIR: os.tmpdir() },
    cwd: os.tmpdir(),
    stdio: ['ignore', 'pipe', 'pipe'],
    timeout: 300_000,
  });
}

function writeTemp(t: Test, name: string, bytes: Buffer): string {
  const dir = t.testdir({});
  const file = path.join(dir, name);
  fs.writeFileSync(file, bytes);
  return file;
}

t.test('protobufjs (independent decoder) sees every field as the spec defines it', async (t) => {
  const p = richProfile();
  const gz = encodePprof(p);
  t.same([...gz.subarray(0, 2)], [0x1f, 0x8b], 'gzip-compressed');
  t.same(gunzipSync(gz), encodePprofUncompressed(p), 'the gzip payload is the uncompressed encoding');
  const pb = independentDecode(gz);
  const s = (i: string | number): string => {
    const v = pb.stringTable[Number(i)];
    if (v === undefined) throw new Error(`string index ${i} out of range`);
    return v;
  };

  t.equal(pb.stringTable[0], '', 'string_table[0] is ""');
  t.equal(new Set(pb.stringTable).size, pb.stringTable.length, 'strings are deduplicated');
  t.same(pb.sampleType.map((v) => [s(v.type), s(v.unit)]), [['samples', 'count'], ['cpu', 'nanoseconds']]);
  t.same([s(pb.periodType.type), s(pb.periodType.unit)], ['cpu', 'nanoseconds']);
  t.equal(pb.period, String(PERIOD_NS));
  t.equal(pb.timeNanos, `${START_TIME_MS}000000`, 'time_nanos exact (beyond double precision)');
  t.equal(pb.durationNanos, '5000000000');
  t.same(pb.comment.map(s), p.meta.comments);

  // Mappings: one per model mapping, ids 1..n, all fields.
  t.equal(pb.mapping.length, p.mappings.length);
  const mappingById = new Map(pb.mapping.map((m) => [m.id, m]));
  t.equal(mappingById.size, pb.mapping.length, 'mapping ids unique');
  p.mappings.forEach((m, i) => {
    const pm = mappingById.get(String(i + 1))!;
    t.equal(BigInt(pm.memoryStart), m.start, `${m.path} start`);
    t.equal(BigInt(pm.memoryLimit), m.limit, `${m.path} limit`);
    t.equal(BigInt(pm.fileOffset), m.fileOffset, `${m.path} offset`);
    t.equal(s(pm.filename), m.path);
    t.equal(s(pm.buildId), m.buildId);
  });
  const byPath = (p: string): PbMapping => pb.mapping.find((m) => s(m.filename) === p)!;
  t.equal(byPath('/usr/bin/app').hasFunctions, true, 'symbolized mapping has_functions');
  t.equal(byPath('[kernel.kallsyms]').hasFunctions, true);
  t.equal(byPath('/opt/stripped/libnosym.so').hasFunctions, false, 'a mapping with unsymbolized frames does not claim functions');

  // Functions: demangled name, mangled system name (or the name again).
  const fnById = new Map(pb.function.map((f) => [f.id, f]));
  t.equal(fnById.size, pb.function.length, 'function ids unique');
  t.notOk(fnById.has('0'), 'no function uses the reserved id 0');
  const fnByName = new Map(pb.function.map((f) => [s(f.name), f]));
  t.equal(s(fnByName.get(RICH.cxxName)!.systemName), RICH.cxxMangled);
  t.equal(s(fnByName.get('__GI___libc_write')!.systemName), 'write');
  t.equal(s(fnByName.get('hot_a')!.systemName), 'hot_a', 'system_name defaults to the name');
  t.notOk(fnByName.has(RICH.unsymbolized), 'no invented function for an unsymbolized frame');

  // Locations: address + mapping + one line per function; the unsymbolized frame has none.
  const locById = new Map(pb.location.map((l) => [l.id, l]));
  t.equal(locById.size, p.frames.length);
  p.frames.forEach((f, i) => {
    const l = locById.get(String(i + 1))!;
    t.equal(BigInt(l.address), f.address, `${f.name} address`);
    t.equal(s(mappingById.get(l.mappingId)!.filename), p.mappings[f.mapping]!.path, `${f.name} mapping`);
    if (f.symbolized) {
      t.equal(l.line.length, 1, `${f.name} has one line`);
      t.equal(s(fnById.get(l.line[0]!.functionId)!.name), f.name);
    } else t.equal(l.line.length, 0, `${f.name} has no line`);
  });

  // Samples: leaf-first stacks, values, labels.
  t.equal(pb.sample.length, p.samples.length);
  const nameOfLocation = (id: string): string => {
    const l = locById.get(id)!;
    return l.line.length ? s(fnById.get(l.line[0]!.functionId)!.name) : `<${l.address}>`;
  };
  const labelsOf = (x: PbSample): Record<string, string | number> => {
    const out: Record<string, string | number> = {};
    for (const l of x.label) out[s(l.key)] = l.str !== '0' ? s(l.str) : Number(l.num);
    return out;
  };
  p.samples.forEach((row, i) => {
    const x = pb.sample[i]!;
    const expectStack = p.stacks[row.stack]!.map((fi) => (p.frames[fi]!.symbolized ? p.frames[fi]!.name : `<${p.frames[fi]!.address}>`));
    t.same(x.locationId.map(nameOfLocation), expectStack, `sample ${i} stack, leaf first`);
    t.same(x.value, [String(row.count), String(row.cpuNs)], `sample ${i} values`);
    t.same(labelsOf(x), { pid: row.pid, tid: row.tid, process_name: row.processName, thread_name: row.threadName }, `sample ${i} labels`);
  });
  const kernelSample = pb.sample[2]!;
  t.same(kernelSample.locationId.slice(0, 4).map(nameOfLocation), RICH.kernel, 'kernel frames under the syscall, leaf first');
});

t.test('kernel frames without a mapping get a [kernel.kallsyms] mapping spanning them', async (t) => {
  const pb = independentDecode(encodePprof(kernelWithoutMappingProfile()));
  const s = (i: string): string => pb.stringTable[Number(i)]!;
  const kmap = pb.mapping.find((m) => s(m.filename) === '[kernel.kallsyms]');
  t.ok(kmap, 'synthetic kernel mapping present');
  t.equal(BigInt(kmap!.memoryStart), 0xffffffff81000100n);
  t.equal(BigInt(kmap!.memoryLimit), 0xffffffff81000201n);
  t.equal(kmap!.hasFunctions, true);
  const kernelLocs = pb.location.filter((l) => l.mappingId === kmap!.id);
  t.equal(kernelLocs.length, 2, 'both kernel locations point at it');
});

t.test('go tool pprof (reference consumer) reads our files', async (t) => {

  const basic = writeTemp(t, 'basic.pb.gz', encodePprof(basicProfile()));
  const top = goPprof(['-top', '-nodecount=20'], basic);
  // "  757.58ms 75.00% 75.00%   757.58ms 75.00%  hot_a"
  const flat = new Map<string, number>();
  for (const line of top.split('\n')) {
    const m = /^\s*\S+\s+([\d.]+)%\s+[\d.]+%\s+\S+\s+[\d.]+%\s+(.+)$/.exec(line);
    if (m) flat.set(m[2]!.trim(), Number(m[1]));
  }
  const order = [...flat.keys()];
  t.same(order.slice(0, 2), ['hot_a', 'hot_b'], 'the hot functions are on top');
  t.equal(flat.get('hot_a'), 75, 'hot_a flat 75%');
  t.equal(flat.get('hot_b'), 25, 'hot_b flat 25%');
  t.equal(flat.get('main'), 0, 'main has no self time');
  t.match(top, /Type: cpu/);
  t.match(top, /ebpfprof record --pid 100/, 'comments shown');

  const bySamples = goPprof(['-top', '-sample_index=samples'], basic);
  t.match(bySamples, /^\s*75\s+75\.00%.*hot_a$/m, '75 samples of hot_a by count');
  t.match(bySamples, /^\s*25\s+25\.00%.*hot_b$/m);

  const traces = goPprof(['-traces'], basic);
  const blocks = traces.split(/^-+\+-+$/m).filter((b) => /\bhot_/.test(b));
  t.equal(blocks.length, 3, 'one trace per (stack, labels) row');
  const wanted = [
    { process: 'app', thread: 'app', pid: '100', tid: '100', leaf: 'hot_a' },
    { process: 'app', thread: 'worker-1', pid: '100', tid: '101', leaf: 'hot_a' },
    { process: 'other', thread: 'other', pid: '200', tid: '200', leaf: 'hot_b' },
  ];
  for (const w of wanted) {
    const found = blocks.some(
      (b) =>
        new RegExp(`process_name:\\s+${w.process}$`, 'm').test(b) &&
        new RegExp(`thread_name:\\s+${w.thread}$`, 'm').test(b) &&
        new RegExp(`^\\s*pid:\\s+${w.pid}$`, 'm').test(b) &&
        new RegExp(`^\\s*tid:\\s+${w.tid}$`, 'm').test(b) &&
        new RegExp(`\\s${w.leaf}\\n\\s+work\\n\\s+main`).test(b),
    );
    t.ok(found, `trace with labels ${JSON.stringify(w)} and stack ${w.leaf};work;main`);
  }

  const rich = writeTemp(t, 'rich.pb.gz', encodePprof(richProfile()));
  const raw = goPprof(['-raw'], rich);
  t.match(raw, /PeriodType: cpu nanoseconds/);
  t.match(raw, /Period: 10101010/);
  t.match(raw, /samples\/count cpu\/nanoseconds/);
  t.match(raw, /\[kernel\.kallsyms\]/, 'kernel mapping listed');
  t.match(raw, /ns::Widget::render\(int\) .*\(_ZN2ns6Widget6renderEi\)/, 'system name kept beside the demangled name');
  t.match(raw, /\/usr\/bin\/app 0123456789abcdef \[FN\]/, 'mapping with build id and has_functions');
  const richTop = goPprof(['-top', '-sample_index=samples'], rich);
  t.match(richTop, /^\s*15\s+12\.50%.*ksys_write$/m, 'kernel leaf under the write syscall');
  t.match(richTop, /^\s*0\s+0%.*entry_SYSCALL_64_after_hwframe$/m);
});

t.test('round trip: Profile → pprof → decodeProfile', async (t) => {
  for (const [name, make] of [['basic', () => basicProfile()], ['rich', richProfile], ['kernel without mapping', kernelWithoutMappingProfile]] as const) {
    const p: Profile = make();
    const gz = encodePprof(p);
    for (const [variant, bytes] of [['gzip', gz], ['raw', encodePprofUncompressed(p)]] as const) {
      const back = decodeProfile(bytes, `${name}.pb.gz`);
      t.same(canonicalRows(back), canonicalRows(p), `${name} (${variant}): same stacks, labels and counts`);
      t.same(back.meta, p.meta, `${name} (${variant}): same meta`);
    }
    const back = decodeProfile(gz);
    // Frame attributes that pprof carries: kind of kernel frames, symbolized flag, system name, mapping path.
    const describe = (q: Profile): string[] =>
      q.frames
        .map((f) => `${f.name}|${f.kind === 'kernel' ? 'kernel' : 'user'}|${f.symbolized}|${f.systemName}|${f.address}|${f.mapping >= 0 ? q.mappings[f.mapping]!.path : f.kind === 'kernel' ? '[kernel.kallsyms]' : ''}`)
        .sort();
    t.same(describe(back), describe(p), `${name}: frames keep kind, symbolization, system name, address, mapping`);
  }
});

t.test('a Go runtime/pprof CPU profile decodes (inlined lines expand to frames)', async (t) => {
  const bytes = fs.readFileSync(path.join(profileFixturesDir, 'go-cpu.pb.gz'));
  const p = decodeProfile(bytes, 'go-cpu.pb.gz');
  t.ok(p.samples.length > 0);
  t.equal(p.meta.frequencyHz, 100, 'Go samples at 100 Hz');
  let hot = 0;
  let total = 0;
  const hotStacks = new Set<string>();
  let cpuMismatch = 0;
  for (const s of p.samples) {
    total += s.count;
    const names = p.stacks[s.stack]!.map((i) => p.frames[i]!.name);
    if (names[0] === 'main.hotLoop') {
      hot += s.count;
      hotStacks.add(names.slice(0, 3).join(';'));
    }
    if (s.cpuNs !== s.count * p.meta.periodNs) cpuMismatch++;
  }
  t.same([...hotStacks], ['main.hotLoop;main.inlined;main.main'], 'the inlined caller is its own frame between leaf and main.main');
  t.equal(cpuMismatch, 0, 'cpu = samples × period in a Go profile');
  t.ok(hot / total > 0.9, `main.hotLoop dominates (${hot}/${total})`);
});
