// SPDX-License-Identifier: Apache-2.0
// The exporter's HTTP behaviour against a local server that answers as a collector can (the real
// Collector cannot be made to answer 429, 503 or partial success on demand; agent-outage.test.ts
// stops and restarts a real one): retries with backoff for what OTLP calls retryable, drops for the
// rest, a bounded queue that drops the oldest with counters and log lines, delivery in order after
// recovery, and the request's headers and body.
import t from 'tap';
import * as http from 'node:http';
import { gunzipSync, gzipSync } from 'node:zlib';
import { setTimeout as sleep } from 'node:timers/promises';
import Long from 'long';
import { ExportItem, OtlpHttpExporter, retryAfterMs } from '../src/agent/exporter';
import { otlpProfilesSchema } from '../src/encode/otlp/schema';
import { freePort } from './helpers/servers';

interface Received {
  headers: http.IncomingHttpHeaders;
  url: string;
  body: Buffer;
}

type Answer = (r: Received) => { status: number; headers?: Record<string, string>; body?: Buffer | string } | 'hang';

async function server(port: number, answer: Answer): Promise<{ got: Received[]; close: () => Promise<void> }> {
  const got: Received[] = [];
  const s = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const r = { headers: req.headers, url: req.url ?? '', body: Buffer.concat(chunks) };
      got.push(r);
      const a = answer(r);
      if (a === 'hang') return;
      res.writeHead(a.status, a.headers ?? {});
      res.end(a.body ?? '');
    });
  });
  await new Promise<void>((resolve) => s.listen(port, '127.0.0.1', () => resolve()));
  return {
    got,
    close: () =>
      new Promise<void>((resolve) => {
        s.closeAllConnections();
        s.close(() => resolve());
      }),
  };
}

function item(n: number): ExportItem {
  return { body: gzipSync(Buffer.from(`request ${n}`)), profiles: 2, samples: 10 * n, windowStartMs: 1_700_000_000_000 + n };
}

async function until(cond: () => boolean, what: string): Promise<void> {
  for (let i = 0; i < 600 && !cond(); i++) await sleep(50);
  if (!cond()) throw new Error(`never happened: ${what}`);
}

function exporter(url: string, logs: string[], over: Partial<ConstructorParameters<typeof OtlpHttpExporter>[0]> = {}): OtlpHttpExporter {
  return new OtlpHttpExporter({
    url,
    headers: { authorization: 'Bearer t0ken' },
    timeoutMs: 5000,
    retryInitialMs: 20,
    retryMaxMs: 200,
    maxQueuedRequests: 10,
    maxQueuedBytes: 1 << 20,
    userAgent: 'ebpfprof/test',
    log: (l) => logs.push(l),
    random: () => 0.5,
    ...over,
  });
}

t.test('a request: POST, protobuf, gzip, custom headers; partial success is counted', async (t) => {
  const port = await freePort();
  const response = Buffer.from(otlpProfilesSchema().ExportProfilesServiceResponse.encode({ partialSuccess: { rejectedProfiles: Long.fromNumber(1), errorMessage: 'one too old' } }).finish());
  const srv = await server(port, () => ({ status: 200, headers: { 'Content-Type': 'application/x-protobuf' }, body: response }));
  t.teardown(srv.close);
  const logs: string[] = [];
  const x = exporter(`http://127.0.0.1:${port}/v1development/profiles`, logs);
  t.teardown(() => x.close());
  x.enqueue(item(1));
  await until(() => x.stats.requestsSucceeded === 1, 'success');
  const r = srv.got[0]!;
  t.equal(r.url, '/v1development/profiles');
  t.equal(r.headers['content-type'], 'application/x-protobuf');
  t.equal(r.headers['content-encoding'], 'gzip');
  t.equal(r.headers['authorization'], 'Bearer t0ken');
  t.equal(r.headers['user-agent'], 'ebpfprof/test');
  t.equal(gunzipSync(r.body).toString(), 'request 1');
  t.equal(x.stats.profilesExported, 1);
  t.equal(x.stats.profilesRejected, 1);
  t.match(logs.join('\n'), /accepted the request partially: 1 profiles rejected: one too old/);
  t.ok(x.stats.bytesSent > item(1).body.length, 'egress counts headers and body');
});

