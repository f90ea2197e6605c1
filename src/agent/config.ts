// SPDX-License-Identifier: Apache-2.0
/**
 * The agent's configuration: defaults, a YAML or JSON file, command-line flags and runtime overrides
 * (control endpoint), merged in that order. Parsing is pure and strict: an unknown key, a wrong type
 * or a value out of range is one EBADARG line naming the key, so that a typo in a ConfigMap never
 * silently falls back to a default. docs/agent.md lists every key.
 */
import * as fs from 'node:fs';
import { parseDocument } from 'yaml';
import { EbpfprofError, errorMessage } from '../errors';
import { MAX_FREQUENCY_HZ, MIN_FREQUENCY_HZ, UNWIND_MODES, UnwindMode } from '../sampler/cpu-sampler';
import { EnhancedItemId, parseEnhancedItems } from '../system/intrusion-policy';
import { parseSelector, ProcessFilter, Selector } from './selectors';

export interface BudgetConfig {
  /** Own CPU time, percent of one core, averaged over `windowMs`. */
  cpuPercent: number;
  /** Own resident set size, MiB. */
  rssMiB: number;
  /** Bytes sent to the collector (HTTP bodies and headers) per minute, MiB. */
  egressMiBPerMinute: number;
  /** How often usage is compared with the budget. */
  checkIntervalMs: number;
  /** CPU and egress are averaged over this much time; a degradation step waits this long to act. */
  windowMs: number;
}

export interface ExportConfig {
  /** Extra HTTP headers of every export request (e.g. authorization for a gateway). */
  headers: Record<string, string>;
  /** Pending export requests kept while the collector is unreachable; the oldest go first. */
  maxQueuedRequests: number;
  /** Pending export bytes kept (compressed). */
  maxQueuedMiB: number;
  timeoutMs: number;
  retryInitialMs: number;
  retryMaxMs: number;
}

export interface KubernetesConfig {
  /** Holds the kubelet's pods/ and containers/ log directories. */
  logRoot: string;
  /** A downwardAPI volume with the agent's own pod name, namespace and uid. */
  downwardApiDir: string;
}

/** Tracing collected next to profiling, exported as OTLP metrics (docs/agent.md). */
export interface TracingConfig {
  /** TCP connect latency, failed connects, lifetime, bytes, RTT, retransmits and resets (bpf/tcp.bpf.c). */
  tcp: boolean;
  /** Run-queue latency per CPU and per process (bpf/runqlat.bpf.c). */
  sched: boolean;
}

export interface AgentConfig {
  /**
   * Base URL of the collector's OTLP/HTTP receiver; profiles go to <endpoint>/v1development/profiles,
   * tracing metrics to <endpoint>/v1/metrics.
   */
  endpoint: string;
  frequencyHz: number;
  intervalMs: number;
  filter: ProcessFilter;
  /** host:port of the control, health and metrics endpoint (loopback only); null turns it off. */
  controlListen: string | null;
  budget: BudgetConfig;
  export: ExportConfig;
  kubernetes: KubernetesConfig;
  /** host.name of every process; default: the Downward API's node name, else the hostname. */
  hostName: string | null;
  /** Written on every process (e.g. deployment.environment.name). */
  resourceAttributes: Record<string, string>;
  commandLineMaxLength: number;
  tracing: TracingConfig;
  /** How user stacks are walked (docs/unwinding.md); fixed at start. */
  callGraph: UnwindMode;
  /** Kernel memory for unwind tables with callGraph dwarf, MiB; fixed at start. */
  unwindTableMiB: number;
  /** Enhanced-mode items allowed (src/system/intrusion-policy.ts); empty: strict mode. */
  enhanced: EnhancedItemId[];
}

