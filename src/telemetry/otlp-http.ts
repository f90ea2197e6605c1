// SPDX-License-Identifier: Apache-2.0
/**
 * OTLP/HTTP with protobuf bodies (the OTLP spec's "binary protobuf encoding"): POST to
 * <endpoint>/v1/metrics. An endpoint without a path gets /v1/metrics, as OTEL_EXPORTER_OTLP_ENDPOINT
 * does; one with a path is used as given (OTEL_EXPORTER_OTLP_METRICS_ENDPOINT's meaning).
 */
import { ProtobufMetricsSerializer } from '@opentelemetry/otlp-transformer';
import type { ResourceMetrics } from '@opentelemetry/sdk-metrics';
import { EbpfprofError, errorMessage } from '../errors';
import { encodeMetricsRequest } from './otlp-metrics';

export function metricsUrl(endpoint: string): URL {
  let url: URL;
  try {
    url = new URL(endpoint);
  } catch {
    throw new EbpfprofError('EBADARG', `--otlp-endpoint must be a URL such as http://localhost:4318, got ${JSON.stringify(endpoint)}`);
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') {
    throw new EbpfprofError('EBADARG', `--otlp-endpoint must be an http:// or https:// URL (OTLP/HTTP), got ${JSON.stringify(endpoint)}`);
  }
  if (url.pathname === '' || url.pathname === '/') url.pathname = '/v1/metrics';
  return url;
}

export interface ExportResult {
  /** Bytes of the request body. */
  bytes: number;
  /** Data points the receiver said it rejected (partial success), 0 when all were taken. */
  rejectedDataPoints: number;
  /** The receiver's message on partial success. */
  message: string;
}

export interface OtlpMetricsExporterOptions {
  headers?: Record<string, string>;
  /** Per request (default 10 s). */
  timeoutMs?: number;
}

/** An ExportMetricsServiceResponse body: data points the receiver rejected (partial success), and its message. */
export function decodeMetricsExportResponse(body: Uint8Array): { rejectedDataPoints: number; message: string } {
  if (body.length === 0) return { rejectedDataPoints: 0, message: '' };
  const r = ProtobufMetricsSerializer.deserializeResponse(body);
  return { rejectedDataPoints: Number(r.partialSuccess?.rejectedDataPoints ?? 0), message: r.partialSuccess?.errorMessage ?? '' };
}

export class OtlpHttpMetricsExporter {
  readonly url: URL;
  exports = 0;
  failures = 0;

  constructor(
    endpoint: string,
    private readonly options: OtlpMetricsExporterOptions = {},
  ) {
    this.url = metricsUrl(endpoint);
  }

  /** Sends one request; throws EOUTPUT with the receiver's status or the network error. */
  async export(resources: ResourceMetrics[]): Promise<ExportResult> {
    if (resources.length === 0) return { bytes: 0, rejectedDataPoints: 0, message: '' };
    const body = encodeMetricsRequest(resources);
    let res: Response;
    try {
      res = await fetch(this.url, {
        method: 'POST',
        headers: { 'Content-Type': 'application/x-protobuf', ...this.options.headers },
        body,
        signal: AbortSignal.timeout(this.options.timeoutMs ?? 10_000),
      });
    } catch (e) {
      this.failures++;
      const cause = (e as { cause?: unknown }).cause;
      throw new EbpfprofError('EOUTPUT', `sending OTLP metrics to ${this.url.href} failed: ${errorMessage(cause ?? e)}; is an OTLP/HTTP receiver listening there?`, { cause: e });
    }
    const payload = new Uint8Array(await res.arrayBuffer());
    if (!res.ok) {
      this.failures++;
      throw new EbpfprofError('EOUTPUT', `sending OTLP metrics to ${this.url.href} failed: HTTP ${res.status} ${res.statusText}${payload.length ? `: ${Buffer.from(payload).toString('utf8', 0, 200)}` : ''}`);
    }
    this.exports++;
    let rejected = 0;
    let message = '';
    if (payload.length > 0 && (res.headers.get('content-type') ?? '').includes('protobuf')) {
      try {
        ({ rejectedDataPoints: rejected, message } = decodeMetricsExportResponse(payload));
      } catch {
        // a body we cannot read is not a failure of the export itself
      }
    }
    return { bytes: body.length, rejectedDataPoints: rejected, message };
  }
}
