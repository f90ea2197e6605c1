// SPDX-License-Identifier: Apache-2.0
// A real OpenTelemetry Collector for the tests, built from the upstream Go modules with the
// OpenTelemetry Collector Builder (ocb) through the Go module proxy, at a pinned release whose
// profiles schema is opentelemetry-proto v1.10.0's (docs/agent.md says how that was checked): an
// OTLP receiver, the file exporter writing what it receives as OTLP JSON, and the profiles feature
// gate. The binary, GOMODCACHE and GOCACHE live in one directory outside the checkout, so it is built
// once per machine (the first build downloads and compiles for about two minutes here).
import { ChildProcess, execFileSync, spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { cliPath } from './paths';
import { freePort } from './servers';
import { buildOnce, goBinary, goBuildEnv, type ToolBuild } from './tools';

/** Collector core/contrib release (the first with v1.10.0's numbering is v0.148.0; see docs/agent.md). */
export const OTELCOL_VERSION = '0.155.0';
/** The stable core modules (confmap providers) of the same release. */
export const OTELCOL_STABLE_VERSION = '1.61.0';
export const PROFILES_FEATURE_GATE = 'service.profilesSupport';

export const COLLECTOR_CACHE_DIR = process.env['EBPFPROF_OTELCOL_CACHE'] ?? '/var/cache/ebpfprof/otelcol';

const BINARY_NAME = 'otelcol-ebpfprof';

/** Components of the test Collector: (Go module, version). */
export const COLLECTOR_COMPONENTS = {
  receivers: [['go.opentelemetry.io/collector/receiver/otlpreceiver', `v${OTELCOL_VERSION}`]],
  exporters: [
    ['github.com/open-telemetry/opentelemetry-collector-contrib/exporter/fileexporter', `v${OTELCOL_VERSION}`],
    ['go.opentelemetry.io/collector/exporter/debugexporter', `v${OTELCOL_VERSION}`],
    // Only so that the gateway example in deploy/ can be checked with `validate`.
    ['go.opentelemetry.io/collector/exporter/otlpexporter', `v${OTELCOL_VERSION}`],
    ['go.opentelemetry.io/collector/exporter/otlphttpexporter', `v${OTELCOL_VERSION}`],
  ],
  providers: [
    ['go.opentelemetry.io/collector/confmap/provider/fileprovider', `v${OTELCOL_STABLE_VERSION}`],
    ['go.opentelemetry.io/collector/confmap/provider/envprovider', `v${OTELCOL_STABLE_VERSION}`],
  ],
} as const;

function builderManifest(outputPath: string): string {
  const list = (kind: keyof typeof COLLECTOR_COMPONENTS): string =>
    `${kind}:\n${COLLECTOR_COMPONENTS[kind].map(([m, v]) => `  - gomod: ${m} ${v}`).join('\n')}\n`;
  return (
    `dist:\n  name: ${BINARY_NAME}\n  description: OpenTelemetry Collector for the ebpfprof tests\n  output_path: ${outputPath}\n  version: ${OTELCOL_VERSION}\n` +
    list('receivers') +
    list('exporters') +
    list('providers')
  );
}

/**
 * go.mod of the generated sources. The builder would run `go mod tidy`, which also resolves the test
 * dependencies of every component; some of those (contrib's encoding extensions) are not served by
 * the module proxy these machines reach, and the Collector never imports them. So the builder only
 * generates the sources, and `go build -mod=mod` resolves what the build imports, from the
 * components' own go.mod files (minimal version selection: the same versions on every machine).
 */
function goMod(): string {
  const all = [...COLLECTOR_COMPONENTS.receivers, ...COLLECTOR_COMPONENTS.exporters, ...COLLECTOR_COMPONENTS.providers];
  return (
    `module ${BINARY_NAME}\n\ngo 1.25\n\nrequire (\n` +
    [...all, ['go.opentelemetry.io/collector/otelcol', `v${OTELCOL_VERSION}`], ['go.opentelemetry.io/collector/service', `v${OTELCOL_VERSION}`]]
      .map(([m, v]) => `\t${m} ${v}\n`)
      .join('') +
    ')\n'
  );
}

function goEnv(): NodeJS.ProcessEnv {
  return goBuildEnv(COLLECTOR_CACHE_DIR);
}

function run(cmd: string, args: string[], cwd: string, log: fs.WriteStream | number): void {
  execFileSync(cmd, args, { cwd, env: goEnv(), stdio: ['ignore', log, log], timeout: 30 * 60_000 });
}

/**
 * The Collector binary, built on first use (under a lock, so parallel test processes build it once).
 * Throws with the build log's tail when the build fails.
 */
export async function collectorBinary(): Promise<ToolBuild> {
  const go = goBinary();
  const goVersion = execFileSync(go, ['env', 'GOVERSION'], { encoding: 'utf8', env: goEnv() }).trim();
  const key = createHash('sha256').update(builderManifest('SRC') + goMod() + goVersion).digest('hex').slice(0, 16);
  const dir = path.join(COLLECTOR_CACHE_DIR, `otelcol-${OTELCOL_VERSION}-${key}`);
  const binary = path.join(dir, BINARY_NAME);
  return buildOnce(`the OpenTelemetry Collector ${OTELCOL_VERSION}`, dir, binary, (log) => {
    const src = path.join(dir, 'src');
    fs.rmSync(src, { recursive: true, force: true });
    fs.mkdirSync(src, { recursive: true });
    const manifest = path.join(dir, 'builder.yaml');
    fs.writeFileSync(manifest, builderManifest(src));
    run(go, ['install', `go.opentelemetry.io/collector/cmd/builder@v${OTELCOL_VERSION}`], dir, log);
    run(path.join(COLLECTOR_CACHE_DIR, 'bin', 'builder'), ['--config', manifest, '--skip-compilation', '--skip-get-modules'], dir, log);
    fs.writeFileSync(path.join(src, 'go.mod'), goMod());
    run(go, ['build', '-trimpath', '-ldflags=-s -w', '-o', `${binary}.tmp`, '.'], src, log);
  }, { version: OTELCOL_VERSION, go: goVersion });
}

function connects(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const c = net.connect(port, '127.0.0.1');
    c.once('connect', () => {
      c.destroy();
      resolve(true);
    });
    c.once('error', () => resolve(false));
  });
}

