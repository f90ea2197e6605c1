// SPDX-License-Identifier: Apache-2.0
/**
 * The continuous agent (`ebpfprof agent`): samples the whole node, drains the in-kernel aggregation
 * every second into the current export window (symbolized, filtered, attributed to processes,
 * containers and pods), and at the end of every window encodes one OTLP Profiles request (one
 * profile per process) and hands it to the exporter, which sends it in the background. Frequency,
 * interval, filters, endpoint and budget change while running (configuration file, SIGHUP, control
 * endpoint); a frequency change closes the current window first, so that every window has one
 * sampling period. The budget controller degrades service in the documented order (budget.ts).
 *
 * Next to profiling it can run TCP and run-queue latency tracing (tracing.ts), exported every window
 * as OTLP metrics to <endpoint>/v1/metrics through a second exporter of the same kind. Process
 * lifecycle (fork, exec, exit) is tracked once, by one ProcessLifecycle (bpf/lifecycle.bpf.c), for
 * profiling and tracing alike: an exec drops the process's symbols and attributes, an exit frees what
 * the agent holds about the process one window later (records drained after the exit still find
 * it), and a reused pid is told apart by its start time.
 *
 * Every sampler and window operation runs on one serialized task chain, so that each drained row is
 * folded exactly once and into exactly one window. Export never blocks it: the exporter owns the
 * network and its bounded queue.
 */
import * as os from 'node:os';
import { promisify } from 'node:util';
import { gzip } from 'node:zlib';
import { EBPFPROF_SCOPE, encodeOtlpProfilesRequest } from '../encode/otlp-profiles';
import { ATTR, Attributes } from '../encode/otlp/semconv';
import { EbpfprofError, errorMessage } from '../errors';
import { KubernetesAttribution } from '../k8s/attribution';
import { OwnIdentity, readOwnIdentity } from '../k8s/downward-api';
import { loadAddon } from '../native/addon';
import { ProfileBuilder } from '../profile/model';
import { SampleFolder } from '../record/sample-folder';
import { ProcessUnwinder } from '../unwind/process-unwinder';
import { CpuSampler, DrainedSample, periodNs, SamplerStats } from '../sampler/cpu-sampler';
import { ProcessInfo, ProcessLifecycle } from '../process/lifecycle';
import { ResolvedFrame, Symbolizer } from '../symbolize/symbolizer';
import { explainKernelError } from '../system/privileges';
import { countDataPoints, encodeMetricsRequest, TracedProcess } from '../telemetry/otlp-metrics';
import type { TracingWindow } from '../telemetry/tracing-session';
import { BudgetController, DEGRADATION_STEPS, describeLevel, MAX_LEVEL, MeasuredUsage, UsageMeter } from './budget';
import { AgentConfig, AgentConfigLayer, configLayerFromObject, DEFAULT_AGENT_CONFIG, describeConfig, formatMs, mergeConfig, metricsUrlOf, profilesUrl, readAgentConfigFile } from './config';
import { ConfigFileWatcher } from './config-watcher';
import { ControlServer } from './control-server';
import { OtlpHttpExporter } from './exporter';
import { MetricPoint, renderPrometheus } from './metrics';
import { ProcessResources } from './process-resources';
import { processIncluded } from './selectors';
import { AgentTracing } from './tracing';

const gzipAsync = promisify(gzip);

export interface AgentOptions {
  /** YAML/JSON configuration file, watched for changes. */
  configFile?: string;
  /** Settings from command-line flags: they win over the file. */
  flags?: AgentConfigLayer;
  /** One line per event (default: stderr with a timestamp). */
  log?: (line: string) => void;
  /** How often the in-kernel aggregation is drained (default 1000 ms). */
  drainIntervalMs?: number;
  /** Tests: path of profile.bpf.o. */
  objectPath?: string;
  /** Tests: the Downward API identity instead of the environment's. */
  identity?: OwnIdentity;
}

/** Counters of the agent itself (besides the sampler's, exporter's and symbolizer's). */
export interface AgentCounters {
  /** Samples folded into windows (kept). */
  samples: number;
  /** Samples of processes the filter leaves out. */
  samplesFiltered: number;
  windows: number;
  /** Windows with no samples (nothing sent). */
  emptyWindows: number;
  /** Processes in the last finished window. */
  processesLastWindow: number;
  /** User frames left unsymbolized because the budget limits symbolization to the busiest processes. */
  framesNotSymbolizedForBudget: number;
  configReloads: number;
  configReloadFailures: number;
  degradations: number;
  recoveries: number;
  /** Sample rows whose CPU time was not count × period in an exported profile. */
  cpuTimeMismatches: number;
  /** Unexpected errors inside a drain or window task (logged; the agent continues). */
  internalErrors: number;
  /** Exited processes whose state (symbols, mappings, attributes) was freed. */
  processesFreed: number;
  /** Windows of tracing metrics handed to the metrics exporter. */
  metricsWindows: number;
}

/** Lost samples as `record` counts them: ring buffer full, records dropped or malformed. */
function lostSamples(s: SamplerStats): number {
  return s.ringBufferFull + s.ringBuffer.droppedRecords + s.recordsMalformed;
}

/**
 * The Symbolizer with the budget's limit: while it is set, only the listed processes are read and
 * symbolized; other user frames keep their address (and the work of reading their binaries is saved).
 */
class BudgetedSymbolizer extends Symbolizer {
  allowed: Set<number> | null = null;
  skippedFrames = 0;

  override observeProcess(pid: number): void {
    if (this.allowed === null || this.allowed.has(pid)) super.observeProcess(pid);
  }

