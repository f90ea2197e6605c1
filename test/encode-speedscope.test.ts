// SPDX-License-Identifier: Apache-2.0
// speedscope encoder: validated against speedscope's own file-format-schema.json (with a small
// validator for the JSON-Schema subset that file uses), checked field by field, and round-tripped.
import t from 'tap';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { SPEEDSCOPE_SCHEMA_URL, buildSpeedscope, encodeSpeedscope, type SpeedscopeSampledProfile } from '../src/encode/speedscope';
import { decodeProfile } from '../src/decode/index';
import { ProfileBuilder, type Profile } from '../src/profile/model';
import { PERIOD_NS, RICH, basicProfile, canonicalRows, richProfile } from './fixtures/profiles/sample-profiles';
import { repoRoot } from './helpers/paths';

type Schema = { [k: string]: unknown };
const schemaPath = path.join(repoRoot, 'node_modules', 'speedscope', 'dist', 'release', 'file-format-schema.json');
const rootSchema = JSON.parse(fs.readFileSync(schemaPath, 'utf8')) as Schema;

/**
 * Validates `v` against a schema using the keywords file-format-schema.json uses: $ref (local),
 * type, properties, required, items, anyOf, const, enum. Any other keyword fails loudly, so a new
 * speedscope schema cannot pass unchecked.
 */
function validate(v: unknown, schema: Schema, at = '$'): string[] {
  const known = new Set(['$ref', 'type', 'properties', 'required', 'items', 'anyOf', 'const', 'enum', 'title', '$schema', 'definitions']);
  for (const k of Object.keys(schema)) if (!known.has(k)) return [`${at}: validator does not know keyword ${k}`];
  if (typeof schema['$ref'] === 'string') {
    const name = /^#\/definitions\/(.+)$/.exec(schema['$ref'])?.[1];
    const target = name === undefined ? undefined : (rootSchema['definitions'] as Record<string, Schema>)[name];
    if (!target) return [`${at}: unresolvable $ref ${schema['$ref']}`];
    return validate(v, target, at);
  }
  const errors: string[] = [];
  if (Array.isArray(schema['anyOf'])) {
    const results = (schema['anyOf'] as Schema[]).map((s) => validate(v, s, at));
    if (!results.some((r) => r.length === 0)) errors.push(`${at}: matches none of anyOf (${results.map((r) => r[0]).join(' | ')})`);
  }
  const type = schema['type'];
  if (type !== undefined) {
    const actual = Array.isArray(v) ? 'array' : v === null ? 'null' : typeof v;
    if (actual !== type) return [...errors, `${at}: expected ${String(type)}, got ${actual}`];
  }
  if ('const' in schema && v !== schema['const']) errors.push(`${at}: expected ${JSON.stringify(schema['const'])}`);
  if (Array.isArray(schema['enum']) && !(schema['enum'] as unknown[]).includes(v)) errors.push(`${at}: ${JSON.stringify(v)} not in enum`);
  if (typeof v === 'object' && v !== null && !Array.isArray(v)) {
    const o = v as Record<string, unknown>;
    for (const r of (schema['required'] as string[] | undefined) ?? []) if (!(r in o)) errors.push(`${at}: missing required ${r}`);
    const props = (schema['properties'] as Record<string, Schema> | undefined) ?? {};
    for (const [k, s] of Object.entries(props)) if (k in o) errors.push(...validate(o[k], s, `${at}.${k}`));
  }
  if (Array.isArray(v) && schema['items'] !== undefined) v.forEach((x, i) => errors.push(...validate(x, schema['items'] as Schema, `${at}[${i}]`)));
  return errors;
}

function packageVersion(): string {
  return (JSON.parse(fs.readFileSync(path.join(repoRoot, 'package.json'), 'utf8')) as { version: string }).version;
}

t.test('the schema validator is not vacuous', async (t) => {
  const good = JSON.parse(encodeSpeedscope(basicProfile())) as Record<string, unknown>;
  t.same(validate(good, rootSchema), []);
  t.not(validate({ ...good, $schema: 'x' }, rootSchema).length, 0, 'wrong $schema rejected');
  t.not(validate({ ...good, shared: {} }, rootSchema).length, 0, 'missing frames rejected');
  const badProfile = { ...good, profiles: [{ type: 'sampled', name: 'x', unit: 'parsecs', startValue: 0, endValue: 1, samples: [], weights: [] }] };
  t.not(validate(badProfile, rootSchema).length, 0, 'unknown unit rejected');
  const badSample = { ...good, profiles: [{ type: 'sampled', name: 'x', unit: 'none', startValue: 0, endValue: 1, samples: [['a']], weights: [1] }] };
  t.not(validate(badSample, rootSchema).length, 0, 'non-numeric frame index rejected');
});