/** One source's settings: any subset of the keys. */
export interface AgentConfigLayer {
  endpoint?: string;
  frequencyHz?: number;
  intervalMs?: number;
  filter?: ProcessFilter;
  controlListen?: string | null;
  budget?: Partial<BudgetConfig>;
  export?: Partial<ExportConfig>;
  kubernetes?: Partial<KubernetesConfig>;
  hostName?: string | null;
  resourceAttributes?: Record<string, string>;
  commandLineMaxLength?: number;
  tracing?: Partial<TracingConfig>;
  callGraph?: UnwindMode;
  unwindTableMiB?: number;
  enhanced?: EnhancedItemId[];
}

export const DEFAULT_AGENT_CONFIG: AgentConfig = {
  endpoint: 'http://127.0.0.1:4318',
  frequencyHz: 19,
  intervalMs: 10_000,
  filter: { include: [], exclude: [] },
  controlListen: '127.0.0.1:8790',
  budget: { cpuPercent: 3, rssMiB: 200, egressMiBPerMinute: 5, checkIntervalMs: 10_000, windowMs: 60_000 },
  export: { headers: {}, maxQueuedRequests: 30, maxQueuedMiB: 16, timeoutMs: 10_000, retryInitialMs: 1000, retryMaxMs: 30_000 },
  kubernetes: { logRoot: '/var/log', downwardApiDir: '/etc/podinfo' },
  hostName: null,
  resourceAttributes: {},
  commandLineMaxLength: 1024,
  tracing: { tcp: false, sched: false },
  callGraph: 'dwarf',
  unwindTableMiB: 32,
  enhanced: [],
};

export const PROFILES_PATH = '/v1development/profiles';
export const METRICS_PATH = '/v1/metrics';
const MIN_INTERVAL_MS = 1000;
const MAX_INTERVAL_MS = 3_600_000;

// ------------------------------------------------------------------------------------ value parsers

const UNITS_MS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000 };

/** "10s", "500ms", "2m", "1h"; a bare number means seconds. */
export function parseDurationMs(value: unknown, key: string, min: number, max: number): number {
  let ms: number;
  if (typeof value === 'number') ms = value * 1000;
  else if (typeof value === 'string') {
    const m = /^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h)?\s*$/.exec(value);
    if (!m) throw new EbpfprofError('EBADARG', `${key} must be a duration such as 10s, 500ms or 2m, got ${JSON.stringify(value)}`);
    ms = Number(m[1]) * UNITS_MS[m[2] ?? 's']!;
  } else throw new EbpfprofError('EBADARG', `${key} must be a duration such as 10s, got ${JSON.stringify(value)}`);
  if (!Number.isFinite(ms) || ms < min || ms > max) {
    throw new EbpfprofError('EBADARG', `${key} must be from ${formatMs(min)} to ${formatMs(max)}, got ${JSON.stringify(value)}`);
  }
  return Math.round(ms);
}

export function formatMs(ms: number): string {
  if (ms % 3_600_000 === 0) return `${ms / 3_600_000}h`;
  if (ms % 60_000 === 0) return `${ms / 60_000}m`;
  if (ms % 1000 === 0) return `${ms / 1000}s`;
  return `${ms}ms`;
}

function number(value: unknown, key: string, min: number, max: number, integer = false): number {
  const n = typeof value === 'string' && /^\s*-?\d+(\.\d+)?\s*$/.test(value) ? Number(value) : value;
  if (typeof n !== 'number' || !Number.isFinite(n) || (integer && !Number.isInteger(n))) {
    throw new EbpfprofError('EBADARG', `${key} must be ${integer ? 'an integer' : 'a number'} from ${min} to ${max}, got ${JSON.stringify(value)}`);
  }
  if (n < min || n > max) throw new EbpfprofError('EBADARG', `${key} must be from ${min} to ${max}, got ${n}`);
  return n;
}

/** true/false only: "yes", 1 or "on" are refused, so that a typo cannot turn a tracer on or off. */
function boolean(value: unknown, key: string): boolean {
  if (typeof value !== 'boolean') throw new EbpfprofError('EBADARG', `${key} must be true or false, got ${JSON.stringify(value)}`);
  return value;
}