  override resolveUser(pid: number, address: number, isReturnAddress: boolean): ResolvedFrame {
    if (this.allowed === null || this.allowed.has(pid)) return super.resolveUser(pid, address, isReturnAddress);
    this.skippedFrames++;
    return { kind: 'native', name: `[not symbolized: budget]+0x${address.toString(16)}`, systemName: '', mapping: null, symbolized: false };
  }
}

interface Window {
  startMs: number;
  builder: ProfileBuilder;
  samplesByPid: Map<number, number>;
}

interface Effective {
  frequencyHz: number;
  intervalMs: number;
  symbolizedProcesses: number;
  /** Tracers attached (configured and not given up by the budget). */
  tcp: boolean;
  sched: boolean;
}

export class Agent {
  private config: AgentConfig;
  private fileLayer: AgentConfigLayer = {};
  private overrides: AgentConfigLayer = {};
  private readonly flags: AgentConfigLayer;
  private readonly log: (line: string) => void;
  private readonly drainIntervalMs: number;
  private readonly identity: OwnIdentity;
  private readonly startedMs = Date.now();
  private readonly symbolizer: BudgetedSymbolizer;
  private readonly folder: SampleFolder;
  private readonly unwinder: ProcessUnwinder | null;
  private sampler!: CpuSampler;
  private resources!: ProcessResources;
  private kubernetes!: KubernetesAttribution;
  private exporter!: OtlpHttpExporter;
  private metricsExporter!: OtlpHttpExporter;
  private lifecycle!: ProcessLifecycle;
  private unsubscribeLifecycle: (() => void) | null = null;
  /** Exits seen in the current window, and in the one before (freed at this window's end). */
  private exitedThisWindow: ProcessInfo[] = [];
  private exitedLastWindow: ProcessInfo[] = [];
  private readonly tracing: AgentTracing;
  private readonly budget: BudgetController;
  private readonly meter: UsageMeter;
  private lastUsage: MeasuredUsage = { cpuPercent: 0, processCpuPercent: 0, bpfCpuPercent: 0, rssMiB: 0, egressMiBPerMinute: 0 };
  private overBudgetAtMaxLevel = false;
  private control: ControlServer | null = null;
  private watcher: ConfigFileWatcher | null = null;
  private window!: Window;
  private chain: Promise<void> = Promise.resolve();
  private drainTimer: NodeJS.Timeout | null = null;
  private windowTimer: NodeJS.Timeout | null = null;
  private budgetTimer: NodeJS.Timeout | null = null;
  private stopping = false;
  private lastDrainMs = Date.now();
  private effective: Effective;
  private readonly includeCache = new Map<number, boolean>();
  private bytesRead = 0;
  readonly counters: AgentCounters = {
    samples: 0,
    samplesFiltered: 0,
    windows: 0,
    emptyWindows: 0,
    processesLastWindow: 0,
    framesNotSymbolizedForBudget: 0,
    configReloads: 0,
    configReloadFailures: 0,
    degradations: 0,
    recoveries: 0,
    cpuTimeMismatches: 0,
    internalErrors: 0,
    processesFreed: 0,
    metricsWindows: 0,
  };

  private constructor(options: AgentOptions) {
    this.flags = options.flags ?? {};
    this.log = options.log ?? ((line) => process.stderr.write(`${new Date().toISOString()} ebpfprof agent: ${line}\n`));
    this.drainIntervalMs = options.drainIntervalMs ?? 1000;
    if (options.configFile) this.fileLayer = readAgentConfigFile(options.configFile);
    this.config = mergeConfig(DEFAULT_AGENT_CONFIG, this.fileLayer, this.flags);
    this.identity = options.identity ?? readOwnIdentity(this.config.kubernetes.downwardApiDir);
    this.symbolizer = new BudgetedSymbolizer({ maxCachedBytes: Math.min(64, Math.max(8, this.config.budget.rssMiB / 4)) * 1048576 });
    // Unwind tables for every process the agent samples (docs/unwinding.md); fixed for the agent's life.
    this.unwinder = this.config.callGraph === 'dwarf' ? new ProcessUnwinder(this.symbolizer, { tableBytes: this.config.unwindTableMiB * 1048576 }) : null;
    this.folder = new SampleFolder(this.symbolizer, this.unwinder);
    this.budget = new BudgetController(this.config.budget, this.startedMs);
    this.budget.setTracers(this.config.tracing);
    this.tracing = new AgentTracing({
      log: (l) => this.log(l),
      // Attributes are read at a process's first TCP event of a window, while it still exists: a
      // short-lived client is usually gone by the end of the window.
      onTcpRow: (e) => {
        if (e.pid !== 0) this.resources.getExact(e.pid, e.processStartNs, e.comm);
      },
    });
    this.meter = new UsageMeter(
      this.config.budget.windowMs,
      () => (this.exporter?.stats.bytesSent ?? 0) + (this.metricsExporter?.stats.bytesSent ?? 0),
      () => this.bpfRunTimeNs(),
    );
    this.effective = this.computeEffective();
    if (options.configFile) this.watcher = new ConfigFileWatcher(options.configFile, () => this.reload('the configuration file changed'));
  }

  /** Loads the sampler and starts sampling, exporting and (if configured) the control endpoint. */
  static async start(options: AgentOptions = {}): Promise<Agent> {
    const agent = new Agent(options);
    try {
      await agent.begin(options);
    } catch (e) {
      await agent.stop().catch(() => undefined);
      throw e;
    }
    return agent;
  }

