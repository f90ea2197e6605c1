// SPDX-License-Identifier: Apache-2.0
/**
 * Sends export requests (gzip'ed OTLP Profiles, or OTLP metrics: one instance per signal) to the
 * collector over HTTP/protobuf, one at a time,
 * from a bounded queue: the agent hands a finished window over with enqueue() and never waits for
 * the network. A dead or slow collector means retries with exponential backoff (with jitter, and
 * Retry-After when the collector sends one); when the queue is full the oldest request is dropped,
 * counted and logged. Responses the OTLP specification calls retryable (429, 502, 503, 504, and
 * network errors) are retried; other errors drop the request with a counter and a log line, since
 * sending the same bytes again would fail the same way.
 */
import * as http from 'node:http';
import * as https from 'node:https';
import { decodeOtlpExportResponse } from '../encode/otlp-profiles';
import { errorMessage } from '../errors';
import { decodeMetricsExportResponse } from '../telemetry/otlp-http';

export interface ExportItem {
  /** gzip'ed ExportProfilesServiceRequest (ExportMetricsServiceRequest for the metrics signal). */
  body: Buffer;
  /** Profiles in the request; for the metrics signal, data points (what a partial success rejects). */
  profiles: number;
  /** Samples in the request; for the metrics signal, resources. */
  samples: number;
  /** Start of the window it holds, ms since the epoch (for log lines). */
  windowStartMs: number;
}

/** Which OTLP signal an exporter sends: decides how responses are read and how log lines count. */
export type ExportSignal = 'profiles' | 'metrics';

const UNITS: Record<ExportSignal, { items: string; records: string; response: (body: Buffer) => { rejected: number; message: string } }> = {
  profiles: {
    items: 'profiles',
    records: 'samples',
    response: (body) => {
      const r = decodeOtlpExportResponse(body);
      return { rejected: r.rejectedProfiles, message: r.errorMessage };
    },
  },
  metrics: {
    items: 'data points',
    records: 'resources',
    response: (body) => {
      const r = decodeMetricsExportResponse(body);
      return { rejected: r.rejectedDataPoints, message: r.message };
    },
  },
};

export interface ExporterOptions {
  /** Default 'profiles'. */
  signal?: ExportSignal;
  url: string;
  headers: Record<string, string>;
  timeoutMs: number;
  retryInitialMs: number;
  retryMaxMs: number;
  maxQueuedRequests: number;
  maxQueuedBytes: number;
  userAgent: string;
  log: (line: string) => void;
  /** Jitter source in [0, 1) (tests pass a fixed one). */
  random?: () => number;
}

export interface ExporterStats {
  /** Requests that the collector accepted (2xx). */
  requestsSucceeded: number;
  /** Attempts that failed and will be retried (network error, timeout, 429/502/503/504). */
  attemptsFailed: number;
  /** Requests dropped because the collector refused them for good (other 4xx/5xx). */
  requestsRejected: number;
  /** Requests dropped because the queue was full (oldest first). */
  requestsDropped: number;
  profilesExported: number;
  samplesExported: number;
  /** Profiles the collector reported as rejected in a partial success, or in rejected requests. */
  profilesRejected: number;
  profilesDropped: number;
  samplesDropped: number;
  /** Bytes written for every attempt: request line, headers and body (TCP/TLS overhead not counted). */
  bytesSent: number;
  queuedRequests: number;
  queuedBytes: number;
  consecutiveFailures: number;
  lastError: string;
  /** ms since the epoch of the last accepted request, 0 if none. */
  lastSuccessMs: number;
}

/** Status codes the OTLP/HTTP specification says to retry. */
const RETRYABLE = new Set([429, 502, 503, 504]);
const MAX_RESPONSE_BYTES = 64 * 1024;

type AttemptResult = { kind: 'ok'; rejectedProfiles: number; message: string } | { kind: 'retry'; reason: string; retryAfterMs: number | null } | { kind: 'reject'; reason: string };

