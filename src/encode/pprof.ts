// SPDX-License-Identifier: Apache-2.0
/**
 * Profile → pprof (profile.proto, gzip-compressed), the format `go tool pprof`, Pyroscope, Parca and
 * Cloud Profiler read. Encoded with DataDog's `pprof-format`.
 *
 * Layout of what we write:
 * - sample_type [samples/count, cpu/nanoseconds]; period_type cpu/nanoseconds, period = meta.periodNs.
 *   An off-CPU profile (meta.timeKind 'off-cpu') is [blocks/count, off_cpu/nanoseconds] instead.
 * - One Location per model Frame (id = frame index + 1) with its address and mapping. A symbolized
 *   frame gets exactly one Line → Function (name = demangled, system_name = mangled or the name).
 *   An unsymbolized frame gets no Line: pprof then shows the address and can still symbolize it later
 *   (`pprof -symbolize=local`) when the binary is at hand, instead of trusting our `module+0xoff` text.
 * - One Mapping per model Mapping (id = index + 1); has_functions only when every frame that uses the
 *   mapping is symbolized, so pprof does not skip symbolizing the rest. Kernel frames without a mapping
 *   share one synthetic "[kernel.kallsyms]" mapping spanning their addresses.
 * - Labels per sample: numeric pid/tid, string process_name/thread_name (omitted when empty).
 *   go tool pprof ignores numeric labels equal to 0 (no num_unit), so pid/tid 0 (the idle task) do
 *   not show there; readers that see no pid label read 0, which is the same value.
 *
 * Frame kind: profile.proto has no field for it, and inventing labels on locations is not possible
 * (labels belong to samples). We do not smuggle it into another field; it is implied by the mapping
 * instead ([kernel.kallsyms] for kernel frames, the perf map / "[jit]" path for JIT frames), which is
 * also what decode/pprof.ts reads back. Go/interpreted kinds are not preserved through pprof.
 */
import { gzipSync } from 'node:zlib';
import {
  Function as PprofFunction,
  Label,
  Line,
  Location,
  Mapping as PprofMapping,
  Profile as PprofProfile,
  Sample as PprofSample,
  StringTable,
  ValueType,
} from 'pprof-format';
import { EbpfprofError } from '../errors';
import { profileValueTypes, type Profile } from '../profile/model';

/** Mapping path (and pprof mapping filename) of kernel code, as perf names it. */
export const KERNEL_MAPPING_PATH = '[kernel.kallsyms]';

/** Label keys written on every sample. */
export const PPROF_LABELS = {
  pid: 'pid',
  tid: 'tid',
  processName: 'process_name',
  threadName: 'thread_name',
} as const;

function toInt(n: number): number {
  // profile.proto values are int64: never write fractions or NaN.
  return Number.isFinite(n) ? Math.round(n) : 0;
}

