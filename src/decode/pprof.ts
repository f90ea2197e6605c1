// SPDX-License-Identifier: Apache-2.0
/**
 * pprof (profile.proto, gzip-compressed or raw) → Profile, for the viewer and for conversions.
 *
 * A small strict protobuf reader of our own rather than pprof-format's decoder: that one accepts
 * truncated and garbled input silently (it clamps lengths and misreads field numbers above 15), and a
 * viewer must say "this file is broken" instead of showing a wrong flame graph. Every length, index
 * and id is checked; all failures are EbpfprofError('EINPUT').
 *
 * Mapping to the model:
 * - values: the "samples"/count type (or the first unit=count type) → count; the "cpu"/nanoseconds
 *   type (or the first unit=nanoseconds type) → cpuNs. Missing one is derived from the other through
 *   the period when the period is in nanoseconds, else 0. Negative values (diff profiles) are refused.
 * - labels pid, tid (numeric) and process_name, thread_name (string); absent → 0 / ''.
 * - a Location with n Lines (inlining) becomes n frames, innermost first; a Location without Lines
 *   becomes one unsymbolized frame named `module+0xfileoffset` (`0xaddress` without a mapping).
 * - frame kind from the mapping path (see frameKindForPath); pprof has no field for it.
 */
import { gunzipSync } from 'node:zlib';
import * as path from 'node:path';
import { EbpfprofError } from '../errors';
import { ProfileBuilder, type FrameKind, type Profile } from '../profile/model';

/** Largest decompressed size we accept; a bigger file is almost certainly a gzip bomb or not a profile. */
export const MAX_DECOMPRESSED_BYTES = 1 << 30;

const KERNEL_PATH = '[kernel.kallsyms]';

/** The frame kind implied by a mapping path (pprof, speedscope `file`): kernel, JIT, or native. */
export function frameKindForPath(p: string): FrameKind {
  if (p === '') return 'unknown';
  if (p === KERNEL_PATH || p.startsWith('[kernel') || p === '[vmlinux]') return 'kernel';
  if (p === '[jit]' || /(^|\/)perf-\d+\.map$/.test(p) || /(^|\/)jit-\d+\.dump$/.test(p)) return 'jit';
  return 'native';
}

/** Whether a frame name is what a symbolizer writes when it found no symbol. */
export function looksUnsymbolized(name: string): boolean {
  return name === '[unknown]' || /^0x[0-9a-fA-F]+$/.test(name) || /^[^\s;]*\+0x[0-9a-fA-F]+$/.test(name);
}

/** The name of an unsymbolized frame: `module+0xfileoffset`, or `0xaddress` without a mapping. */
export function unsymbolizedName(address: bigint, mapping?: { start: bigint; fileOffset: bigint; path: string }): string {
  if (mapping === undefined || mapping.path === '') return `0x${address.toString(16)}`;
  const offset = address >= mapping.start ? address - mapping.start + mapping.fileOffset : address;
  return `${path.basename(mapping.path) || mapping.path}+0x${offset.toString(16)}`;
}

/** Raised inside the reader; turned into EINPUT with the file name by decodePprof. */
class Malformed extends Error {}

const TWO_POW_64 = 1n << 64n;

/** Protobuf wire-format reader over [pos, end) that refuses anything out of bounds. */
class Reader {
  constructor(
    private readonly buf: Uint8Array,
    public pos: number,
    private readonly end: number,
  ) {}

  get done(): boolean {
    return this.pos >= this.end;
  }

  /** Unsigned varint as bigint (up to 64 bits). */
  varintBig(): bigint {
    let result = 0n;
    let shift = 0n;
    for (let i = 0; i < 10; i++) {
      if (this.pos >= this.end) throw new Malformed(`truncated varint at byte ${this.pos}`);
      const b = this.buf[this.pos++]!;
      result |= BigInt(b & 0x7f) << shift;
      if (b < 0x80) return result % TWO_POW_64;
      shift += 7n;
    }
    throw new Malformed(`varint longer than 10 bytes at byte ${this.pos}`);
  }

  /**
   * Small non-negative varint as a number, or -1 (position unchanged) when it is longer than 7 bytes
   * (49 bits, always exact in a double). The common case: BigInt arithmetic costs ~10× more.
   */
  private small(): number {
    let result = 0;
    const start = this.pos;
    for (let i = 0; i < 7; i++) {
      if (this.pos >= this.end) throw new Malformed(`truncated varint at byte ${this.pos}`);
      const b = this.buf[this.pos++]!;
      result += (b & 0x7f) * 2 ** (7 * i);
      if (b < 0x80) return result;
    }
    this.pos = start;
    return -1;
  }