function string(value: unknown, key: string): string {
  if (typeof value !== 'string' || value === '') throw new EbpfprofError('EBADARG', `${key} must be a non-empty string, got ${JSON.stringify(value)}`);
  return value;
}

function stringMap(value: unknown, key: string): Record<string, string> {
  const o = object(value, key);
  const out: Record<string, string> = {};
  for (const [k, v] of Object.entries(o)) {
    if (typeof v !== 'string' && typeof v !== 'number' && typeof v !== 'boolean') throw new EbpfprofError('EBADARG', `${key}.${k} must be a string, got ${JSON.stringify(v)}`);
    out[k] = String(v);
  }
  return out;
}

function object(value: unknown, key: string): Record<string, unknown> {
  if (value === null || typeof value !== 'object' || Array.isArray(value)) throw new EbpfprofError('EBADARG', `${key} must be a mapping of keys to values, got ${JSON.stringify(value)}`);
  return value as Record<string, unknown>;
}

/** Throws for keys outside `known`: a misspelt key must not be ignored. */
function onlyKnown(o: Record<string, unknown>, known: readonly string[], where: string): void {
  for (const k of Object.keys(o)) {
    if (!known.includes(k)) throw new EbpfprofError('EBADARG', `${where}: unknown key ${JSON.stringify(k)} (known: ${known.join(', ')})`);
  }
}

