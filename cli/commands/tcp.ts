// SPDX-License-Identifier: Apache-2.0
/**
 * ebpfprof tcp: connect latency, failed connects, lifetime, bytes, RTT, retransmits and resets, per
 * connection and per process and peer; optionally as OTLP metrics.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import { Command } from 'commander';
import { EbpfprofError } from '../../src/errors';
import { assertCanProfile, assertKernelSupportsProfiling } from '../../src/system/privileges';
import type { AttachMethod } from '../../src/system/kernel-features';
import { TracingSession } from '../../src/telemetry/tracing-session';
import { buildResourceMetrics } from '../../src/telemetry/otlp-metrics';
import { formatNs, mean, quantileUpperBound } from '../../src/trace/histogram';
import { connectionRttNs, TcpAggregator, TcpRow } from '../../src/trace/tcp-aggregate';
import type { TcpEvent } from '../../src/trace/tcp-records';
import { parsePid } from '../options';
import { interruptSignal, MetricsSender, optionalDuration, parseAttach, printHooks } from './trace-options';
import { addStrictModeOptions, confineAfterLoad, planStrictMode, StrictModeFlags, StrictModePlan } from '../strict-mode';

interface TcpFlags extends StrictModeFlags {
  pid?: string;
  duration?: string;
  json?: boolean;
  events?: boolean;
  otlpEndpoint?: string;
  exportInterval: string;
  attach?: string;
  verbose?: boolean;
  quiet?: boolean;
}

export interface TcpPlan {
  pid?: number;
  durationMs?: number;
  json: boolean;
  events: boolean;
  otlpEndpoint?: string;
  exportIntervalMs: number;
  prefer?: AttachMethod;
  verbose: boolean;
  quiet: boolean;
  strictMode: StrictModePlan;
}

export function planTcp(flags: TcpFlags): TcpPlan {
  const durationMs = optionalDuration(flags.duration);
  const prefer = parseAttach(flags.attach);
  if (flags.otlpEndpoint !== undefined) new MetricsSender(flags.otlpEndpoint);
  return {
    ...(flags.pid !== undefined ? { pid: parsePid(flags.pid) } : {}),
    ...(durationMs !== undefined ? { durationMs } : {}),
    json: flags.json === true,
    events: flags.events === true,
    ...(flags.otlpEndpoint !== undefined ? { otlpEndpoint: flags.otlpEndpoint } : {}),
    exportIntervalMs: optionalDuration(flags.exportInterval, '--export-interval')!,
    ...(prefer ? { prefer } : {}),
    verbose: flags.verbose === true,
    quiet: flags.quiet === true,
    strictMode: planStrictMode(flags),
  };
}

/** One event as a JSON line (documented in the README). */
export function tcpEventJson(e: TcpEvent): object {
  const base = {
    event: e.type,
    pid: e.pid,
    processStartNs: e.processStartNs,
    comm: e.comm,
    role: e.role,
    family: e.family === 4 ? 'ipv4' : 'ipv6',
    localAddress: e.localAddress,
    localPort: e.localPort,
    remoteAddress: e.remoteAddress,
    remotePort: e.remotePort,
  };
  if (e.type === 'connect') return { ...base, connectNs: e.connectNs };
  if (e.type === 'connect-failed') return { ...base, error: e.error, retransmits: e.retransmits, resetsReceived: e.resetsReceived };
  return {
    ...base,
    connectNs: e.connectNs,
    lifetimeNs: e.lifetimeNs,
    bytesSent: e.bytesSent,
    bytesReceived: e.bytesReceived,
    rttNs: connectionRttNs(e),
    rttSamples: e.rttSamples,
    rttMinNs: e.rttMinUs * 1000,
    rttMaxNs: e.rttMaxUs * 1000,
    retransmits: e.retransmits,
    resetsReceived: e.resetsReceived,
    resetsSent: e.resetsSent,
    closedFrom: e.closedFrom,
    error: e.error,
  };
}

