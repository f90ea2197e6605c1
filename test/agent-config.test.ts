// SPDX-License-Identifier: Apache-2.0
// The agent's configuration and process selectors: every key, the merge order, strict one-line
// errors for bad input (fuzzed), the budget's degradation ladder, self-metrics text, and the CLI's
// answers to bad flags and files.
import t from 'tap';
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { agentFlagsLayer } from '../cli/commands/agent';
import { BudgetController, DEGRADATION_STEPS, levelApplies, MAX_LEVEL, overBudget, UsageMeter } from '../src/agent/budget';
import {
  configLayerFromObject,
  DEFAULT_AGENT_CONFIG,
  describeConfig,
  mergeConfig,
  metricsUrlOf,
  parseAgentConfigText,
  parseControlListen,
  parseDurationMs,
  parseEndpoint,
  profilesUrl,
  readAgentConfigFile,
} from '../src/agent/config';
import { parsePrometheus, renderPrometheus } from '../src/agent/metrics';
import { matchesSelector, parseSelector, processIncluded } from '../src/agent/selectors';
import { EbpfprofError } from '../src/errors';
import { cliPath, repoRoot } from './helpers/paths';
import { intPrng } from './helpers/prng';

const FULL = `
endpoint: https://gateway.observability:4318/
frequencyHz: 49
interval: 30s
filter:
  include:
    - k8s.namespace.name=shop
    - ["process.executable.name=~^(java|node)$", "k8s.container.name!=istio-proxy"]
  exclude: process.executable.name=ebpfprof
control:
  listen: 127.0.0.1:9000
budget:
  cpuPercent: 1.5
  rssMiB: 150
  egressMiBPerMinute: 2
  checkInterval: 5s
  window: 2m
export:
  headers:
    authorization: Bearer xyz
  maxQueuedRequests: 10
  maxQueuedMiB: 4
  timeout: 5s
  retryInitial: 500ms
  retryMax: 1m
kubernetes:
  logRoot: /host/var/log
  downwardApiDir: /etc/podinfo
hostName: node-1.example
resourceAttributes:
  deployment.environment.name: prod
  k8s.cluster.name: eu-1
commandLineMaxLength: 256
tracing:
  tcp: true
  sched: false
`;

t.test('every key of a YAML file', async (t) => {
  const c = mergeConfig(DEFAULT_AGENT_CONFIG, parseAgentConfigText(FULL, 'agent.yaml'));
  t.equal(c.endpoint, 'https://gateway.observability:4318');
  t.equal(profilesUrl(c.endpoint), 'https://gateway.observability:4318/v1development/profiles');
  t.equal(c.frequencyHz, 49);
  t.equal(c.intervalMs, 30_000);
  t.same(c.filter.include.map((s) => s.text), ['k8s.namespace.name=shop', 'process.executable.name=~^(java|node)$,k8s.container.name!=istio-proxy']);
  t.same(c.filter.exclude.map((s) => s.text), ['process.executable.name=ebpfprof']);
  t.equal(c.controlListen, '127.0.0.1:9000');
  t.same(c.budget, { cpuPercent: 1.5, rssMiB: 150, egressMiBPerMinute: 2, checkIntervalMs: 5000, windowMs: 120_000 });
  t.same(c.export, { headers: { authorization: 'Bearer xyz' }, maxQueuedRequests: 10, maxQueuedMiB: 4, timeoutMs: 5000, retryInitialMs: 500, retryMaxMs: 60_000 });
  t.same(c.kubernetes, { logRoot: '/host/var/log', downwardApiDir: '/etc/podinfo' });
  t.equal(c.hostName, 'node-1.example');
  t.same(c.resourceAttributes, { 'deployment.environment.name': 'prod', 'k8s.cluster.name': 'eu-1' });
  t.equal(c.commandLineMaxLength, 256);
  t.same(c.tracing, { tcp: true, sched: false });
  t.equal(metricsUrlOf(c.endpoint), 'https://gateway.observability:4318/v1/metrics', 'tracing metrics next to the profiles');
  t.equal(metricsUrlOf('http://gw:4318/otlp/v1development/profiles'), 'http://gw:4318/otlp/v1/metrics', 'a full profiles URL: its base');
  t.same(describeConfig(c).tracing, { tcp: true, sched: false });
  t.same((describeConfig(c).export as { headers: unknown }).headers, { authorization: '(set)' }, 'header values are never shown');
  // JSON is YAML too.
  t.equal(mergeConfig(DEFAULT_AGENT_CONFIG, parseAgentConfigText('{"frequencyHz": 9, "interval": 2}', 'a.json')).intervalMs, 2000, 'a bare number is seconds');
  t.same(parseAgentConfigText('', 'empty.yaml'), {}, 'an empty file is all defaults');
});