/**
 * The Collector's configuration: OTLP/HTTP in, every request as one JSON line out: profiles to
 * `outputFile`, metrics (the agent's tracing) to `metricsFile`.
 */
export function collectorConfig(port: number, outputFile: string, metricsFile = outputFile.replace(/(\.jsonl)?$/, '.metrics.jsonl')): string {
  return [
    'receivers:',
    '  otlp:',
    '    protocols:',
    '      http:',
    `        endpoint: 127.0.0.1:${port}`,
    'exporters:',
    '  file:',
    `    path: ${outputFile}`,
    '    format: json',
    '    flush_interval: 100ms',
    '  file/metrics:',
    `    path: ${metricsFile}`,
    '    format: json',
    '    flush_interval: 100ms',
    'service:',
    '  telemetry:',
    '    metrics:',
    '      level: none',
    '    logs:',
    '      level: warn',
    '  pipelines:',
    '    profiles:',
    '      receivers: [otlp]',
    '      exporters: [file]',
    '    metrics:',
    '      receivers: [otlp]',
    '      exporters: [file/metrics]',
    '',
  ].join('\n');
}

/** A running test Collector that can be stopped and started again on the same port. */
export class TestCollector {
  private child: ChildProcess | null = null;
  readonly endpoint: string;
  readonly outputFile: string;
  /** What the metrics pipeline received (OTLP JSON, one request per line). */
  readonly metricsFile: string;
  readonly logFile: string;
  private readonly configFile: string;

  private constructor(
    readonly binary: string,
    readonly port: number,
    dir: string,
  ) {
    this.endpoint = `http://127.0.0.1:${port}`;
    this.outputFile = path.join(dir, 'received.jsonl');
    this.metricsFile = path.join(dir, 'received.metrics.jsonl');
    this.logFile = path.join(dir, 'collector.log');
    this.configFile = path.join(dir, 'collector.yaml');
    fs.writeFileSync(this.configFile, collectorConfig(port, this.outputFile, this.metricsFile));
  }

