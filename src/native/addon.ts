// SPDX-License-Identifier: Apache-2.0
/**
 * The only module that loads the native addon (addon/, C++ over libbpf). It types what the native
 * side takes and returns; units are in the doc comments. Everything above it is TypeScript.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { EbpfprofError } from '../errors';

/** Root of the checkout/package: dist/src/native -> ../../.. */
export const packageRoot = path.resolve(__dirname, '..', '..', '..');

export interface MapInfo {
  /** enum bpf_map_type */
  type: number;
  keySize: number;
  /** Size of one value as declared. */
  valueSize: number;
  /** Bytes of one lookup result: valueSize rounded to 8 times the possible CPUs for per-CPU maps. */
  valueBytes: number;
  maxEntries: number;
  perCpu: boolean;
}

export interface MapEntries {
  /** `count` keys of keySize bytes, back to back. */
  keys: Buffer;
  /** `count` values of valueBytes bytes, back to back. */
  values: Buffer;
  count: number;
}

export interface ProgramStats {
  /** Total time spent in the program since load, ns; counted only while run-time stats are enabled. */
  runTimeNs: number;
  /** Number of runs counted while run-time stats were enabled. */
  runCount: number;
  recursionMisses: number;
  verifiedInstructions: number;
  id: number;
}

export interface PerfEventOptions {
  /** perf_event_attr.type (PERF_TYPE_SOFTWARE = 1, PERF_TYPE_HARDWARE = 0, ...). */
  type: number;
  /** perf_event_attr.config (PERF_COUNT_SW_CPU_CLOCK = 0, ...). */
  config: number;
  /** Samples per second per CPU (frequency mode). Exclusive with period. */
  frequency?: number;
  /** Events between samples (period mode). Exclusive with frequency. */
  period?: number;
  /** CPUs to open one event on each; -1 means any CPU (then pid must be given). */
  cpus: number[];
  /** Task to follow; -1 (default) = every task on the CPU. */
  pid?: number;
}

export interface NativePerfLink {
  /**
   * Changes the sampling frequency (Hz) of every event, while attached. Refused for cpu-clock and
   * task-clock: the kernel turns their frequency into a fixed period at open, so they are opened in
   * period mode and changed with setPeriod.
   */
  setFrequency(hz: number): void;
  /** Changes the sampling period (events; ns for cpu-clock) of every event, while attached. */
  setPeriod(period: number): void;
  cpus(): number[];
  close(): void;
}

export interface NativeLink {
  close(): void;
}

export interface RingBufferStats {
  /** Records read from the kernel ring buffer. */
  records: number;
  /** Batches handed to JavaScript. */
  batches: number;
  /** Records dropped because the JavaScript queue was full. */
  droppedRecords: number;
  droppedBatches: number;
  pollErrors: number;
  callbackErrors: number;
  lastCallbackError?: string;
}

export interface NativeRingBuffer {
  stats(): RingBufferStats;
  /** Stops polling; resolves once every batch read before the stop was delivered. */
  close(): Promise<void>;
}

export interface UprobeOptions {
  path: string;
  functionName?: string;
  offset?: number;
  pid?: number;
  retprobe?: boolean;
}

export interface RingBufferOptions {
  /** Batches that may wait for JavaScript before new ones are dropped (default 64). */
  maxQueuedBatches?: number;
  /** A batch is handed over once it holds this many bytes (default 1 MiB). */
  maxBatchBytes?: number;
}

/**
 * Ring-buffer batch layout: records back to back, each `u32 length, u32 reserved, bytes`, padded to
 * 8 bytes. `records` is the number of records in the batch.
 */
export type RingBufferCallback = (batch: Buffer, records: number) => void;

export interface NativeBpfObject {
  setGlobal(name: string, value: Buffer): void;
  setMaxEntries(map: string, maxEntries: number): void;
  setAutoload(program: string, autoload: boolean): void;
  load(): void;
  programNames(): string[];
  mapNames(): string[];
  /** sizeof(type) as recorded in the object's BTF. */
  typeSize(name: string): number;
  mapInfo(map: string): MapInfo;
  programStats(program: string): ProgramStats;
  attachPerfEvent(program: string, options: PerfEventOptions): NativePerfLink;
  attach(program: string): NativeLink;
  attachTracepoint(program: string, category: string, name: string): NativeLink;
  attachRawTracepoint(program: string, name: string): NativeLink;
  attachKprobe(program: string, functionName: string, retprobe?: boolean): NativeLink;
  attachUprobe(program: string, options: UprobeOptions): NativeLink;
  mapLookup(map: string, key: Buffer): Buffer | null;
  /** flags: BPF_ANY = 0, BPF_NOEXIST = 1, BPF_EXIST = 2. */
  mapUpdate(map: string, key: Buffer, value: Buffer, flags?: number): void;
  mapDelete(map: string, key: Buffer): boolean;
  mapEntries(map: string, options?: { delete?: boolean }): MapEntries;
  openRingBuffer(map: string, callback: RingBufferCallback, options?: RingBufferOptions): NativeRingBuffer;
  close(): void;
}