t.test('defaults, and later layers win key by key', async (t) => {
  t.equal(DEFAULT_AGENT_CONFIG.frequencyHz, 19);
  t.equal(DEFAULT_AGENT_CONFIG.intervalMs, 10_000);
  t.same(DEFAULT_AGENT_CONFIG.budget, { cpuPercent: 3, rssMiB: 200, egressMiBPerMinute: 5, checkIntervalMs: 10_000, windowMs: 60_000 });
  const file = parseAgentConfigText('frequencyHz: 99\nbudget: {cpuPercent: 2}\nresourceAttributes: {a: "1"}\n', 'f');
  const flags = configLayerFromObject({ frequencyHz: 49 }, 'flags');
  const overrides = configLayerFromObject({ budget: { rssMiB: 100 }, resourceAttributes: { b: 2 } }, 'override');
  const c = mergeConfig(DEFAULT_AGENT_CONFIG, file, flags, overrides);
  t.equal(c.frequencyHz, 49, 'flags over file');
  t.same(c.budget, { ...DEFAULT_AGENT_CONFIG.budget, cpuPercent: 2, rssMiB: 100 }, 'nested sections merge');
  t.same(c.resourceAttributes, { a: '1', b: '2' });
  t.equal(DEFAULT_AGENT_CONFIG.budget.cpuPercent, 3, 'defaults untouched');
  t.same(DEFAULT_AGENT_CONFIG.tracing, { tcp: false, sched: false }, 'tracing is opt-in');
  const traced = mergeConfig(DEFAULT_AGENT_CONFIG, parseAgentConfigText('tracing: {tcp: true, sched: true}\n', 'f'), configLayerFromObject({ tracing: { sched: false } }, 'override'));
  t.same(traced.tracing, { tcp: true, sched: false }, 'tracing keys merge one by one');
  t.same(DEFAULT_AGENT_CONFIG.tracing, { tcp: false, sched: false }, 'defaults untouched by a merge');
  t.equal(DEFAULT_AGENT_CONFIG.callGraph, 'dwarf', 'unwind tables by default');
  const fp = mergeConfig(DEFAULT_AGENT_CONFIG, parseAgentConfigText('callGraph: fp\nunwindTableMiB: 8\n', 'f'));
  t.same([fp.callGraph, fp.unwindTableMiB, describeConfig(fp).callGraph], ['fp', 8, 'fp']);
});

t.test('bad values are one EBADARG line naming the key', async (t) => {
  const bad: [string, RegExp][] = [
    ['frequncyHz: 19', /unknown key "frequncyHz"/],
    ['frequencyHz: 0', /frequencyHz must be from 1 to 1000/],
    ['frequencyHz: 2.5', /frequencyHz must be an integer/],
    ['frequencyHz: "fast"', /frequencyHz must be an integer/],
    ['interval: 100ms', /interval must be from 1s to 1h/],
    ['interval: soon', /interval must be a duration/],
    ['endpoint: collector:4318', /endpoint must be an http/],
    ['endpoint: ftp://x', /endpoint must be an http/],
    ['endpoint: http://x/?a=1', /must not have a query/],
    ['control: {listen: 0.0.0.0:8790}', /loopback/],
    ['control: {listen: "8790"}', /host:port/],
    ['budget: {cpuPercent: -1}', /budget.cpuPercent must be from/],
    ['budget: {memory: 5}', /unknown key "memory"/],
    ['export: {headers: [a]}', /export.headers must be a mapping/],
    ['filter: {include: ["x"]}', /not a requirement/],
    ['filter: {include: ["a=~("]}', /not a valid regular expression/],
    ['filter: {include: [5]}', /must be a string/],
    ['filter: {only: []}', /unknown key "only"/],
    ['tracing: {udp: true}', /unknown key "udp" \(known: tcp, sched\)/],
    ['tracing: {tcp: yes}', /tracing\.tcp must be true or false, got "yes"/],
    ['tracing: {sched: 1}', /tracing\.sched must be true or false, got 1/],
    ['tracing: true', /tracing must be a mapping/],
    ['callGraph: lbr', /callGraph must be one of dwarf, fp, got "lbr"/],
    ['unwindTableMiB: 0', /unwindTableMiB must be from 1 to 4096/],
    ['- a\n- b', /must be a mapping/],
    ['a: [unclosed', /not valid YAML or JSON/],
    ['a: 1\na: 2', /not valid YAML or JSON/],
  ];
  for (const [text, re] of bad) {
    try {
      parseAgentConfigText(text, 'agent.yaml');
      t.fail(`accepted ${JSON.stringify(text)}`);
    } catch (e) {
      t.ok(e instanceof EbpfprofError && e.code === 'EBADARG', `EBADARG for ${JSON.stringify(text)}`);
      t.match((e as Error).message, re);
      t.match((e as Error).message, /^agent\.yaml\b/, 'names the file');
      t.notMatch((e as Error).message, /\n/, 'one line');
    }
  }
  t.throws(() => readAgentConfigFile('/nonexistent/agent.yaml'), /cannot read the configuration file \/nonexistent\/agent\.yaml: it does not exist/);
});

