// SPDX-License-Identifier: Apache-2.0
// A TCP tracer collecting every event for a test, and the peer workload started in a namespace.
import type { ChildProcess } from 'node:child_process';
import * as path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import type { AttachMethod } from '../../src/system/kernel-features';
import { TcpTracer } from '../../src/trace/tcp';
import type { TcpEvent } from '../../src/trace/tcp-records';
import type { NetnsPair } from './netns';
import { repoRoot } from './paths';

export const tcpPeer = path.join(repoRoot, 'dist', 'test', 'workloads', 'tcp-peer.js');

export interface CollectingTracer {
  tracer: TcpTracer;
  events: TcpEvent[];
  /** Resolves with the first event matching `pred`, or null after `ms` (the caller asserts on it). */
  waitFor(pred: (e: TcpEvent) => boolean, ms?: number): Promise<TcpEvent | null>;
}

export async function collectTcp(options: { pid?: number; prefer?: AttachMethod } = {}): Promise<CollectingTracer> {
  const events: TcpEvent[] = [];
  const tracer = await TcpTracer.open({ ...options, onEvent: (e) => events.push(e) });
  return {
    tracer,
    events,
    waitFor: async (pred, ms = 15_000) => {
      const until = Date.now() + ms;
      for (;;) {
        const hit = events.find(pred);
        if (hit || Date.now() > until) return hit ?? null;
        await sleep(50);
      }
    },
  };
}

/**
 * Node in a namespace, through `env -i` so that tap's NODE_OPTIONS (which instrument every node it
 * sees spawned) cannot reach it; `ip netns exec` and `env` exec, so the pid is node's.
 */
export function spawnPeer(pair: NetnsPair, ns: string, args: string[]): ChildProcess {
  return pair.spawnIn(ns, ['env', '-i', `PATH=${process.env.PATH ?? '/usr/bin:/bin'}`, process.execPath, tcpPeer, ...args]);
}

export function outputOf(child: ChildProcess): Promise<string> {
  return new Promise((resolve) => {
    let out = '';
    child.stdout!.on('data', (d: Buffer) => (out += d.toString()));
    child.once('exit', () => resolve(out));
  });
}

export function waitForLine(child: ChildProcess, text: string): Promise<void> {
  return new Promise((resolve, reject) => {
    let out = '';
    child.stdout!.on('data', (d: Buffer) => {
      out += d.toString();
      if (out.includes(text)) resolve();
    });
    child.once('exit', (code) => reject(new Error(`peer exited (${code}) before printing ${text}`)));
  });
}
