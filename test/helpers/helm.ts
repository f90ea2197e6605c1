// SPDX-License-Identifier: Apache-2.0
// Helm, to render and lint deploy/helm/ebpfprof in the tests: built from its Go module
// (helm.sh/helm/v4) through the Go module proxy at a pinned release, once per machine, into a
// directory outside the checkout.
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { buildOnce, goBinary, goBuildEnv, type ToolBuild } from './tools';

export const HELM_VERSION = '4.3.2';
export const HELM_CACHE_DIR = process.env['EBPFPROF_HELM_CACHE'] ?? '/var/cache/ebpfprof/helm';

/** The helm binary, built on first use. */
export async function helmBinary(): Promise<ToolBuild> {
  const go = goBinary();
  const env = goBuildEnv(HELM_CACHE_DIR);
  const goVersion = execFileSync(go, ['env', 'GOVERSION'], { encoding: 'utf8', env }).trim();
  const dir = path.join(HELM_CACHE_DIR, `helm-${HELM_VERSION}-${goVersion}`);
  const binary = path.join(dir, 'helm');
  return buildOnce(
    `helm ${HELM_VERSION}`,
    dir,
    binary,
    (log) => {
      execFileSync(go, ['install', '-trimpath', '-ldflags=-s -w', `helm.sh/helm/v4/cmd/helm@v${HELM_VERSION}`], { cwd: dir, env, stdio: ['ignore', log, log], timeout: 30 * 60_000 });
      fs.copyFileSync(path.join(HELM_CACHE_DIR, 'bin', 'helm'), `${binary}.tmp`);
      fs.chmodSync(`${binary}.tmp`, 0o755);
    },
    { version: HELM_VERSION, go: goVersion },
  );
}
