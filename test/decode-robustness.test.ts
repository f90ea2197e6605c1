// SPDX-License-Identifier: Apache-2.0
// Broken input gives EbpfprofError('EINPUT') with a message naming the format and the problem —
// never another exception, never a profile with dangling indices. Table of known-bad inputs, then a
// deterministic fuzz loop over mutations of valid files.
import t from 'tap';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { gzipSync } from 'node:zlib';
import { Function as PFunction, Label, Line, Location, Mapping, Profile as PProfile, Sample, StringTable, ValueType } from 'pprof-format';
import { EbpfprofError } from '../src/errors';
import { decodeProfile } from '../src/decode/index';
import { encodePprof, encodePprofUncompressed } from '../src/encode/pprof';
import { encodeFolded } from '../src/encode/folded';
import { encodeSpeedscope } from '../src/encode/speedscope';
import { profileFixturesDir, profileProblems, richProfile } from './fixtures/profiles/sample-profiles';
import { prng } from './helpers/prng';

function randomBytes(n: number, seed: number): Buffer {
  const r = prng(seed);
  const b = Buffer.alloc(n);
  for (let i = 0; i < n; i++) b[i] = Math.floor(r() * 256);
  return b;
}

/** A hand-built pprof with one deliberate defect, to reach the checks behind a valid wire format. */
function pprofWith(defect: 'label-string' | 'missing-mapping' | 'missing-function' | 'missing-location' | 'value-count' | 'negative' | 'string0'): Buffer {
  const st = new StringTable();
  const s = (x: string): number => st.dedup(x);
  const p = new PProfile({
    sampleType: [new ValueType({ type: s('samples'), unit: s('count') }), new ValueType({ type: s('cpu'), unit: s('nanoseconds') })],
    mapping: [new Mapping({ id: 1, memoryStart: 0x1000, memoryLimit: 0x2000, filename: s('/bin/x') })],
    function: [new PFunction({ id: 1, name: s('f'), systemName: s('f') })],
    location: [new Location({ id: 1, mappingId: defect === 'missing-mapping' ? 42 : 1, address: 0x1100, line: [new Line({ functionId: defect === 'missing-function' ? 9 : 1 })] })],
    sample: [
      new Sample({
        locationId: [defect === 'missing-location' ? 7 : 1],
        value: defect === 'value-count' ? [1] : defect === 'negative' ? [-3, 10] : [1, 10],
        label: [new Label({ key: defect === 'label-string' ? 999 : s('pid'), num: 5 })],
      }),
    ],
    stringTable: st,
    periodType: new ValueType({ type: s('cpu'), unit: s('nanoseconds') }),
    period: 10,
  });
  if (defect === 'string0') st.strings[0] = 'oops'; // the encoder was fed a broken table on purpose
  const bytes = p.encode();
  if (defect === 'string0') {
    // pprof-format writes its pre-encoded strings; patch the first one (tag 0x32, length 0) by hand.
    const i = Buffer.from(bytes).indexOf(Buffer.from([0x32, 0x00]));
    return Buffer.concat([Buffer.from(bytes.subarray(0, i)), Buffer.from([0x32, 0x01, 0x41]), Buffer.from(bytes.subarray(i + 2))]);
  }
  return Buffer.from(bytes);
}

const validGz = encodePprof(richProfile());
const validRaw = encodePprofUncompressed(richProfile());