  static async start(dir: string): Promise<TestCollector> {
    const { binary } = await collectorBinary();
    const c = new TestCollector(binary, await freePort(), dir);
    await c.start();
    return c;
  }

  get running(): boolean {
    return this.child !== null;
  }

  async start(): Promise<void> {
    if (this.child) return;
    const log = fs.openSync(this.logFile, 'a');
    const child = spawn(this.binary, ['--config', this.configFile, `--feature-gates=${PROFILES_FEATURE_GATE}`], { stdio: ['ignore', log, log] });
    fs.closeSync(log);
    this.child = child;
    let exited = false;
    child.once('exit', () => {
      exited = true;
      if (this.child === child) this.child = null;
    });
    for (let i = 0; i < 600; i++) {
      if (exited) throw new Error(`the Collector exited at start; its log ${this.logFile}:\n${fs.readFileSync(this.logFile, 'utf8').slice(-3000)}`);
      if (await connects(this.port)) return;
      await sleep(100);
    }
    throw new Error(`the Collector did not listen on ${this.port} within a minute; log ${this.logFile}`);
  }

  async stop(): Promise<void> {
    const child = this.child;
    if (!child) return;
    const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
    child.kill('SIGTERM');
    const timer = setTimeout(() => child.kill('SIGKILL'), 20_000);
    await exited;
    clearTimeout(timer);
    this.child = null;
  }

  /** Everything the Collector wrote so far, one ProfilesData (OTLP JSON) per request. */
  received(): ReceivedProfile[] {
    let text = '';
    try {
      text = fs.readFileSync(this.outputFile, 'utf8');
    } catch {
      return [];
    }
    const out: ReceivedProfile[] = [];
    let request = 0;
    for (const line of text.split('\n')) {
      if (line.trim() === '') continue;
      let doc: OtlpJsonProfilesData;
      try {
        doc = JSON.parse(line) as OtlpJsonProfilesData;
      } catch {
        continue; // a line still being written
      }
      out.push(...flattenProfilesData(doc, request++));
    }
    return out;
  }

  /** Every metrics request the Collector wrote so far, as resources. */
  receivedMetrics(): JsonResourceMetrics[] {
    return readMetricsFile(this.metricsFile);
  }

  /** Polls receivedMetrics() until `predicate` holds on it (or throws after `timeoutMs`). */
  async waitForMetrics(predicate: (all: JsonResourceMetrics[]) => boolean, timeoutMs: number, what: string): Promise<JsonResourceMetrics[]> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const all = this.receivedMetrics();
      if (predicate(all)) return all;
      if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs / 1000} s waiting for ${what}; the Collector received ${all.length} metric resources`);
      await sleep(250);
    }
  }

  /** Polls received() until `predicate` holds on it (or throws after `timeoutMs`). */
  async waitFor(predicate: (all: ReceivedProfile[]) => boolean, timeoutMs: number, what: string): Promise<ReceivedProfile[]> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const all = this.received();
      if (predicate(all)) return all;
      if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs / 1000} s waiting for ${what}; the Collector received ${all.length} profiles`);
      await sleep(250);
    }
  }
}

// ------------------------------------------------------------------------------------ OTLP JSON metrics

// What the Collector's file exporter writes for metrics (protojson: camelCase, 64-bit integers as
// strings, zero values left out).
export interface JsonMetricKeyValue {
  key: string;
  value: { stringValue?: string; intValue?: string; doubleValue?: number; boolValue?: boolean };
}
export interface JsonDataPoint {
  attributes?: JsonMetricKeyValue[];
  startTimeUnixNano?: string;
  timeUnixNano?: string;
  count?: string;
  sum?: number;
  max?: number;
  bucketCounts?: string[];
  explicitBounds?: number[];
  asInt?: string;
}
export interface JsonMetric {
  name: string;
  unit?: string;
  histogram?: { dataPoints: JsonDataPoint[]; aggregationTemporality?: string | number };
  sum?: { dataPoints: JsonDataPoint[]; isMonotonic?: boolean; aggregationTemporality?: string | number };
}
export interface JsonResourceMetrics {
  resource: { attributes?: JsonMetricKeyValue[] };
  scopeMetrics: Array<{ scope?: { name?: string; version?: string }; metrics: JsonMetric[] }>;
}