export interface DropCapabilitiesResult {
  /** Threads that were asked to drop (the calling one included). */
  threads: number;
  /** Passes over /proc/self/task (a thread created meanwhile is caught by the next pass). */
  rounds: number;
  /** System calls that failed, per thread; prctl(PR_CAPBSET_DROP) fails with EPERM without CAP_SETPCAP. */
  errors: { tid: number; errno: number; message: string; syscall: string }[];
}

/** What BPF_TASK_FD_QUERY says about a perf event or raw tracepoint fd. */
export interface TaskFdInfo {
  /** Id of the BPF program attached through the fd. */
  progId: number;
  /** enum bpf_task_fd_type: 0 raw tracepoint, 1 tracepoint, 2 kprobe, 3 kretprobe, 4 uprobe, 5 uretprobe. */
  fdType: number;
  /** The probed file (uprobes), function (kprobes) or tracepoint name. */
  name: string;
  /** Offset in the file (uprobes) or function (kprobes), bytes. */
  probeOffset: number;
  probeAddr: number;
}

export const BPF_FD_TYPE_UPROBE = 4;
export const BPF_FD_TYPE_URETPROBE = 5;

export interface NativeAddon {
  BpfObject: new (path: string, options?: { kernelBtfPath?: string }) => NativeBpfObject;
  libbpfVersion(): string;
  numPossibleCpus(): number;
  setLibbpfDebug(on: boolean): void;
  /** 1 if the kernel loads a minimal program of this bpf_prog_type, else 0. */
  probeProgramType(type: number): number;
  /** Turns on per-program run-time accounting while the returned fd stays open. */
  enableRunTimeStats(): number;
  closeFd(fd: number): void;
  /** malloc_trim(0): hands memory malloc keeps but no longer uses back to the kernel. */
  releaseFreeMemory(): boolean;
  /**
   * On every thread of the process: permitted = effective = permitted ∩ keep (capability bit
   * numbers), inheritable and ambient cleared, every other capability dropped from the bounding set
   * (needs CAP_SETPCAP), and with noNewPrivs PR_SET_NO_NEW_PRIVS. Errors are returned per thread.
   */
  dropCapabilities(keep: number[], options?: { noNewPrivs?: boolean; timeoutMs?: number }): DropCapabilitiesResult;
  /** BPF_TASK_FD_QUERY on fd `fd` of process `pid`; null if it carries no BPF program. Needs CAP_SYS_ADMIN. */
  taskFdQuery(pid: number, fd: number): TaskFdInfo | null;
}

export const addonPath = path.join(packageRoot, 'addon', 'build', 'Release', 'ebpfprof_native.node');

let cached: NativeAddon | undefined;

export function loadAddon(): NativeAddon {
  if (cached) return cached;
  if (!fs.existsSync(addonPath)) {
    throw new EbpfprofError('ENATIVE', `the native addon is not built (${addonPath} is missing): run 'make build'`);
  }
  try {
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    cached = require(addonPath) as NativeAddon;
  } catch (e) {
    throw new EbpfprofError('ENATIVE', `cannot load the native addon ${addonPath}: ${(e as Error).message}; rebuild with 'make build' (it needs libbpf1 and libelf1)`, { cause: e });
  }
  return cached;
}

/** Path of a compiled BPF object shipped in bpf/. */
export function bpfObjectPath(name: string): string {
  return path.join(packageRoot, 'bpf', `${name}.bpf.o`);
}

/** Constants of the kernel ABI used with the addon. */
export const PERF_TYPE_SOFTWARE = 1;
export const PERF_COUNT_SW_CPU_CLOCK = 0;
export const BPF_ANY = 0;
export const BPF_NOEXIST = 1;