const table: Array<[string, Buffer, RegExp]> = [
  ['empty file', Buffer.alloc(0), /the file is empty/],
  ['gzip magic only', Buffer.from([0x1f, 0x8b]), /starts like gzip but does not decompress/],
  ['truncated gzip', validGz.subarray(0, Math.floor(validGz.length / 2)), /gzip.*does not decompress: unexpected end of file/],
  ['garbled gzip', Buffer.concat([validGz.subarray(0, 20), randomBytes(40, 1), validGz.subarray(60)]), /gzip.*does not decompress/],
  ['gzip of nothing', gzipSync(Buffer.alloc(0)), /decompresses to nothing/],
  ['random bytes', randomBytes(300, 7), /as pprof \(profile\.proto\): /],
  ['truncated protobuf', validRaw.subarray(0, validRaw.length - 3), /as pprof .*(runs past the end|truncated)/],
  ['protobuf with wire type 3 (groups)', Buffer.from([0x3b, 0x00]), /field 7 has invalid wire type 3/],
  ['protobuf field with the wrong wire type', Buffer.from([0x0d, 0x00, 0x00, 0x00, 0x00]), /Profile\.sample_type \(field 1\) has wire type 5, expected 2/],
  ['protobuf with endless varint', Buffer.from([0x48, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01]), /varint longer than 10 bytes/],
  ['label with a string index out of range', pprofWith('label-string'), /refers to string 999/],
  ['location with a missing mapping', pprofWith('missing-mapping'), /refers to mapping 42, which does not exist/],
  ['line with a missing function', pprofWith('missing-function'), /refers to function 9, which does not exist/],
  ['sample with a missing location', pprofWith('missing-location'), /refers to location 7, which does not exist/],
  ['sample with too few values', pprofWith('value-count'), /has 1 values but there are 2 sample types/],
  ['negative sample value', pprofWith('negative'), /negative value -3/],
  ['string_table[0] not empty', pprofWith('string0'), /string_table\[0\] must be the empty string/],
  ['folded line without a count', Buffer.from('app;main;work\n'), /as folded stacks: line 1: no sample count/],
  ['folded count not a number', Buffer.from('app;main 12x\n'), /line 1: "12x" is not a count/],
  ['folded negative count', Buffer.from('app;main 3\napp;main -5\n'), /line 2: "-5" is a negative count/],
  ['folded fractional count', Buffer.from('app;main 1.5\n'), /line 1: "1.5" is a fractional count/],
  ['folded huge count', Buffer.from('app;main 123456789012345678901234567890\n'), /line 1: count 1234.* is too large/],
  ['folded counts overflowing together', Buffer.from('a;b 9007199254740991\na;c 9007199254740991\n'), /line 2: the counts add up to more than 2\^53/],
  ['folded count without frames', Buffer.from('\n\n   7\n'), /line 3: no frames before the count/],
  ['JSON that is not speedscope', Buffer.from('{"traceEvents": []}'), /JSON but not a speedscope file/],
  ['invalid JSON', Buffer.from('{"$schema": '), /read as speedscope JSON, but it is not valid JSON/],
  ['speedscope frame index out of range', speedscopeWith((d) => ((d.profiles[0] as { samples: number[][] }).samples[0] = [0, 9999])), /profiles\[0\]\.samples\[0\]\[1\] is not a valid index into shared\.frames/],
  ['speedscope weights length mismatch', speedscopeWith((d) => (d.profiles[0] as { weights: number[] }).weights.pop()), /has \d+ samples but \d+ weights/],
  ['speedscope negative weight', speedscopeWith((d) => ((d.profiles[0] as { weights: number[] }).weights[0] = -1)), /weights\[0\] is negative/],
  ['speedscope unknown unit', speedscopeWith((d) => ((d.profiles[0] as { unit: string }).unit = 'parsecs')), /unit "parsecs" is not one of/],
  ['speedscope frame without name', speedscopeWith((d) => delete (d.shared.frames[0] as { name?: string }).name), /shared\.frames\[0\]\.name is missing/],
  ['speedscope unknown profile type', speedscopeWith((d) => ((d.profiles[0] as { type: string }).type = 'flat')), /type "flat" is neither "sampled" nor "evented"/],
];

function speedscopeWith(mutate: (d: { shared: { frames: object[] }; profiles: object[] }) => unknown): Buffer {
  const d = JSON.parse(encodeSpeedscope(richProfile())) as { shared: { frames: object[] }; profiles: object[] };
  mutate(d);
  return Buffer.from(JSON.stringify(d));
}

