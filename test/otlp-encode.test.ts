// SPDX-License-Identifier: Apache-2.0
// The OTLP Profiles encoder: the wire numbering of opentelemetry-proto v1.10.0 checked byte by byte
// against the specification, the dictionary rules (zero values first, no duplicates, nothing
// orphaned), one profile per process with its resource, frame types, build ids, and a round trip
// of the fixtures. The real Collector reads the same bytes in otlp-collector.test.ts.
import t from 'tap';
import { gunzipSync } from 'node:zlib';
import Long from 'long';
import { buildOtlpProfilesRequest, decodeOtlpExportResponse, encodeOtlpProfiles, encodeOtlpProfilesRequest } from '../src/encode/otlp-profiles';
import { otlpProfilesSchema } from '../src/encode/otlp/schema';
import { frameType } from '../src/encode/otlp/semconv';
import { encodeProfile } from '../src/output/profile-file';
import { flattenProfilesData, ReceivedProfile, sampleCount } from './helpers/collector';
import { expectedRows, receivedRows } from './fixtures/otlp/rows';
import { basicProfile, kernelWithoutMappingProfile, PERIOD_NS, RICH, richProfile, START_TIME_MS } from './fixtures/profiles/sample-profiles';

/** Decodes our bytes with protobufjs into the JSON shape the Collector writes, then flattens it. */
function decodeToReceived(bytes: Uint8Array): { profiles: ReceivedProfile[]; raw: Record<string, unknown> } {
  const type = otlpProfilesSchema().ExportProfilesServiceRequest;
  const raw = type.toObject(type.decode(bytes), { longs: String, bytes: String, defaults: false, arrays: true }) as Record<string, unknown>;
  // protobufjs writes bytes as base64; the Collector's JSON uses hex for ids. Not compared here.
  return { profiles: flattenProfilesData(raw as Parameters<typeof flattenProfilesData>[0]), raw };
}

t.test('Sample, Profile and the dictionary use v1.10.0 field numbers on the wire', async (t) => {
  const schema = otlpProfilesSchema();
  // Sample{stack_index=1: 7, attribute_indices=2 (packed): [5], link_index=3: 2, values=4 (packed): [9]}
  const sample = Buffer.from(schema.Sample.encode({ stackIndex: 7, attributeIndices: [5], linkIndex: 2, values: [Long.fromNumber(9)] }).finish());
  t.same([...sample], [0x08, 7, 0x12, 1, 5, 0x18, 2, 0x22, 1, 9], 'stack_index 1, attribute_indices 2, link_index 3, values 4 (v1.9.0 had values at 2)');
  const req = Buffer.from(
    schema.ExportProfilesServiceRequest.encode({
      resourceProfiles: [{ scopeProfiles: [{ profiles: [{ timeUnixNano: Long.fromNumber(1, true), durationNano: Long.fromNumber(2, true), period: Long.fromNumber(3) }] }] }],
      dictionary: { stringTable: [''], stackTable: [{ locationIndices: [] }] },
    }).finish(),
  );
  // request{1: ResourceProfiles{2: ScopeProfiles{2: Profile{3: fixed64 1, 4: 2, 6: 3}}}, 2: dictionary{5: "", 7: {}}}
  const profile = [0x19, 1, 0, 0, 0, 0, 0, 0, 0, 0x20, 2, 0x30, 3];
  const scope = [0x12, profile.length, ...profile];
  const resource = [0x12, scope.length, ...scope];
  t.same([...req], [0x0a, resource.length, ...resource, 0x12, 4, 0x2a, 0, 0x3a, 0], 'time_unix_nano fixed64 #3, duration_nano #4, period #6; string_table #5, stack_table #7');
});