t.test('--trace names the tracers that run; the others are off', async (t) => {
  t.same(agentFlagsLayer({ trace: 'tcp,sched' }).tracing, { tcp: true, sched: true });
  t.same(agentFlagsLayer({ trace: 'sched' }).tracing, { tcp: false, sched: true });
  t.same(agentFlagsLayer({ trace: 'none' }).tracing, { tcp: false, sched: false });
  t.equal(agentFlagsLayer({}).tracing, undefined, 'without the flag the file decides');
  t.throws(() => agentFlagsLayer({ trace: 'none,tcp' }), { code: 'EBADARG' });
  t.throws(() => agentFlagsLayer({ trace: '' }), { code: 'EBADARG' });
});

t.test('value parsers', async (t) => {
  t.equal(parseDurationMs('1.5s', 'x', 1, 1e9), 1500);
  t.equal(parseDurationMs('2m', 'x', 1, 1e9), 120_000);
  t.equal(parseDurationMs(3, 'x', 1, 1e9), 3000);
  t.equal(parseEndpoint('http://c:4318/v1development/profiles'), 'http://c:4318/v1development/profiles');
  t.equal(profilesUrl('http://c:4318/v1development/profiles'), 'http://c:4318/v1development/profiles', 'a full profiles URL is kept');
  t.equal(profilesUrl('http://gw/otlp'), 'http://gw/otlp/v1development/profiles', 'a base path is kept');
  t.equal(parseControlListen('off'), null);
  t.equal(parseControlListen('localhost:0'), 'localhost:0');
  t.equal(parseControlListen('[::1]:8790'), '[::1]:8790');
  t.equal(parseControlListen(8790), '127.0.0.1:8790');
});

t.test('configuration parsing never throws anything but EBADARG (fuzz)', async (t) => {
  const rnd = intPrng(11);
  const tokens = ['frequencyHz', 'interval', 'filter', 'include', 'exclude', 'budget', 'cpuPercent', 'export', 'headers', 'control', 'listen', ':', ' ', '\n', '  ', '- ', '[', ']', '{', '}', ',', '"', "'", '1', '0', '-1', '1e309', 'null', 'true', '10s', 'x=y', '=~', '(', '&a', '*a', '!!binary', '#', 'endpoint', 'http://h:1', '127.0.0.1:0'];
  let other = 0;
  for (let i = 0; i < 4000; i++) {
    const text = Array.from({ length: rnd(25) }, () => tokens[rnd(tokens.length)]).join('');
    try {
      mergeConfig(DEFAULT_AGENT_CONFIG, parseAgentConfigText(text, 'fuzz.yaml'));
    } catch (e) {
      if (!(e instanceof EbpfprofError && e.code === 'EBADARG')) {
        other++;
        t.comment(`${JSON.stringify(text)}: ${(e as Error).stack}`);
      }
    }
  }
  t.equal(other, 0, 'every rejection is a clear EBADARG');
});