t.test('known-bad inputs give EINPUT with a useful message', async (t) => {
  for (const [name, bytes, message] of table) {
    let caught: unknown;
    try {
      decodeProfile(bytes, 'bad-file');
    } catch (e) {
      caught = e;
    }
    t.ok(caught instanceof EbpfprofError, `${name}: EbpfprofError (got ${String(caught)})`);
    if (!(caught instanceof EbpfprofError)) continue;
    t.equal(caught.code, 'EINPUT', `${name}: code EINPUT`);
    t.match(caught.message, /^cannot read bad-file/, `${name}: names the file`);
    t.match(caught.message, message, `${name}: ${caught.message}`);
  }
});

type Mutation = (b: Buffer, r: () => number, other: Buffer) => Buffer;
const pick = (r: () => number, n: number): number => Math.floor(r() * n);
const mutations: Mutation[] = [
  (b, r) => {
    const c = Buffer.from(b);
    for (let i = 1 + pick(r, 4); i > 0 && c.length > 0; i--) c[pick(r, c.length)] ^= 1 << pick(r, 8);
    return c;
  },
  (b, r) => {
    const c = Buffer.from(b);
    if (c.length > 0) c[pick(r, c.length)] = pick(r, 256);
    return c;
  },
  (b, r) => b.subarray(0, pick(r, b.length)),
  (b, r) => {
    const at = pick(r, b.length + 1);
    return Buffer.concat([b.subarray(0, at), randomBytes(1 + pick(r, 16), pick(r, 1e9)), b.subarray(at)]);
  },
  (b, r) => {
    const at = pick(r, b.length + 1);
    return Buffer.concat([b.subarray(0, at), b.subarray(at + 1 + pick(r, 32))]);
  },
  (b, r) => {
    const at = pick(r, b.length + 1);
    const len = pick(r, 64);
    return Buffer.concat([b.subarray(0, at + len), b.subarray(at, at + len), b.subarray(at + len)]);
  },
  (b, r, other) => {
    const at = pick(r, b.length + 1);
    const from = pick(r, other.length + 1);
    return Buffer.concat([b.subarray(0, at), other.subarray(from, from + 1 + pick(r, 64))]);
  },
];

t.test('fuzz: mutations of valid files never escape as other exceptions', async (t) => {
  const rich = richProfile();
  const bases: Array<[string, Buffer]> = [
    ['pprof raw', validRaw],
    ['pprof gzip', validGz],
    ['go pprof (raw)', Buffer.from(require('node:zlib').gunzipSync(fs.readFileSync(path.join(profileFixturesDir, 'go-cpu.pb.gz'))) as Buffer)],
    ['folded', Buffer.from(encodeFolded(rich, { pidTid: true }))],
    ['speedscope', Buffer.from(encodeSpeedscope(rich))],
    ['speedscope evented', fs.readFileSync(path.join(profileFixturesDir, 'evented.speedscope.json'))],
  ];
  const perBase = 1500;
  for (const [name, base] of bases) {
    const r = prng(0x5eed + base.length);
    const failures: string[] = [];
    let decoded = 0;
    let rejected = 0;
    for (let i = 0; i < perBase; i++) {
      const other = bases[pick(r, bases.length)]![1];
      let input = mutations[pick(r, mutations.length)]!(base, r, other);
      if (r() < 0.3) input = mutations[pick(r, mutations.length)]!(input, r, other);
      try {
        const p = decodeProfile(input, 'fuzz');
        const problems = profileProblems(p);
        if (problems.length) failures.push(`#${i}: decoded with dangling indices: ${problems.slice(0, 3).join(', ')}`);
        decoded++;
      } catch (e) {
        if (!(e instanceof EbpfprofError) || e.code !== 'EINPUT') failures.push(`#${i}: ${e instanceof Error ? `${e.name}: ${e.message}` : String(e)}`);
        else if (!/^cannot read fuzz/.test(e.message)) failures.push(`#${i}: message does not name the input: ${e.message}`);
        rejected++;
      }
    }
    t.same(failures.slice(0, 10), [], `${name}: ${perBase} mutations, ${decoded} decoded, ${rejected} rejected with EINPUT`);
    t.ok(rejected > 0, `${name}: some mutations are rejected (the fuzzer reaches the checks)`);
  }
});