export class OtlpHttpExporter {
  private readonly queue: ExportItem[] = [];
  private queuedBytes = 0;
  private sending = false;
  private backoffTimer: NodeJS.Timeout | null = null;
  private closed = false;
  private agent: http.Agent;
  readonly stats: ExporterStats = {
    requestsSucceeded: 0,
    attemptsFailed: 0,
    requestsRejected: 0,
    requestsDropped: 0,
    profilesExported: 0,
    samplesExported: 0,
    profilesRejected: 0,
    profilesDropped: 0,
    samplesDropped: 0,
    bytesSent: 0,
    queuedRequests: 0,
    queuedBytes: 0,
    consecutiveFailures: 0,
    lastError: '',
    lastSuccessMs: 0,
  };
  private idleWaiters: (() => void)[] = [];

  constructor(private options: ExporterOptions) {
    this.agent = newAgent(options.url);
  }

  /** New settings apply to the next attempt; pending requests go to the new URL. */
  reconfigure(options: Partial<Omit<ExporterOptions, 'log' | 'random' | 'userAgent' | 'signal'>>): void {
    const urlChanged = options.url !== undefined && options.url !== this.options.url;
    this.options = { ...this.options, ...options };
    if (urlChanged) {
      this.agent.destroy();
      this.agent = newAgent(this.options.url);
      // A new collector deserves a prompt first attempt.
      this.stats.consecutiveFailures = 0;
      if (this.backoffTimer) {
        clearTimeout(this.backoffTimer);
        this.backoffTimer = null;
      }
    }
    this.trim();
    this.pump();
  }

  get url(): string {
    return this.options.url;
  }

  private get units(): (typeof UNITS)[ExportSignal] {
    return UNITS[this.options.signal ?? 'profiles'];
  }

  /** "3 profiles, 120 samples" for log lines. */
  private count(item: ExportItem): string {
    return `${item.profiles} ${this.units.items}, ${item.samples} ${this.units.records}`;
  }

  enqueue(item: ExportItem): void {
    if (this.closed) return;
    this.queue.push(item);
    this.queuedBytes += item.body.length;
    this.trim();
    this.pump();
  }

  /** Drops the oldest requests (never the one being sent) until the queue is within its bounds. */
  private trim(): void {
    const first = this.sending ? 1 : 0;
    while (this.queue.length > first && (this.queue.length > this.options.maxQueuedRequests || this.queuedBytes > this.options.maxQueuedBytes)) {
      const [dropped] = this.queue.splice(first, 1);
      this.queuedBytes -= dropped!.body.length;
      this.stats.requestsDropped++;
      this.stats.profilesDropped += dropped!.profiles;
      this.stats.samplesDropped += dropped!.samples;
      this.options.log(
        `export buffer full (${this.queue.length} requests, ${(this.queuedBytes / 1048576).toFixed(1)} MiB pending while ${this.options.url} ${this.stats.lastError ? `fails: ${this.stats.lastError}` : 'is slow'}): ` +
          `dropped the oldest window (${new Date(dropped!.windowStartMs).toISOString()}, ${this.count(dropped!)}); ${this.stats.requestsDropped} dropped so far`,
      );
    }
    this.syncQueueStats();
  }

  private syncQueueStats(): void {
    this.stats.queuedRequests = this.queue.length;
    this.stats.queuedBytes = this.queuedBytes;
  }

  private pump(): void {
    if (this.sending || this.backoffTimer || this.closed || this.queue.length === 0) {
      if (!this.sending && this.queue.length === 0) this.notifyIdle();
      return;
    }
    this.sending = true;
    const item = this.queue[0]!;
    void this.attempt(item).then((r) => this.settle(item, r));
  }

