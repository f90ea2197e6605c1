// SPDX-License-Identifier: Apache-2.0
/**
 * Pod and container names from the kubelet's log directories, without the API server:
 *
 *   <logRoot>/pods/<namespace>_<pod name>_<pod uid>/<container name>/<restart>.log
 *   <logRoot>/containers/<pod name>_<namespace>_<container name>-<container id>.log   (symlinks)
 *
 * The first gives a pod uid its namespace and name (and its containers' names); the second gives a
 * container id its container name. Namespace and pod names are DNS labels/subdomains, which never
 * contain "_", so the names split unambiguously. Parsers are pure; PodLogIndex reads the
 * directories (names only, never the logs) and re-reads them when asked for something it has not
 * seen, at most once per `rescanMs`.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';

export interface PodLogDir {
  namespace: string;
  podName: string;
  podUid: string;
}

export interface ContainerLogName {
  podName: string;
  namespace: string;
  containerName: string;
  containerId: string;
}

const UID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;
const DNS_NAME = /^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$/;
const CONTAINER_NAME = /^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$/;

/** "<namespace>_<pod>_<uid>" → its parts, or null for anything else. */
export function parsePodLogDirName(name: string): PodLogDir | null {
  const parts = name.split('_');
  if (parts.length !== 3) return null;
  const [namespace, podName, podUid] = parts as [string, string, string];
  if (!DNS_NAME.test(namespace) || !DNS_NAME.test(podName) || !UID.test(podUid)) return null;
  return { namespace, podName, podUid };
}

/** "<pod>_<namespace>_<container>-<64 hex>.log" → its parts, or null for anything else. */
export function parseContainerLogName(name: string): ContainerLogName | null {
  const m = /^([^_]+)_([^_]+)_(.+)-([0-9a-f]{64})\.log$/.exec(name);
  if (!m) return null;
  const [, podName, namespace, containerName, containerId] = m as unknown as [string, string, string, string, string];
  if (!DNS_NAME.test(podName) || !DNS_NAME.test(namespace) || !CONTAINER_NAME.test(containerName)) return null;
  return { podName, namespace, containerName, containerId };
}

export interface PodInfo extends PodLogDir {
  /** Names of the pod's containers (directories under its log directory). */
  containers: string[];
}

export interface PodLogIndexStats {
  scans: number;
  /** Directory entries that did not have the kubelet's naming (skipped). */
  entriesSkipped: number;
  pods: number;
  containers: number;
}

export class PodLogIndex {
  private pods = new Map<string, PodInfo>();
  private containers = new Map<string, ContainerLogName>();
  private lastScan = -Infinity;
  readonly stats: PodLogIndexStats = { scans: 0, entriesSkipped: 0, pods: 0, containers: 0 };

  constructor(
    readonly logRoot: string,
    private readonly rescanMs = 2000,
    private readonly now: () => number = Date.now,
  ) {}

  pod(uid: string): PodInfo | null {
    return this.pods.get(uid) ?? (this.rescan() ? (this.pods.get(uid) ?? null) : null);
  }

  container(id: string): ContainerLogName | null {
    return this.containers.get(id) ?? (this.rescan() ? (this.containers.get(id) ?? null) : null);
  }

  /** Re-reads both directories unless that happened less than rescanMs ago; true if it did. */
  rescan(): boolean {
    const t = this.now();
    if (t - this.lastScan < this.rescanMs) return false;
    this.lastScan = t;
    this.stats.scans++;
    const pods = new Map<string, PodInfo>();
    for (const name of listDir(path.join(this.logRoot, 'pods'))) {
      const dir = parsePodLogDirName(name);
      if (!dir) {
        this.stats.entriesSkipped++;
        continue;
      }
      const containers = listDir(path.join(this.logRoot, 'pods', name)).filter((c) => CONTAINER_NAME.test(c));
      pods.set(dir.podUid, { ...dir, containers });
    }
    const containers = new Map<string, ContainerLogName>();
    for (const name of listDir(path.join(this.logRoot, 'containers'))) {
      const c = parseContainerLogName(name);
      if (c) containers.set(c.containerId, c);
      else this.stats.entriesSkipped++;
    }
    // Replaced, not merged: pods that are gone are forgotten (the map stays as large as the node).
    this.pods = pods;
    this.containers = containers;
    this.stats.pods = pods.size;
    this.stats.containers = containers.size;
    return true;
  }
}

function listDir(dir: string): string[] {
  try {
    return fs.readdirSync(dir);
  } catch {
    return [];
  }
}