/** The collector's base URL, normalized; a URL that already ends in /v1development/profiles is kept as the full target. */
export function parseEndpoint(value: unknown, key = 'endpoint'): string {
  const text = string(value, key).trim();
  let url: URL;
  try {
    url = new URL(text);
  } catch {
    throw new EbpfprofError('EBADARG', `${key} must be a URL such as http://otel-collector:4318, got ${JSON.stringify(text)}`);
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') throw new EbpfprofError('EBADARG', `${key} must be an http:// or https:// URL, got ${JSON.stringify(text)}`);
  if (url.search || url.hash) throw new EbpfprofError('EBADARG', `${key} must not have a query or fragment, got ${JSON.stringify(text)}`);
  return url.toString().replace(/\/+$/, '');
}

/** The URL profiles are POSTed to. */
export function profilesUrl(endpoint: string): string {
  return endpoint.endsWith(PROFILES_PATH) ? endpoint : `${endpoint}${PROFILES_PATH}`;
}

/**
 * The URL tracing metrics are POSTed to: <base>/v1/metrics, where the base is the endpoint without
 * a profiles path it may end in (the same receiver takes both signals).
 */
export function metricsUrlOf(endpoint: string): string {
  const base = endpoint.endsWith(PROFILES_PATH) ? endpoint.slice(0, -PROFILES_PATH.length) : endpoint;
  return `${base}${METRICS_PATH}`;
}

const LOOPBACK_HOSTS = ['127.0.0.1', 'localhost', '::1', '[::1]'];

/** "127.0.0.1:8790" (or localhost/[::1], port 0 = any free port); "off"/null turns it off. */
export function parseControlListen(value: unknown, key = 'control.listen'): string | null {
  if (value === null || value === false || value === 'off') return null;
  const text = typeof value === 'number' ? `127.0.0.1:${value}` : string(value, key);
  const m = /^(.*):(\d{1,5})$/.exec(text.trim());
  if (!m || Number(m[2]) > 65535) throw new EbpfprofError('EBADARG', `${key} must be host:port such as 127.0.0.1:8790, or off, got ${JSON.stringify(value)}`);
  if (!LOOPBACK_HOSTS.includes(m[1]!)) {
    throw new EbpfprofError('EBADARG', `${key} must listen on a loopback address (127.0.0.1, localhost or [::1]): the control endpoint changes what the agent does and is never exposed, got ${JSON.stringify(value)}`);
  }
  return `${m[1]}:${Number(m[2])}`;
}

function selectors(value: unknown, key: string): Selector[] {
  if (value === null || value === undefined) return [];
  const list = Array.isArray(value) ? value : [value];
  return list.map((s, i) => parseSelector(s, `${key}[${i}]`));
}

// ------------------------------------------------------------------------------------ layers

const TOP_KEYS = ['endpoint', 'frequencyHz', 'interval', 'filter', 'control', 'budget', 'export', 'kubernetes', 'hostName', 'resourceAttributes', 'commandLineMaxLength', 'tracing', 'callGraph', 'unwindTableMiB', 'enhanced'] as const;

/** A configuration layer from a parsed YAML/JSON document (or a control request body). */
export function configLayerFromObject(doc: unknown, where: string): AgentConfigLayer {
  if (doc === null || doc === undefined) return {};
  const o = object(doc, where);
  onlyKnown(o, TOP_KEYS, where);
  const layer: AgentConfigLayer = {};
  const k = (name: string): string => `${where}: ${name}`;
  if (o.endpoint !== undefined) layer.endpoint = parseEndpoint(o.endpoint, k('endpoint'));
  if (o.frequencyHz !== undefined) layer.frequencyHz = number(o.frequencyHz, k('frequencyHz'), MIN_FREQUENCY_HZ, MAX_FREQUENCY_HZ, true);
  if (o.interval !== undefined) layer.intervalMs = parseDurationMs(o.interval, k('interval'), MIN_INTERVAL_MS, MAX_INTERVAL_MS);
  if (o.filter !== undefined) {
    const f = o.filter === null ? {} : object(o.filter, k('filter'));
    onlyKnown(f, ['include', 'exclude'], k('filter'));
    layer.filter = { include: selectors(f.include, k('filter.include')), exclude: selectors(f.exclude, k('filter.exclude')) };
  }
  if (o.control !== undefined) {
    const c = object(o.control, k('control'));
    onlyKnown(c, ['listen'], k('control'));
    if (c.listen !== undefined) layer.controlListen = parseControlListen(c.listen, k('control.listen'));
  }
  if (o.budget !== undefined) {
    const b = object(o.budget, k('budget'));
    onlyKnown(b, ['cpuPercent', 'rssMiB', 'egressMiBPerMinute', 'checkInterval', 'window'], k('budget'));
    layer.budget = {};
    if (b.cpuPercent !== undefined) layer.budget.cpuPercent = number(b.cpuPercent, k('budget.cpuPercent'), 0.001, 100);
    if (b.rssMiB !== undefined) layer.budget.rssMiB = number(b.rssMiB, k('budget.rssMiB'), 1, 1 << 20);
    if (b.egressMiBPerMinute !== undefined) layer.budget.egressMiBPerMinute = number(b.egressMiBPerMinute, k('budget.egressMiBPerMinute'), 0.0001, 1 << 20);
    if (b.checkInterval !== undefined) layer.budget.checkIntervalMs = parseDurationMs(b.checkInterval, k('budget.checkInterval'), 100, MAX_INTERVAL_MS);
    if (b.window !== undefined) layer.budget.windowMs = parseDurationMs(b.window, k('budget.window'), 1000, MAX_INTERVAL_MS);
  }
  if (o.export !== undefined) {
    const e = object(o.export, k('export'));
    onlyKnown(e, ['headers', 'maxQueuedRequests', 'maxQueuedMiB', 'timeout', 'retryInitial', 'retryMax'], k('export'));
    layer.export = {};
    if (e.headers !== undefined) layer.export.headers = stringMap(e.headers, k('export.headers'));
    if (e.maxQueuedRequests !== undefined) layer.export.maxQueuedRequests = number(e.maxQueuedRequests, k('export.maxQueuedRequests'), 1, 100_000, true);
    if (e.maxQueuedMiB !== undefined) layer.export.maxQueuedMiB = number(e.maxQueuedMiB, k('export.maxQueuedMiB'), 0.01, 4096);
    if (e.timeout !== undefined) layer.export.timeoutMs = parseDurationMs(e.timeout, k('export.timeout'), 100, 600_000);
    if (e.retryInitial !== undefined) layer.export.retryInitialMs = parseDurationMs(e.retryInitial, k('export.retryInitial'), 10, 600_000);
    if (e.retryMax !== undefined) layer.export.retryMaxMs = parseDurationMs(e.retryMax, k('export.retryMax'), 10, MAX_INTERVAL_MS);
  }
  if (o.kubernetes !== undefined) {
    const kk = object(o.kubernetes, k('kubernetes'));
    onlyKnown(kk, ['logRoot', 'downwardApiDir'], k('kubernetes'));
    layer.kubernetes = {};
    if (kk.logRoot !== undefined) layer.kubernetes.logRoot = string(kk.logRoot, k('kubernetes.logRoot'));
    if (kk.downwardApiDir !== undefined) layer.kubernetes.downwardApiDir = string(kk.downwardApiDir, k('kubernetes.downwardApiDir'));
  }
  if (o.hostName !== undefined) layer.hostName = o.hostName === null ? null : string(o.hostName, k('hostName'));
  if (o.resourceAttributes !== undefined) layer.resourceAttributes = stringMap(o.resourceAttributes, k('resourceAttributes'));
  if (o.commandLineMaxLength !== undefined) layer.commandLineMaxLength = number(o.commandLineMaxLength, k('commandLineMaxLength'), 0, 65536, true);
  if (o.callGraph !== undefined) {
    if (typeof o.callGraph !== 'string' || !(UNWIND_MODES as readonly string[]).includes(o.callGraph)) {
      throw new EbpfprofError('EBADARG', `${k('callGraph')} must be one of ${UNWIND_MODES.join(', ')}, got ${JSON.stringify(o.callGraph)}`);
    }
    layer.callGraph = o.callGraph as UnwindMode;
  }
  if (o.unwindTableMiB !== undefined) layer.unwindTableMiB = number(o.unwindTableMiB, k('unwindTableMiB'), 1, 4096, true);
  if (o.tracing !== undefined) {
    const tr = object(o.tracing, k('tracing'));
    onlyKnown(tr, ['tcp', 'sched'], k('tracing'));
    layer.tracing = {};
    if (tr.tcp !== undefined) layer.tracing.tcp = boolean(tr.tcp, k('tracing.tcp'));
    if (tr.sched !== undefined) layer.tracing.sched = boolean(tr.sched, k('tracing.sched'));
  }
  if (o.enhanced !== undefined && o.enhanced !== null) {
    const list = Array.isArray(o.enhanced) ? o.enhanced : [o.enhanced];
    if (!list.every((x): x is string => typeof x === 'string')) throw new EbpfprofError('EBADARG', `${k('enhanced')} must be a list of item names, got ${JSON.stringify(o.enhanced)}`);
    layer.enhanced = parseEnhancedItems(list, k('enhanced'), { requireImplemented: true });
  }
  return layer;
}

/** Parses a configuration file's text (YAML 1.2, of which JSON is a subset). */
export function parseAgentConfigText(text: string, source: string): AgentConfigLayer {
  let doc: unknown;
  try {
    // Warnings (an unknown tag such as !!binary) are errors here, not lines on the process's stderr.
    const parsed = parseDocument(text, { prettyErrors: false, uniqueKeys: true, logLevel: 'silent' });
    const problem = parsed.errors[0] ?? parsed.warnings[0];
    if (problem !== undefined) throw problem;
    doc = parsed.toJS({ maxAliasCount: 100 });
  } catch (e) {
    throw new EbpfprofError('EBADARG', `${source}: not valid YAML or JSON: ${errorMessage(e).split('\n')[0]}`);
  }
  return configLayerFromObject(doc, source);
}

/** Reads and parses a configuration file. */
export function readAgentConfigFile(file: string): AgentConfigLayer {
  let text: string;
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    throw new EbpfprofError('EBADARG', `cannot read the configuration file ${file}: ${code === 'ENOENT' ? 'it does not exist' : (code ?? errorMessage(e))}`);
  }
  return parseAgentConfigText(text, file);
}