t.test('selectors: =, !=, =~, !~; include any, exclude all', async (t) => {
  const java = { 'process.executable.name': 'java', 'k8s.namespace.name': 'shop', 'process.pid': 42 };
  const host = { 'process.executable.name': 'sshd' };
  const s = (x: unknown) => parseSelector(x, 'filter');
  t.ok(matchesSelector(s('k8s.namespace.name=shop'), java));
  t.ok(matchesSelector(s('k8s.namespace.name==shop'), java), '== is =');
  t.notOk(matchesSelector(s('k8s.namespace.name=shop'), host), '= fails on an absent attribute');
  t.ok(matchesSelector(s('k8s.namespace.name!=shop'), host), '!= holds on an absent attribute');
  t.ok(matchesSelector(s('process.executable.name=~^(java|node)$'), java));
  t.notOk(matchesSelector(s('process.executable.name=~^jav$'), java));
  t.ok(matchesSelector(s('k8s.namespace.name!~^kube-'), host), '!~ holds on an absent attribute');
  t.ok(matchesSelector(s('process.pid=42'), java), 'numbers compare as text');
  t.ok(matchesSelector(s(['process.executable.name=~^(a|b){1,3},x$', 'k8s.namespace.name!=x']), { 'process.executable.name': 'ab,x' }), 'a list keeps commas inside values');
  t.notOk(matchesSelector(s('k8s.namespace.name=shop, process.executable.name=sshd'), java), 'all requirements must hold');
  const filter = { include: [s('k8s.namespace.name=shop'), s('process.executable.name=sshd')], exclude: [s('process.pid=42')] };
  t.notOk(processIncluded(filter, java), 'excluded wins');
  t.ok(processIncluded(filter, host));
  t.notOk(processIncluded(filter, { 'process.executable.name': 'bash' }), 'matches no include');
  t.ok(processIncluded({ include: [], exclude: [] }, host), 'no filter: everything');
  t.throws(() => s(''), /is empty/);
  t.throws(() => s('a b=c'), /not a requirement|not an attribute name/);
});

t.test('the budget degrades one step per window in the documented order and recovers', async (t) => {
  const budget = { cpuPercent: 3, rssMiB: 200, egressMiBPerMinute: 5, checkIntervalMs: 1000, windowMs: 10_000 };
  t.same(
    DEGRADATION_STEPS.map((s) => [s.schedOff, s.tcpOff, s.frequencyDivisor, s.symbolizedProcesses, s.intervalMultiplier]),
    [
      [false, false, 1, Infinity, 1],
      [true, false, 1, Infinity, 1],
      [true, true, 1, Infinity, 1],
      [true, true, 2, Infinity, 1],
      [true, true, 4, Infinity, 1],
      [true, true, 4, 20, 1],
      [true, true, 4, 5, 1],
      [true, true, 4, 5, 2],
      [true, true, 4, 5, 4],
    ],
    'tracers first, then frequency, then symbolized processes, then the export interval',
  );
  const hot = { cpuPercent: 9, rssMiB: 50, egressMiBPerMinute: 1 };
  const calm = { cpuPercent: 0.5, rssMiB: 50, egressMiBPerMinute: 1 };
  /** Levels visited going up and back down, one decision per window. */
  const walk = (tracers: { tcp: boolean; sched: boolean }): { up: number[]; down: number[] } => {
    const b = new BudgetController(budget, 0);
    b.setTracers(tracers);
    const up: number[] = [];
    const down: number[] = [];
    let now = 10_000;
    while (b.currentLevel < MAX_LEVEL) {
      const d = b.decide(hot, now);
      t.equal(d.change, 'degrade');
      up.push(d.level);
      now += 10_000;
    }
    while (b.currentLevel > 0) {
      const d = b.decide(calm, now);
      t.equal(d.change, 'recover');
      down.push(d.level);
      now += 10_000;
    }
    return { up, down };
  };
  t.same(walk({ tcp: true, sched: true }), { up: [1, 2, 3, 4, 5, 6, 7, 8], down: [7, 6, 5, 4, 3, 2, 1, 0] }, 'both tracers: every level');
  t.same(walk({ tcp: false, sched: false }), { up: [3, 4, 5, 6, 7, 8], down: [7, 6, 5, 4, 3, 0] }, 'no tracers: the tracer levels give up nothing and are stepped over');
  t.same(walk({ tcp: true, sched: false }), { up: [2, 3, 4, 5, 6, 7, 8], down: [7, 6, 5, 4, 3, 2, 0] }, 'TCP only: level 1 is stepped over');
  t.ok(levelApplies(1, { tcp: false, sched: true }) && !levelApplies(2, { tcp: false, sched: true }), 'sched only: level 1 applies, level 2 does not');

  const b = new BudgetController(budget, 0);
  b.setTracers({ tcp: true, sched: true });
  t.same(b.decide(hot, 5000), { change: 'none', level: 0, over: ['cpu 9.00% > 3%'] }, 'not before one window after the start');
  t.same(b.decide(hot, 10_000), { change: 'degrade', level: 1, over: ['cpu 9.00% > 3%'] });
  t.equal(b.decide(hot, 15_000).change, 'none', 'waits one window after a step');
  let now = 20_000;
  while (b.currentLevel < MAX_LEVEL) {
    t.equal(b.decide(hot, now).change, 'degrade');
    now += 10_000;
  }
  t.same(b.decide(hot, now), { change: 'none', level: MAX_LEVEL, over: ['cpu 9.00% > 3%'] }, 'nothing more to give up');
  t.equal(b.decide({ cpuPercent: 2, rssMiB: 50, egressMiBPerMinute: 1 }, (now += 10_000)).change, 'none', 'under budget but not under half of it: stays');
  t.same(b.decide(calm, (now += 10_000)), { change: 'recover', level: MAX_LEVEL - 1 });
  t.equal(b.decide(calm, now + 1).change, 'none', 'one step per window back too');
  t.same(overBudget({ cpuPercent: 1, rssMiB: 250, egressMiBPerMinute: 6 }, budget), ['rss 250.0 MiB > 200 MiB', 'egress 6.000 MiB/min > 5 MiB/min']);
});

