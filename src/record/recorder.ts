// SPDX-License-Identifier: Apache-2.0
/**
 * One recording: starts the CPU sampler for a target (a process, the whole host, or a command it
 * starts), drains the in-kernel aggregation every second, symbolizes what it drained, and builds
 * the Profile. Stops at the duration, on abort (Ctrl-C), when the target exits, or when the command
 * ends; whatever was sampled until then is kept.
 */
import { ChildProcess, spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { EbpfprofError } from '../errors';
import { loadAddon } from '../native/addon';
import { Profile, ProfileBuilder } from '../profile/model';
import { processAlive, readProcStat, threadGroupOf } from '../process/proc';
import { CpuSampler, periodNs, SamplerStats, UnwindMode, validateFrequency } from '../sampler/cpu-sampler';
import { SampleFolder } from './sample-folder';
import { Symbolizer, SymbolizerStats } from '../symbolize/symbolizer';
import { explainKernelError } from '../system/privileges';
import { ProcessUnwinder, UnwinderStats } from '../unwind/process-unwinder';

export type RecordTarget = { kind: 'pid'; pid: number } | { kind: 'all' } | { kind: 'command'; argv: string[] };

export interface RecordOptions {
  target: RecordTarget;
  frequencyHz: number;
  /** Stop after this long; without it, record until aborted (or the command/target ends). */
  durationMs?: number;
  kernelStacks?: boolean;
  userStacks?: boolean;
  /**
   * How user stacks are walked: 'dwarf' (default) with unwind tables built from each binary's
   * .eh_frame, frame pointers where no table covers a pc; 'fp' with frame pointers only.
   */
  callGraph?: UnwindMode;
  /** Kernel memory for unwind tables, bytes (default: DEFAULT_TABLE_BYTES). */
  unwindTableBytes?: number;
  /** How often the in-kernel aggregation is drained and symbolized (default 1000 ms). */
  drainIntervalMs?: number;
  /** Aborting stops the recording early; the profile so far is returned. */
  signal?: AbortSignal;
  onProgress?: (progress: RecordProgress) => void;
  /**
   * Called once everything privileged is open (programs loaded and attached, kallsyms read, the
   * target observed, a command started), before the first drain: the CLI drops its capabilities here.
   */
  onReady?: () => void;
  /** stdio of a started command (default: inherit). */
  commandStdio?: 'inherit' | 'ignore';
  symbolizer?: Symbolizer;
  /** Tests: path of profile.bpf.o. */
  objectPath?: string;
}

export interface RecordProgress {
  elapsedMs: number;
  /** Samples recorded so far (kept in the profile). */
  samples: number;
  /** Samples lost so far (no room anywhere), see RecordSummary.lostSamples. */
  lostSamples: number;
  /** Distinct processes seen in samples. */
  processes: number;
}

export type EndReason = 'duration' | 'aborted' | 'target-exited' | 'command-exited';

export interface RecordSummary {
  endReason: EndReason;
  elapsedMs: number;
  frequencyHz: number;
  samples: number;
  /** Samples the kernel could not pass on: ring buffer full, records dropped or malformed. */
  lostSamples: number;
  processes: number;
  threads: number;
  /** Samples whose kernel or user stack reached the depth limit and may be cut. */
  truncatedSamples: number;
  /** Samples with at least one frame that has no symbol. */
  unsymbolizedSamples: number;
  /** Samples whose kernel or user stack could not be read at all. */
  stackErrors: number;
  /** record -- CMD: samples of ebpfprof's parked shell before it exec'd the command, left out. */
  launcherSamples: number;
  /** The started command's exit, for target.kind === 'command'. */
  commandExit?: { code: number | null; signal: NodeJS.Signals | null };
  /** How user stacks were walked ('fp' also when the kernel refused the unwinding program). */
  callGraph: UnwindMode;
  /** Why 'dwarf' was asked for but frame pointers were used, else null. */
  callGraphFallback: string | null;
  /** The table-driven unwinder's counters; null with --call-graph fp. */
  unwinder: UnwinderStats | null;
  sampler: SamplerStats;
  symbolizer: SymbolizerStats;
}

export interface RecordResult {
  profile: Profile;
  summary: RecordSummary;
}

/** Checks the target before anything is loaded, so bad input fails fast with a clear error. */
function resolveTarget(target: RecordTarget): { pid: number; startTicks: number } | null {
  if (target.kind !== 'pid') return null;
  if (!Number.isInteger(target.pid) || target.pid <= 0) {
    throw new EbpfprofError('EBADARG', `--pid must be a positive integer, got ${target.pid}`);
  }
  const tgid = threadGroupOf(target.pid);
  const stat = tgid === null ? null : readProcStat(tgid);
  if (tgid === null || stat === null || stat.state === 'Z') {
    throw new EbpfprofError('ENOPROC', `no process with pid ${target.pid}`);
  }
  return { pid: tgid, startTicks: stat.startTicks };
}

function findExecutable(name: string): string | null {
  if (name.includes('/')) return fs.existsSync(name) ? name : null;
  for (const dir of (process.env.PATH ?? '/usr/bin:/bin').split(':')) {
    const p = path.join(dir || '.', name);
    try {
      fs.accessSync(p, fs.constants.X_OK);
      if (fs.statSync(p).isFile()) return p;
    } catch {
      // not here
    }
  }
  return null;
}

/**
 * Starts the command parked behind a shell that waits on fd 3: its pid becomes a target before it
 * runs a single instruction of the command, then `exec` keeps that pid for the real program.
 */
function spawnParked(argv: string[], stdio: 'inherit' | 'ignore'): ChildProcess {
  if (argv.length === 0) throw new EbpfprofError('EBADARG', 'no command given after --');
  if (!findExecutable(argv[0]!)) throw new EbpfprofError('EBADARG', `command not found: ${argv[0]}`);
  return spawn('/bin/sh', ['-c', 'read -r _ <&3 || exit 125; exec 3<&-; exec "$@"', 'ebpfprof', ...argv], {
    stdio: [stdio, stdio, stdio, 'pipe'],
  });
}

export async function record(options: RecordOptions): Promise<RecordResult> {
  validateFrequency(options.frequencyHz);
  if (options.durationMs !== undefined && !(options.durationMs > 0)) {
    throw new EbpfprofError('EBADARG', `duration must be positive, got ${options.durationMs} ms`);
  }
  const target = resolveTarget(options.target);
  const symbolizer = options.symbolizer ?? new Symbolizer();
  const startTimeMs = Date.now();
  const builder = new ProfileBuilder({
    startTimeMs,
    durationNs: 0,
    frequencyHz: options.frequencyHz,
    periodNs: periodNs(options.frequencyHz),
    comments: [],
  });

  if (options.kernelStacks !== false) {
    // Parse kallsyms before sampling starts, not in the middle of the first drain.
    symbolizer.loadKernelSymbols();
    setTimeout(releaseFreeMemory, 100).unref();
  }
  const wantTables = options.callGraph !== 'fp' && options.userStacks !== false;
  const unwinder = wantTables ? new ProcessUnwinder(symbolizer, options.unwindTableBytes !== undefined ? { tableBytes: options.unwindTableBytes } : {}) : null;
  const folder = new SampleFolder(symbolizer, unwinder);
  folder.startProfile(builder);
  let child: ChildProcess | null = null;
  let commandExit: RecordSummary['commandExit'];
  let endReason: EndReason = 'duration';
  const stop = new AbortController();
  /** Target processes re-observed at every drain, so libraries loaded late (dlopen) are captured. */
  const watched: number[] = [];
  const end = (reason: EndReason): void => {
    if (!stop.signal.aborted) {
      endReason = reason;
      stop.abort();
    }
  };

  // A --pid target's tables are built before sampling starts, and the sampler registers it right
  // after loading: its very first samples are unwound with tables.
  if (target && unwinder) await unwinder.prepare(target.pid);
  let liveness: NodeJS.Timeout | null = null;
  let sampler: CpuSampler;
  try {
    sampler = CpuSampler.open({
      frequencyHz: options.frequencyHz,
      targets: options.target.kind === 'all' ? 'all' : target ? [target.pid] : [],
      followForks: options.target.kind === 'command',
      kernelStacks: options.kernelStacks !== false,
      userStacks: options.userStacks !== false,
      ...(options.objectPath ? { objectPath: options.objectPath } : {}),
      ...(unwinder ? { unwinder } : {}),
      onProcessEvent: (e) => void folder.onProcessEvent(e, drainAndFold, () => stop.signal.aborted),
    });
  } catch (e) {
    throw explainKernelError(e, 'starting the CPU sampler', { frequencyHz: options.frequencyHz, ...(target ? { pid: target.pid } : {}) });
  }

  // Drains are serialized so that every drained row is folded exactly once. After a drain that
  // loaded symbol tables, the transient buffers of loading them are handed back to the kernel once
  // V8 has released them: a profiler must not keep the peak of its busiest second resident.
  let folding: Promise<void> = Promise.resolve();
  let bytesRead = symbolizer.stats().binaries.bytesRead;
  const drainAndFold = (): Promise<void> =>
    (folding = folding.then(async () => {
      folder.add(await sampler.drain());
      const read = symbolizer.stats().binaries.bytesRead;
      if (read > bytesRead + (1 << 20)) setTimeout(releaseFreeMemory, 100).unref();
      bytesRead = read;
    }));

  try {
    if (options.target.kind === 'command') {
      child = spawnParked(options.target.argv, options.commandStdio ?? 'inherit');
      const started = child;
      await new Promise<void>((resolve, reject) => {
        started.once('spawn', resolve);
        started.once('error', (e) => reject(new EbpfprofError('EBADARG', `cannot start ${options.target.kind === 'command' ? options.target.argv[0] : ''}: ${e.message}`)));
      });
      started.once('exit', (code, signal) => {
        commandExit = { code, signal };
        end('command-exited');
      });
      sampler.addTarget(started.pid!);
      watched.push(started.pid!);
      folder.launcher = { pid: started.pid!, commandExecId: null };
      // The shell execs the command now; the exec event then snapshots the command's mappings.
      (started.stdio[3] as NodeJS.WritableStream).end('go\n');
    } else if (target) {
      watched.push(target.pid);
      folder.reobserve(target.pid);
    }

    options.onReady?.();
    if (options.signal) {
      if (options.signal.aborted) end('aborted');
      else options.signal.addEventListener('abort', () => end('aborted'), { once: true });
    }
    const interval = options.drainIntervalMs ?? 1000;
    const deadline = options.durationMs === undefined ? Infinity : startTimeMs + options.durationMs;
    // A --pid target that exits ends the recording within a fifth of a second, not at the next drain.
    if (target) {
      liveness = setInterval(() => {
        if (!processAlive(target.pid, target.startTicks)) end('target-exited');
      }, 200);
    }

    while (!stop.signal.aborted) {
      const wait = Math.min(interval, deadline - Date.now());
      if (wait <= 0) {
        end('duration');
        break;
      }
      try {
        await sleep(wait, undefined, { signal: stop.signal });
      } catch {
        break; // aborted
      }
      for (const pid of watched) if (folder.processes.has(pid)) folder.reobserve(pid);
      await drainAndFold();
      options.onProgress?.(progressOf(sampler.stats(), folder, Date.now() - startTimeMs));
    }
  } finally {
    if (liveness) clearInterval(liveness);
    await folding;
    folder.add(await sampler.close());
    if (child && commandExit === undefined) {
      // Stopped before the command ended (duration, Ctrl-C): we started it, so we end it, and wait
      // so that it is not left behind.
      const c = child;
      await new Promise<void>((resolve) => {
        c.once('exit', (code, signal) => {
          commandExit = { code, signal };
          resolve();
        });
        c.kill('SIGTERM');
      });
    }
  }

  const elapsedMs = Date.now() - startTimeMs;
  builder.setDuration(elapsedMs * 1e6);
  const samplerStats = sampler.lastStats ?? sampler.stats();
  const summary: RecordSummary = {
    endReason,
    elapsedMs,
    frequencyHz: options.frequencyHz,
    samples: folder.samples,
    lostSamples: lostSamples(samplerStats),
    processes: folder.processes.size,
    threads: folder.threads.size,
    truncatedSamples: folder.truncatedSamples,
    unsymbolizedSamples: folder.unsymbolizedSamples,
    stackErrors: samplerStats.kernelStackError + samplerStats.userStackError,
    launcherSamples: folder.launcherSamples,
    ...(commandExit ? { commandExit } : {}),
    callGraph: sampler.unwindMode,
    callGraphFallback: sampler.unwindFallbackReason,
    unwinder: unwinder?.stats() ?? null,
    sampler: samplerStats,
    symbolizer: symbolizer.stats(),
  };
  if (!options.symbolizer) symbolizer.close();
  for (const line of summaryComments(options, summary)) builder.addComment(line);
  return { profile: builder.build(), summary };
}

function releaseFreeMemory(): void {
  loadAddon().releaseFreeMemory();
}

function lostSamples(s: SamplerStats): number {
  return s.ringBufferFull + s.ringBuffer.droppedRecords + s.recordsMalformed;
}

function progressOf(stats: SamplerStats, folder: SampleFolder, elapsedMs: number): RecordProgress {
  return { elapsedMs, samples: stats.aggregated + stats.ringBufferSent, lostSamples: lostSamples(stats), processes: folder.processes.size };
}

function summaryComments(options: RecordOptions, s: RecordSummary): string[] {
  const what = options.target.kind === 'all' ? '--all' : options.target.kind === 'pid' ? `--pid ${options.target.pid}` : `-- ${options.target.argv.join(' ')}`;
  return [
    `ebpfprof record ${what} --freq ${options.frequencyHz}`,
    `samples ${s.samples}, lost ${s.lostSamples}, truncated stacks ${s.truncatedSamples}, unsymbolized ${s.unsymbolizedSamples}, stack read errors ${s.stackErrors}`,
  ];
}