/** One attribute's value as text (numbers as their decimal text), undefined when absent. */
export function metricAttr(list: JsonMetricKeyValue[] | undefined, key: string): string | undefined {
  const v = list?.find((a) => a.key === key)?.value;
  if (v === undefined) return undefined;
  return v.stringValue ?? v.intValue ?? (v.doubleValue !== undefined ? String(v.doubleValue) : v.boolValue !== undefined ? String(v.boolValue) : undefined);
}

/** Attributes as a plain object (values as the Collector wrote them: strings, int64 as numbers). */
export function metricAttrs(list: JsonMetricKeyValue[] | undefined): Record<string, AttrValue> {
  const out: Record<string, AttrValue> = {};
  for (const a of list ?? []) {
    const v = a.value;
    out[a.key] = v.stringValue ?? (v.intValue !== undefined ? Number(v.intValue) : (v.doubleValue ?? v.boolValue ?? ''));
  }
  return out;
}

/** The data points of metric `name` in every resource that `resource` accepts. */
export function metricPoints(all: readonly JsonResourceMetrics[], name: string, resource: (attrs: Record<string, AttrValue>) => boolean = () => true): JsonDataPoint[] {
  const out: JsonDataPoint[] = [];
  for (const r of all) {
    if (!resource(metricAttrs(r.resource.attributes))) continue;
    for (const sm of r.scopeMetrics) for (const m of sm.metrics) if (m.name === name) out.push(...(m.histogram?.dataPoints ?? m.sum?.dataPoints ?? []));
  }
  return out;
}

export function readMetricsFile(file: string): JsonResourceMetrics[] {
  let text = '';
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch {
    return [];
  }
  const all: JsonResourceMetrics[] = [];
  for (const line of text.split('\n')) {
    if (!line.trim()) continue;
    try {
      all.push(...((JSON.parse(line) as { resourceMetrics?: JsonResourceMetrics[] }).resourceMetrics ?? []));
    } catch {
      // a line still being written
    }
  }
  return all;
}

// ------------------------------------------------------------------------------------ OTLP JSON

// The Collector's JSON (protojson of pdata): camelCase names, 64-bit integers as strings, zero
// values omitted.
interface JsonAnyValue {
  stringValue?: string;
  /** v1.10.0: a string of the dictionary (the Collector writes strings of profiles this way). */
  stringValueStrindex?: number;
  intValue?: string | number;
  boolValue?: boolean;
  doubleValue?: number;
}
interface JsonKeyValue {
  key?: string;
  keyStrindex?: number;
  value?: JsonAnyValue;
}
interface OtlpJsonProfilesData {
  resourceProfiles?: {
    resource?: { attributes?: JsonKeyValue[] };
    scopeProfiles?: {
      scope?: { name?: string; version?: string };
      profiles?: {
        sampleType?: { typeStrindex?: number; unitStrindex?: number };
        samples?: { stackIndex?: number; attributeIndices?: number[]; values?: (string | number)[]; linkIndex?: number }[];
        timeUnixNano?: string;
        durationNano?: string;
        periodType?: { typeStrindex?: number; unitStrindex?: number };
        period?: string;
        profileId?: string;
      }[];
    }[];
  }[];
  dictionary?: {
    mappingTable?: { memoryStart?: string; memoryLimit?: string; fileOffset?: string; filenameStrindex?: number; attributeIndices?: number[] }[];
    locationTable?: { mappingIndex?: number; address?: string; lines?: { functionIndex?: number }[]; attributeIndices?: number[] }[];
    functionTable?: { nameStrindex?: number; systemNameStrindex?: number }[];
    stringTable?: string[];
    attributeTable?: { keyStrindex?: number; value?: JsonAnyValue }[];
    stackTable?: { locationIndices?: number[] }[];
  };
}

