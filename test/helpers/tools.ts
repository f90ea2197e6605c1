// SPDX-License-Identifier: Apache-2.0
// Reference tools the tests compare against, found where this machine and CI install them.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';

/** The Go toolchain (for `go tool pprof`): PATH first, then the official install location. */
export function goBinary(): string {
  for (const dir of [...(process.env.PATH ?? '').split(':'), '/usr/local/go/bin', '/usr/lib/go/bin']) {
    const p = path.join(dir || '.', 'go');
    if (fs.existsSync(p)) return p;
  }
  throw new Error('go is required for `go tool pprof` (the reference pprof consumer): install golang-go');
}

/**
 * The environment for building a Go tool from the module proxy into `cacheDir` (module and build
 * caches, GOBIN there): pinned versions, no cgo, the local toolchain, no workspace.
 */
export function goBuildEnv(cacheDir: string): NodeJS.ProcessEnv {
  return {
    ...process.env,
    GOMODCACHE: path.join(cacheDir, 'gomod'),
    GOCACHE: path.join(cacheDir, 'gocache'),
    GOBIN: path.join(cacheDir, 'bin'),
    GOFLAGS: '-mod=mod',
    GOTOOLCHAIN: 'local',
    GOPROXY: process.env['GOPROXY'] || 'https://proxy.golang.org',
    CGO_ENABLED: '0',
    GOWORK: 'off',
  };
}

export interface ToolBuild {
  binary: string;
  /** Seconds the build took, null when it came from the cache. */
  builtInSeconds: number | null;
}

/**
 * `binary` (in its own directory `dir`), built by `build(logFd)` on first use, under a lock so that
 * parallel test processes build it once, and kept for every later run on the machine. The build
 * writes `${binary}.tmp`, renamed when it succeeds. Throws with the build log's tail on failure.
 */
export async function buildOnce(what: string, dir: string, binary: string, build: (logFd: number) => void, info: Record<string, string> = {}): Promise<ToolBuild> {
  if (fs.existsSync(binary)) return { binary, builtInSeconds: null };
  fs.mkdirSync(path.dirname(dir), { recursive: true });
  const lock = `${dir}.lock`;
  for (;;) {
    try {
      fs.mkdirSync(lock);
      break;
    } catch {
      if (fs.existsSync(binary)) return { binary, builtInSeconds: null };
      // A lock older than the longest build is left over from a killed run.
      const age = Date.now() - (fs.statSync(lock, { throwIfNoEntry: false })?.mtimeMs ?? Date.now());
      if (age > 40 * 60_000) fs.rmSync(lock, { recursive: true, force: true });
      await sleep(2000);
    }
  }
  const started = Date.now();
  const logFile = path.join(dir, 'build.log');
  try {
    fs.mkdirSync(dir, { recursive: true });
    const log = fs.openSync(logFile, 'w');
    try {
      build(log);
    } finally {
      fs.closeSync(log);
    }
    fs.renameSync(`${binary}.tmp`, binary);
    const seconds = Math.round((Date.now() - started) / 100) / 10;
    fs.writeFileSync(path.join(dir, 'build-info.json'), `${JSON.stringify({ ...info, seconds, date: new Date().toISOString() })}\n`);
    return { binary, builtInSeconds: seconds };
  } catch (e) {
    const tail = fs.existsSync(logFile) ? fs.readFileSync(logFile, 'utf8').split('\n').slice(-15).join('\n') : '';
    throw new Error(`building ${what} failed (${(e as Error).message.split('\n')[0]}); log ${logFile}:\n${tail}`);
  } finally {
    fs.rmSync(lock, { recursive: true, force: true });
  }
}
