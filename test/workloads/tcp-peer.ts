// SPDX-License-Identifier: Apache-2.0
/**
 * A TCP peer for the TCP tracing tests, run inside a test's network namespace:
 *   server PORT [--reply BYTES] [--abort]   accept; read until the client half-closes; reply; close.
 *                                           --abort: reset every connection at once (SO_LINGER 0).
 *   client HOST PORT --send BYTES [--count N] [--chunk BYTES] [--linger-ms MS]
 *                                           N connections one after another: send, half-close, read
 *                                           the reply to its end. Prints a JSON summary.
 *   refused HOST PORT                       one connect to a closed port; prints the error code.
 * Byte counts are exact, so the test can compare them with what the tracer reports.
 */
import * as net from 'node:net';

function arg(name: string, fallback: number): number {
  const i = process.argv.indexOf(name);
  return i >= 0 ? Number(process.argv[i + 1]) : fallback;
}

async function server(port: number): Promise<void> {
  const reply = arg('--reply', 0);
  const abort = process.argv.includes('--abort');
  const srv = net.createServer((s) => {
    if (abort) {
      s.resetAndDestroy();
      return;
    }
    s.on('data', () => {});
    s.on('end', () => s.end(Buffer.alloc(reply, 0x61)));
    s.on('error', () => {});
  });
  srv.listen(port, '0.0.0.0', () => process.stdout.write('listening\n'));
  process.on('SIGTERM', () => srv.close(() => process.exit(0)));
}

function once(host: string, port: number, bytes: number, chunk: number): Promise<{ sent: number; received: number; error: string }> {
  return new Promise((resolve) => {
    let received = 0;
    let sent = 0;
    const c = net.connect(port, host, () => {
      const buf = Buffer.alloc(Math.min(chunk, bytes), 0x62);
      while (sent < bytes) {
        const n = Math.min(buf.length, bytes - sent);
        c.write(n === buf.length ? buf : buf.subarray(0, n));
        sent += n;
      }
      c.end();
    });
    c.on('data', (d) => (received += d.length));
    c.on('close', () => resolve({ sent, received, error: '' }));
    c.on('error', (e: NodeJS.ErrnoException) => resolve({ sent, received, error: e.code ?? e.message }));
  });
}

async function client(host: string, port: number): Promise<void> {
  const count = arg('--count', 1);
  const bytes = arg('--send', 0);
  const chunk = arg('--chunk', 65536);
  const results = [];
  for (let i = 0; i < count; i++) results.push(await once(host, port, bytes, chunk));
  // --linger-ms: stay alive a while after the connections, for tests that read this process's /proc.
  await new Promise((r) => setTimeout(r, arg('--linger-ms', 0)));
  process.stdout.write(`${JSON.stringify(results)}\n`);
}

async function main(): Promise<void> {
  const [mode, a, b] = process.argv.slice(2);
  if (mode === 'server') return server(Number(a));
  if (mode === 'client') return client(a!, Number(b));
  if (mode === 'refused') {
    const r = await once(a!, Number(b), 0, 1);
    process.stdout.write(`${JSON.stringify(r)}\n`);
    return;
  }
  process.stderr.write('usage: tcp-peer server PORT | client HOST PORT --send N | refused HOST PORT\n');
  process.exit(2);
}

void main();