t.test('basic profile: one resource per process, dictionary rules, values and periods', async (t) => {
  const p = basicProfile();
  let n = 0;
  const { request, stats } = buildOtlpProfilesRequest(p, { profileId: () => Buffer.alloc(16, ++n) });
  t.same(stats, { profiles: 2, samples: 100, cpuTimeMismatches: 0 });
  const d = request.dictionary;
  t.equal(d.stringTable[0], '', 'string_table[0] is ""');
  for (const [name, table] of Object.entries({ mapping: d.mappingTable, location: d.locationTable, function: d.functionTable, attribute: d.attributeTable, link: d.linkTable })) {
    t.same(table[0], {}, `${name}_table[0] is the zero value`);
  }
  t.same(d.stackTable[0], { locationIndices: [] }, 'stack_table[0] is the empty stack');
  t.equal(new Set(d.stringTable).size, d.stringTable.length, 'no duplicate strings');
  t.equal(new Set(d.locationTable.map((l) => JSON.stringify(l))).size, d.locationTable.length, 'no duplicate locations');
  t.equal(new Set(d.functionTable.map((f) => JSON.stringify(f))).size, d.functionTable.length, 'no duplicate functions');
  t.equal(new Set(d.attributeTable.map((a) => JSON.stringify(a))).size, d.attributeTable.length, 'no duplicate attributes');
  t.equal(new Set(d.stackTable.map((s) => s.locationIndices.join())).size, d.stackTable.length, 'no duplicate stacks');
  // Every location, function, mapping and stack (but the zero ones) is referenced.
  const usedLocations = new Set(d.stackTable.flatMap((s) => s.locationIndices));
  t.equal(usedLocations.size, d.locationTable.length - 1, 'no orphaned location');
  const usedFunctions = new Set(d.locationTable.flatMap((l) => (l.lines ?? []).map((x) => x.functionIndex)));
  t.equal(usedFunctions.size, d.functionTable.length - 1, 'no orphaned function');
  const usedMappings = new Set(d.locationTable.slice(1).map((l) => l.mappingIndex));
  t.equal(usedMappings.size, d.mappingTable.length - 1, 'no orphaned mapping');

  const { profiles } = decodeToReceived(encodeOtlpProfilesRequest(p, { profileId: () => Buffer.alloc(16, 1) }).bytes);
  t.equal(profiles.length, 2, 'one profile per process');
  t.same(profiles.map((x) => x.resource['process.pid']), [100, 200], 'process.pid on each resource, in pid order');
  t.same(profiles.map((x) => x.resource['process.executable.name']), ['app', 'other'], 'executable name defaults to the comm');
  for (const x of profiles) {
    t.equal(x.scope, 'ebpfprof');
    t.equal(x.sampleType, 'samples/count');
    t.equal(x.periodType, 'cpu/nanoseconds');
    t.equal(x.period, PERIOD_NS, 'period = ns per sample, so CPU time = count x period');
    t.equal(x.timeUnixNano, BigInt(START_TIME_MS) * 1_000_000n);
    t.equal(x.durationNano, 5_000_000_000);
  }
  t.equal(sampleCount(profiles), 100);
  t.same(receivedRows(profiles), expectedRows(p), 'the same samples, stacks and threads');
  const app = profiles[0]!.samples[0]!.frames[0]!;
  t.equal(app.mappingFile, '/usr/bin/app');
  t.equal(app.buildId, '0123456789abcdef', 'process.executable.build_id.gnu on the mapping');
  t.equal(app.frameType, 'native');
  t.equal(profiles[1]!.samples[0]!.frames[0]!.buildId, null, 'no build id attribute when the binary has none');
});

t.test('rich profile: kernel, unsymbolized, JIT and odd frames; empty stack; resource attributes', async (t) => {
  const p = richProfile();
  const resourceOf = (pid: number): Record<string, string> => (pid === 300 ? { 'process.executable.name': 'node', 'container.id': 'c'.repeat(64) } : { 'host.name': 'h1' });
  const { profiles } = decodeToReceived(encodeOtlpProfilesRequest(p, { resourceOf }).bytes);
  t.same(receivedRows(profiles), expectedRows(p), 'the same samples, leaf first');
  const frames = profiles.flatMap((x) => x.samples.flatMap((s) => s.frames));
  const byName = (n: string) => frames.find((f) => f.name === n);
  for (const k of RICH.kernel) t.equal(byName(k)?.frameType, 'kernel', `${k} is a kernel frame`);
  t.equal(byName(RICH.cxxName)?.frameType, 'native');
  t.ok(byName(RICH.odd), 'a name with ; and a newline survives');
  const jit = frames.find((f) => f.name.startsWith('LazyCompile'));
  t.equal(jit?.frameType, 'v8js', 'JIT frames of node are v8js');
  t.ok(frames.some((f) => /^0x/.test(f.name) && f.mappingFile.endsWith('libnosym.so')), 'an unsymbolized frame keeps mapping and address, no line');
  const node = profiles.find((x) => x.resource['process.pid'] === 300)!;
  t.equal(node.resource['container.id'], 'c'.repeat(64));
  t.equal(profiles.find((x) => x.resource['process.pid'] === 100)!.resource['host.name'], 'h1');
  const empty = profiles.find((x) => x.resource['process.pid'] === 0)!;
  t.same(empty.samples.map((s) => s.frames.length), [0], 'an empty stack is stack_index 0');
  // The mangled name is the function's system name.
  const { request } = buildOtlpProfilesRequest(p);
  const d = request.dictionary;
  const f = d.functionTable.find((x) => d.stringTable[x.nameStrindex ?? 0] === RICH.cxxName)!;
  t.equal(d.stringTable[f.systemNameStrindex ?? 0], RICH.cxxMangled);
});

t.test('kernel frames without a mapping share one [kernel.kallsyms] mapping over their addresses', async (t) => {
  const { request } = buildOtlpProfilesRequest(kernelWithoutMappingProfile());
  const d = request.dictionary;
  const k = d.mappingTable.find((m) => d.stringTable[m.filenameStrindex ?? 0] === '[kernel.kallsyms]');
  t.ok(k, 'synthetic kernel mapping');
  t.equal(k!.memoryStart!.toString(), (0xffffffff81000100n).toString());
  t.equal(k!.memoryLimit!.toString(), (0xffffffff81000201n).toString());
});