  private async begin(options: AgentOptions): Promise<void> {
    this.buildResources();
    this.exporter = new OtlpHttpExporter({
      ...this.exporterSettings(),
      userAgent: `ebpfprof/${EBPFPROF_SCOPE.version}`,
      log: (l) => this.log(l),
    });
    this.metricsExporter = new OtlpHttpExporter({
      ...this.exporterSettings(),
      url: metricsUrlOf(this.config.endpoint),
      signal: 'metrics',
      userAgent: `ebpfprof/${EBPFPROF_SCOPE.version}`,
      log: (l) => this.log(l),
    });
    // Parse kallsyms before sampling starts, not in the middle of the first drain.
    this.symbolizer.loadKernelSymbols();
    setTimeout(releaseFreeMemory, 100).unref();
    // One lifecycle tracker for profiling and tracing: the sampler is opened without its own
    // exec/fork hooks.
    try {
      this.lifecycle = await ProcessLifecycle.open();
    } catch (e) {
      throw explainKernelError(e, 'starting process lifecycle tracking');
    }
    this.unsubscribeLifecycle = this.lifecycle.tracker.subscribe({
      onFork: (p) => void this.folder.onProcessEvent({ type: 'fork', tgid: p.pid, ppid: p.ppid, execId: p.execId, comm: p.comm }, () => this.run(() => this.drainTask()), () => this.stopping).catch((err) => this.internalError('a process event', err)),
      onExec: (p) => {
        this.resources.forgetReadBefore(p.pid, p.execTimeNs);
        this.includeCache.delete(p.pid);
        void this.folder
          .onProcessEvent({ type: 'exec', tgid: p.pid, execId: p.execId, comm: p.comm }, () => this.run(() => this.drainTask()), () => this.stopping, () => p.exited)
          .catch((err) => this.internalError('a process event', err));
      },
      onExit: (p) => {
        this.exitedThisWindow.push(p);
      },
    });
    try {
      this.sampler = CpuSampler.open({
        frequencyHz: this.effective.frequencyHz,
        targets: 'all',
        ...(options.objectPath ? { objectPath: options.objectPath } : {}),
        ...(this.unwinder ? { unwinder: this.unwinder } : {}),
      });
      if (this.sampler.unwindFallbackReason !== null) this.log(this.sampler.unwindFallbackReason);
    } catch (e) {
      throw explainKernelError(e, 'starting the CPU sampler', { frequencyHz: this.effective.frequencyHz });
    }
    this.newWindow(Date.now());
    await this.applyTracing('configuration');
    if (this.config.controlListen) {
      this.control = await ControlServer.start(this.config.controlListen, {
        health: () => this.health(),
        metrics: () => renderPrometheus(this.metricPoints()),
        status: () => this.status(),
        config: () => this.configView(),
        setOverrides: (body) => this.setOverrides(body),
        clearOverrides: () => this.clearOverrides(),
      });
    }
    this.drainTimer = setInterval(() => {
      if (!this.stopping) void this.run(() => this.drainTask());
    }, this.drainIntervalMs);
    this.scheduleWindowEnd();
    this.scheduleBudgetChecks();
    this.log(
      `sampling every CPU at ${this.effective.frequencyHz} Hz, exporting every ${formatMs(this.effective.intervalMs)} to ${profilesUrl(this.config.endpoint)}` +
        `${this.effective.tcp || this.effective.sched ? `, ${[this.effective.tcp ? 'tcp' : '', this.effective.sched ? 'sched' : ''].filter(Boolean).join(' and ')} metrics to ${metricsUrlOf(this.config.endpoint)}` : ''}` +
        `${this.control ? `; control endpoint on ${this.control.address}` : ''}; host.name ${this.hostName()}${this.identity.nodeName ? `, k8s.node.name ${this.identity.nodeName}` : ''}`,
    );
  }

  /** Address the control endpoint listens on (with the port picked when configured as 0). */
  get controlAddress(): string | null {
    return this.control?.address ?? null;
  }

  // ------------------------------------------------------------------------------ configuration

  private hostName(): string {
    return this.config.hostName ?? this.identity.nodeName ?? os.hostname();
  }

  private buildResources(): void {
    this.kubernetes = new KubernetesAttribution({ logRoot: this.config.kubernetes.logRoot, nodeName: this.identity.nodeName });
    this.resources = new ProcessResources({
      hostName: this.hostName(),
      kubernetes: this.kubernetes,
      commandLineMaxLength: this.config.commandLineMaxLength,
      extra: this.config.resourceAttributes,
    });
    this.includeCache.clear();
  }

  private exporterSettings(): { url: string; headers: Record<string, string>; timeoutMs: number; retryInitialMs: number; retryMaxMs: number; maxQueuedRequests: number; maxQueuedBytes: number } {
    const e = this.config.export;
    return {
      url: profilesUrl(this.config.endpoint),
      headers: e.headers,
      timeoutMs: e.timeoutMs,
      retryInitialMs: e.retryInitialMs,
      retryMaxMs: e.retryMaxMs,
      maxQueuedRequests: e.maxQueuedRequests,
      maxQueuedBytes: Math.round(e.maxQueuedMiB * 1048576),
    };
  }

  private computeEffective(): Effective {
    const step = DEGRADATION_STEPS[this.budget.currentLevel]!;
    return {
      frequencyHz: Math.max(1, Math.round(this.config.frequencyHz / step.frequencyDivisor)),
      intervalMs: Math.min(3_600_000, this.config.intervalMs * step.intervalMultiplier),
      symbolizedProcesses: step.symbolizedProcesses,
      tcp: this.config.tracing.tcp && !step.tcpOff,
      sched: this.config.tracing.sched && !step.schedOff,
    };
  }