  private settle(item: ExportItem, r: AttemptResult): void {
    this.sending = false;
    const done = (): void => {
      const i = this.queue.indexOf(item);
      if (i >= 0) {
        this.queue.splice(i, 1);
        this.queuedBytes -= item.body.length;
      }
      this.syncQueueStats();
    };
    if (r.kind === 'ok') {
      done();
      if (this.stats.consecutiveFailures > 0) {
        this.options.log(`export to ${this.options.url} works again after ${this.stats.consecutiveFailures} failed attempts; ${this.queue.length} pending requests follow`);
      }
      this.stats.consecutiveFailures = 0;
      this.stats.lastError = '';
      this.stats.requestsSucceeded++;
      this.stats.lastSuccessMs = Date.now();
      this.stats.profilesExported += item.profiles - r.rejectedProfiles;
      this.stats.samplesExported += item.samples;
      if (r.rejectedProfiles > 0 || r.message) {
        this.stats.profilesRejected += r.rejectedProfiles;
        this.options.log(`the collector at ${this.options.url} accepted the request partially: ${r.rejectedProfiles} ${this.units.items} rejected${r.message ? `: ${r.message}` : ''}`);
      }
    } else if (r.kind === 'reject') {
      done();
      this.stats.requestsRejected++;
      this.stats.profilesRejected += item.profiles;
      this.stats.lastError = r.reason;
      this.options.log(`the collector at ${this.options.url} refused an export request (${r.reason}); dropped it (${this.count(item)}): sending it again would fail the same way`);
    } else {
      this.stats.attemptsFailed++;
      this.stats.consecutiveFailures++;
      this.stats.lastError = r.reason;
      const delay = this.backoffMs(r.retryAfterMs);
      if (this.stats.consecutiveFailures === 1) {
        this.options.log(`export to ${this.options.url} failed (${r.reason}); retrying with backoff up to ${Math.round(this.options.retryMaxMs / 1000)} s, ${this.queue.length} requests pending`);
      }
      if (!this.closed) {
        this.backoffTimer = setTimeout(() => {
          this.backoffTimer = null;
          this.pump();
        }, delay);
        this.backoffTimer.unref();
      }
      this.notifyIdle();
      return;
    }
    this.pump();
  }

  private backoffMs(retryAfterMs: number | null): number {
    const { retryInitialMs, retryMaxMs } = this.options;
    const exp = Math.min(retryMaxMs, retryInitialMs * 2 ** Math.min(30, this.stats.consecutiveFailures - 1));
    const jittered = exp * (0.8 + 0.4 * (this.options.random ?? Math.random)());
    return Math.round(Math.min(retryMaxMs, Math.max(jittered, retryAfterMs ?? 0)));
  }

  private attempt(item: ExportItem): Promise<AttemptResult> {
    const url = new URL(this.options.url);
    const headers: Record<string, string> = {
      ...this.options.headers,
      'Content-Type': 'application/x-protobuf',
      'Content-Encoding': 'gzip',
      'Content-Length': String(item.body.length),
      'User-Agent': this.options.userAgent,
    };
    this.stats.bytesSent += item.body.length + requestHeadBytes(url, headers);
    const lib = url.protocol === 'https:' ? https : http;
    return new Promise<AttemptResult>((resolve) => {
      let settled = false;
      const finish = (r: AttemptResult): void => {
        if (!settled) {
          settled = true;
          resolve(r);
        }
      };
      const req = lib.request(url, { method: 'POST', headers, agent: this.agent, timeout: this.options.timeoutMs }, (res) => {
        const chunks: Buffer[] = [];
        let size = 0;
        res.on('data', (c: Buffer) => {
          size += c.length;
          if (size <= MAX_RESPONSE_BYTES) chunks.push(c);
        });
        res.on('error', (e) => finish({ kind: 'retry', reason: `reading the response: ${errorMessage(e)}`, retryAfterMs: null }));
        res.on('end', () => {
          const status = res.statusCode ?? 0;
          const body = Buffer.concat(chunks);
          if (status >= 200 && status < 300) {
            let rejectedProfiles = 0;
            let message = '';
            if (/protobuf/.test(String(res.headers['content-type'] ?? ''))) {
              try {
                ({ rejected: rejectedProfiles, message } = this.units.response(body));
              } catch {
                message = `the response body did not decode as an OTLP ${this.options.signal ?? 'profiles'} export response`;
              }
            }
            finish({ kind: 'ok', rejectedProfiles, message });
            return;
          }
          const reason = `HTTP ${status}${describeBody(body, res.headers['content-type'])}`;
          if (RETRYABLE.has(status)) finish({ kind: 'retry', reason, retryAfterMs: retryAfterMs(res.headers['retry-after']) });
          else finish({ kind: 'reject', reason });
        });
      });
      req.on('timeout', () => req.destroy(new Error(`no response within ${this.options.timeoutMs} ms`)));
      req.on('error', (e) => finish({ kind: 'retry', reason: errorMessage(e) || (e as NodeJS.ErrnoException).code || 'connection failed', retryAfterMs: null }));
      req.end(item.body);
    });
  }