export function tcpRowJson(r: TcpRow): object {
  const q = (h: TcpRow['connectLatency']): object => ({ count: h.count, meanNs: Math.round(mean(h)), p50Ns: quantileUpperBound(h, 0.5), p99Ns: quantileUpperBound(h, 0.99), maxNs: h.max });
  return {
    event: 'aggregate',
    pid: r.pid,
    processStartNs: r.processStartNs,
    comm: r.comm,
    role: r.role,
    family: r.family === 4 ? 'ipv4' : 'ipv6',
    peerAddress: r.peerAddress,
    servicePort: r.servicePort,
    connects: r.connects,
    connectLatency: q(r.connectLatency),
    failures: r.failures,
    closes: r.closes,
    lifetime: q(r.lifetime),
    rtt: q(r.rtt),
    bytesSent: r.bytesSent,
    bytesReceived: r.bytesReceived,
    retransmits: r.retransmits,
    resetsReceived: r.resetsReceived,
    resetsSent: r.resetsSent,
  };
}

function eventLine(e: TcpEvent): string {
  const who = `${e.pid || '?'}/${e.comm || '?'}`;
  const conn = `${e.localAddress}:${e.localPort} ${e.role === 'passive' ? '<-' : '->'} ${e.remoteAddress}:${e.remotePort}`;
  if (e.type === 'connect') return `connect  ${who} ${conn} in ${formatNs(e.connectNs)}`;
  if (e.type === 'connect-failed') return `failed   ${who} ${conn} ${e.error || 'no error'}${e.retransmits ? `, ${e.retransmits} SYN retransmits` : ''}`;
  return (
    `close    ${who} ${conn} after ${formatNs(e.lifetimeNs)}: sent ${e.bytesSent} B, received ${e.bytesReceived} B, rtt ${formatNs(connectionRttNs(e))}` +
    `${e.retransmits ? `, ${e.retransmits} retransmits` : ''}${e.resetsReceived ? `, reset received` : ''}${e.resetsSent ? `, reset sent` : ''}${e.error ? ` (${e.error})` : ''}`
  );
}

export function tcpTextLines(rows: TcpRow[]): string[] {
  if (rows.length === 0) return ['no TCP connections were seen'];
  const head = `${'PID'.padStart(7)} ${'COMM'.padEnd(15)} ${'ROLE'.padEnd(6)} ${'PEER'.padEnd(28)} ${'CONN'.padStart(6)} ${'CONN p50<='.padStart(10)} ${'FAIL'.padStart(5)} ${'CLOSED'.padStart(6)} ${'LIFE mean'.padStart(9)} ${'RTT mean'.padStart(8)} ${'TX B'.padStart(10)} ${'RX B'.padStart(10)} ${'RETR'.padStart(5)} ${'RST'.padStart(4)}`;
  const lines = [head];
  for (const r of rows) {
    const fails = Object.values(r.failures).reduce((a, b) => a + b, 0);
    const peer = `${r.family === 6 ? `[${r.peerAddress}]` : r.peerAddress}:${r.servicePort}`;
    lines.push(
      `${String(r.pid || '?').padStart(7)} ${(r.comm || '?').slice(0, 15).padEnd(15)} ${(r.role === 'passive' ? 'server' : r.role === 'active' ? 'client' : '?').padEnd(6)} ${peer.padEnd(28)} ` +
        `${String(r.connects).padStart(6)} ${(r.connects ? formatNs(quantileUpperBound(r.connectLatency, 0.5)) : '-').padStart(10)} ${String(fails).padStart(5)} ${String(r.closes).padStart(6)} ` +
        `${(r.lifetime.count ? formatNs(mean(r.lifetime)) : '-').padStart(9)} ${(r.rtt.count ? formatNs(mean(r.rtt)) : '-').padStart(8)} ${String(r.bytesSent).padStart(10)} ${String(r.bytesReceived).padStart(10)} ` +
        `${String(r.retransmits).padStart(5)} ${String(r.resetsReceived + r.resetsSent).padStart(4)}`,
    );
  }
  return lines;
}

