// SPDX-License-Identifier: Apache-2.0
/**
 * The agent's own node and pod from the Kubernetes Downward API: environment variables set from
 * fieldRefs (spec.nodeName is only available that way) and, for the pod's own metadata, files of a
 * downwardAPI volume. deploy/daemonset.yaml sets both. Pure over the environment and a file reader.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';

export interface OwnIdentity {
  nodeName: string | null;
  podName: string | null;
  podNamespace: string | null;
  podUid: string | null;
}

/** Environment variables read, first match wins (K8S_* is what deploy/ sets; the others are common). */
export const DOWNWARD_ENV = {
  nodeName: ['K8S_NODE_NAME', 'NODE_NAME'],
  podName: ['K8S_POD_NAME', 'POD_NAME'],
  podNamespace: ['K8S_POD_NAMESPACE', 'POD_NAMESPACE'],
  podUid: ['K8S_POD_UID', 'POD_UID'],
} as const;

/** Files of a downwardAPI volume (metadata.name, metadata.namespace, metadata.uid). */
export const DOWNWARD_FILES = { podName: 'name', podNamespace: 'namespace', podUid: 'uid' } as const;

export const DEFAULT_DOWNWARD_DIR = '/etc/podinfo';

export function ownIdentity(env: NodeJS.ProcessEnv, readFile: (name: string) => string | null): OwnIdentity {
  const fromEnv = (names: readonly string[]): string | null => {
    for (const n of names) {
      const v = env[n]?.trim();
      if (v) return v;
    }
    return null;
  };
  const fromFile = (name: string): string | null => readFile(name)?.trim() || null;
  return {
    nodeName: fromEnv(DOWNWARD_ENV.nodeName),
    podName: fromEnv(DOWNWARD_ENV.podName) ?? fromFile(DOWNWARD_FILES.podName),
    podNamespace: fromEnv(DOWNWARD_ENV.podNamespace) ?? fromFile(DOWNWARD_FILES.podNamespace),
    podUid: fromEnv(DOWNWARD_ENV.podUid) ?? fromFile(DOWNWARD_FILES.podUid),
  };
}

/** ownIdentity from this process's environment and the volume mounted at `dir`. */
export function readOwnIdentity(dir = DEFAULT_DOWNWARD_DIR, env: NodeJS.ProcessEnv = process.env): OwnIdentity {
  return ownIdentity(env, (name) => {
    try {
      return fs.readFileSync(path.join(dir, name), 'utf8').slice(0, 4096);
    } catch {
      return null;
    }
  });
}
