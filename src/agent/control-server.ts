// SPDX-License-Identifier: Apache-2.0
/**
 * The agent's local HTTP endpoint, on a loopback address only:
 *
 *   GET  /healthz   200 "ok" while sampling works, 503 with the reason otherwise
 *   GET  /metrics   self-metrics (Prometheus text format)
 *   GET  /status    everything the agent knows about itself (JSON)
 *   GET  /config    the effective configuration and the runtime overrides (JSON)
 *   PUT  /config    runtime overrides, a JSON object with any configuration keys
 *                   ({"frequencyHz": 9, "interval": "30s", "filter": {...}}); they win over the file
 *                   and flags until DELETE /config clears them
 *
 * It changes what the agent does, so besides the loopback bind it refuses requests from non-loopback
 * peers, Host headers that are not a loopback name (DNS rebinding), and changes that are not
 * application/json (a web page cannot send those to another origin without a CORS preflight, which
 * is never answered).
 */
import * as http from 'node:http';
import type { AddressInfo } from 'node:net';
import { EbpfprofError, errorMessage } from '../errors';

export interface ControlHandlers {
  health(): { ok: boolean; detail: Record<string, unknown> };
  metrics(): string;
  status(): Record<string, unknown>;
  config(): Record<string, unknown>;
  /** Applies runtime overrides; throws EbpfprofError('EBADARG') for bad input. */
  setOverrides(body: unknown): Promise<Record<string, unknown>>;
  clearOverrides(): Promise<Record<string, unknown>>;
}

const MAX_BODY = 64 * 1024;
const LOOPBACK_PEER = /^(127\.\d+\.\d+\.\d+|::1|::ffff:127\.\d+\.\d+\.\d+)$/;
const LOOPBACK_HOST = /^(localhost|127\.\d+\.\d+\.\d+|\[::1\])(:\d+)?$/i;

export class ControlServer {
  private constructor(
    private readonly server: http.Server,
    readonly address: string,
  ) {}

  /** Listens on `listen` ("127.0.0.1:8790"; port 0 picks a free one, see `address`). */
  static async start(listen: string, handlers: ControlHandlers): Promise<ControlServer> {
    const i = listen.lastIndexOf(':');
    const host = listen.slice(0, i).replace(/^\[(.*)\]$/, '$1');
    const port = Number(listen.slice(i + 1));
    const server = http.createServer((req, res) => void handle(req, res, handlers));
    server.keepAliveTimeout = 5000;
    await new Promise<void>((resolve, reject) => {
      server.once('error', (e: NodeJS.ErrnoException) =>
        reject(
          new EbpfprofError(
            'EBADARG',
            `cannot listen on ${listen} for the control endpoint: ${e.code === 'EADDRINUSE' ? 'the port is in use' : errorMessage(e)}; choose another with control.listen (or off)`,
          ),
        ),
      );
      server.listen(port, host, () => resolve());
    });
    const a = server.address() as AddressInfo;
    return new ControlServer(server, `${a.family === 'IPv6' ? `[${a.address}]` : a.address}:${a.port}`);
  }

  close(): Promise<void> {
    this.server.closeAllConnections();
    return new Promise((resolve) => this.server.close(() => resolve()));
  }
}

function send(res: http.ServerResponse, status: number, body: string, type = 'text/plain; charset=utf-8'): void {
  res.writeHead(status, { 'Content-Type': type, 'Cache-Control': 'no-store', 'X-Content-Type-Options': 'nosniff' });
  res.end(body);
}

function json(res: http.ServerResponse, status: number, value: unknown): void {
  send(res, status, `${JSON.stringify(value, null, 2)}\n`, 'application/json');
}

function readBody(req: http.IncomingMessage): Promise<string> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    req.on('data', (c: Buffer) => {
      size += c.length;
      if (size > MAX_BODY) {
        reject(new EbpfprofError('EBADARG', `request body larger than ${MAX_BODY} bytes`));
        req.destroy();
      } else chunks.push(c);
    });
    req.on('end', () => resolve(Buffer.concat(chunks).toString('utf8')));
    req.on('error', reject);
  });
}

async function handle(req: http.IncomingMessage, res: http.ServerResponse, h: ControlHandlers): Promise<void> {
  try {
    if (!LOOPBACK_PEER.test(req.socket.remoteAddress ?? '')) return send(res, 403, 'the control endpoint answers loopback clients only\n');
    if (!LOOPBACK_HOST.test(req.headers.host ?? '')) return send(res, 403, 'Host must be a loopback name (localhost, 127.0.0.1, [::1])\n');
    const url = new URL(req.url ?? '/', 'http://localhost');
    const route = `${req.method} ${url.pathname}`;
    switch (route) {
      case 'GET /healthz': {
        const r = h.health();
        return r.ok ? send(res, 200, 'ok\n') : json(res, 503, r.detail);
      }
      case 'GET /metrics':
        return send(res, 200, h.metrics(), 'text/plain; version=0.0.4; charset=utf-8');
      case 'GET /status':
        return json(res, 200, h.status());
      case 'GET /config':
        return json(res, 200, h.config());
      case 'PUT /config':
      case 'POST /config': {
        if (!/^application\/json\b/i.test(req.headers['content-type'] ?? '')) return send(res, 415, 'send the overrides as Content-Type: application/json\n');
        let body: unknown;
        try {
          body = JSON.parse(await readBody(req));
        } catch (e) {
          return json(res, 400, { error: e instanceof EbpfprofError ? e.message : `the body is not JSON: ${errorMessage(e)}` });
        }
        return json(res, 200, await h.setOverrides(body));
      }
      case 'DELETE /config':
        return json(res, 200, await h.clearOverrides());
      default:
        return send(res, 404, 'not found: GET /healthz, /metrics, /status, /config; PUT or DELETE /config\n');
    }
  } catch (e) {
    if (e instanceof EbpfprofError && e.code === 'EBADARG') return json(res, 400, { error: e.message });
    return json(res, 500, { error: errorMessage(e) });
  }
}