t.test('output validates against speedscope file-format-schema.json', async (t) => {
  const cases: Array<[string, Profile]> = [['basic', basicProfile()], ['rich', richProfile()], ['empty', { ...basicProfile(), samples: [] }]];
  for (const [name, p] of cases) {
    for (const weight of ['auto', 'cpu-ns', 'samples'] as const) {
      const doc: unknown = JSON.parse(encodeSpeedscope(p, { weight }));
      t.same(validate(doc, rootSchema), [], `${name} (${weight}) is schema-valid`);
    }
  }
});

t.test('content: shared frames, one profile per process, weights, exporter', async (t) => {
  const p = richProfile();
  const doc = buildSpeedscope(p, { name: 'my run' });
  t.equal(doc.$schema, SPEEDSCOPE_SCHEMA_URL);
  t.equal(doc.name, 'my run');
  t.equal(doc.exporter, `ebpfprof ${packageVersion()}`);
  t.equal(doc.activeProfileIndex, 0);

  const names = doc.shared.frames.map((f) => `${f.name}@${f.file ?? ''}`);
  t.equal(new Set(names).size, names.length, 'frames deduplicated by name and file');
  t.ok(doc.shared.frames.some((f) => f.name === 'ksys_write' && f.file === '[kernel.kallsyms]'), 'kernel frames carry [kernel.kallsyms]');
  t.ok(doc.shared.frames.some((f) => f.name === RICH.cxxName && f.file === '/usr/bin/app'), 'demangled name with its binary');

  const profiles = doc.profiles as SpeedscopeSampledProfile[];
  t.same(profiles.map((x) => x.name), ['app (pid 100)', 'node (pid 300)', 'swapper/0 (pid 0)'], 'one profile per process, heaviest first');
  for (const x of profiles) {
    t.equal(x.type, 'sampled');
    t.equal(x.unit, 'nanoseconds', 'auto picks CPU time when every row has it');
    t.equal(x.samples.length, x.weights.length);
    t.equal(x.endValue, x.weights.reduce((a, b) => a + b, 0), 'endValue = total weight');
    t.equal(x.startValue, 0);
  }
  const app = profiles[0]!;
  t.equal(app.endValue, 95 * PERIOD_NS, 'app: 95 samples of CPU time');
  const stackNames = app.samples.map((s) => s.map((i) => doc.shared.frames[i]!.name).join(';'));
  t.ok(stackNames.includes('main;work;hot_a'), 'stacks root first');
  t.ok(stackNames.includes(`main;work;${RICH.cxxName};__GI___libc_write;${RICH.kernel.slice().reverse().join(';')}`), 'kernel frames on top of the syscall');
  t.same(profiles[2]!.samples, [[]], 'empty stack kept');

  const counted = buildSpeedscope(p, { weight: 'samples' }).profiles as SpeedscopeSampledProfile[];
  t.equal(counted[0]!.unit, 'none');
  t.equal(counted[0]!.endValue, 95);

  const b = new ProfileBuilder({ startTimeMs: 0, durationNs: 0, frequencyHz: 0, periodNs: 0, comments: [] });
  const f = b.frame({ kind: 'native', name: 'f', systemName: '', mapping: -1, address: 0n, symbolized: true });
  b.addSample({ stack: b.stack([f]), pid: 1, tid: 1, processName: 'x', threadName: 'x', count: 3, cpuNs: 0 });
  t.equal((buildSpeedscope(b.build()).profiles[0] as SpeedscopeSampledProfile).unit, 'none', 'auto falls back to samples without CPU time');

  const empty = buildSpeedscope({ ...p, samples: [] });
  t.equal(empty.profiles.length, 1, 'an empty profile still has one (empty) profile: speedscope rejects none');
});

t.test('round trip through decodeProfile', async (t) => {
  for (const p of [basicProfile(), richProfile()]) {
    const bySamples = decodeProfile(Buffer.from(encodeSpeedscope(p, { weight: 'samples' })), 'x.speedscope.json');
    t.same(canonicalRows(bySamples), canonicalRows(p, { tid: false, thread: false, cpuNs: false }), 'unit none: counts per process (name and pid) and stack');
    const byCpu = decodeProfile(Buffer.from(encodeSpeedscope(p, { weight: 'cpu-ns' })), 'x.speedscope.json');
    t.same(canonicalRows(byCpu), canonicalRows(p, { tid: false, thread: false, count: false }), 'unit nanoseconds: CPU time per process and stack');
    t.ok(byCpu.samples.every((s) => s.count === 0), 'no sample counts invented from time');
  }
  const back = decodeProfile(Buffer.from(encodeSpeedscope(richProfile())));
  t.equal(back.frames.find((f) => f.name === 'ksys_write')?.kind, 'kernel', 'kernel kind from [kernel.kallsyms]');
  t.equal(back.frames.find((f) => f.name.startsWith('LazyCompile'))?.kind, 'jit', 'JIT kind from the perf map path');
  t.match(back.meta.comments.join('\n'), /speedscope exporter: ebpfprof /);
});
