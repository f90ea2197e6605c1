// SPDX-License-Identifier: Apache-2.0
/**
 * ebpfprof agent: continuous whole-node profiling, exported as OTLP Profiles to a collector
 * (src/agent), optionally with TCP and run-queue latency tracing as OTLP metrics. Runs until SIGTERM or Ctrl-C, then sends the last window; SIGHUP re-reads the
 * configuration file.
 */
import { Command } from 'commander';
import { Agent } from '../../src/agent/agent';
import { AgentConfigLayer, parseControlListen, parseEndpoint } from '../../src/agent/config';
import { EbpfprofError } from '../../src/errors';
import { MAX_FREQUENCY_HZ, MIN_FREQUENCY_HZ, UNWIND_MODES } from '../../src/sampler/cpu-sampler';
import { assertCanProfile, assertKernelSupportsProfiling } from '../../src/system/privileges';
import { parseChoice, parseDuration, parseIntegerIn } from '../options';
import { addStrictModeOptions, confineAfterLoad, planStrictMode, StrictModeFlags } from '../strict-mode';

interface AgentFlags extends StrictModeFlags {
  config?: string;
  endpoint?: string;
  freq?: string;
  interval?: string;
  control?: string;
  logRoot?: string;
  trace?: string;
  callGraph?: string;
}

/** "tcp,sched", "tcp", "none": which tracers run; the ones not named are off. */
export function parseTraceList(text: string, flag = '--trace'): { tcp: boolean; sched: boolean } {
  const names = text.split(',').map((x) => x.trim()).filter((x) => x !== '');
  const known = ['tcp', 'sched', 'none'];
  const bad = names.find((n) => !known.includes(n));
  if (bad !== undefined || names.length === 0 || (names.includes('none') && names.length > 1)) {
    throw new EbpfprofError('EBADARG', `${flag} must be tcp, sched, tcp,sched or none, got ${JSON.stringify(text)}`);
  }
  return { tcp: names.includes('tcp'), sched: names.includes('sched') };
}

/** Flags as a configuration layer (they win over the file); every value checked before anything loads. */
export function agentFlagsLayer(flags: AgentFlags): AgentConfigLayer {
  const layer: AgentConfigLayer = {};
  if (flags.endpoint !== undefined) layer.endpoint = parseEndpoint(flags.endpoint, '--endpoint');
  if (flags.freq !== undefined) layer.frequencyHz = parseIntegerIn(flags.freq, '--freq', MIN_FREQUENCY_HZ, MAX_FREQUENCY_HZ, ' Hz');
  if (flags.interval !== undefined) {
    const ms = parseDuration(flags.interval, '--interval');
    if (ms < 1000) throw new EbpfprofError('EBADARG', `--interval must be at least 1s, got ${JSON.stringify(flags.interval)}`);
    layer.intervalMs = ms;
  }
  if (flags.control !== undefined) layer.controlListen = parseControlListen(flags.control, '--control');
  if (flags.logRoot !== undefined) layer.kubernetes = { logRoot: flags.logRoot };
  if (flags.trace !== undefined) layer.tracing = parseTraceList(flags.trace);
  if (flags.callGraph !== undefined) layer.callGraph = parseChoice(flags.callGraph, '--call-graph', UNWIND_MODES);
  if (flags.enhanced !== undefined) layer.enhanced = [...planStrictMode({ enhanced: flags.enhanced }).policy.enabled];
  return layer;
}

export async function runAgent(flags: AgentFlags): Promise<number> {
  const layer = agentFlagsLayer(flags);
  const strictMode = planStrictMode(flags);
  assertKernelSupportsProfiling();
  assertCanProfile();
  const agent = await Agent.start({ ...(flags.config ? { configFile: flags.config } : {}), flags: layer });
  try {
    // CAP_BPF stays: tracers are loaded when tracing is switched on while the agent runs.
    confineAfterLoad(strictMode, false, `${new Date().toISOString()} ebpfprof agent`, true);
  } catch (e) {
    await agent.stop(0);
    throw e;
  }
  return new Promise<number>((resolve) => {
    let signals = 0;
    const onStop = (signal: NodeJS.Signals): void => {
      signals++;
      if (signals > 1) process.exit(130);
      process.stderr.write(`${new Date().toISOString()} ebpfprof agent: ${signal}: sending the last window and stopping (again to quit at once)\n`);
      void agent.stop().then(() => {
        process.off('SIGHUP', onHup);
        resolve(0);
      });
    };
    const onHup = (): void => agent.reload('SIGHUP');
    process.on('SIGTERM', onStop);
    process.on('SIGINT', onStop);
    process.on('SIGHUP', onHup);
  });
}

export function registerAgent(program: Command): void {
  const command = program
    .command('agent')
    .description('profile the whole node continuously and export OTLP Profiles to an OpenTelemetry Collector')
    .option('-c, --config <file>', 'YAML or JSON configuration, reloaded when it changes and on SIGHUP (docs/agent.md)')
    .option('--endpoint <url>', "the collector's OTLP/HTTP base URL (default http://127.0.0.1:4318)")
    .option('-F, --freq <hz>', `samples per second per CPU, ${MIN_FREQUENCY_HZ}-${MAX_FREQUENCY_HZ} (default 19)`)
    .option('-i, --interval <time>', 'export interval, e.g. 10s (default), 1m')
    .option('--control <host:port>', 'loopback address of the health, metrics and control endpoint (default 127.0.0.1:8790), or off')
    .option('--log-root <dir>', "directory with the kubelet's pods/ and containers/ log directories (default /var/log)")
    .option('-g, --call-graph <mode>', 'how user stacks are walked: dwarf (unwind tables, default) or fp (frame pointers only)')
    .option('--trace <list>', 'also trace and export OTLP metrics to <endpoint>/v1/metrics: tcp, sched, tcp,sched or none (default: the configuration, else none)');
  addStrictModeOptions(command).action(async (flags: AgentFlags) => {
    process.exitCode = await runAgent(flags);
  });
}