  /** Unsigned varint that must fit a JavaScript safe integer (ids, indices, lengths). */
  varint(): number {
    const start = this.pos;
    const v = this.small();
    if (v >= 0) return v;
    const big = this.varintBig();
    if (big > BigInt(Number.MAX_SAFE_INTEGER)) throw new Malformed(`value ${big} at byte ${start} is too large`);
    return Number(big);
  }

  /** int64 varint (two's complement) as a number; refuses values beyond the safe range. */
  int64(): number {
    const start = this.pos;
    const fast = this.small();
    if (fast >= 0) return fast;
    const v = BigInt.asIntN(64, this.varintBig());
    if (v > BigInt(Number.MAX_SAFE_INTEGER) || v < -BigInt(Number.MAX_SAFE_INTEGER)) {
      throw new Malformed(`value ${v} at byte ${start} is too large`);
    }
    return Number(v);
  }

  /** uint64 varint as bigint (addresses). */
  uint64(): bigint {
    const fast = this.small();
    return fast >= 0 ? BigInt(fast) : this.varintBig();
  }

  /** Reads a length prefix and returns a reader over that many bytes, advancing past them. */
  sub(): Reader {
    const len = this.varint();
    if (len > this.end - this.pos) {
      throw new Malformed(`length ${len} at byte ${this.pos} runs past the end of its message (truncated or corrupt data)`);
    }
    const r = new Reader(this.buf, this.pos, this.pos + len);
    this.pos += len;
    return r;
  }

  bytes(): Uint8Array {
    const r = this.sub();
    return this.buf.subarray(r.pos, r.end);
  }

  tag(): { field: number; wire: number } {
    const at = this.pos;
    const t = this.varint();
    const field = Math.floor(t / 8);
    const wire = t & 7;
    if (field === 0) throw new Malformed(`invalid field number 0 at byte ${at}`);
    return { field, wire };
  }

  skip(wire: number, field: number): void {
    const at = this.pos;
    switch (wire) {
      case 0:
        this.varintBig();
        return;
      case 1:
        this.advance(8, at);
        return;
      case 2:
        this.sub();
        return;
      case 5:
        this.advance(4, at);
        return;
      default:
        throw new Malformed(`field ${field} has invalid wire type ${wire} at byte ${at}`);
    }
  }

  private advance(n: number, at: number): void {
    if (n > this.end - this.pos) throw new Malformed(`truncated fixed-size field at byte ${at}`);
    this.pos += n;
  }

  /** A repeated scalar field, packed (wire 2) or not (wire 0). */
  repeated(wire: number, field: number, read: (r: Reader) => void): void {
    if (wire === 0) read(this);
    else if (wire === 2) {
      const r = this.sub();
      while (!r.done) read(r);
    } else throw new Malformed(`field ${field} has wire type ${wire}, expected a varint or packed varints`);
  }

  expect(wire: number, expected: number, field: number, what: string): void {
    if (wire !== expected) throw new Malformed(`${what} (field ${field}) has wire type ${wire}, expected ${expected}`);
  }
}

interface RawValueType {
  type: number;
  unit: number;
}
interface RawLabel {
  key: number;
  str: number;
  num: number;
}
interface RawSample {
  locationIds: number[];
  values: number[];
  labels: RawLabel[];
}
interface RawMapping {
  id: number;
  start: bigint;
  limit: bigint;
  offset: bigint;
  filename: number;
  buildId: number;
}
interface RawLocation {
  id: number;
  mappingId: number;
  address: bigint;
  functionIds: number[];
}
interface RawFunction {
  id: number;
  name: number;
  systemName: number;
}
interface RawProfile {
  sampleTypes: RawValueType[];
  samples: RawSample[];
  mappings: RawMapping[];
  locations: RawLocation[];
  functions: RawFunction[];
  strings: string[];
  timeNanos: bigint;
  durationNanos: number;
  periodType: RawValueType | null;
  period: number;
  comments: number[];
  defaultSampleType: number;
}

function readValueType(r: Reader): RawValueType {
  const v: RawValueType = { type: 0, unit: 0 };
  while (!r.done) {
    const { field, wire } = r.tag();
    if (field === 1 && wire === 0) v.type = r.int64();
    else if (field === 2 && wire === 0) v.unit = r.int64();
    else r.skip(wire, field);
  }
  return v;
}

