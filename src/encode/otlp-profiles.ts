// SPDX-License-Identifier: Apache-2.0
/**
 * Profile → OTLP Profiles (opentelemetry-proto v1.10.0, profiles/v1development), encoded with
 * protobufjs from the .proto files in ./otlp/proto. The same bytes are the body of
 * POST <endpoint>/v1development/profiles (ExportProfilesServiceRequest) and, gzip-compressed, what
 * `record --format otlp` writes (ProfilesData has the same fields and numbers).
 *
 * Layout of what we write:
 * - One ResourceProfiles per process (pid) with its resource attributes (process.pid always; the
 *   rest from `resourceOf`: host, executable, command line, container, Kubernetes pod), one
 *   ScopeProfiles (scope "ebpfprof"), one Profile.
 * - Profile: sample_type samples/count, period_type cpu/nanoseconds with period = meta.periodNs, so
 *   a sample's CPU time is its count × period. Callers keep the period constant within one profile
 *   (the agent starts a new window when the frequency changes); rows whose CPU time disagrees are
 *   counted in `cpuTimeMismatches`. time_unix_nano/duration_nano from the meta, a random profile_id.
 *   An off-CPU profile (meta.timeKind 'off-cpu') has no such relation between its two values, so each
 *   process gets two profiles over the same samples: off_cpu/nanoseconds first, then blocks/count.
 * - Sample: stack_index, attribute_indices (thread.id, thread.name), values [count].
 * - One dictionary for the whole request; every table starts with its zero value, entries are
 *   unique and referenced. Locations carry profile.frame.type; symbolized frames have one Line →
 *   Function (name, system_name = mangled or name); unsymbolized frames have no Line, only mapping +
 *   address, so that a backend can symbolize them by build id. Mappings carry
 *   process.executable.build_id.gnu. Kernel frames without a mapping share one synthetic
 *   "[kernel.kallsyms]" mapping spanning their addresses (as in the pprof encoder).
 */
import { randomBytes } from 'node:crypto';
import { gzipSync } from 'node:zlib';
import Long from 'long';
import { EbpfprofError } from '../errors';
import { profileValueTypes, type Frame, type Profile, type Sample } from '../profile/model';
import { ATTR, AttributeValue, Attributes, frameType } from './otlp/semconv';
import { otlpProfilesSchema } from './otlp/schema';
import { KERNEL_MAPPING_PATH } from './pprof';

export interface OtlpScope {
  name: string;
  version: string;
}

export interface OtlpEncodeOptions {
  /**
   * Resource attributes of a process (by pid; `processName` is its comm in the samples). Without
   * it, or where it has none, process.executable.name is the comm; process.pid is always written.
   */
  resourceOf?: (pid: number, processName: string) => Attributes;
  scope?: OtlpScope;
  /** 16-byte profile ids; random by default (tests pass a deterministic source). */
  profileId?: () => Buffer;
}

export interface OtlpEncodeStats {
  /** Profiles (= processes) in the request. */
  profiles: number;
  /** Sum of sample counts. */
  samples: number;
  /** Sample rows whose cpuNs is not count × period (the period changed inside the profile). */
  cpuTimeMismatches: number;
}

export interface OtlpEncoded {
  /** Serialized ExportProfilesServiceRequest, uncompressed. */
  bytes: Buffer;
  stats: OtlpEncodeStats;
}

// Plain-object shapes protobufjs encodes (camelCase field names of the .proto files).
interface PbAnyValue {
  stringValue?: string;
  boolValue?: boolean;
  intValue?: Long;
  doubleValue?: number;
}
interface PbKeyValue {
  key: string;
  value: PbAnyValue;
}
interface PbKeyValueAndUnit {
  keyStrindex?: number;
  value?: PbAnyValue;
  unitStrindex?: number;
}
interface PbMapping {
  memoryStart?: Long;
  memoryLimit?: Long;
  fileOffset?: Long;
  filenameStrindex?: number;
  attributeIndices?: number[];
}
interface PbLocation {
  mappingIndex?: number;
  address?: Long;
  lines?: { functionIndex: number }[];
  attributeIndices?: number[];
}
interface PbFunction {
  nameStrindex?: number;
  systemNameStrindex?: number;
}
interface PbSample {
  stackIndex: number;
  attributeIndices: number[];
  values: Long[];
}
interface PbProfile {
  sampleType: { typeStrindex: number; unitStrindex: number };
  samples: PbSample[];
  timeUnixNano: Long;
  durationNano: Long;
  periodType: { typeStrindex: number; unitStrindex: number };
  period: Long;
  profileId: Buffer;
}
interface PbResourceProfiles {
  resource: { attributes: PbKeyValue[] };
  scopeProfiles: { scope: { name: string; version: string }; profiles: PbProfile[] }[];
}
export interface PbExportRequest {
  resourceProfiles: PbResourceProfiles[];
  dictionary: {
    mappingTable: PbMapping[];
    locationTable: PbLocation[];
    functionTable: PbFunction[];
    linkTable: object[];
    stringTable: string[];
    attributeTable: PbKeyValueAndUnit[];
    stackTable: { locationIndices: number[] }[];
  };
}