export type AttrValue = string | number | boolean;

export interface ReceivedFrame {
  /** Function name, or 0x<address> when the location has no line. */
  name: string;
  frameType: string | null;
  mappingFile: string;
  buildId: string | null;
}

export interface ReceivedSample {
  count: number;
  /** Leaf first. */
  frames: ReceivedFrame[];
  attributes: Record<string, AttrValue>;
}

export interface ReceivedProfile {
  /** Which request (line of the Collector's output) it came in, from 0. */
  request: number;
  resource: Record<string, AttrValue>;
  scope: string;
  sampleType: string;
  periodType: string;
  period: number;
  timeUnixNano: bigint;
  durationNano: number;
  profileId: string;
  samples: ReceivedSample[];
}

function jsonValue(v: JsonAnyValue | undefined, str: (i: number) => string): AttrValue {
  if (!v) return '';
  if (v.stringValue !== undefined) return v.stringValue;
  if (v.stringValueStrindex !== undefined) return str(v.stringValueStrindex);
  if (v.intValue !== undefined) return Number(v.intValue);
  if (v.boolValue !== undefined) return v.boolValue;
  if (v.doubleValue !== undefined) return v.doubleValue;
  return '';
}

/** One request's JSON to self-contained profiles (dictionary references resolved). */
export function flattenProfilesData(doc: OtlpJsonProfilesData, request = 0): ReceivedProfile[] {
  const d = doc.dictionary ?? {};
  const str = (i: number | undefined): string => d.stringTable?.[i ?? 0] ?? '';
  const attr = (i: number): [string, AttrValue] => {
    const a = d.attributeTable?.[i] ?? {};
    return [str(a.keyStrindex), jsonValue(a.value, str)];
  };
  const attrs = (list: number[] | undefined): Record<string, AttrValue> => Object.fromEntries((list ?? []).map(attr));
  const frame = (li: number): ReceivedFrame => {
    const loc = d.locationTable?.[li] ?? {};
    const m = d.mappingTable?.[loc.mappingIndex ?? 0] ?? {};
    const la = attrs(loc.attributeIndices);
    const ma = attrs(m.attributeIndices);
    const fn = loc.lines?.[0] !== undefined ? d.functionTable?.[loc.lines[0].functionIndex ?? 0] : undefined;
    return {
      name: fn ? str(fn.nameStrindex) : `0x${BigInt(loc.address ?? '0').toString(16)}`,
      frameType: typeof la['profile.frame.type'] === 'string' ? (la['profile.frame.type'] as string) : null,
      mappingFile: str(m.filenameStrindex),
      buildId: typeof ma['process.executable.build_id.gnu'] === 'string' ? (ma['process.executable.build_id.gnu'] as string) : null,
    };
  };
  const out: ReceivedProfile[] = [];
  for (const rp of doc.resourceProfiles ?? []) {
    // Keys and string values may be plain or (v1.10.0) references into the string table.
    const resource = Object.fromEntries((rp.resource?.attributes ?? []).map((kv) => [kv.key ?? str(kv.keyStrindex), jsonValue(kv.value, str)]));
    for (const sp of rp.scopeProfiles ?? []) {
      for (const p of sp.profiles ?? []) {
        out.push({
          request,
          resource,
          scope: sp.scope?.name ?? '',
          sampleType: `${str(p.sampleType?.typeStrindex)}/${str(p.sampleType?.unitStrindex)}`,
          periodType: `${str(p.periodType?.typeStrindex)}/${str(p.periodType?.unitStrindex)}`,
          period: Number(p.period ?? 0),
          timeUnixNano: BigInt(p.timeUnixNano ?? '0'),
          durationNano: Number(p.durationNano ?? 0),
          profileId: p.profileId ?? '',
          samples: (p.samples ?? []).map((s) => ({
            count: Number(s.values?.[0] ?? 0),
            frames: (d.stackTable?.[s.stackIndex ?? 0]?.locationIndices ?? []).map(frame),
            attributes: attrs(s.attributeIndices),
          })),
        });
      }
    }
  }
  return out;
}

