// SPDX-License-Identifier: Apache-2.0
/**
 * Container and Kubernetes resource attributes of a process, from what the node itself shows:
 * its cgroup path (container id, pod uid), the kubelet's log directories (namespace, pod and
 * container names) and the Downward API (node name). No API server, so it works in strict mode and
 * costs one small file read per new process.
 */
import { ATTR, Attributes } from '../encode/otlp/semconv';
import { parseProcCgroup } from './cgroup-path';
import { PodLogIndex } from './pod-logs';

export interface KubernetesAttributionOptions {
  /** Directory holding the kubelet's pods/ and containers/ log directories (default /var/log). */
  logRoot?: string;
  /** This node's name (Downward API), written as k8s.node.name on every process. */
  nodeName?: string | null;
}

export class KubernetesAttribution {
  readonly pods: PodLogIndex;
  private readonly nodeName: string | null;

  constructor(options: KubernetesAttributionOptions = {}) {
    this.pods = new PodLogIndex(options.logRoot ?? '/var/log');
    this.nodeName = options.nodeName ?? null;
  }

  /**
   * Attributes from the text of /proc/PID/cgroup: container.id, and for pods k8s.pod.uid plus, when
   * the log directories know the pod, k8s.namespace.name, k8s.pod.name and k8s.container.name.
   */
  attributes(cgroupText: string): Attributes {
    const out: Attributes = {};
    if (this.nodeName) out[ATTR.k8sNodeName] = this.nodeName;
    const id = parseProcCgroup(cgroupText);
    if (id.containerId) out[ATTR.containerId] = id.containerId;
    if (!id.podUid) return out;
    out[ATTR.k8sPodUid] = id.podUid;
    const pod = this.pods.pod(id.podUid);
    if (pod) {
      out[ATTR.k8sNamespaceName] = pod.namespace;
      out[ATTR.k8sPodName] = pod.podName;
    }
    // The container's name: exact from its log symlink, else the pod's only container.
    const byId = id.containerId ? this.pods.container(id.containerId) : null;
    if (byId) out[ATTR.k8sContainerName] = byId.containerName;
    else if (pod && pod.containers.length === 1) out[ATTR.k8sContainerName] = pod.containers[0]!;
    return out;
  }
}