/** The instrumentation scope of everything ebpfprof writes: its name and package version. */
export const EBPFPROF_SCOPE: OtlpScope = { name: 'ebpfprof', version: packageVersion() };

function packageVersion(): string {
  try {
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    return String((require('../../../package.json') as { version: string }).version);
  } catch {
    return '';
  }
}

const u64 = (n: bigint): Long => Long.fromString((n < 0n ? 0n : n).toString(), true);
const i64 = (n: number): Long => Long.fromNumber(Number.isFinite(n) ? Math.round(n) : 0);

function anyValue(v: AttributeValue): PbAnyValue {
  if (typeof v === 'string') return { stringValue: v };
  if (typeof v === 'boolean') return { boolValue: v };
  return Number.isSafeInteger(v) ? { intValue: Long.fromNumber(v) } : { doubleValue: v };
}

/** Interning tables of one request's dictionary, each starting with its zero value. */
class Dictionary {
  readonly strings: string[] = [''];
  readonly mappings: PbMapping[] = [{}];
  readonly locations: PbLocation[] = [{}];
  readonly functions: PbFunction[] = [{}];
  readonly attributes: PbKeyValueAndUnit[] = [{}];
  readonly stacks: { locationIndices: number[] }[] = [{ locationIndices: [] }];
  private readonly stringIndex = new Map<string, number>([['', 0]]);
  private readonly functionIndex = new Map<string, number>();
  private readonly attributeIndex = new Map<string, number>();
  private readonly locationIndex = new Map<string, number>();
  private readonly stackIndex = new Map<string, number>([['', 0]]);

  str(s: string): number {
    let i = this.stringIndex.get(s);
    if (i === undefined) {
      i = this.strings.length;
      this.strings.push(s);
      this.stringIndex.set(s, i);
    }
    return i;
  }

  attribute(key: string, value: AttributeValue): number {
    const id = `${key}\0${typeof value}\0${String(value)}`;
    let i = this.attributeIndex.get(id);
    if (i === undefined) {
      i = this.attributes.length;
      this.attributes.push({ keyStrindex: this.str(key), value: anyValue(value) });
      this.attributeIndex.set(id, i);
    }
    return i;
  }

  function(name: string, systemName: string): number {
    const id = `${name}\0${systemName}`;
    let i = this.functionIndex.get(id);
    if (i === undefined) {
      i = this.functions.length;
      this.functions.push({ nameStrindex: this.str(name), systemNameStrindex: this.str(systemName || name) });
      this.functionIndex.set(id, i);
    }
    return i;
  }

  location(loc: PbLocation): number {
    const id = `${loc.mappingIndex ?? 0}|${loc.address?.toString() ?? '0'}|${(loc.lines ?? []).map((l) => l.functionIndex).join(',')}|${(loc.attributeIndices ?? []).join(',')}`;
    let i = this.locationIndex.get(id);
    if (i === undefined) {
      i = this.locations.length;
      this.locations.push(loc);
      this.locationIndex.set(id, i);
    }
    return i;
  }

  stack(locationIndices: number[]): number {
    const id = locationIndices.join(',');
    let i = this.stackIndex.get(id);
    if (i === undefined) {
      i = this.stacks.length;
      this.stacks.push({ locationIndices });
      this.stackIndex.set(id, i);
    }
    return i;
  }
}