/** Builds the pprof-format message (not yet serialized). */
export function buildPprof(profile: Profile): PprofProfile {
  const strings = new StringTable(); // index 0 is "" as the spec requires
  const str = (s: string): number => strings.dedup(s);

  // Which mappings are fully symbolized, and whether kernel frames need the synthetic mapping.
  const mappingAllSymbolized = profile.mappings.map(() => true);
  const mappingUsed = profile.mappings.map(() => false);
  let kernelLo: bigint | null = null;
  let kernelHi = 0n;
  let kernelNeedsMapping = false;
  let kernelAllSymbolized = true;
  for (const f of profile.frames) {
    if (f.mapping >= 0 && f.mapping < profile.mappings.length) {
      mappingUsed[f.mapping] = true;
      if (!f.symbolized) mappingAllSymbolized[f.mapping] = false;
    } else if (f.kind === 'kernel') {
      kernelNeedsMapping = true;
      if (!f.symbolized) kernelAllSymbolized = false;
      if (f.address !== 0n) {
        if (kernelLo === null || f.address < kernelLo) kernelLo = f.address;
        if (f.address + 1n > kernelHi) kernelHi = f.address + 1n;
      }
    }
  }

  const mappings: PprofMapping[] = profile.mappings.map(
    (m, i) =>
      new PprofMapping({
        id: i + 1,
        memoryStart: m.start,
        memoryLimit: m.limit,
        fileOffset: m.fileOffset,
        filename: str(m.path),
        buildId: str(m.buildId),
        hasFunctions: mappingUsed[i]! && mappingAllSymbolized[i]!,
      }),
  );
  const kernelMappingId = kernelNeedsMapping ? mappings.length + 1 : 0;
  if (kernelNeedsMapping) {
    mappings.push(
      new PprofMapping({
        id: kernelMappingId,
        memoryStart: kernelLo ?? 0n,
        memoryLimit: kernelLo === null ? 0n : kernelHi,
        filename: str(KERNEL_MAPPING_PATH),
        hasFunctions: kernelAllSymbolized,
      }),
    );
  }

  const functions: PprofFunction[] = [];
  const functionIds = new Map<string, number>();
  const functionId = (name: string, systemName: string): number => {
    const key = `${name}\0${systemName}`;
    let id = functionIds.get(key);
    if (id === undefined) {
      id = functions.length + 1;
      functions.push(new PprofFunction({ id, name: str(name), systemName: str(systemName || name) }));
      functionIds.set(key, id);
    }
    return id;
  };

  const locations: Location[] = profile.frames.map((f, i) => {
    let mappingId = 0;
    if (f.mapping >= 0 && f.mapping < profile.mappings.length) mappingId = f.mapping + 1;
    else if (f.kind === 'kernel') mappingId = kernelMappingId;
    return new Location({
      id: i + 1,
      mappingId,
      address: f.address,
      line: f.symbolized ? [new Line({ functionId: functionId(f.name, f.systemName) })] : [],
    });
  });

  const keyPid = str(PPROF_LABELS.pid);
  const keyTid = str(PPROF_LABELS.tid);
  const keyProcess = str(PPROF_LABELS.processName);
  const keyThread = str(PPROF_LABELS.threadName);
  const samples: PprofSample[] = profile.samples.map((s) => {
    const stack = profile.stacks[s.stack];
    if (stack === undefined) {
      throw new EbpfprofError('EOUTPUT', `cannot encode pprof: sample refers to stack ${s.stack}, which the profile does not have`);
    }
    const labels: Label[] = [new Label({ key: keyPid, num: s.pid }), new Label({ key: keyTid, num: s.tid })];
    if (s.processName) labels.push(new Label({ key: keyProcess, str: str(s.processName) }));
    if (s.threadName) labels.push(new Label({ key: keyThread, str: str(s.threadName) }));
    return new PprofSample({
      // Both the model and profile.proto list the leaf first.
      locationId: stack.map((frameIndex) => frameIndex + 1),
      value: [toInt(s.count), toInt(s.cpuNs)],
      label: labels,
    });
  });

  const { meta } = profile;
  const types = profileValueTypes(meta);
  return new PprofProfile({
    sampleType: [
      new ValueType({ type: str(types.count.type), unit: str(types.count.unit) }),
      new ValueType({ type: str(types.time.type), unit: str(types.time.unit) }),
    ],
    sample: samples,
    mapping: mappings,
    location: locations,
    function: functions,
    stringTable: strings,
    // ms → ns through integers: ns since the epoch do not fit in a double exactly.
    timeNanos: BigInt(toInt(meta.startTimeMs * 1000)) * 1000n,
    durationNanos: toInt(meta.durationNs),
    periodType: new ValueType({ type: str(types.time.type), unit: str(types.time.unit) }),
    period: toInt(meta.periodNs),
    comment: meta.comments.map(str),
  });
}

/** Serialized profile.proto without compression. */
export function encodePprofUncompressed(profile: Profile): Buffer {
  const bytes = buildPprof(profile).encode();
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
}

/** Gzip-compressed profile.proto, as `go tool pprof` and every pprof consumer expect on disk. */
export function encodePprof(profile: Profile): Buffer {
  return gzipSync(encodePprofUncompressed(profile));
}