function readLabel(r: Reader): RawLabel {
  const l: RawLabel = { key: 0, str: 0, num: 0 };
  while (!r.done) {
    const { field, wire } = r.tag();
    if (field === 1 && wire === 0) l.key = r.int64();
    else if (field === 2 && wire === 0) l.str = r.int64();
    else if (field === 3 && wire === 0) l.num = r.int64();
    else r.skip(wire, field);
  }
  return l;
}

function readSample(r: Reader): RawSample {
  const s: RawSample = { locationIds: [], values: [], labels: [] };
  while (!r.done) {
    const { field, wire } = r.tag();
    if (field === 1) r.repeated(wire, field, (x) => s.locationIds.push(x.varint()));
    else if (field === 2) r.repeated(wire, field, (x) => s.values.push(x.int64()));
    else if (field === 3) {
      r.expect(wire, 2, field, 'Sample.label');
      s.labels.push(readLabel(r.sub()));
    } else r.skip(wire, field);
  }
  return s;
}

function readMapping(r: Reader): RawMapping {
  const m: RawMapping = { id: 0, start: 0n, limit: 0n, offset: 0n, filename: 0, buildId: 0 };
  while (!r.done) {
    const { field, wire } = r.tag();
    if (wire !== 0) r.skip(wire, field);
    else if (field === 1) m.id = r.varint();
    else if (field === 2) m.start = r.uint64();
    else if (field === 3) m.limit = r.uint64();
    else if (field === 4) m.offset = r.uint64();
    else if (field === 5) m.filename = r.int64();
    else if (field === 6) m.buildId = r.int64();
    else r.skip(wire, field);
  }
  return m;
}

function readLine(r: Reader): number {
  let functionId = 0;
  while (!r.done) {
    const { field, wire } = r.tag();
    if (field === 1 && wire === 0) functionId = r.varint();
    else r.skip(wire, field);
  }
  return functionId;
}

function readLocation(r: Reader): RawLocation {
  const l: RawLocation = { id: 0, mappingId: 0, address: 0n, functionIds: [] };
  while (!r.done) {
    const { field, wire } = r.tag();
    if (field === 1 && wire === 0) l.id = r.varint();
    else if (field === 2 && wire === 0) l.mappingId = r.varint();
    else if (field === 3 && wire === 0) l.address = r.uint64();
    else if (field === 4) {
      r.expect(wire, 2, field, 'Location.line');
      l.functionIds.push(readLine(r.sub()));
    } else r.skip(wire, field);
  }
  return l;
}

function readFunction(r: Reader): RawFunction {
  const f: RawFunction = { id: 0, name: 0, systemName: 0 };
  while (!r.done) {
    const { field, wire } = r.tag();
    if (field === 1 && wire === 0) f.id = r.varint();
    else if (field === 2 && wire === 0) f.name = r.int64();
    else if (field === 3 && wire === 0) f.systemName = r.int64();
    else r.skip(wire, field);
  }
  return f;
}

const utf8 = new TextDecoder('utf-8', { fatal: true });

function readProfile(buf: Uint8Array): RawProfile {
  const p: RawProfile = {
    sampleTypes: [],
    samples: [],
    mappings: [],
    locations: [],
    functions: [],
    strings: [],
    timeNanos: 0n,
    durationNanos: 0,
    periodType: null,
    period: 0,
    comments: [],
    defaultSampleType: 0,
  };
  const r = new Reader(buf, 0, buf.length);
  while (!r.done) {
    const { field, wire } = r.tag();
    switch (field) {
      case 1:
        r.expect(wire, 2, field, 'Profile.sample_type');
        p.sampleTypes.push(readValueType(r.sub()));
        break;
      case 2:
        r.expect(wire, 2, field, 'Profile.sample');
        p.samples.push(readSample(r.sub()));
        break;
      case 3:
        r.expect(wire, 2, field, 'Profile.mapping');
        p.mappings.push(readMapping(r.sub()));
        break;
      case 4:
        r.expect(wire, 2, field, 'Profile.location');
        p.locations.push(readLocation(r.sub()));
        break;
      case 5:
        r.expect(wire, 2, field, 'Profile.function');
        p.functions.push(readFunction(r.sub()));
        break;
      case 6: {
        r.expect(wire, 2, field, 'Profile.string_table');
        const at = r.pos;
        try {
          p.strings.push(utf8.decode(r.bytes()));
        } catch (e) {
          if (e instanceof Malformed) throw e;
          throw new Malformed(`string_table entry at byte ${at} is not valid UTF-8`);
        }
        break;
      }
      case 9:
        r.expect(wire, 0, field, 'Profile.time_nanos');
        p.timeNanos = BigInt.asIntN(64, r.varintBig());
        break;
      case 10:
        r.expect(wire, 0, field, 'Profile.duration_nanos');
        p.durationNanos = r.int64();
        break;
      case 11:
        r.expect(wire, 2, field, 'Profile.period_type');
        p.periodType = readValueType(r.sub());
        break;
      case 12:
        r.expect(wire, 0, field, 'Profile.period');
        p.period = r.int64();
        break;
      case 13:
        r.repeated(wire, field, (x) => p.comments.push(x.int64()));
        break;
      case 14:
        r.expect(wire, 0, field, 'Profile.default_sample_type');
        p.defaultSampleType = r.int64();
        break;
      default:
        // drop_frames, keep_frames, doc_url and fields added to the spec later.
        r.skip(wire, field);
    }
  }
  return p;
}