  /** Attaches and detaches tracers to match the configuration and the budget (on the task chain). */
  private applyTracing(reason: string): Promise<void> {
    const step = DEGRADATION_STEPS[this.budget.currentLevel]!;
    const configured = { ...this.config.tracing };
    return this.run(() => this.tracing.apply(configured, { tcp: step.tcpOff, sched: step.schedOff }, reason));
  }

  /** Cumulative in-kernel run time of every BPF program of the agent, ns (0 when the kernel does not count it). */
  private bpfRunTimeNs(): number {
    let ns = 0;
    try {
      ns += this.sampler?.programStats().runTimeNs ?? 0;
    } catch {
      // the sampler is closed
    }
    ns += this.lifecycle?.runTimeNs() ?? 0;
    const t = this.tracing.runTimeNs();
    return ns + t.tcp + t.sched;
  }

  /** Re-reads the configuration file (SIGHUP, file change). A bad file keeps the running configuration. */
  reload(reason: string): void {
    if (this.stopping || !this.watcher) return;
    this.watcher.markSeen();
    let layer: AgentConfigLayer;
    try {
      layer = readAgentConfigFile(this.watcher.file);
    } catch (e) {
      this.counters.configReloadFailures++;
      this.log(`${reason}, but it cannot be used, keeping the running configuration: ${errorMessage(e)}`);
      return;
    }
    this.fileLayer = layer;
    this.counters.configReloads++;
    this.applyConfig(`${reason} (${this.watcher.file})`).catch((e) => this.internalError('applying the configuration', e));
  }

  private async setOverrides(body: unknown): Promise<Record<string, unknown>> {
    // Leaving strict mode is a decision for whoever deploys the agent, never for a remote caller.
    if (body !== null && typeof body === 'object' && 'enhanced' in body) {
      throw new EbpfprofError('EBADARG', 'override: enhanced cannot be changed at run time: enhanced-mode items are enabled only in the configuration file or with --enhanced');
    }
    const layer = configLayerFromObject(body, 'override');
    for (const [key, value] of [['control.listen', layer.controlListen], ['callGraph', layer.callGraph], ['unwindTableMiB', layer.unwindTableMiB]] as const) {
      if (value !== undefined) throw new EbpfprofError('EBADARG', `override: ${key} cannot be changed at run time; change the configuration and restart`);
    }
    this.overrides = { ...this.overrides, ...layer };
    await this.applyConfig('runtime override');
    return this.configView();
  }

  private async clearOverrides(): Promise<Record<string, unknown>> {
    this.overrides = {};
    await this.applyConfig('runtime overrides cleared');
    return this.configView();
  }

  private configView(): Record<string, unknown> {
    return {
      effective: describeConfig(this.config),
      overrides: describeConfig(mergeConfig(DEFAULT_AGENT_CONFIG, this.overrides)),
      overriddenKeys: Object.keys(this.overrides),
      running: { ...this.effective, interval: formatMs(this.effective.intervalMs), degradationLevel: this.budget.currentLevel },
    };
  }

  /** Merges the layers again and applies what changed; resolves once a frequency change took effect. */
  private async applyConfig(reason: string): Promise<void> {
    const old = this.config;
    const next = mergeConfig(DEFAULT_AGENT_CONFIG, this.fileLayer, this.flags, this.overrides);
    const changes = diffConfig(describeConfig(old), describeConfig(next));
    this.config = next;
    if (changes.length === 0) {
      this.log(`${reason}: no change`);
      return;
    }
    this.log(`${reason}: ${changes.join(', ')}`);
    if (old.controlListen !== next.controlListen) this.log(`control.listen changes take effect at the next start (still on ${this.control?.address ?? 'off'})`);
    this.exporter.reconfigure(this.exporterSettings());
    this.metricsExporter.reconfigure({ ...this.exporterSettings(), url: metricsUrlOf(next.endpoint) });
    this.budget.setTracers(next.tracing);
    if (JSON.stringify(describeConfig(old).filter) !== JSON.stringify(describeConfig(next).filter)) this.includeCache.clear();
    if (old.hostName !== next.hostName || old.commandLineMaxLength !== next.commandLineMaxLength || JSON.stringify(old.resourceAttributes) !== JSON.stringify(next.resourceAttributes) || old.kubernetes.logRoot !== next.kubernetes.logRoot) {
      this.buildResources();
    }
    this.budget.setBudget(next.budget);
    this.meter.setWindow(next.budget.windowMs);
    if (old.budget.checkIntervalMs !== next.budget.checkIntervalMs) this.scheduleBudgetChecks();
    await this.applyEffective(reason);
  }

  /** Applies tracers, frequency (closing the window first), interval and symbolization limit. */
  private async applyEffective(reason: string): Promise<void> {
    const before = this.effective;
    this.effective = this.computeEffective();
    if (this.stopping) return;
    await this.applyTracing(reason);
    if (this.effective.intervalMs !== before.intervalMs) this.scheduleWindowEnd();
    if (this.effective.frequencyHz !== this.sampler.frequencyHz) {
      const hz = this.effective.frequencyHz;
      await this.run(() => this.endWindowTask(hz));
      this.scheduleWindowEnd(); // the window just started: a full interval from now
    }
  }

  // ------------------------------------------------------------------------------ windows

  /** Serializes sampler and window operations; an error is logged and counted, never thrown. */
  private run(task: () => Promise<void>): Promise<void> {
    this.chain = this.chain.then(task).catch((e) => this.internalError('a drain', e));
    return this.chain;
  }