/** Builds the ExportProfilesServiceRequest as the plain object protobufjs encodes. */
export function buildOtlpProfilesRequest(profile: Profile, options: OtlpEncodeOptions = {}): { request: PbExportRequest; stats: OtlpEncodeStats } {
  const dict = new Dictionary();
  const scope = options.scope ?? EBPFPROF_SCOPE;
  const newProfileId = options.profileId ?? (() => randomBytes(16));
  const { meta } = profile;
  const resources = new Map<number, Attributes>();
  const resourceOf = (pid: number, processName: string): Attributes => {
    let r = resources.get(pid);
    if (r === undefined) {
      r = { ...(processName ? { [ATTR.processExecutableName]: processName } : {}), ...(options.resourceOf?.(pid, processName) ?? {}), [ATTR.processPid]: pid };
      resources.set(pid, r);
    }
    return r;
  };

  // Model mapping index → dictionary index, created on first use so that none is orphaned.
  const mappingIds = new Map<number, number>();
  const mappingId = (i: number): number => {
    let id = mappingIds.get(i);
    if (id === undefined) {
      const m = profile.mappings[i]!;
      id = dict.mappings.length;
      dict.mappings.push({
        memoryStart: u64(m.start),
        memoryLimit: u64(m.limit),
        fileOffset: u64(m.fileOffset),
        filenameStrindex: dict.str(m.path),
        attributeIndices: m.buildId ? [dict.attribute(ATTR.buildIdGnu, m.buildId)] : [],
      });
      mappingIds.set(i, id);
    }
    return id;
  };
  // Kernel frames with no mapping of their own: one synthetic mapping over all their addresses.
  let kernelLo: bigint | null = null;
  let kernelHi = 0n;
  for (const f of profile.frames) {
    if (f.kind === 'kernel' && !(f.mapping >= 0 && f.mapping < profile.mappings.length) && f.address !== 0n) {
      if (kernelLo === null || f.address < kernelLo) kernelLo = f.address;
      if (f.address + 1n > kernelHi) kernelHi = f.address + 1n;
    }
  }
  let kernelMapping = 0;
  const kernelMappingId = (): number => {
    if (kernelMapping === 0) {
      kernelMapping = dict.mappings.length;
      dict.mappings.push({ memoryStart: u64(kernelLo ?? 0n), memoryLimit: u64(kernelLo === null ? 0n : kernelHi), filenameStrindex: dict.str(KERNEL_MAPPING_PATH) });
    }
    return kernelMapping;
  };

  const locationOf = (f: Frame, executableName: string): number => {
    let mappingIndex = 0;
    if (f.mapping >= 0 && f.mapping < profile.mappings.length) mappingIndex = mappingId(f.mapping);
    else if (f.kind === 'kernel') mappingIndex = kernelMappingId();
    const type = frameType(f.kind, executableName);
    return dict.location({
      mappingIndex,
      address: u64(f.address),
      lines: f.symbolized ? [{ functionIndex: dict.function(f.name, f.systemName) }] : [],
      attributeIndices: type === null ? [] : [dict.attribute(ATTR.frameType, type)],
    });
  };

  // Samples grouped by process, in pid order for a stable output.
  const byPid = new Map<number, Sample[]>();
  for (const s of profile.samples) {
    let list = byPid.get(s.pid);
    if (!list) byPid.set(s.pid, (list = []));
    list.push(s);
  }
  const stats: OtlpEncodeStats = { profiles: 0, samples: 0, cpuTimeMismatches: 0 };
  const types = profileValueTypes(meta);
  const offCpu = meta.timeKind === 'off-cpu';
  const countType = { typeStrindex: dict.str(types.count.type), unitStrindex: dict.str(types.count.unit) };
  const timeType = { typeStrindex: dict.str(types.time.type), unitStrindex: dict.str(types.time.unit) };
  const timeUnixNano = Long.fromString((BigInt(Math.round(meta.startTimeMs * 1000)) * 1000n).toString(), true);
  const durationNano = Long.fromNumber(Math.max(0, Math.round(meta.durationNs)), true);
  const period = i64(meta.periodNs);
  const resourceProfiles: PbResourceProfiles[] = [];
  for (const pid of [...byPid.keys()].sort((a, b) => a - b)) {
    const attrs = resourceOf(pid, byPid.get(pid)![0]!.processName);
    const exe = typeof attrs[ATTR.processExecutableName] === 'string' ? (attrs[ATTR.processExecutableName] as string) : '';
    const stackIds = new Map<number, number>();
    const samples: PbSample[] = [];
    const timeSamples: PbSample[] = [];
    for (const s of byPid.get(pid)!) {
      let stackIndex = stackIds.get(s.stack);
      if (stackIndex === undefined) {
        const frames = profile.stacks[s.stack];
        if (frames === undefined) throw new EbpfprofError('EOUTPUT', `cannot encode OTLP profiles: sample refers to stack ${s.stack}, which the profile does not have`);
        stackIndex = dict.stack(
          frames.map((fi) => {
            const f = profile.frames[fi];
            if (f === undefined) throw new EbpfprofError('EOUTPUT', `cannot encode OTLP profiles: stack ${s.stack} refers to frame ${fi}, which the profile does not have`);
            return locationOf(f, exe);
          }),
        );
        stackIds.set(s.stack, stackIndex);
      }
      const attributeIndices = [dict.attribute(ATTR.threadId, s.tid)];
      if (s.threadName) attributeIndices.push(dict.attribute(ATTR.threadName, s.threadName));
      samples.push({ stackIndex, attributeIndices, values: [i64(s.count)] });
      if (offCpu) timeSamples.push({ stackIndex, attributeIndices, values: [i64(s.cpuNs)] });
      stats.samples += s.count;
      if (!offCpu && meta.periodNs > 0 && Math.abs(s.cpuNs - s.count * meta.periodNs) > s.count) stats.cpuTimeMismatches++;
    }
    const pbProfile = (sampleType: PbProfile['sampleType'], list: PbSample[]): PbProfile => ({
      sampleType,
      samples: list,
      timeUnixNano,
      durationNano,
      periodType: timeType,
      period,
      profileId: newProfileId(),
    });
    const profiles = offCpu ? [pbProfile(timeType, timeSamples), pbProfile(countType, samples)] : [pbProfile(countType, samples)];
    resourceProfiles.push({
      resource: { attributes: Object.entries(attrs).map(([key, v]) => ({ key, value: anyValue(v) })) },
      scopeProfiles: [
        {
          scope: { name: scope.name, version: scope.version },
          profiles,
        },
      ],
    });
    stats.profiles += profiles.length;
  }
  return {
    request: {
      resourceProfiles,
      dictionary: {
        mappingTable: dict.mappings,
        locationTable: dict.locations,
        functionTable: dict.functions,
        linkTable: [{}],
        stringTable: dict.strings,
        attributeTable: dict.attributes,
        stackTable: dict.stacks,
      },
    },
    stats,
  };
}

