// SPDX-License-Identifier: Apache-2.0
/**
 * Drives bpf/tcp.bpf.c: one event per connect, failed connect and closed connection, delivered in
 * batches from the ring buffer. Each hook attaches with the best method this kernel offers
 * (tp_btf, tracepoint, raw_tp, then fentry/kprobe on the kernel function where the tracepoint is
 * missing), plus the accept-time owner extra where fentry or kprobes exist.
 */
import { EbpfprofError } from '../errors';
import { bpfObjectPath, NativeRingBuffer, PERF_COUNT_SW_CPU_CLOCK, PERF_TYPE_SOFTWARE } from '../native/addon';
import { onlineCpus } from '../system/cpus';
import { splitRingBufferBatch, sumPerCpu, u32Key } from '../sampler/records';
import { AttachMethod } from '../system/kernel-features';
import { AttachedTracer, HookStatus, loadTracer, probeAttachAvailability, programsRunTimeNs, TraceHook } from './attach';
import { decodeTcpEvent, TCP_STATS, TcpEvent, TcpStats } from './tcp-records';

/** How often flush_events wakes the reader for events below the wakeup threshold: 10 Hz. */
const FLUSH_PERIOD_NS = 100_000_000;

export interface TcpTracerOptions {
  /** Only connections of this process (default: every process). */
  pid?: number;
  /**
   * Each event, decoded; or, for a consumer that reads the records itself (TcpAggregator.addRecord),
   * each raw record, which it returns false for when it is malformed (counted as decoding failures are).
   */
  onEvent: ((e: TcpEvent) => void) | { raw: (rec: Buffer) => boolean };
  prefer?: AttachMethod;
  ringBufferBytes?: number;
  objectPath?: string;
}

export interface TcpTracerStats extends TcpStats {
  recordsMalformed: number;
  droppedRecords: number;
}

/** The hooks of bpf/tcp.bpf.c and their programs per attach method. */
export const TCP_HOOKS: readonly TraceHook[] = [
  {
    name: 'sock:inet_sock_set_state',
    kernelFunction: 'tcp_set_state',
    programs: { tp_btf: 'btf_set_state', tracepoint: 'tp_set_state', raw_tp: 'raw_set_state', fentry: 'fe_set_state', kprobe: 'kp_set_state' },
    required: true,
  },
  {
    name: 'tcp:tcp_probe',
    kernelFunction: 'tcp_rcv_established',
    programs: { tp_btf: 'btf_probe', tracepoint: 'tp_probe', raw_tp: 'raw_probe', fentry: 'fe_probe', kprobe: 'kp_probe' },
    required: false,
  },
  {
    name: 'tcp:tcp_retransmit_skb',
    kernelFunction: 'tcp_retransmit_skb',
    programs: { tp_btf: 'btf_retransmit', tracepoint: 'tp_retransmit', raw_tp: 'raw_retransmit', fentry: 'fe_retransmit', kprobe: 'kp_retransmit' },
    required: false,
  },
  {
    name: 'tcp:tcp_receive_reset',
    kernelFunction: 'tcp_reset',
    programs: { tp_btf: 'btf_receive_reset', tracepoint: 'tp_receive_reset', raw_tp: 'raw_receive_reset', fentry: 'fe_receive_reset', kprobe: 'kp_receive_reset' },
    required: false,
  },
  {
    name: 'tcp:tcp_send_reset',
    programs: { tp_btf: 'btf_send_reset', tracepoint: 'tp_send_reset', raw_tp: 'raw_send_reset' },
    required: false,
  },
  {
    name: 'accept owner (inet_csk_accept)',
    kernelFunction: 'inet_csk_accept',
    programs: { fentry: 'fx_accept', kprobe: 'kr_accept' },
    required: false,
    extra: true,
  },
];

export class TcpTracer {
  private recordsMalformed = 0;
  private closed = false;
  private finalRunTimeNs = 0;
  private finalStats: TcpTracerStats | null = null;
  private ring: NativeRingBuffer | null = null;