t.test('usage counts the in-kernel run time of the agent\'s BPF programs', async (t) => {
  let now = 0;
  let bpfNs = 0;
  const meter = new UsageMeter(10_000, () => 0, () => bpfNs, () => now);
  now = 1000;
  bpfNs = 20_000_000; // 20 ms of BPF programs in 1 s: 2% of one core
  const u = meter.measure();
  t.ok(Math.abs(u.bpfCpuPercent - 2) < 1e-9, `bpf ${u.bpfCpuPercent}%`);
  t.ok(Math.abs(u.cpuPercent - (u.processCpuPercent + u.bpfCpuPercent)) < 1e-9, 'the budget compares process + BPF');
});

t.test('self-metrics text round-trips', async (t) => {
  const text = renderPrometheus([
    { name: 'a_total', type: 'counter', help: 'A', value: 3, labels: { result: 'ok' } },
    { name: 'a_total', type: 'counter', help: 'A', value: 1, labels: { result: 'a"b\\c\nd' } },
    { name: 'b', type: 'gauge', help: 'B', value: Infinity },
  ]);
  t.equal(text.match(/# TYPE a_total counter/g)?.length, 1, 'one header per metric');
  const m = parsePrometheus(text);
  t.equal(m.get('a_total{result="ok"}'), 3);
  t.equal(m.get('b'), Infinity);
  t.ok(text.includes('result="a\\"b\\\\c\\nd"'), 'label values escaped');
});

t.test('the agent command refuses bad flags and files in one line, before loading anything', async (t) => {
  const dir = t.testdir({ 'bad.yaml': 'frequencyHz: 5000\n', 'typo.yaml': 'intervall: 10s\n' });
  const cases: [string[], RegExp][] = [
    [['agent', '--freq', '0'], /--freq must be from 1 to 1000 Hz/],
    [['agent', '--interval', '10ms'], /--interval must be at least 1s/],
    [['agent', '--endpoint', 'localhost:4318'], /--endpoint must be an http:\/\/ or https:\/\/ URL/],
    [['agent', '--control', '0.0.0.0:1'], /--control must listen on a loopback address/],
    [['agent', '--trace', 'tcp,udp'], /--trace must be tcp, sched, tcp,sched or none, got "tcp,udp"/],
    [['agent', '--config', path.join(dir, 'bad.yaml')], /bad\.yaml: frequencyHz must be from 1 to 1000/],
    [['agent', '--config', path.join(dir, 'typo.yaml')], /unknown key "intervall"/],
    [['agent', '--config', path.join(dir, 'missing.yaml')], /cannot read the configuration file .*missing\.yaml: it does not exist/],
  ];
  for (const [args, re] of cases) {
    const r = spawnSync(process.execPath, [cliPath, ...args], { encoding: 'utf8', timeout: 60_000, cwd: repoRoot });
    t.equal(r.status, 2, `${args.join(' ')}: exit 2`);
    t.match(r.stderr, re);
    t.equal(r.stderr.trim().split('\n').length, 1, 'one line');
  }
  t.ok(fs.existsSync(cliPath));
});