t.test('429/503 are retried (honouring Retry-After), 400 is dropped at once', async (t) => {
  const port = await freePort();
  const answers: ReturnType<Answer>[] = [
    { status: 503, headers: { 'Retry-After': '0' } },
    { status: 429, body: 'slow down' },
    { status: 200 },
    { status: 400, body: 'bad profile: stack_index out of range' },
  ];
  const srv = await server(port, () => answers.shift() ?? { status: 200 });
  t.teardown(srv.close);
  const logs: string[] = [];
  const x = exporter(`http://127.0.0.1:${port}/v1development/profiles`, logs);
  t.teardown(() => x.close());
  x.enqueue(item(1));
  await until(() => x.stats.requestsSucceeded === 1, 'delivered after two retries');
  t.equal(x.stats.attemptsFailed, 2);
  t.equal(srv.got.length, 3, 'the same request three times');
  t.ok(srv.got.every((g) => gunzipSync(g.body).toString() === 'request 1'));
  t.equal(x.stats.consecutiveFailures, 0);
  t.match(logs.join('\n'), /failed \(HTTP 503\); retrying with backoff/);
  t.match(logs.join('\n'), /works again after 2 failed attempts/);
  x.enqueue(item(2));
  await until(() => x.stats.requestsRejected === 1, 'rejected');
  t.equal(srv.got.length, 4, 'a 400 is not retried');
  t.equal(x.stats.profilesRejected, 2);
  t.match(logs.join('\n'), /refused an export request \(HTTP 400: bad profile: stack_index out of range\); dropped it/);
  t.equal(x.stats.queuedRequests, 0);
});

t.test('a dead collector: bounded queue drops the oldest, then delivers the rest in order', async (t) => {
  const port = await freePort(); // nothing listens yet
  const logs: string[] = [];
  const x = exporter(`http://127.0.0.1:${port}/v1development/profiles`, logs, { maxQueuedRequests: 2 });
  t.teardown(() => x.close());
  for (let i = 1; i <= 5; i++) x.enqueue(item(i));
  await until(() => x.stats.attemptsFailed >= 2, 'failed attempts');
  t.equal(x.stats.requestsDropped, 3, 'three dropped');
  t.equal(x.stats.profilesDropped, 6);
  // Request 1 was in flight when the others arrived: it is never dropped mid-send.
  t.equal(x.stats.samplesDropped, 20 + 30 + 40, 'the oldest three not in flight');
  t.equal(x.stats.queuedRequests, 2);
  t.equal(logs.filter((l) => /export buffer full .* dropped the oldest window/.test(l)).length, 3, 'one line per drop');
  t.match(logs.join('\n'), /ECONNREFUSED/);
  const srv = await server(port, () => ({ status: 200 }));
  t.teardown(srv.close);
  await until(() => x.stats.requestsSucceeded === 2, 'recovered');
  t.same(srv.got.map((g) => gunzipSync(g.body).toString()), ['request 1', 'request 5'], 'what was kept, in order');
  t.equal(x.stats.queuedRequests, 0);
  t.equal(x.stats.queuedBytes, 0);
});

t.test('the byte bound drops too; a hung collector times out and is retried', async (t) => {
  const port = await freePort();
  let hang = true;
  const srv = await server(port, () => (hang ? 'hang' : { status: 200 }));
  t.teardown(srv.close);
  const logs: string[] = [];
  const big = (n: number): ExportItem => ({ ...item(n), body: Buffer.alloc(600, n) });
  const x = exporter(`http://127.0.0.1:${port}/v1development/profiles`, logs, { maxQueuedBytes: 1300, timeoutMs: 300 });
  t.teardown(() => x.close());
  x.enqueue(big(1));
  x.enqueue(big(2));
  x.enqueue(big(3));
  t.equal(x.stats.requestsDropped, 1, 'three of 600 bytes exceed 1300: the oldest not in flight goes');
  await until(() => x.stats.attemptsFailed >= 1, 'timeout');
  t.match(x.stats.lastError, /no response within 300 ms/);
  hang = false;
  await until(() => x.stats.requestsSucceeded === 2, 'delivered');
  t.equal(x.stats.queuedRequests, 0);
});

t.test('flush at shutdown sends what is queued; close counts the rest as dropped', async (t) => {
  const port = await freePort();
  const srv = await server(port, () => ({ status: 200 }));
  const x = exporter(`http://127.0.0.1:${port}/v1development/profiles`, []);
  x.enqueue(item(1));
  x.enqueue(item(2));
  await x.flush(Date.now() + 10_000);
  t.equal(x.stats.requestsSucceeded, 2);
  await srv.close();
  x.enqueue(item(3));
  await x.flush(Date.now() + 300);
  x.close();
  t.equal(x.stats.requestsDropped, 1, 'undeliverable at close: counted');
  x.enqueue(item(4));
  t.equal(x.stats.queuedRequests, 0, 'nothing is queued after close');
});

t.test('Retry-After in seconds or as a date', async (t) => {
  t.equal(retryAfterMs('3'), 3000);
  t.equal(retryAfterMs(undefined), null);
  t.equal(retryAfterMs('soon'), null);
  const d = retryAfterMs(new Date(Date.now() + 60_000).toUTCString())!;
  t.ok(d > 50_000 && d <= 60_000);
});
