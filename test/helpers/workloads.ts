// SPDX-License-Identifier: Apache-2.0
// Builds the C workloads in test/workloads/ (hot spots known by construction) and starts them.
import { ChildProcess, execFileSync, spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { workloadsDir } from './paths';

export const buildDir = path.join(workloadsDir, 'build');

/**
 * Frame pointers in every function of our code, leaves included. -O0: GCC 12 drops the frame of leaf
 * functions at -O1/-O2 even with -mno-omit-leaf-frame-pointer, which would hide their caller.
 */
export const FRAME_POINTER_FLAGS = ['-O0', '-g', '-fno-omit-frame-pointer', '-fno-inline'];

/** Compiles test/workloads/<name>.c (once per flag set) and returns the binary's path; `libs` go after the source. */
export function buildWorkload(name: string, flags: string[] = FRAME_POINTER_FLAGS, variant = 'fp', libs: string[] = []): string {
  const src = path.join(workloadsDir, `${name}.c`);
  const out = path.join(buildDir, `${name}-${variant}`);
  fs.mkdirSync(buildDir, { recursive: true });
  const fresh = fs.existsSync(out) && fs.statSync(out).mtimeMs >= fs.statSync(src).mtimeMs;
  if (!fresh) execFileSync('gcc', [...flags, '-o', out, src, ...libs, '-lpthread'], { stdio: 'inherit' });
  return out;
}

export interface Workload {
  child: ChildProcess;
  pid: number;
  exited: Promise<number | null>;
}

export function startWorkload(binary: string, args: string[]): Workload {
  const child = spawn(binary, args, { stdio: 'ignore' });
  if (child.pid === undefined) throw new Error(`could not start ${binary}`);
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  return { child, pid: child.pid, exited };
}

/** Runs a test-owned command to completion and returns its stdout (throws with stderr on failure). */
export function run(cmd: string, args: string[], opts: { input?: string; timeoutMs?: number } = {}): string {
  return execFileSync(cmd, args, { encoding: 'utf8', input: opts.input, timeout: opts.timeoutMs ?? 120_000, maxBuffer: 64 << 20 });
}

export function waitForExit(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve();
  return new Promise((resolve) => child.once('exit', () => resolve()));
}

export { spawn };