/** Gunzips when the bytes start with the gzip magic; EINPUT (naming `what`) when that fails. */
export function gunzipIfNeeded(bytes: Buffer, what: string): { data: Buffer; compressed: boolean } {
  if (bytes.length < 2 || bytes[0] !== 0x1f || bytes[1] !== 0x8b) return { data: bytes, compressed: false };
  try {
    return { data: gunzipSync(bytes, { maxOutputLength: MAX_DECOMPRESSED_BYTES }), compressed: true };
  } catch (e) {
    const reason = e instanceof Error ? e.message : String(e);
    const hint = /buffer|length|range/i.test(reason) && /exceed|max|large/i.test(reason) ? ` (more than ${MAX_DECOMPRESSED_BYTES} bytes uncompressed)` : '';
    throw new EbpfprofError('EINPUT', `cannot read ${what}: it starts like gzip but does not decompress: ${reason}${hint}`, { cause: e });
  }
}

function inputError(fileName: string | undefined, message: string, cause?: unknown): EbpfprofError {
  return new EbpfprofError('EINPUT', `cannot read ${fileName ?? 'input'} as pprof (profile.proto): ${message}`, cause === undefined ? undefined : { cause });
}

/** Decodes a pprof profile (gzip-compressed or raw profile.proto). */
export function decodePprof(bytes: Buffer, fileName?: string): Profile {
  const { data } = gunzipIfNeeded(bytes, `${fileName ?? 'input'} as gzip-compressed pprof`);
  let raw: RawProfile;
  try {
    raw = readProfile(data);
  } catch (e) {
    if (e instanceof Malformed) throw inputError(fileName, e.message, e);
    throw e;
  }
  try {
    return toModel(raw);
  } catch (e) {
    if (e instanceof Malformed) throw inputError(fileName, e.message, e);
    throw e;
  }
}