t.test('record --format otlp: gzip-compressed ProfilesData, the same bytes as a request', async (t) => {
  const p = basicProfile();
  const file = encodeProfile(p, 'otlp');
  t.same([file[0], file[1]], [0x1f, 0x8b], 'gzip');
  const data = otlpProfilesSchema().ProfilesData;
  const obj = data.toObject(data.decode(gunzipSync(file)), { longs: String, arrays: true }) as Parameters<typeof flattenProfilesData>[0];
  const profiles = flattenProfilesData(obj);
  t.same(receivedRows(profiles).map((r) => r.replace(/^[^|]*/, '')), expectedRows(p).map((r) => r.replace(/^[^|]*/, '')), 'same samples (executable names are read from /proc for live pids)');
  t.ok(profiles.every((x) => typeof x.resource['host.name'] === 'string'), 'host.name on every process');
  t.equal(encodeOtlpProfiles(p).length > 0, true);
});

t.test('an empty profile encodes to a request with only the zero-valued dictionary', async (t) => {
  const p = basicProfile();
  const { request, stats } = buildOtlpProfilesRequest({ ...p, samples: [] });
  t.same(stats, { profiles: 0, samples: 0, cpuTimeMismatches: 0 });
  t.equal(request.resourceProfiles.length, 0);
  t.same(request.dictionary.locationTable, [{}]);
});

t.test('an off-CPU profile: off_cpu/nanoseconds and blocks/count per process over the same stacks', async (t) => {
  const p = basicProfile();
  p.meta.timeKind = 'off-cpu';
  p.samples.forEach((s, i) => (s.cpuNs = 1_000_000 * (i + 1)));
  const { profiles } = decodeToReceived(encodeOtlpProfilesRequest(p).bytes);
  t.equal(profiles.length, 4, 'two profiles per process');
  const app = profiles.filter((x) => x.resource['process.pid'] === 100);
  t.same(app.map((x) => x.sampleType), ['off_cpu/nanoseconds', 'blocks/count'], 'time first');
  t.same(app[0]!.samples.map((s) => s.count), [1_000_000, 2_000_000], 'blocked time per stack and thread');
  t.same(app[1]!.samples.map((s) => s.count), [50, 25], 'blocks per stack and thread');
  t.same(app[0]!.samples.map((s) => s.frames.map((f) => f.name)), app[1]!.samples.map((s) => s.frames.map((f) => f.name)), 'the same stacks');
  t.equal(app[0]!.periodType, 'off_cpu/nanoseconds');
  t.equal(buildOtlpProfilesRequest(p).stats.cpuTimeMismatches, 0, 'no period relation to check');
});

t.test('CPU time that is not count x period is counted', async (t) => {
  const p = basicProfile();
  p.samples[0]!.cpuNs += PERIOD_NS * 3;
  t.equal(buildOtlpProfilesRequest(p).stats.cpuTimeMismatches, 1);
});

t.test('broken references are an EOUTPUT error, not a crash', async (t) => {
  const p = basicProfile();
  t.throws(() => buildOtlpProfilesRequest({ ...p, samples: [{ ...p.samples[0]!, stack: 99 }] }), { code: 'EOUTPUT' });
  t.throws(() => buildOtlpProfilesRequest({ ...p, stacks: [[42]] }), { code: 'EOUTPUT' });
});

t.test('export responses: full success, partial success, empty body', async (t) => {
  const type = otlpProfilesSchema().ExportProfilesServiceResponse;
  t.same(decodeOtlpExportResponse(Buffer.alloc(0)), { rejectedProfiles: 0, errorMessage: '' });
  t.same(decodeOtlpExportResponse(Buffer.from(type.encode({}).finish())), { rejectedProfiles: 0, errorMessage: '' });
  const partial = Buffer.from(type.encode({ partialSuccess: { rejectedProfiles: Long.fromNumber(3), errorMessage: 'too old' } }).finish());
  t.same(decodeOtlpExportResponse(partial), { rejectedProfiles: 3, errorMessage: 'too old' });
  t.throws(() => decodeOtlpExportResponse(Buffer.from([0x0a, 0x05, 0x08])), 'a truncated body throws (the exporter counts it)');
});

t.test('frame types follow the semantic conventions', async (t) => {
  t.equal(frameType('kernel', 'x'), 'kernel');
  t.equal(frameType('native', 'x'), 'native');
  t.equal(frameType('go', 'x'), 'go');
  t.equal(frameType('jit', 'node'), 'v8js');
  t.equal(frameType('jit', 'java'), 'jvm');
  t.equal(frameType('jit', 'dotnet'), 'dotnet');
  t.equal(frameType('interpreted', 'python3.11'), 'cpython');
  t.equal(frameType('jit', 'mystery'), 'jit', 'a JIT of an unknown runtime gets the custom value "jit"');
  t.equal(frameType('interpreted', 'mystery'), null);
  t.equal(frameType('unknown', 'x'), null);
});
