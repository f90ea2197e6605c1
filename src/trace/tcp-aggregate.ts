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
import { decodeTcpEvent, errnoName, readU64, TCP_EV_CLOSE, TCP_EV_CONNECT, TCP_EV_CONNECT_FAILED, TCP_EVENT, TCP_EVENT_SIZE, TCP_ROLE_PASSIVE, type TcpEvent, type TcpRole } from './tcp-records';

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
  /** The same rows by the raw fields of their key (addRecord), so a known row needs no decoding. */
  private rawIndex = new Map<string, TcpRow>();
  events = 0;

  /**
   * Called with the event that opens a row (its process's first event in a window, or the first
   * with a new peer): a consumer that needs the process while it lives (the agent reads its
   * resource attributes) sees every process without a callback per event.
   */
  onNewRow: ((e: TcpEvent) => void) | null = null;

  private rowOf(e: TcpEvent): TcpRow {
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
      this.onNewRow?.(e);
    }
    return r;
  }

  add(e: TcpEvent): void {
    const r = this.rowOf(e);
    const type = e.type === 'connect' ? TCP_EV_CONNECT : e.type === 'connect-failed' ? TCP_EV_CONNECT_FAILED : TCP_EV_CLOSE;
    this.apply(r, type, e.connectNs, e.lifetimeNs, connectionRttNs(e), e.bytesSent, e.bytesReceived, e.retransmits, e.resetsReceived, e.resetsSent, e.error);
  }

  /**
   * add(decodeTcpEvent(rec)) without building the event when its row exists already: the fields
   * the row needs are read from the record where they lie. This is the per-event path of a
   * connection-heavy host (one record per connect and per close), where decoding every record into
   * an object with formatted addresses cost as much as everything else the tracer does in
   * JavaScript. Returns false, adding nothing, for a record decodeTcpEvent would refuse.
   */
  addRecord(rec: Buffer): boolean {
    const o = TCP_EVENT;
    if (rec.length < TCP_EVENT_SIZE) return false;
    const type = rec.readUInt32LE(o.type);
    const family = rec.readUInt16LE(o.family);
    if (type < TCP_EV_CONNECT || type > TCP_EV_CLOSE || (family !== 2 && family !== 10)) return false;
    const role = rec[o.role]!;
    const port = role === TCP_ROLE_PASSIVE ? rec.readUInt16LE(o.sport) : rec.readUInt16LE(o.dport);
    const d = o.daddr;
    const peer = family === 2 ? `${rec.readUInt32LE(d)}` : `${rec.readUInt32LE(d)}.${rec.readUInt32LE(d + 4)}.${rec.readUInt32LE(d + 8)}.${rec.readUInt32LE(d + 12)}`;
    const raw = `${rec.readUInt32LE(o.tgid)}:${rec.readUInt32LE(o.procStart)}:${rec.readUInt32LE(o.procStart + 4)}|${role}|${family}|${peer}|${port}`;
    let r = this.rawIndex.get(raw);
    if (r === undefined) {
      r = this.rowOf(decodeTcpEvent(rec));
      this.rawIndex.set(raw, r);
    }
    const rttCount = rec.readUInt32LE(o.rttCount);
    const rttNs = (rttCount > 0 ? readU64(rec, o.rttSum) / rttCount : rec.readUInt32LE(o.srtt)) * 1000;
    const error = type === TCP_EV_CONNECT_FAILED ? errnoName(rec.readInt32LE(o.error)) : '';
    this.apply(r, type, readU64(rec, o.connectNs), readU64(rec, o.lifetimeNs), rttNs, readU64(rec, o.bytesAcked), readU64(rec, o.bytesReceived), rec.readUInt32LE(o.retransmits), rec.readUInt16LE(o.resetsReceived), rec.readUInt16LE(o.resetsSent), error);
    return true;
  }

  private apply(r: TcpRow, type: number, connectNs: number, lifetimeNs: number, rttNs: number, bytesSent: number, bytesReceived: number, retransmits: number, resetsReceived: number, resetsSent: number, error: string): void {
    this.events++;
    switch (type) {
      case TCP_EV_CONNECT:
        r.connects++;
        addValue(r.connectLatency, connectNs);
        break;
      case TCP_EV_CONNECT_FAILED:
        r.failures[error] = (r.failures[error] ?? 0) + 1;
        r.retransmits += retransmits;
        r.resetsReceived += resetsReceived;
        r.resetsSent += resetsSent;
        break;
      case TCP_EV_CLOSE:
        r.closes++;
        if (lifetimeNs > 0) addValue(r.lifetime, lifetimeNs);
        if (rttNs > 0) addValue(r.rtt, rttNs);
        r.bytesSent += bytesSent;
        r.bytesReceived += bytesReceived;
        r.retransmits += retransmits;
        r.resetsReceived += resetsReceived;
        r.resetsSent += resetsSent;
        break;
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
    this.rawIndex = new Map();
    return out;
  }
}
