// SPDX-License-Identifier: Apache-2.0
/**
 * OpenTelemetry semantic-convention names ebpfprof writes: resource attributes of a process and its
 * container, pod and host; sample attributes of a thread; mapping build ids; frame types.
 */
import type { FrameKind } from '../../profile/model';

export const ATTR = {
  hostName: 'host.name',
  serviceName: 'service.name',
  processPid: 'process.pid',
  processExecutableName: 'process.executable.name',
  processExecutablePath: 'process.executable.path',
  processCommandLine: 'process.command_line',
  containerId: 'container.id',
  k8sPodUid: 'k8s.pod.uid',
  k8sPodName: 'k8s.pod.name',
  k8sNamespaceName: 'k8s.namespace.name',
  k8sContainerName: 'k8s.container.name',
  k8sNodeName: 'k8s.node.name',
  threadId: 'thread.id',
  threadName: 'thread.name',
  buildIdGnu: 'process.executable.build_id.gnu',
  frameType: 'profile.frame.type',
} as const;

/** A resource or dictionary attribute value; integers are written as int_value, others as double. */
export type AttributeValue = string | number | boolean;
export type Attributes = Record<string, AttributeValue>;

/** Interpreters and JIT runtimes by the basename of the executable that runs them. */
const RUNTIME_BY_EXECUTABLE: [RegExp, string][] = [
  [/^(node|nodejs|deno|bun)$/, 'v8js'],
  [/^java$/, 'jvm'],
  [/^dotnet$/, 'dotnet'],
  [/^python[0-9.]*$/, 'cpython'],
  [/^ruby[0-9.]*$/, 'ruby'],
  [/^perl[0-9.]*$/, 'perl'],
  [/^php[0-9.]*(-fpm[0-9.]*)?$/, 'php'],
  [/^beam(\.smp)?$/, 'beam'],
];

/**
 * profile.frame.type of a frame, or null when none applies. JIT and interpreted frames take the
 * runtime of the process's executable (node -> v8js, java -> jvm, ...): the well-known value must be
 * used where one applies; a JIT frame of an unknown runtime gets the custom value "jit".
 */
export function frameType(kind: FrameKind, executableName: string): string | null {
  switch (kind) {
    case 'kernel':
      return 'kernel';
    case 'native':
      return 'native';
    case 'go':
      return 'go';
    case 'jit':
    case 'interpreted':
      for (const [re, type] of RUNTIME_BY_EXECUTABLE) if (re.test(executableName)) return type;
      return kind === 'jit' ? 'jit' : null;
    case 'unknown':
      return null;
  }
}
