// SPDX-License-Identifier: Apache-2.0
/**
 * Container id and Kubernetes pod uid from a process's cgroup paths (/proc/PID/cgroup), the way the
 * kubelet and container runtimes name them; no API server involved. Pure: the caller reads the file.
 *
 * Shapes handled (cgroup v2 "0::<path>" lines first, then v1 "N:controllers:<path>" lines, as in a hybrid layout):
 *   systemd driver  /kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod<uid with _>.slice/cri-containerd-<id>.scope
 *                   (crio-<id>.scope, docker-<id>.scope, libpod-<id>.scope likewise)
 *   cgroupfs driver /kubepods/burstable/pod<uid>/<id>         (guaranteed pods: /kubepods/pod<uid>/<id>)
 *   plain Docker    /docker/<id>, /system.slice/docker-<id>.scope
 *   a reader in its own cgroup namespace sees paths relative to its root: /../../kubepods-...-pod<uid>.slice/...
 *   nested runtimes (kind: a node in a Docker container) /docker/<node>/kubepods/...: the innermost id wins
 * "crio-conmon-<id>.scope" is CRI-O's monitor process, not the container: it gets no container id.
 */

export interface CgroupIdentity {
  /** 64 lowercase hex digits, or null outside a container. */
  containerId: string | null;
  /** The pod's uid (canonical dashed form), or null outside a Kubernetes pod. */
  podUid: string | null;
}

const POD_UID = /(?:^|[-_])pod([0-9a-f]{8}[-_][0-9a-f]{4}[-_][0-9a-f]{4}[-_][0-9a-f]{4}[-_][0-9a-f]{12})(?:\.slice)?$/;
const CONTAINER_ID = /^(?:(?:[a-z][a-z0-9]*-)*?)([0-9a-f]{64})(?:\.scope)?$/;

/** The cgroup paths of the file: the v2 line first (if any), then the v1 lines in order. */
function cgroupPaths(text: string): string[] {
  const v2: string[] = [];
  const v1: string[] = [];
  for (const line of text.split('\n')) {
    const first = line.indexOf(':');
    const second = first < 0 ? -1 : line.indexOf(':', first + 1);
    if (second < 0) continue;
    const path = line.slice(second + 1).trim();
    if (line.slice(0, first) === '0' && second === first + 1) v2.push(path);
    else v1.push(path);
  }
  return [...v2, ...v1];
}

/** Identity from one cgroup path. */
export function parseCgroupPath(path: string): CgroupIdentity {
  let containerId: string | null = null;
  let podUid: string | null = null;
  for (const segment of path.split('/')) {
    if (segment === '' || segment === '..') continue;
    const pod = POD_UID.exec(segment);
    if (pod) {
      podUid = pod[1]!.replace(/_/g, '-');
      containerId = null; // a container id above the pod is the node's own (nested runtimes)
      continue;
    }
    const c = CONTAINER_ID.exec(segment);
    if (c && !segment.includes('conmon-')) containerId = c[1]!;
  }
  return { containerId, podUid };
}

/**
 * Identity from the text of /proc/PID/cgroup (v2, v1 or hybrid): the first path (v2 first) that
 * names both a pod and a container, else the first that names a container, else a pod.
 */
export function parseProcCgroup(text: string): CgroupIdentity {
  let best: CgroupIdentity = { containerId: null, podUid: null };
  for (const p of cgroupPaths(text)) {
    const id = parseCgroupPath(p);
    if (id.podUid !== null && id.containerId !== null) return id;
    if ((best.containerId === null && id.containerId !== null) || (best.containerId === null && best.podUid === null)) best = id;
  }
  return best;
}
