// SPDX-License-Identifier: Apache-2.0
/**
 * Decoder of the per-connection events bpf/tcp.bpf.c writes (struct tcp_event in bpf/tcp.h). Pure
 * over Buffers; the size is checked against the object's BTF in test/trace-records.test.ts.
 */
import { decodeCString, RecordError, TASK_COMM_LEN } from '../sampler/records';

export const TCP_EVENT_SIZE = 136 + TASK_COMM_LEN;

/** Byte offsets of struct tcp_event's fields (bpf/tcp.h): the decoder's and TcpAggregator.addRecord's. */
export const TCP_EVENT = {
  type: 0,
  tgid: 4,
  procStart: 8,
  time: 16,
  connectNs: 24,
  lifetimeNs: 32,
  bytesAcked: 40,
  bytesReceived: 48,
  rttSum: 56,
  rttCount: 64,
  rttMin: 68,
  rttMax: 72,
  srtt: 76,
  retransmits: 80,
  totalRetrans: 84,
  resetsReceived: 88,
  resetsSent: 90,
  family: 92,
  sport: 94,
  dport: 96,
  role: 98,
  oldstate: 99,
  error: 100,
  saddr: 104,
  daddr: 120,
  comm: 136,
} as const;

/** Values of type and role (bpf/tcp.h). */
export const TCP_EV_CONNECT = 1;
export const TCP_EV_CONNECT_FAILED = 2;
export const TCP_EV_CLOSE = 3;
export const TCP_ROLE_PASSIVE = 2;

/** u64 little-endian as a Number (exact below 2^53: nanoseconds for 104 days, bytes for 8 PiB). */
export function readU64(rec: Buffer, at: number): number {
  return rec.readUInt32LE(at) + rec.readUInt32LE(at + 4) * 4294967296;
}

/** enum tcp_stat, in order. */
export const TCP_STATS = [
  'stateChanges',
  'connects',
  'connectFailures',
  'closes',
  'filtered',
  'socksFull',
  'rttSamples',
  'retransmits',
  'resetsReceived',
  'resetsSent',
  'untracked',
  'ringBufferFull',
] as const;
export type TcpStats = Record<(typeof TCP_STATS)[number], number>;

export type TcpEventType = 'connect' | 'connect-failed' | 'close';
const TYPES: Record<number, TcpEventType> = { [TCP_EV_CONNECT]: 'connect', [TCP_EV_CONNECT_FAILED]: 'connect-failed', [TCP_EV_CLOSE]: 'close' };
export type TcpRole = 'unknown' | 'active' | 'passive';
const ROLES: TcpRole[] = ['unknown', 'active', 'passive'];

/** include/net/tcp_states.h, for the state a connection closed from. */
export const TCP_STATE_NAMES = ['', 'ESTABLISHED', 'SYN_SENT', 'SYN_RECV', 'FIN_WAIT1', 'FIN_WAIT2', 'TIME_WAIT', 'CLOSE', 'CLOSE_WAIT', 'LAST_ACK', 'LISTEN', 'CLOSING', 'NEW_SYN_RECV', 'BOUND_INACTIVE'];

/** errno values the kernel leaves in sk_err for failed or aborted connections (x86-64 Linux). */
const ERRNO_NAMES: Record<number, string> = {
  104: 'ECONNRESET',
  110: 'ETIMEDOUT',
  111: 'ECONNREFUSED',
  113: 'EHOSTUNREACH',
  101: 'ENETUNREACH',
  32: 'EPIPE',
  22: 'EINVAL',
};
export function errnoName(n: number): string {
  return n === 0 ? '' : (ERRNO_NAMES[n] ?? `errno ${n}`);
}

