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
 * Every sampler and window operation runs on one serialized task chain, so that each drained row is
 * folded exactly once and into exactly one window. Export never blocks it: the exporter owns the
 * network and its bounded queue.
 */
import * as os from 'node:os';
import { promisify } from 'node:util';
import { gzip } from 'node:zlib';
import { EBPFPROF_SCOPE, encodeOtlpProfilesRequest } from '../encode/otlp-profiles';
import { ATTR } from '../encode/otlp/semconv';
import { EbpfprofError, errorMessage } from '../errors';
import { KubernetesAttribution } from '../k8s/attribution';
import { OwnIdentity, readOwnIdentity } from '../k8s/downward-api';
import { loadAddon } from '../native/addon';
import { ProfileBuilder } from '../profile/model';
import { SampleFolder } from '../record/sample-folder';
import { CpuSampler, DrainedSample, periodNs, SamplerStats } from '../sampler/cpu-sampler';
import { ResolvedFrame, Symbolizer } from '../symbolize/symbolizer';
import { explainKernelError } from '../system/privileges';
import { BudgetController, DEGRADATION_STEPS, MAX_LEVEL, Usage, UsageMeter } from './budget';
import { AgentConfig, AgentConfigLayer, configLayerFromObject, DEFAULT_AGENT_CONFIG, describeConfig, formatMs, mergeConfig, profilesUrl, readAgentConfigFile } from './config';
import { ConfigFileWatcher } from './config-watcher';
import { ControlServer } from './control-server';
import { OtlpHttpExporter } from './exporter';
import { MetricPoint, renderPrometheus } from './metrics';
import { ProcessResources } from './process-resources';
import { processIncluded } from './selectors';

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
  private sampler!: CpuSampler;
  private resources!: ProcessResources;
  private kubernetes!: KubernetesAttribution;
  private exporter!: OtlpHttpExporter;
  private readonly budget: BudgetController;
  private readonly meter: UsageMeter;
  private lastUsage: Usage = { cpuPercent: 0, rssMiB: 0, egressMiBPerMinute: 0 };
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
  };

  private constructor(options: AgentOptions) {
    this.flags = options.flags ?? {};
    this.log = options.log ?? ((line) => process.stderr.write(`${new Date().toISOString()} ebpfprof agent: ${line}\n`));
    this.drainIntervalMs = options.drainIntervalMs ?? 1000;
    if (options.configFile) this.fileLayer = readAgentConfigFile(options.configFile);
    this.config = mergeConfig(DEFAULT_AGENT_CONFIG, this.fileLayer, this.flags);
    this.identity = options.identity ?? readOwnIdentity(this.config.kubernetes.downwardApiDir);
    this.symbolizer = new BudgetedSymbolizer({ maxCachedBytes: Math.min(64, Math.max(8, this.config.budget.rssMiB / 4)) * 1048576 });
    this.folder = new SampleFolder(this.symbolizer);
    this.budget = new BudgetController(this.config.budget, this.startedMs);
    this.meter = new UsageMeter(this.config.budget.windowMs, () => this.exporter?.stats.bytesSent ?? 0);
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
    // Parse kallsyms before sampling starts, not in the middle of the first drain.
    this.symbolizer.loadKernelSymbols();
    setTimeout(releaseFreeMemory, 100).unref();
    try {
      this.sampler = CpuSampler.open({
        frequencyHz: this.effective.frequencyHz,
        targets: 'all',
        ...(options.objectPath ? { objectPath: options.objectPath } : {}),
        onProcessEvent: (e) => {
          if (e.type === 'exec') {
            this.resources.forget(e.tgid);
            this.includeCache.delete(e.tgid);
          }
          void this.folder.onProcessEvent(e, () => this.run(() => this.drainTask()), () => this.stopping).catch((err) => this.internalError('a process event', err));
        },
      });
    } catch (e) {
      throw explainKernelError(e, 'starting the CPU sampler', { frequencyHz: this.effective.frequencyHz });
    }
    this.newWindow(Date.now());
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
    };
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
    if (layer.controlListen !== undefined) throw new EbpfprofError('EBADARG', 'override: control.listen cannot be changed at run time; change the configuration and restart');
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
    if (JSON.stringify(describeConfig(old).filter) !== JSON.stringify(describeConfig(next).filter)) this.includeCache.clear();
    if (old.hostName !== next.hostName || old.commandLineMaxLength !== next.commandLineMaxLength || JSON.stringify(old.resourceAttributes) !== JSON.stringify(next.resourceAttributes) || old.kubernetes.logRoot !== next.kubernetes.logRoot) {
      this.buildResources();
    }
    this.budget.setBudget(next.budget);
    this.meter.setWindow(next.budget.windowMs);
    if (old.budget.checkIntervalMs !== next.budget.checkIntervalMs) this.scheduleBudgetChecks();
    await this.applyEffective();
  }

  /** Applies frequency (closing the window first), interval and symbolization limit. */
  private async applyEffective(): Promise<void> {
    const before = this.effective;
    this.effective = this.computeEffective();
    if (this.stopping) return;
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
    this.updateSymbolizationLimit(w.samplesByPid);
    if (nextFrequencyHz !== undefined && !this.stopping) this.sampler.setFrequency(nextFrequencyHz);
    if (!finalRows) this.newWindow(now);
    if (encoded) {
      const body = await gzipAsync(encoded.bytes);
      this.exporter.enqueue({ body, profiles: encoded.stats.profiles, samples: encoded.stats.samples, windowStartMs: w.startMs });
    }
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
      this.log(`over budget (${d.over.join(', ')}): degrading to level ${d.level} of ${MAX_LEVEL}: ${DEGRADATION_STEPS[d.level]!.description}`);
      await this.applyEffective();
      this.log(`now sampling at ${this.effective.frequencyHz} Hz, exporting every ${formatMs(this.effective.intervalMs)}`);
    } else if (d.change === 'recover') {
      this.counters.recoveries++;
      this.overBudgetAtMaxLevel = false;
      this.log(`back under budget (cpu ${this.lastUsage.cpuPercent.toFixed(2)}%, rss ${this.lastUsage.rssMiB.toFixed(1)} MiB, egress ${this.lastUsage.egressMiBPerMinute.toFixed(3)} MiB/min): recovering to level ${d.level}: ${DEGRADATION_STEPS[d.level]!.description}`);
      await this.applyEffective();
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
      running: { ...this.effective, degradationLevel: this.budget.currentLevel, degradation: DEGRADATION_STEPS[this.budget.currentLevel]!.description },
      usage: this.lastUsage,
      counters: this.counters,
      sampler: this.sampler?.stats(),
      lostSamples: this.sampler ? lostSamples(this.sampler.stats()) : 0,
      export: { url: this.exporter.url, ...this.exporter.stats },
      symbolizer: { framesResolved: sym.framesResolved, framesUnresolved: sym.framesUnresolved, cacheHits: sym.cacheHits, cacheMisses: sym.cacheMisses, processesTracked: sym.processesTracked },
      processes: this.resources.stats,
      kubernetes: { identity: this.identity, podLogs: this.kubernetes.pods.stats },
    };
  }

  private metricPoints(): MetricPoint[] {
    const s = this.sampler.stats();
    const x = this.exporter.stats;
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
      p('cpu_percent', 'gauge', 'CPU of the agent, percent of one core, over the budget window', this.lastUsage.cpuPercent),
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
    if (this.sampler) {
      await this.chain;
      const rest = await this.sampler.close();
      if (this.window) await this.endWindowTask(undefined, rest).catch((e) => this.internalError('the last window', e));
    }
    if (this.exporter) {
      await this.exporter.flush(Date.now() + flushMs);
      this.exporter.close();
    }
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