/** Serialized ExportProfilesServiceRequest (uncompressed), with what it holds. */
export function encodeOtlpProfilesRequest(profile: Profile, options: OtlpEncodeOptions = {}): OtlpEncoded {
  const { request, stats } = buildOtlpProfilesRequest(profile, options);
  const bytes = otlpProfilesSchema().ExportProfilesServiceRequest.encode(request).finish();
  return { bytes: Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength), stats };
}

/** The file format of `record --format otlp`: gzip-compressed ProfilesData (= the request's bytes). */
export function encodeOtlpProfiles(profile: Profile, options: OtlpEncodeOptions = {}): Buffer {
  return gzipSync(encodeOtlpProfilesRequest(profile, options).bytes);
}

export interface OtlpExportResult {
  /** Profiles the receiver rejected (partial success). */
  rejectedProfiles: number;
  /** The receiver's message (a warning when nothing was rejected), '' if none. */
  errorMessage: string;
}

/** Reads an ExportProfilesServiceResponse body; an empty body is full success. */
export function decodeOtlpExportResponse(body: Buffer): OtlpExportResult {
  if (body.length === 0) return { rejectedProfiles: 0, errorMessage: '' };
  const type = otlpProfilesSchema().ExportProfilesServiceResponse;
  const msg = type.toObject(type.decode(body), { longs: Number, defaults: true }) as { partialSuccess?: { rejectedProfiles?: number; errorMessage?: string } };
  return { rejectedProfiles: Number(msg.partialSuccess?.rejectedProfiles ?? 0), errorMessage: msg.partialSuccess?.errorMessage ?? '' };
}