export interface TcpEvent {
  type: TcpEventType;
  /** Process id, 0 when not known (an accepted connection reset before its process touched it). */
  pid: number;
  /** Process start, ns since boot: (pid, startNs) names one process across pid reuse. */
  processStartNs: number;
  comm: string;
  timeNs: number;
  role: TcpRole;
  family: 4 | 6;
  localAddress: string;
  localPort: number;
  remoteAddress: string;
  remotePort: number;
  /** Active connections: SYN sent to established, ns (0 for accepted ones). */
  connectNs: number;
  /** close: established (or SYN sent) to close, ns; 0 when the start was not seen. */
  lifetimeNs: number;
  /** Bytes we sent that the peer acknowledged. */
  bytesSent: number;
  bytesReceived: number;
  /** tcp_probe samples of the smoothed RTT over the connection, us. */
  rttSamples: number;
  rttMinUs: number;
  rttMaxUs: number;
  rttMeanUs: number;
  /** The socket's smoothed RTT at the event, us (0: no RTT measured yet). */
  srttUs: number;
  /** tcp_retransmit_skb events seen for this connection. */
  retransmits: number;
  /** The kernel's own retransmit count (tcp_sock.total_retrans), including those before tracing started. */
  totalRetrans: number;
  resetsReceived: number;
  resetsSent: number;
  /** The state the connection left for CLOSE ('SYN_SENT' for a failed connect). */
  closedFrom: string;
  /** sk_err at the event: 'ECONNREFUSED', 'ETIMEDOUT', ... or ''. */
  error: string;
}

function formatAddress(buf: Buffer, offset: number, family: 4 | 6): string {
  if (family === 4) return `${buf[offset]}.${buf[offset + 1]}.${buf[offset + 2]}.${buf[offset + 3]}`;
  const groups: string[] = [];
  for (let i = 0; i < 8; i++) groups.push(buf.readUInt16BE(offset + 2 * i).toString(16));
  // IPv4-mapped addresses read better in dotted form.
  if (groups.slice(0, 5).every((g) => g === '0') && groups[5] === 'ffff') return `::ffff:${formatAddress(buf, offset + 12, 4)}`;
  // Longest run of zero groups as '::' (RFC 5952).
  let best = -1;
  let bestLen = 0;
  for (let i = 0; i < 8; ) {
    if (groups[i] !== '0') {
      i++;
      continue;
    }
    let j = i;
    while (j < 8 && groups[j] === '0') j++;
    if (j - i > bestLen && j - i > 1) {
      best = i;
      bestLen = j - i;
    }
    i = j;
  }
  if (best < 0) return groups.join(':');
  return `${groups.slice(0, best).join(':')}::${groups.slice(best + bestLen).join(':')}`;
}

export function decodeTcpEvent(rec: Buffer): TcpEvent {
  const o = TCP_EVENT;
  if (rec.length < TCP_EVENT_SIZE) throw new RecordError(`TCP event of ${rec.length} bytes, expected ${TCP_EVENT_SIZE}`);
  const type = TYPES[rec.readUInt32LE(o.type)];
  if (type === undefined) throw new RecordError(`TCP event of unknown type ${rec.readUInt32LE(o.type)}`);
  const fam = rec.readUInt16LE(o.family);
  if (fam !== 2 && fam !== 10) throw new RecordError(`TCP event of address family ${fam}`);
  const family = fam === 2 ? 4 : 6;
  const rttCount = rec.readUInt32LE(o.rttCount);
  const rttSum = readU64(rec, o.rttSum);
  const oldstate = rec[o.oldstate]!;
  return {
    type,
    pid: rec.readUInt32LE(o.tgid),
    processStartNs: readU64(rec, o.procStart),
    timeNs: readU64(rec, o.time),
    connectNs: readU64(rec, o.connectNs),
    lifetimeNs: readU64(rec, o.lifetimeNs),
    bytesSent: readU64(rec, o.bytesAcked),
    bytesReceived: readU64(rec, o.bytesReceived),
    rttSamples: rttCount,
    rttMinUs: rec.readUInt32LE(o.rttMin),
    rttMaxUs: rec.readUInt32LE(o.rttMax),
    rttMeanUs: rttCount > 0 ? rttSum / rttCount : 0,
    srttUs: rec.readUInt32LE(o.srtt),
    retransmits: rec.readUInt32LE(o.retransmits),
    totalRetrans: rec.readUInt32LE(o.totalRetrans),
    resetsReceived: rec.readUInt16LE(o.resetsReceived),
    resetsSent: rec.readUInt16LE(o.resetsSent),
    family,
    localPort: rec.readUInt16LE(o.sport),
    remotePort: rec.readUInt16LE(o.dport),
    role: ROLES[rec[o.role]!] ?? 'unknown',
    closedFrom: TCP_STATE_NAMES[oldstate] ?? `state ${oldstate}`,
    error: errnoName(rec.readInt32LE(o.error)),
    localAddress: formatAddress(rec, o.saddr, family),
    remoteAddress: formatAddress(rec, o.daddr, family),
    comm: decodeCString(rec, o.comm, TASK_COMM_LEN),
  };
}