  private notifyIdle(): void {
    if (this.sending || (this.queue.length > 0 && !this.backoffTimer)) return;
    const w = this.idleWaiters;
    this.idleWaiters = [];
    for (const f of w) f();
  }

  /**
   * Tries to send what is queued until `deadline` (ms since the epoch): at shutdown, pending windows
   * get one last chance. Resolves when the queue is empty, when sending waits on a backoff, or at the
   * deadline.
   */
  async flush(deadline: number): Promise<void> {
    if (this.backoffTimer && this.queue.length > 0) {
      clearTimeout(this.backoffTimer);
      this.backoffTimer = null;
    }
    this.pump();
    while (Date.now() < deadline && (this.sending || (this.queue.length > 0 && !this.backoffTimer))) {
      await new Promise<void>((resolve) => {
        this.idleWaiters.push(resolve);
        setTimeout(resolve, Math.max(1, deadline - Date.now())).unref();
      });
    }
  }

  /** Stops sending; what is still queued is counted as dropped. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    if (this.backoffTimer) clearTimeout(this.backoffTimer);
    this.backoffTimer = null;
    for (const item of this.queue.splice(this.sending ? 1 : 0)) {
      this.stats.requestsDropped++;
      this.stats.profilesDropped += item.profiles;
      this.stats.samplesDropped += item.samples;
    }
    this.queuedBytes = this.queue.reduce((n, i) => n + i.body.length, 0);
    this.syncQueueStats();
    this.agent.destroy();
  }
}

function newAgent(url: string): http.Agent {
  return url.startsWith('https:') ? new https.Agent({ keepAlive: true, maxSockets: 1 }) : new http.Agent({ keepAlive: true, maxSockets: 1 });
}

/** Size of "POST /path HTTP/1.1\r\n" plus the header lines node writes. */
function requestHeadBytes(url: URL, headers: Record<string, string>): number {
  let n = `POST ${url.pathname}${url.search} HTTP/1.1\r\nHost: ${url.host}\r\nConnection: keep-alive\r\n\r\n`.length;
  for (const [k, v] of Object.entries(headers)) n += k.length + 2 + Buffer.byteLength(v) + 2;
  return n;
}

/** Retry-After in seconds (or an HTTP date), as ms; null when absent or unreadable. */
export function retryAfterMs(value: string | string[] | undefined): number | null {
  const v = Array.isArray(value) ? value[0] : value;
  if (!v) return null;
  if (/^\s*\d+\s*$/.test(v)) return Number(v) * 1000;
  const t = Date.parse(v);
  return Number.isNaN(t) ? null : Math.max(0, t - Date.now());
}

function describeBody(body: Buffer, contentType: string | string[] | undefined): string {
  if (body.length === 0) return '';
  const ct = String(contentType ?? '');
  if (/protobuf/.test(ct)) return ''; // a google.rpc.Status: the status code says enough
  const text = body.toString('utf8', 0, Math.min(body.length, 300)).replace(/\s+/g, ' ').trim();
  return text ? `: ${text}` : '';
}