  private constructor(private readonly t: AttachedTracer) {}

  get hooks(): HookStatus[] {
    return this.t.hooks;
  }

  static async open(options: TcpTracerOptions): Promise<TcpTracer> {
    if (options.pid !== undefined && !(Number.isInteger(options.pid) && options.pid > 0)) {
      throw new EbpfprofError('EBADARG', `--pid must be a positive integer, got ${options.pid}`);
    }
    const { availability, tracepointExists } = await probeAttachAvailability();
    // Batched wakeups need the 10 Hz flusher, a perf_event program (see tcp.bpf.c).
    const batch = availability.perfEvent;
    const t = loadTracer({
      objectPath: options.objectPath ?? bpfObjectPath('tcp'),
      what: 'TCP tracing',
      hooks: [...TCP_HOOKS],
      availability,
      tracepointExists,
      ...(options.prefer ? { prefer: options.prefer } : {}),
      ...(batch ? { alwaysLoad: ['flush_events'] } : {}),
      configure: (obj) => {
        obj.setGlobal('targ_tgid', u32Key(options.pid ?? 0));
        obj.setGlobal('batch_wakeups', Buffer.from([batch ? 1 : 0]));
        if (options.ringBufferBytes) obj.setMaxEntries('events', options.ringBufferBytes);
      },
    });
    const tracer = new TcpTracer(t);
    const onEvent = options.onEvent;
    try {
      if (batch) {
        t.links.push(
          t.obj.attachPerfEvent('flush_events', { type: PERF_TYPE_SOFTWARE, config: PERF_COUNT_SW_CPU_CLOCK, period: FLUSH_PERIOD_NS, cpus: [onlineCpus()[0] ?? 0] }),
        );
      }
      tracer.ring = t.obj.openRingBuffer('events', (batch, records) => tracer.onBatch(batch, records, onEvent), { maxQueuedBatches: 256 });
    } catch (e) {
      for (const l of t.links) l.close();
      t.obj.close();
      throw e;
    }
    return tracer;
  }

  private onBatch(batch: Buffer, records: number, onEvent: TcpTracerOptions['onEvent']): void {
    if (typeof onEvent !== 'function') {
      for (const rec of splitRingBufferBatch(batch, records)) if (!onEvent.raw(rec)) this.recordsMalformed++;
      return;
    }
    for (const rec of splitRingBufferBatch(batch, records)) {
      let e: TcpEvent;
      try {
        e = decodeTcpEvent(rec);
      } catch {
        this.recordsMalformed++;
        continue;
      }
      onEvent(e);
    }
  }

  /** In-kernel run time of the programs, ns (0 unless run-time statistics are on); kept after close(). */
  runTimeNs(): number {
    if (this.closed) return this.finalRunTimeNs;
    return programsRunTimeNs(this.t);
  }

  stats(): TcpTracerStats {
    if (this.finalStats) return { ...this.finalStats, recordsMalformed: this.recordsMalformed };
    const out = { recordsMalformed: this.recordsMalformed, droppedRecords: this.ring?.stats().droppedRecords ?? 0 } as TcpTracerStats;
    TCP_STATS.forEach((name, i) => {
      out[name] = sumPerCpu(this.t.obj.mapLookup('stats', u32Key(i)) ?? Buffer.alloc(0));
    });
    return out;
  }

  /** Connections open now (tracked since their start, or seen mid-life): how many. */
  openConnections(): number {
    return this.closed ? 0 : this.t.obj.mapEntries('socks').count;
  }

  /** Detaches; resolves once every event read before was delivered. */
  async close(): Promise<void> {
    if (this.closed) return;
    for (const l of this.t.links) l.close();
    await this.ring?.close();
    this.finalStats = this.stats();
    this.finalRunTimeNs = this.runTimeNs();
    this.closed = true;
    this.t.obj.close();
  }
}