/** Later layers override earlier ones key by key (nested sections too; a filter as a whole). */
export function mergeConfig(base: AgentConfig, ...layers: AgentConfigLayer[]): AgentConfig {
  const c: AgentConfig = {
    ...base,
    filter: base.filter,
    budget: { ...base.budget },
    export: { ...base.export, headers: { ...base.export.headers } },
    kubernetes: { ...base.kubernetes },
    resourceAttributes: { ...base.resourceAttributes },
    tracing: { ...base.tracing },
  };
  for (const l of layers) {
    if (l.endpoint !== undefined) c.endpoint = l.endpoint;
    if (l.frequencyHz !== undefined) c.frequencyHz = l.frequencyHz;
    if (l.intervalMs !== undefined) c.intervalMs = l.intervalMs;
    if (l.filter !== undefined) c.filter = l.filter;
    if (l.controlListen !== undefined) c.controlListen = l.controlListen;
    if (l.budget) Object.assign(c.budget, definedOnly(l.budget));
    if (l.export) Object.assign(c.export, definedOnly(l.export));
    if (l.kubernetes) Object.assign(c.kubernetes, definedOnly(l.kubernetes));
    if (l.hostName !== undefined) c.hostName = l.hostName;
    if (l.resourceAttributes !== undefined) c.resourceAttributes = { ...c.resourceAttributes, ...l.resourceAttributes };
    if (l.commandLineMaxLength !== undefined) c.commandLineMaxLength = l.commandLineMaxLength;
    if (l.tracing) Object.assign(c.tracing, definedOnly(l.tracing));
    if (l.callGraph !== undefined) c.callGraph = l.callGraph;
    if (l.unwindTableMiB !== undefined) c.unwindTableMiB = l.unwindTableMiB;
    if (l.enhanced !== undefined) c.enhanced = [...l.enhanced];
  }
  if (c.export.retryMaxMs < c.export.retryInitialMs) c.export.retryMaxMs = c.export.retryInitialMs;
  return c;
}

