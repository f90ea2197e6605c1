// SPDX-License-Identifier: Apache-2.0
/**
 * TCP events folded into rows per process and peer: how many connects and how long they took,
 * failures by error, connections closed with their lifetime, bytes, RTT, retransmits and resets.
 *
 * A row is (process, role, peer, service port): for connections we opened, the peer is the server
 * (address and port); for connections we accepted, the peer is the client's address and the port is
 * our own listening port (client ports are ephemeral and would make a row per connection). The
 * process is (pid, start time): a reused pid gets new rows.
 */
import { addValue, cloneHistogram, emptyHistogram, Log2Histogram, mergeHistogram } from './histogram';
import type { TcpEvent, TcpRole } from './tcp-records';

/** Slots of the user-space histograms: same layout as the kernel's (2^k ns upper bounds). */
export const TCP_HIST_SLOTS = 40;

export interface TcpRow {
  pid: number;
  processStartNs: number;
  comm: string;
  role: TcpRole;
  family: 4 | 6;
  peerAddress: string;
  /** The server's port: the peer's for active connections, ours for accepted ones. */
  servicePort: number;
  connects: number;
  connectLatency: Log2Histogram;
  /** Failed connects by error name ('ECONNREFUSED', 'ETIMEDOUT', '' when the kernel gave none). */
  failures: Record<string, number>;
  closes: number;
  lifetime: Log2Histogram;
  /** Smoothed RTT per closed connection (tcp_probe mean, else the socket's srtt at close), ns. */
  rtt: Log2Histogram;
  bytesSent: number;
  bytesReceived: number;
  retransmits: number;
  resetsReceived: number;
  resetsSent: number;
}

export function rowKey(e: TcpEvent): string {
  const port = e.role === 'passive' ? e.localPort : e.remotePort;
  return `${e.pid}:${e.processStartNs}|${e.role}|${e.remoteAddress}|${port}`;
}


/** The RTT a closed connection reports, ns (0 when none was measured). */
export function connectionRttNs(e: TcpEvent): number {
  return (e.rttSamples > 0 ? e.rttMeanUs : e.srttUs) * 1000;
}

export class TcpAggregator {
  private rows = new Map<string, TcpRow>();
  events = 0;

  add(e: TcpEvent): void {
    this.events++;
    const key = rowKey(e);
    let r = this.rows.get(key);
    if (r === undefined) {
      r = {
        pid: e.pid,
        processStartNs: e.processStartNs,
        comm: e.comm,
        role: e.role,
        family: e.family,
        peerAddress: e.remoteAddress,
        servicePort: e.role === 'passive' ? e.localPort : e.remotePort,
        connects: 0,
        connectLatency: emptyHistogram(TCP_HIST_SLOTS),
        failures: {},
        closes: 0,
        lifetime: emptyHistogram(TCP_HIST_SLOTS),
        rtt: emptyHistogram(TCP_HIST_SLOTS),
        bytesSent: 0,
        bytesReceived: 0,
        retransmits: 0,
        resetsReceived: 0,
        resetsSent: 0,
      };
      this.rows.set(key, r);
    }
    switch (e.type) {
      case 'connect':
        r.connects++;
        addValue(r.connectLatency, e.connectNs);
        break;
      case 'connect-failed':
        r.failures[e.error] = (r.failures[e.error] ?? 0) + 1;
        r.retransmits += e.retransmits;
        r.resetsReceived += e.resetsReceived;
        r.resetsSent += e.resetsSent;
        break;
      case 'close': {
        r.closes++;
        if (e.lifetimeNs > 0) addValue(r.lifetime, e.lifetimeNs);
        const rtt = connectionRttNs(e);
        if (rtt > 0) addValue(r.rtt, rtt);
        r.bytesSent += e.bytesSent;
        r.bytesReceived += e.bytesReceived;
        r.retransmits += e.retransmits;
        r.resetsReceived += e.resetsReceived;
        r.resetsSent += e.resetsSent;
        break;
      }
    }
  }

  /** Adds rows of another window (same keys merge). */
  merge(rows: TcpRow[]): void {
    for (const r of rows) {
      const key = `${r.pid}:${r.processStartNs}|${r.role}|${r.peerAddress}|${r.servicePort}`;
      const have = this.rows.get(key);
      if (!have) {
        this.rows.set(key, { ...r, connectLatency: cloneHistogram(r.connectLatency), lifetime: cloneHistogram(r.lifetime), rtt: cloneHistogram(r.rtt), failures: { ...r.failures } });
        continue;
      }
      have.connects += r.connects;
      mergeHistogram(have.connectLatency, r.connectLatency);
      for (const [k, n] of Object.entries(r.failures)) have.failures[k] = (have.failures[k] ?? 0) + n;
      have.closes += r.closes;
      mergeHistogram(have.lifetime, r.lifetime);
      mergeHistogram(have.rtt, r.rtt);
      have.bytesSent += r.bytesSent;
      have.bytesReceived += r.bytesReceived;
      have.retransmits += r.retransmits;
      have.resetsReceived += r.resetsReceived;
      have.resetsSent += r.resetsSent;
    }
  }

  /** Rows so far, busiest first. */
  snapshot(): TcpRow[] {
    return [...this.rows.values()].sort((a, b) => b.connects + b.closes - (a.connects + a.closes) || a.pid - b.pid);
  }

  /** Rows so far, and start a new window (the agent exports deltas). */
  take(): TcpRow[] {
    const out = this.snapshot();
    this.rows = new Map();
    return out;
  }
}