  private internalError(what: string, e: unknown): void {
    this.counters.internalErrors++;
    this.log(`internal error in ${what} (continuing): ${errorMessage(e)}`);
  }

  private newWindow(now: number): void {
    const hz = this.sampler.frequencyHz;
    const builder = new ProfileBuilder({ startTimeMs: now, durationNs: 0, frequencyHz: hz, periodNs: periodNs(hz), comments: [] });
    this.window = { startMs: now, builder, samplesByPid: new Map() };
    // The folder's set of seen processes only grows; past this size it starts afresh (processes are
    // then observed again on their next sample, which is all it costs).
    if (this.folder.processes.size > 16384) this.folder.processes.clear();
    this.folder.startProfile(builder);
    this.resources.nextWindow();
    this.includeCache.clear();
  }

  private scheduleWindowEnd(): void {
    if (this.windowTimer) clearTimeout(this.windowTimer);
    if (this.stopping) return;
    const due = this.window.startMs + this.effective.intervalMs;
    this.windowTimer = setTimeout(() => {
      this.windowTimer = null;
      void this.run(() => this.endWindowTask()).then(() => this.scheduleWindowEnd());
    }, Math.max(0, due - Date.now()));
  }

  /** Folds drained rows of included processes into the current window. */
  private fold(rows: DrainedSample[]): void {
    const kept: DrainedSample[] = [];
    const w = this.window;
    for (const r of rows) {
      let included = this.includeCache.get(r.tgid);
      if (included === undefined) {
        included = processIncluded(this.config.filter, { ...this.resources.get(r.tgid, r.processComm || r.comm), [ATTR.processPid]: r.tgid });
        this.includeCache.set(r.tgid, included);
      }
      if (!included) {
        this.counters.samplesFiltered += r.samples;
        continue;
      }
      kept.push(r);
      w.samplesByPid.set(r.tgid, (w.samplesByPid.get(r.tgid) ?? 0) + r.samples);
      this.counters.samples += r.samples;
    }
    this.folder.add(kept);
    this.counters.framesNotSymbolizedForBudget = this.symbolizer.skippedFrames;
    // Symbol tables loaded in this drain leave transient buffers behind: hand them back.
    const read = this.symbolizer.stats().binaries.bytesRead;
    if (read > this.bytesRead + (1 << 20)) setTimeout(releaseFreeMemory, 100).unref();
    this.bytesRead = read;
  }

  private async drainTask(): Promise<void> {
    if (this.stopping) return;
    this.fold(await this.sampler.drain());
    this.lastDrainMs = Date.now();
  }

  /**
   * Ends the current window: drains, encodes one request and queues it, starts the next window
   * (at `nextFrequencyHz` when given, so that no window mixes two sampling periods).
   */
  private async endWindowTask(nextFrequencyHz?: number, finalRows?: DrainedSample[]): Promise<void> {
    if (finalRows) this.fold(finalRows);
    else if (!this.stopping) {
      this.fold(await this.sampler.drain());
      this.lastDrainMs = Date.now();
    }
    const w = this.window;
    const now = Date.now();
    w.builder.setDuration((now - w.startMs) * 1e6);
    const profile = w.builder.build();
    this.counters.windows++;
    this.counters.processesLastWindow = w.samplesByPid.size;
    this.watcher?.check();
    let encoded: ReturnType<typeof encodeOtlpProfilesRequest> | null = null;
    if (profile.samples.length > 0) {
      // Before newWindow(): the resources of this window's processes are still the ones it saw.
      encoded = encodeOtlpProfilesRequest(profile, { resourceOf: (pid, comm) => this.resources.get(pid, comm), scope: EBPFPROF_SCOPE });
      this.counters.cpuTimeMismatches += encoded.stats.cpuTimeMismatches;
    } else this.counters.emptyWindows++;
    // The tracers' window ends here too (at stop: they are detached and their rest taken).
    const traced = finalRows ? await this.tracing.close() : await this.tracing.takeWindow();
    const metrics = traced ? this.metricsOf(traced) : null;
    this.updateSymbolizationLimit(w.samplesByPid);
    if (nextFrequencyHz !== undefined && !this.stopping) this.sampler.setFrequency(nextFrequencyHz);
    if (!finalRows) {
      this.freeExited();
      this.newWindow(now);
    }
    if (encoded) {
      const body = await gzipAsync(encoded.bytes);
      this.exporter.enqueue({ body, profiles: encoded.stats.profiles, samples: encoded.stats.samples, windowStartMs: w.startMs });
    }
    if (metrics) {
      const body = await gzipAsync(metrics.bytes);
      this.counters.metricsWindows++;
      this.metricsExporter.enqueue({ body, profiles: metrics.dataPoints, samples: metrics.resources, windowStartMs: metrics.startMs });
    }
  }

  /** A tracing window as an ExportMetricsServiceRequest, with the same resource attributes as the profiles. */
  private metricsOf(w: TracingWindow): { bytes: Buffer; dataPoints: number; resources: number; startMs: number } | null {
    const resources = this.tracing.build(w, this.resources.hostAttributes(), (p) => this.tracedResource(p));
    if (resources.length === 0) return null;
    return { bytes: encodeMetricsRequest(resources), dataPoints: countDataPoints(resources), resources: resources.length, startMs: w.startMs };
  }

  /** A traced process's resource attributes (exactly that process, even if its pid was reused since), or null when the filter leaves it out. */
  private tracedResource(p: TracedProcess): Attributes | null {
    const attrs: Attributes = { ...this.resources.getExact(p.pid, p.startNs, p.comm), [ATTR.processPid]: p.pid };
    return processIncluded(this.config.filter, attrs) ? attrs : null;
  }