/** Total sample count of profiles. */
export function sampleCount(profiles: readonly ReceivedProfile[]): number {
  let n = 0;
  for (const p of profiles) for (const s of p.samples) n += s.count;
  return n;
}

// ------------------------------------------------------------------------------------ the agent

export interface AgentExit {
  code: number | null;
  signal: NodeJS.Signals | null;
}

/** `ebpfprof agent` as a child process, as users run it (bin/ebpfprof's Node flags), with its log. */
export class AgentProcess {
  private stderr = '';
  readonly exited: Promise<AgentExit>;
  controlUrl = '';

  private constructor(readonly child: ChildProcess) {
    child.stderr!.setEncoding('utf8');
    child.stderr!.on('data', (d: string) => {
      this.stderr += d;
    });
    this.exited = new Promise((resolve) => child.once('exit', (code, signal) => resolve({ code, signal })));
  }

  /** Starts the agent and waits for its start-up line (throws with its log if it exits first). */
  static async start(args: string[], env: NodeJS.ProcessEnv = {}): Promise<AgentProcess> {
    const entry = process.env['EBPFPROF_TEST_AGENT_ENTRY'];
    const argv = entry ? [entry, ...args] : ['--max-semi-space-size=1', cliPath, 'agent', ...args];
    const a = new AgentProcess(spawn(process.execPath, argv, { stdio: ['ignore', 'ignore', 'pipe'], env: { ...process.env, ...env } }));
    const line = await a.waitForLog(/sampling every CPU at .*/, 60_000);
    const m = /control endpoint on (\S+?);/.exec(line);
    if (m) a.controlUrl = `http://${m[1]}`;
    return a;
  }

  get pid(): number {
    return this.child.pid!;
  }

  log(): string {
    return this.stderr;
  }

  /** The first log line matching `re` (waits for it). */
  async waitForLog(re: RegExp, timeoutMs: number): Promise<string> {
    const deadline = Date.now() + timeoutMs;
    let done = false;
    void this.exited.then(() => (done = true));
    for (;;) {
      const line = this.stderr.split('\n').find((l) => re.test(l));
      if (line !== undefined) return line;
      if (done) throw new Error(`the agent exited before logging ${re}; its log:\n${this.stderr}`);
      if (Date.now() > deadline) throw new Error(`the agent did not log ${re} within ${timeoutMs / 1000} s; its log:\n${this.stderr}`);
      await sleep(100);
    }
  }

  async request(method: string, pathname: string, body?: unknown): Promise<{ status: number; text: string }> {
    const res = await fetch(`${this.controlUrl}${pathname}`, {
      method,
      ...(body !== undefined ? { body: JSON.stringify(body), headers: { 'Content-Type': 'application/json' } } : {}),
    });
    return { status: res.status, text: await res.text() };
  }

  async metrics(): Promise<Map<string, number>> {
    const { parsePrometheus } = await import('../../src/agent/metrics.js');
    return parsePrometheus((await this.request('GET', '/metrics')).text);
  }

  /** Polls the metrics until `predicate` holds. */
  async waitForMetrics(predicate: (m: Map<string, number>) => boolean, timeoutMs: number, what: string): Promise<Map<string, number>> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const m = await this.metrics();
      if (predicate(m)) return m;
      if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs / 1000} s waiting for ${what}; metrics:\n${[...m].map(([k, v]) => `${k} ${v}`).join('\n')}\nlog:\n${this.stderr}`);
      await sleep(250);
    }
  }

  /** SIGTERM, and the exit (SIGKILL after 30 s so that a test never leaves it behind). */
  async stop(): Promise<AgentExit> {
    if (this.child.exitCode === null && this.child.signalCode === null) this.child.kill('SIGTERM');
    const timer = setTimeout(() => this.child.kill('SIGKILL'), 30_000);
    const r = await this.exited;
    clearTimeout(timer);
    return r;
  }
}
