// SPDX-License-Identifier: Apache-2.0
/**
 * The load `verify` puts on the target in each phase: a built-in HTTP load (keep-alive GETs from a
 * fixed number of connections, as fast as the target answers, bounded in time and in requests), or
 * the user's command. Also: which TCP ports a process listens on (/proc/net/tcp{,6} and its socket
 * fds), to find where to send the HTTP load.
 */
import { spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as http from 'node:http';
import { performance } from 'node:perf_hooks';
import { setTimeout as sleep } from 'node:timers/promises';
import type { LoadSummary } from './report';

export interface ListeningSocket {
  address: string;
  port: number;
  inode: number;
}

/** LISTEN sockets of a /proc/net/tcp or tcp6 file (state 0A). */
export function parseProcNetTcp(text: string, v6: boolean): ListeningSocket[] {
  const out: ListeningSocket[] = [];
  for (const line of text.split('\n').slice(1)) {
    const f = line.trim().split(/\s+/);
    if (f.length < 10 || f[3] !== '0A') continue;
    const [addrHex, portHex] = f[1]!.split(':');
    if (!addrHex || !portHex) continue;
    out.push({ address: v6 ? ipv6Of(addrHex) : ipv4Of(addrHex), port: parseInt(portHex, 16), inode: Number(f[9]) });
  }
  return out;
}

function ipv4Of(hex: string): string {
  // Little-endian 32-bit word.
  const n = parseInt(hex, 16);
  return [n & 255, (n >>> 8) & 255, (n >>> 16) & 255, (n >>> 24) & 255].join('.');
}

function ipv6Of(hex: string): string {
  const words: string[] = [];
  for (let i = 0; i < 32; i += 8) {
    const w = hex.slice(i, i + 8);
    const le = w.match(/../g)!.reverse().join('');
    words.push(le.slice(0, 4), le.slice(4, 8));
  }
  const s = words.map((w) => parseInt(w, 16).toString(16)).join(':');
  if (s === '0:0:0:0:0:0:0:0') return '::';
  if (s === '0:0:0:0:0:0:0:1') return '::1';
  return s;
}

/** TCP ports `pid` listens on (through the socket fds it holds), loopback-reachable ones first. */
export function listeningPorts(pid: number, procRoot = '/proc'): ListeningSocket[] {
  const inodes = new Set<number>();
  try {
    for (const fd of fs.readdirSync(`${procRoot}/${pid}/fd`)) {
      try {
        const m = /^socket:\[(\d+)\]$/.exec(fs.readlinkSync(`${procRoot}/${pid}/fd/${fd}`));
        if (m) inodes.add(Number(m[1]));
      } catch {
        // closed meanwhile
      }
    }
  } catch {
    return [];
  }
  const all: ListeningSocket[] = [];
  for (const [file, v6] of [['tcp', false], ['tcp6', true]] as const) {
    try {
      all.push(...parseProcNetTcp(fs.readFileSync(`${procRoot}/${pid}/net/${file}`, 'latin1'), v6));
    } catch {
      // no IPv6
    }
  }
  const rank = (s: ListeningSocket): number => (s.address === '127.0.0.1' || s.address === '0.0.0.0' ? 0 : s.address === '::1' || s.address === '::' ? 1 : 2);
  return all.filter((s) => inodes.has(s.inode)).sort((a, b) => rank(a) - rank(b) || a.port - b.port);
}

/** Where to send HTTP requests for a listening socket (wildcards become loopback). */
export function loopbackUrl(s: ListeningSocket, path = '/'): string | null {
  if (s.address === '127.0.0.1' || s.address === '0.0.0.0') return `http://127.0.0.1:${s.port}${path}`;
  if (s.address === '::1' || s.address === '::') return `http://[::1]:${s.port}${path}`;
  return null;
}

export interface HttpLoadOptions {
  url: string;
  durationMs: number;
  /** Connections, each with one request in flight (default 4). */
  connections?: number;
  /** Stop after this many requests in total (default 5 million). */
  maxRequests?: number;
  /** Per-request timeout (default 5 s). */
  timeoutMs?: number;
  /** Ends the load early (Ctrl-C). */
  signal?: AbortSignal;
}

/** Latency quantiles from a sorted array of ms values. */
export function quantiles(sorted: readonly number[]): { mean: number; p50: number; p90: number; p99: number; max: number } {
  if (sorted.length === 0) return { mean: 0, p50: 0, p90: 0, p99: 0, max: 0 };
  const q = (p: number): number => sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil(p * sorted.length) - 1))]!;
  return { mean: sorted.reduce((a, b) => a + b, 0) / sorted.length, p50: q(0.5), p90: q(0.9), p99: q(0.99), max: sorted[sorted.length - 1]! };
}

/** Runs the HTTP load until its time or request bound, then closes every connection. */
export async function runHttpLoad(o: HttpLoadOptions): Promise<LoadSummary> {
  const connections = o.connections ?? 4;
  const maxRequests = o.maxRequests ?? 5_000_000;
  const agent = new http.Agent({ keepAlive: true, maxSockets: connections });
  const latencies: number[] = [];
  let errors = 0;
  let started = 0;
  const t0 = performance.now();
  const deadline = t0 + o.durationMs;
  const one = (): Promise<void> =>
    new Promise((resolve) => {
      const t = performance.now();
      const req = http.get(o.url, { agent, timeout: o.timeoutMs ?? 5000 }, (res) => {
        res.resume();
        res.on('end', () => {
          if ((res.statusCode ?? 0) >= 500) errors++;
          else latencies.push(performance.now() - t);
          resolve();
        });
        res.on('error', () => {
          errors++;
          resolve();
        });
      });
      req.on('timeout', () => req.destroy(new Error('timeout')));
      req.on('error', () => {
        errors++;
        resolve();
      });
    });
  const worker = async (): Promise<void> => {
    while (performance.now() < deadline && started < maxRequests && !o.signal?.aborted) {
      started++;
      await one();
    }
  };
  await Promise.all(Array.from({ length: connections }, worker));
  const elapsed = performance.now() - t0;
  agent.destroy();
  latencies.sort((a, b) => a - b);
  return {
    kind: 'http',
    description: `HTTP GET ${o.url}, ${connections} keep-alive connections`,
    requests: latencies.length + errors,
    errors,
    throughput: latencies.length / (elapsed / 1000),
    latencyMs: quantiles(latencies),
  };
}

/** Runs the user's load command (`sh -c`), ended with SIGTERM at the end of the phase if still running. */
export async function runCommandLoad(command: string, durationMs: number, env: NodeJS.ProcessEnv, signal?: AbortSignal): Promise<LoadSummary> {
  const child = spawn('/bin/sh', ['-c', command], { stdio: ['ignore', 'ignore', 'inherit'], env, detached: true });
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  const stop = (): void => {
    try {
      process.kill(-child.pid!, 'SIGTERM');
    } catch {
      // already gone
    }
  };
  const timer = setTimeout(stop, durationMs);
  signal?.addEventListener('abort', stop, { once: true });
  const t0 = Date.now();
  const code = await exited;
  clearTimeout(timer);
  signal?.removeEventListener('abort', stop);
  const rest = durationMs - (Date.now() - t0);
  if (rest > 0 && !signal?.aborted) await sleep(rest, undefined, signal ? { signal } : {}).catch(() => undefined);
  return { kind: 'command', description: `sh -c ${JSON.stringify(command)}`, exitCode: code };
}