function toModel(raw: RawProfile): Profile {
  const { strings } = raw;
  if (strings.length === 0 && (raw.samples.length > 0 || raw.sampleTypes.length > 0)) {
    throw new Malformed('the string table is empty');
  }
  if (strings.length > 0 && strings[0] !== '') throw new Malformed('string_table[0] must be the empty string');
  const str = (i: number, what: string): string => {
    if (!Number.isInteger(i) || i < 0 || i >= strings.length) {
      throw new Malformed(`${what} refers to string ${i}, but the string table has ${strings.length} entries`);
    }
    return strings[i]!;
  };

  const types = raw.sampleTypes.map((t) => ({ type: str(t.type, 'sample_type'), unit: str(t.unit, 'sample_type') }));
  const periodType = raw.periodType ? { type: str(raw.periodType.type, 'period_type'), unit: str(raw.periodType.unit, 'period_type') } : null;
  const comments = raw.comments.map((c) => str(c, 'comment'));
  if (raw.samples.length > 0 && types.length === 0) throw new Malformed('samples are present but sample_type is missing');

  const pick = (pred: (t: { type: string; unit: string }) => boolean): number => types.findIndex(pred);
  let countIdx = pick((t) => t.type === 'samples' && t.unit === 'count');
  if (countIdx < 0) countIdx = pick((t) => t.unit === 'count');
  let nsIdx = pick((t) => t.type === 'cpu' && t.unit === 'nanoseconds');
  if (nsIdx < 0) nsIdx = pick((t) => t.unit === 'nanoseconds');
  if (countIdx < 0 && nsIdx < 0 && types.length > 0) {
    // Neither a count nor a time (e.g. a heap profile): show the default type as counts.
    const def = raw.defaultSampleType > 0 ? strings[raw.defaultSampleType] : undefined;
    const d = def === undefined ? -1 : types.findIndex((t) => t.type === def);
    countIdx = d >= 0 ? d : 0;
  }
  const periodNs = periodType?.unit === 'nanoseconds' && raw.period > 0 ? raw.period : 0;

  const b = new ProfileBuilder({
    startTimeMs: Number(raw.timeNanos / 1000n) / 1000,
    durationNs: Math.max(0, raw.durationNanos),
    frequencyHz: periodNs > 0 ? Math.round(1e9 / periodNs) : 0,
    periodNs,
    comments,
  });

  const mappingById = new Map<number, { index: number; start: bigint; fileOffset: bigint; path: string }>();
  for (const m of raw.mappings) {
    if (m.id === 0) throw new Malformed('a mapping has the reserved id 0');
    if (mappingById.has(m.id)) throw new Malformed(`mapping id ${m.id} appears twice`);
    const p = str(m.filename, `mapping ${m.id} filename`);
    const index = b.mapping({ start: m.start, limit: m.limit, fileOffset: m.offset, path: p, buildId: str(m.buildId, `mapping ${m.id} build_id`) });
    mappingById.set(m.id, { index, start: m.start, fileOffset: m.offset, path: p });
  }

  const functionById = new Map<number, { name: string; systemName: string }>();
  for (const f of raw.functions) {
    if (f.id === 0) throw new Malformed('a function has the reserved id 0');
    if (functionById.has(f.id)) throw new Malformed(`function id ${f.id} appears twice`);
    const name = str(f.name, `function ${f.id} name`);
    const system = str(f.systemName, `function ${f.id} system_name`);
    functionById.set(f.id, { name: name || system, systemName: system === name ? '' : system });
  }

  // Each location expands to its frames, innermost (leaf-most) first, as profile.proto orders lines.
  const framesByLocation = new Map<number, number[]>();
  for (const l of raw.locations) {
    if (l.id === 0) throw new Malformed('a location has the reserved id 0');
    if (framesByLocation.has(l.id)) throw new Malformed(`location id ${l.id} appears twice`);
    let mapping: { index: number; start: bigint; fileOffset: bigint; path: string } | undefined;
    if (l.mappingId !== 0) {
      mapping = mappingById.get(l.mappingId);
      if (mapping === undefined) throw new Malformed(`location ${l.id} refers to mapping ${l.mappingId}, which does not exist`);
    }
    const kind = mapping ? frameKindForPath(mapping.path) : 'unknown';
    const ids: number[] = [];
    if (l.functionIds.length === 0) {
      ids.push(b.frame({ kind, name: unsymbolizedName(l.address, mapping), systemName: '', mapping: mapping?.index ?? -1, address: l.address, symbolized: false }));
    }
    for (const fid of l.functionIds) {
      const fn = functionById.get(fid);
      if (fn === undefined) throw new Malformed(`location ${l.id} refers to function ${fid}, which does not exist`);
      ids.push(b.frame({ kind, name: fn.name, systemName: fn.systemName, mapping: mapping?.index ?? -1, address: l.address, symbolized: true }));
    }
    framesByLocation.set(l.id, ids);
  }

  let total = 0;
  raw.samples.forEach((s, n) => {
    if (s.values.length !== types.length) {
      throw new Malformed(`sample ${n} has ${s.values.length} values but there are ${types.length} sample types`);
    }
    for (const v of s.values) if (v < 0) throw new Malformed(`sample ${n} has a negative value ${v} (diff profiles are not supported)`);
    const frameIds: number[] = [];
    for (const lid of s.locationIds) {
      const ids = framesByLocation.get(lid);
      if (ids === undefined) throw new Malformed(`sample ${n} refers to location ${lid}, which does not exist`);
      for (const id of ids) frameIds.push(id);
    }
    let pid = 0;
    let tid = 0;
    let processName = '';
    let threadName = '';
    for (const lab of s.labels) {
      const key = str(lab.key, `sample ${n} label key`);
      const value = str(lab.str, `sample ${n} label value`);
      if (key === 'pid') pid = lab.num;
      else if (key === 'tid') tid = lab.num;
      else if (key === 'process_name') processName = value;
      else if (key === 'thread_name') threadName = value;
    }
    let count = countIdx >= 0 ? s.values[countIdx]! : 0;
    let cpuNs = nsIdx >= 0 ? s.values[nsIdx]! : 0;
    if (countIdx < 0 && periodNs > 0) count = Math.round(cpuNs / periodNs);
    if (nsIdx < 0 && periodNs > 0) cpuNs = count * periodNs;
    total += count + cpuNs;
    if (!Number.isSafeInteger(total)) throw new Malformed('the sample values add up to more than 2^53');
    b.addSample({ stack: b.stack(frameIds), pid, tid, processName, threadName, count, cpuNs });
  });
  return b.build();
}