function definedOnly<T extends object>(o: T): Partial<T> {
  return Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined)) as Partial<T>;
}

/** The configuration as YAML-able plain data (durations as text), for GET /config and logs. */
export function describeConfig(c: AgentConfig): Record<string, unknown> {
  return {
    endpoint: c.endpoint,
    frequencyHz: c.frequencyHz,
    interval: formatMs(c.intervalMs),
    filter: { include: c.filter.include.map((s) => s.text), exclude: c.filter.exclude.map((s) => s.text) },
    control: { listen: c.controlListen ?? 'off' },
    budget: {
      cpuPercent: c.budget.cpuPercent,
      rssMiB: c.budget.rssMiB,
      egressMiBPerMinute: c.budget.egressMiBPerMinute,
      checkInterval: formatMs(c.budget.checkIntervalMs),
      window: formatMs(c.budget.windowMs),
    },
    export: {
      headers: Object.fromEntries(Object.keys(c.export.headers).map((h) => [h, '(set)'])),
      maxQueuedRequests: c.export.maxQueuedRequests,
      maxQueuedMiB: c.export.maxQueuedMiB,
      timeout: formatMs(c.export.timeoutMs),
      retryInitial: formatMs(c.export.retryInitialMs),
      retryMax: formatMs(c.export.retryMaxMs),
    },
    kubernetes: { ...c.kubernetes },
    hostName: c.hostName,
    resourceAttributes: c.resourceAttributes,
    commandLineMaxLength: c.commandLineMaxLength,
    tracing: { ...c.tracing },
    callGraph: c.callGraph,
    unwindTableMiB: c.unwindTableMiB,
    enhanced: c.enhanced,
  };
}