  /**
   * Frees what the agent holds about processes that exited in the window before this one: one
   * window of grace, in which their last samples and TCP closes (sockets are closed after the exit
   * event) were still attributed. A pid that already belongs to a newer process keeps its state.
   */
  private freeExited(): void {
    const free = this.exitedLastWindow;
    this.exitedLastWindow = this.exitedThisWindow;
    this.exitedThisWindow = [];
    const tracker = this.lifecycle.tracker;
    for (const p of free) {
      this.resources.forgetExact(p.pid, p.startNs);
      if (tracker.get(p.pid) !== p) continue;
      this.folder.forgetProcess(p.pid);
      this.includeCache.delete(p.pid);
      this.counters.processesFreed++;
    }
    tracker.sweep();
  }

  /** Under the budget's symbolization limit, the busiest processes of the last window keep their symbols. */
  private updateSymbolizationLimit(samplesByPid: Map<number, number>): void {
    const limit = this.effective.symbolizedProcesses;
    if (!Number.isFinite(limit)) {
      this.symbolizer.allowed = null;
      return;
    }
    const busiest = [...samplesByPid.entries()].sort((a, b) => b[1] - a[1]).slice(0, limit);
    this.symbolizer.allowed = new Set(busiest.map(([pid]) => pid));
  }

  // ------------------------------------------------------------------------------ budget

  private scheduleBudgetChecks(): void {
    if (this.budgetTimer) clearInterval(this.budgetTimer);
    this.budgetTimer = setInterval(() => void this.checkBudget().catch((e) => this.internalError('the budget check', e)), this.config.budget.checkIntervalMs);
  }

  private async checkBudget(): Promise<void> {
    if (this.stopping) return;
    this.lastUsage = this.meter.measure();
    const d = this.budget.decide(this.lastUsage, Date.now());
    if (d.change === 'degrade') {
      this.counters.degradations++;
      this.overBudgetAtMaxLevel = false;
      this.log(`over budget (${d.over.join(', ')}): degrading to level ${d.level} of ${MAX_LEVEL}: ${describeLevel(d.level, this.config.tracing)}`);
      await this.applyEffective(`budget level ${d.level}`);
      this.log(`now sampling at ${this.effective.frequencyHz} Hz, exporting every ${formatMs(this.effective.intervalMs)}`);
    } else if (d.change === 'recover') {
      this.counters.recoveries++;
      this.overBudgetAtMaxLevel = false;
      this.log(`back under budget (cpu ${this.lastUsage.cpuPercent.toFixed(2)}%, rss ${this.lastUsage.rssMiB.toFixed(1)} MiB, egress ${this.lastUsage.egressMiBPerMinute.toFixed(3)} MiB/min): recovering to level ${d.level}: ${describeLevel(d.level, this.config.tracing)}`);
      await this.applyEffective(`budget level ${d.level}`);
    } else if (d.over.length > 0 && d.level === MAX_LEVEL && !this.overBudgetAtMaxLevel) {
      this.overBudgetAtMaxLevel = true;
      this.log(`still over budget at the last degradation level (${d.over.join(', ')}): nothing more to give up; the budget may be too small for this node`);
    }
  }

  // ------------------------------------------------------------------------------ observability

  private health(): { ok: boolean; detail: Record<string, unknown> } {
    const sinceDrainMs = Date.now() - this.lastDrainMs;
    const ok = !this.stopping && sinceDrainMs < Math.max(5000, 5 * this.drainIntervalMs);
    return { ok, detail: { ok, stopping: this.stopping, lastDrainMsAgo: sinceDrainMs, export: { lastError: this.exporter.stats.lastError, consecutiveFailures: this.exporter.stats.consecutiveFailures } } };
  }

  status(): Record<string, unknown> {
    const sym = this.symbolizer.stats();
    return {
      uptimeMs: Date.now() - this.startedMs,
      running: { ...this.effective, degradationLevel: this.budget.currentLevel, degradation: describeLevel(this.budget.currentLevel, this.config.tracing) },
      usage: this.lastUsage,
      counters: this.counters,
      sampler: this.sampler?.stats(),
      lostSamples: this.sampler ? lostSamples(this.sampler.stats()) : 0,
      export: { url: this.exporter.url, ...this.exporter.stats },
      metricsExport: { url: this.metricsExporter.url, ...this.metricsExporter.stats },
      tracing: { ...this.tracing.status(), counters: this.tracing.stats() },
      lifecycle: this.lifecycle ? { ...this.lifecycle.stats(), hooks: this.lifecycle.hooks.map((h) => `${h.hook} via ${h.method ?? 'nothing'}`) } : null,
      symbolizer: { framesResolved: sym.framesResolved, framesUnresolved: sym.framesUnresolved, cacheHits: sym.cacheHits, cacheMisses: sym.cacheMisses, processesTracked: sym.processesTracked },
      processes: this.resources.stats,
      kubernetes: { identity: this.identity, podLogs: this.kubernetes.pods.stats },
    };
  }