export async function runTcp(plan: TcpPlan): Promise<number> {
  assertKernelSupportsProfiling();
  assertCanProfile();
  // Totals come from the session's windows (a handful of rows each), not from a second per-event pass.
  const totals = new TcpAggregator();
  const onEvent = plan.json
    ? (e: TcpEvent): void => void process.stdout.write(`${JSON.stringify(tcpEventJson(e))}\n`)
    : plan.events
      ? (e: TcpEvent): void => void process.stdout.write(`${eventLine(e)}\n`)
      : undefined;
  const session = await TracingSession.start({
    tcp: { ...(plan.pid !== undefined ? { pid: plan.pid } : {}), ...(plan.prefer ? { prefer: plan.prefer } : {}), ...(onEvent ? { onEvent } : {}) },
  });
  if (plan.verbose) printHooks('tcp', session.hooks().tcp ?? []);
  try {
    confineAfterLoad(plan.strictMode, plan.quiet);
  } catch (e) {
    await session.stopWindow();
    throw e;
  }
  const sender = plan.otlpEndpoint ? new MetricsSender(plan.otlpEndpoint) : null;
  const stop = interruptSignal(plan.quiet, 'printing the connections');
  const started = Date.now();
  const deadline = plan.durationMs === undefined ? Infinity : started + plan.durationMs;
  try {
    while (!stop.signal.aborted) {
      const wait = Math.min(sender ? plan.exportIntervalMs : 10_000, deadline - Date.now());
      if (wait <= 0) break;
      try {
        await sleep(wait, undefined, { signal: stop.signal });
      } catch {
        break;
      }
      if (Date.now() >= deadline) break;
      const w = await session.takeWindow();
      totals.merge(w.tcp);
      if (sender) await sender.send(buildResourceMetrics(w));
    }
  } finally {
    stop.dispose();
  }
  const last = await session.stopWindow();
  totals.merge(last.tcp);
  if (sender) await sender.send(buildResourceMetrics(last));
  const rows = totals.snapshot();
  if (plan.json) for (const r of rows) process.stdout.write(`${JSON.stringify(tcpRowJson(r))}\n`);
  else process.stdout.write(`${tcpTextLines(rows).join('\n')}\n`);
  const st = session.stats().tcp;
  if (!plan.quiet && st) {
    const lost = st.ringBufferFull + st.droppedRecords + st.recordsMalformed;
    process.stderr.write(
      `ebpfprof: ${st.connects} connects, ${st.connectFailures} failed, ${st.closes} closed in ${((Date.now() - started) / 1000).toFixed(1)} s; ` +
        `lost ${lost} events, ${st.socksFull} connections not tracked (map full), ${st.untracked} closed connections opened before tracing${sender ? `; OTLP: ${sender.sent} sent, ${sender.failed} failed` : ''}\n`,
    );
  }
  if (sender && sender.failed > 0 && sender.sent === 0) throw new EbpfprofError('EOUTPUT', `no metrics reached ${sender.url}: ${sender.lastError}`);
  return 0;
}

export function registerTcp(program: Command): void {
  const command = program
    .command('tcp')
    .description('TCP connect latency, failures, lifetime, bytes, RTT, retransmits and resets per process and peer')
    .option('-p, --pid <pid>', 'only this process')
    .option('-d, --duration <time>', 'stop after this long (10s, 2m); default: until Ctrl-C')
    .option('--json', 'one JSON object per event, then one per process and peer (see the README)')
    .option('--events', 'print one line per connect, failed connect and closed connection')
    .option('--otlp-endpoint <url>', 'also send OTLP metrics (HTTP/protobuf), e.g. http://localhost:4318')
    .option('--export-interval <time>', 'how often to send OTLP metrics', '10s')
    .option('--attach <method>', 'try this attach method first (tp_btf, tracepoint, raw_tp, fentry, kprobe)')
    .option('-v, --verbose', 'say which attach method each hook uses and why')
    .option('-q, --quiet', 'no summary on stderr');
  addStrictModeOptions(command).action(async (flags: TcpFlags) => {
    process.exitCode = await runTcp(planTcp(flags));
  });
}
