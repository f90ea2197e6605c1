// SPDX-License-Identifier: Apache-2.0
/**
 * Two network namespaces made by a test, and processes in them, for TCP tracing on real traffic.
 *
 * - veth(): the namespaces joined by a veth pair (no delay), 10.231.N.1 <-> 10.231.N.2.
 * - delayed(): joined through delay-relay.py instead (TUN device in each, packets relayed with a
 *   known one-way delay and optional deterministic loss), because this kernel has no sch_netem for
 *   `tc netem`. Round trip = 2 x delay.
 * Everything is removed by close(); addresses exist only inside the test's own namespaces.
 */
import { ChildProcess, execFileSync, spawn } from 'node:child_process';
import * as path from 'node:path';
import { repoRoot } from './paths';

let counter = 0;

function ip(args: string[]): void {
  execFileSync('ip', args, { stdio: ['ignore', 'ignore', 'pipe'] });
}

export interface NetnsPair {
  a: string;
  b: string;
  addressA: string;
  addressB: string;
  /** Runs a command inside namespace `ns`; its pid is the command's (ip netns exec execs it). */
  spawnIn(ns: string, argv: string[]): ChildProcess;
  close(): Promise<void>;
}

function names(): { a: string; b: string; subnet: number } {
  counter++;
  const id = `${process.pid % 100000}-${counter}`;
  return { a: `ebpfA-${id}`, b: `ebpfB-${id}`, subnet: 10 + ((process.pid + counter) % 200) };
}

function makePair(a: string, b: string, addressA: string, addressB: string, cleanup: () => Promise<void>): NetnsPair {
  return {
    a,
    b,
    addressA,
    addressB,
    spawnIn: (ns, argv) => spawn('ip', ['netns', 'exec', ns, ...argv], { stdio: ['ignore', 'pipe', 'pipe'] }),
    close: async () => {
      await cleanup();
      for (const ns of [a, b]) {
        try {
          ip(['netns', 'del', ns]);
        } catch {
          // already gone
        }
      }
    },
  };
}

/** Two namespaces joined by a veth pair. */
export function vethPair(): NetnsPair {
  const { a, b, subnet } = names();
  const addressA = `10.231.${subnet}.1`;
  const addressB = `10.231.${subnet}.2`;
  ip(['netns', 'add', a]);
  ip(['netns', 'add', b]);
  ip(['link', 'add', `veth-${a}`.slice(0, 15), 'netns', a, 'type', 'veth', 'peer', 'name', `veth-${b}`.slice(0, 15), 'netns', b]);
  for (const [ns, addr] of [[a, addressA], [b, addressB]] as const) {
    const dev = `veth-${ns}`.slice(0, 15);
    ip(['-n', ns, 'addr', 'add', `${addr}/24`, 'dev', dev]);
    ip(['-n', ns, 'link', 'set', dev, 'up']);
    ip(['-n', ns, 'link', 'set', 'lo', 'up']);
  }
  return makePair(a, b, addressA, addressB, async () => {});
}

export interface DelayedPathOptions {
  /** One-way delay, ms (the round trip is twice this). */
  delayMs: number;
  /** Drop every Nth data segment from A to B (0: none). */
  dropEvery?: number;
}

/** Two namespaces joined through the userspace delay relay. */
export async function delayedPair(o: DelayedPathOptions): Promise<NetnsPair & { relayLog: () => string }> {
  const { a, b, subnet } = names();
  const addressA = `10.232.${subnet}.1`;
  const addressB = `10.232.${subnet}.2`;
  ip(['netns', 'add', a]);
  ip(['netns', 'add', b]);
  const relay = spawn('python3', [path.join(repoRoot, 'test', 'helpers', 'delay-relay.py'), '--ns-a', a, '--ns-b', b, '--delay-ms', String(o.delayMs), '--drop-every', String(o.dropEvery ?? 0)], {
    stdio: ['pipe', 'pipe', 'pipe'],
  });
  let log = '';
  relay.stderr!.on('data', (d: Buffer) => (log += d.toString()));
  await new Promise<void>((resolve, reject) => {
    let out = '';
    relay.stdout!.on('data', (d: Buffer) => {
      out += d.toString();
      if (out.includes('ready')) resolve();
    });
    relay.once('exit', (code) => reject(new Error(`delay-relay.py exited with ${code} before it was ready: ${log}`)));
  });
  for (const [ns, addr, peer] of [[a, addressA, addressB], [b, addressB, addressA]] as const) {
    ip(['-n', ns, 'link', 'set', 'lo', 'up']);
    ip(['-n', ns, 'addr', 'add', addr, 'peer', peer, 'dev', 'ebpt0']);
    ip(['-n', ns, 'link', 'set', 'ebpt0', 'up']);
  }
  const pair = makePair(a, b, addressA, addressB, async () => {
    if (relay.exitCode === null) {
      const gone = new Promise<void>((resolve) => relay.once('exit', () => resolve()));
      relay.stdin!.end();
      relay.kill('SIGTERM');
      await gone;
    }
  });
  return { ...pair, relayLog: () => log };
}