  /** How table-driven walks ended, and the unwinder's tables (none with callGraph fp). */
  private unwindMetricPoints(p: (name: string, type: MetricPoint['type'], help: string, value: number, labels?: Record<string, string>) => MetricPoint): MetricPoint[] {
    const u = this.unwinder?.stats();
    if (!u || this.sampler.unwindMode !== 'dwarf') return [];
    const s = this.sampler.stats();
    const walks = 'User stacks walked with unwind tables, by how the walk ended';
    return [
      p('unwind_walks_total', 'counter', walks, s.unwindEndOk, { end: 'outermost' }),
      p('unwind_walks_total', 'counter', walks, s.unwindEndFpZero, { end: 'frame_pointer_zero' }),
      p('unwind_walks_total', 'counter', walks, s.unwindEndTruncated, { end: 'truncated' }),
      p('unwind_walks_total', 'counter', walks, s.unwindEndReadFault + s.unwindEndNoProgress + s.unwindEndUnsupported + s.unwindEndUnknownPc, { end: 'stopped_early' }),
      p('unwind_frame_pointer_samples_total', 'counter', 'Samples of processes not registered yet, walked with frame pointers', s.unwindNoProcess),
      p('unwind_processes', 'gauge', 'Processes registered with unwind tables', u.processes),
      p('unwind_binaries_with_tables_total', 'counter', 'Binaries given an unwind table', u.binariesWithTables),
      ...Object.entries(u.binariesWithoutTables).map(([reason, n]) => p('unwind_binaries_without_tables_total', 'counter', 'Binaries left to frame pointers, by reason', n, { reason })),
      p('unwind_table_bytes', 'gauge', 'Kernel memory holding unwind tables now', u.kernel.residentBytes),
      p('unwind_table_budget_bytes', 'gauge', 'Kernel memory reserved for unwind tables', u.kernel.budgetBytes),
    ];
  }

  private metricPoints(): MetricPoint[] {
    const s = this.sampler.stats();
    const x = this.exporter.stats;
    const mx = this.metricsExporter.stats;
    const lc = this.lifecycle ? this.lifecycle.stats() : null;
    const sym = this.symbolizer.stats();
    const resolved = Object.values(sym.framesResolved).reduce((a, b) => a + b, 0);
    const unresolved = Object.values(sym.framesUnresolved).reduce((a, b) => a + b, 0);
    const cpu = process.cpuUsage();
    const p = (name: string, type: MetricPoint['type'], help: string, value: number, labels?: Record<string, string>): MetricPoint => ({ name: `ebpfprof_agent_${name}`, type, help, value, ...(labels ? { labels } : {}) });
    return [
      p('samples_total', 'counter', 'Samples kept in export windows', this.counters.samples),
      p('samples_lost_total', 'counter', 'Samples the kernel could not pass on (ring buffer full, records dropped or malformed)', lostSamples(s)),
      p('samples_filtered_total', 'counter', 'Samples of processes the filter leaves out', this.counters.samplesFiltered),
      p('processes', 'gauge', 'Processes with samples in the last export window', this.counters.processesLastWindow),
      p('symbolization_frames_total', 'counter', 'Frames resolved by the symbolizer, by result', resolved, { result: 'symbolized' }),
      p('symbolization_frames_total', 'counter', 'Frames resolved by the symbolizer, by result', unresolved, { result: 'unsymbolized' }),
      p('symbolization_hit_ratio', 'gauge', 'Share of resolved frames that got a symbol', resolved + unresolved === 0 ? 1 : resolved / (resolved + unresolved)),
      p('symbolization_cache_hit_ratio', 'gauge', 'Share of frame lookups answered from the cache', sym.cacheHits + sym.cacheMisses === 0 ? 1 : sym.cacheHits / (sym.cacheHits + sym.cacheMisses)),
      p('frames_not_symbolized_for_budget_total', 'counter', 'User frames left unsymbolized by the budget limit on symbolized processes', this.counters.framesNotSymbolizedForBudget),
      p('exports_total', 'counter', 'Export requests by outcome', x.requestsSucceeded, { result: 'success' }),
      p('exports_total', 'counter', 'Export requests by outcome', x.attemptsFailed, { result: 'failure' }),
      p('exports_total', 'counter', 'Export requests by outcome', x.requestsRejected, { result: 'rejected' }),
      p('exports_total', 'counter', 'Export requests by outcome', x.requestsDropped, { result: 'dropped' }),
      p('export_profiles_total', 'counter', 'Profiles by outcome', x.profilesExported, { result: 'exported' }),
      p('export_profiles_total', 'counter', 'Profiles by outcome', x.profilesRejected, { result: 'rejected' }),
      p('export_profiles_total', 'counter', 'Profiles by outcome', x.profilesDropped, { result: 'dropped' }),
      p('export_samples_dropped_total', 'counter', 'Samples in dropped export requests', x.samplesDropped),
      p('export_queue_requests', 'gauge', 'Export requests waiting to be sent', x.queuedRequests),
      p('export_queue_bytes', 'gauge', 'Bytes of export requests waiting to be sent', x.queuedBytes),
      p('export_sent_bytes_total', 'counter', 'Bytes sent to the collector (request line, headers, bodies; every attempt)', x.bytesSent),
      p('export_consecutive_failures', 'gauge', 'Failed attempts since the last successful export', x.consecutiveFailures),
      p('cpu_seconds_total', 'counter', 'CPU time of the agent process', (cpu.user + cpu.system) / 1e6),
      p('cpu_percent', 'gauge', 'CPU of the agent (process and its BPF programs), percent of one core, over the budget window: what the budget compares', this.lastUsage.cpuPercent),
      p('process_cpu_percent', 'gauge', 'CPU of the agent process (utime+stime), percent of one core, over the budget window', this.lastUsage.processCpuPercent),
      p('bpf_cpu_percent', 'gauge', 'In-kernel run time of the agent\'s BPF programs, percent of one core, over the budget window (0 when not counted)', this.lastUsage.bpfCpuPercent),
      p('bpf_run_time_counted', 'gauge', 'Whether the kernel counts the run time of BPF programs now (1), so that bpf_cpu_percent is measured', this.tracing.runTimeCounted ? 1 : 0),
      p('resident_memory_bytes', 'gauge', 'Resident set size of the agent process', process.memoryUsage.rss()),
      p('egress_bytes_per_minute', 'gauge', 'Egress over the budget window, per minute', this.lastUsage.egressMiBPerMinute * 1048576),
      p('frequency_hz', 'gauge', 'Sampling frequency in use', this.effective.frequencyHz),
      p('configured_frequency_hz', 'gauge', 'Sampling frequency as configured', this.config.frequencyHz),
      p('interval_seconds', 'gauge', 'Export interval in use', this.effective.intervalMs / 1000),
      p('degradation_level', 'gauge', `Budget degradation level (0 = full service, ${MAX_LEVEL} = most degraded)`, this.budget.currentLevel),
      p('degradations_total', 'counter', 'Steps down taken to stay inside the budget', this.counters.degradations),
      p('recoveries_total', 'counter', 'Steps back up after usage fell', this.counters.recoveries),
      p('config_reloads_total', 'counter', 'Configuration reloads by result', this.counters.configReloads, { result: 'success' }),
      p('config_reloads_total', 'counter', 'Configuration reloads by result', this.counters.configReloadFailures, { result: 'failure' }),
      p('windows_total', 'counter', 'Export windows closed', this.counters.windows),
      p('internal_errors_total', 'counter', 'Unexpected errors in drains or windows (logged, the agent continues)', this.counters.internalErrors),
      p('processes_freed_total', 'counter', 'Exited processes whose symbols, mappings and attributes were freed', this.counters.processesFreed),
      p('lifecycle_events_total', 'counter', 'Process fork, exec and exit events tracked (once, for profiling and tracing)', lc ? lc.forks + lc.execs + lc.exits : 0),
      p('lifecycle_events_lost_total', 'counter', 'Process events lost (ring buffer full, records dropped or malformed)', lc ? lc.ringBufferFull + lc.droppedRecords + lc.recordsMalformed : 0),
      ...this.unwindMetricPoints(p),
      ...this.tracing.metricPoints(p),
      p('metrics_exports_total', 'counter', 'Tracing metrics export requests by outcome', mx.requestsSucceeded, { result: 'success' }),
      p('metrics_exports_total', 'counter', 'Tracing metrics export requests by outcome', mx.attemptsFailed, { result: 'failure' }),
      p('metrics_exports_total', 'counter', 'Tracing metrics export requests by outcome', mx.requestsRejected, { result: 'rejected' }),
      p('metrics_exports_total', 'counter', 'Tracing metrics export requests by outcome', mx.requestsDropped, { result: 'dropped' }),
      p('export_data_points_total', 'counter', 'Tracing metric data points by outcome', mx.profilesExported, { result: 'exported' }),
      p('export_data_points_total', 'counter', 'Tracing metric data points by outcome', mx.profilesRejected, { result: 'rejected' }),
      p('export_data_points_total', 'counter', 'Tracing metric data points by outcome', mx.profilesDropped, { result: 'dropped' }),
      p('metrics_export_queue_requests', 'gauge', 'Tracing metrics export requests waiting to be sent', mx.queuedRequests),
      p('metrics_export_sent_bytes_total', 'counter', 'Bytes of tracing metrics sent to the collector (every attempt)', mx.bytesSent),
    ];
  }

  // ------------------------------------------------------------------------------ shutdown

  /**
   * Stops sampling, exports the last window and gives pending requests until `flushMs` to reach the
   * collector; what is still queued then is counted as dropped.
   */
  async stop(flushMs = 5000): Promise<void> {
    if (this.stopping) return;
    this.stopping = true;
    for (const t of [this.drainTimer, this.budgetTimer]) if (t) clearInterval(t);
    if (this.windowTimer) clearTimeout(this.windowTimer);
    this.watcher?.close();
    await this.chain;
    if (this.sampler) {
      const rest = await this.sampler.close();
      if (this.window) await this.endWindowTask(undefined, rest).catch((e) => this.internalError('the last window', e));
    } else await this.tracing.close().catch((e) => this.internalError('detaching the tracers', e));
    this.unsubscribeLifecycle?.();
    await this.lifecycle?.close();
    const deadline = Date.now() + flushMs;
    // Both signals get the same last chance, side by side.
    await Promise.all([this.exporter?.flush(deadline), this.metricsExporter?.flush(deadline)]);
    this.exporter?.close();
    this.metricsExporter?.close();
    await this.control?.close();
    this.symbolizer.close();
  }
}

function releaseFreeMemory(): void {
  loadAddon().releaseFreeMemory();
}

/** "frequencyHz 99 -> 9" phrases for the keys that differ. */
function diffConfig(a: Record<string, unknown>, b: Record<string, unknown>, prefix = ''): string[] {
  const out: string[] = [];
  for (const k of new Set([...Object.keys(a), ...Object.keys(b)])) {
    const x = a[k];
    const y = b[k];
    if (x && y && typeof x === 'object' && typeof y === 'object' && !Array.isArray(x) && !Array.isArray(y)) {
      out.push(...diffConfig(x as Record<string, unknown>, y as Record<string, unknown>, `${prefix}${k}.`));
    } else if (JSON.stringify(x) !== JSON.stringify(y)) out.push(`${prefix}${k} ${JSON.stringify(x)} -> ${JSON.stringify(y)}`);
  }
  return out;
}
