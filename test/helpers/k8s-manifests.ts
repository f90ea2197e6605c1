// SPDX-License-Identifier: Apache-2.0
// deploy/ as the tests read it: the plain manifests (every YAML file outside the Helm chart), the
// kustomization tree, the Kubernetes schema classes (kubernetes-models), and the DaemonSet checks
// against the minimum docs/deploy.md documents — shared by the plain manifests' and the chart's tests.
import * as fs from 'node:fs';
import * as path from 'node:path';
import type { Test } from 'tap';
import { parseAllDocuments, parse as parseYaml } from 'yaml';
import { repoRoot } from './paths';

export const DEPLOY = path.join(repoRoot, 'deploy');
/** The Helm chart: templates, not YAML, until rendered. */
export const HELM_CHART = path.join(DEPLOY, 'helm', 'ebpfprof');

/** The capabilities docs/deploy.md documents, and the only ones the DaemonSet may add. */
export const MINIMUM_CAPABILITIES = ['BPF', 'PERFMON', 'SYSLOG', 'DAC_READ_SEARCH'];

export interface K8sObject {
  apiVersion: string;
  kind: string;
  metadata: { name: string; namespace?: string; labels?: Record<string, string>; annotations?: Record<string, string> };
  [k: string]: unknown;
}

/** The YAML files under `dir`, Helm charts (directories with a Chart.yaml) left out. */
export function yamlFiles(dir: string): string[] {
  if (fs.existsSync(path.join(dir, 'Chart.yaml'))) return [];
  return fs.readdirSync(dir, { withFileTypes: true }).flatMap((e) => {
    const p = path.join(dir, e.name);
    return e.isDirectory() ? yamlFiles(p) : /\.ya?ml$/.test(e.name) ? [p] : [];
  });
}

/** The files a kustomization includes, recursively (resources: files or directories with their own). */
export function kustomize(dir: string, seen: string[] = []): string[] {
  const file = path.join(dir, 'kustomization.yaml');
  const k = parseYaml(fs.readFileSync(file, 'utf8')) as { resources?: string[] };
  seen.push(file);
  for (const r of k.resources ?? []) {
    const p = path.join(dir, r);
    if (!fs.existsSync(p)) throw new Error(`${path.relative(repoRoot, file)} lists ${r}, which does not exist`);
    if (fs.statSync(p).isDirectory()) kustomize(p, seen);
    else seen.push(p);
  }
  return seen;
}

/** Every object of the plain manifests, as written (before the kustomization's transformations). */
export function objects(): { file: string; obj: K8sObject }[] {
  return yamlFiles(DEPLOY)
    .filter((f) => path.basename(f) !== 'kustomization.yaml')
    .flatMap((file) => parseAllDocuments(fs.readFileSync(file, 'utf8')).map((d) => ({ file, obj: d.toJS() as K8sObject })));
}

export function modelClass(o: K8sObject): { new (data: unknown): { validate(): void } } {
  const [group, version] = o.apiVersion.includes('/') ? o.apiVersion.split('/') : ['', o.apiVersion];
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  const mod = require(`kubernetes-models/${group ? `${group}/` : ''}${version}/${o.kind}`) as Record<string, { new (data: unknown): { validate(): void } }>;
  return mod[o.kind]!;
}

/** The agent DaemonSet's pod: hostPID, no API token, the documented capabilities and nothing more. */
export function checkAgentDaemonSet(t: Test, ds: K8sObject): void {
  const spec = (ds as unknown as { spec: { template: { spec: Record<string, unknown> & { containers: Record<string, unknown>[]; volumes: Record<string, unknown>[] } } } }).spec.template.spec;
  t.equal(spec['hostPID'], true, 'hostPID: every process in /proc');
  t.equal(spec['hostNetwork'], false);
  t.equal(spec['hostIPC'], false);
  t.equal(spec['automountServiceAccountToken'], false, 'no API token');
  t.same(spec['securityContext'], { runAsUser: 0, runAsGroup: 0, runAsNonRoot: false, seccompProfile: { type: 'RuntimeDefault' }, appArmorProfile: { type: 'Unconfined' } });
  t.equal(spec.containers.length, 1);
  const c = spec.containers[0]!;
  t.same(c['securityContext'], {
    privileged: false,
    allowPrivilegeEscalation: false,
    readOnlyRootFilesystem: true,
    capabilities: { drop: ['ALL'], add: MINIMUM_CAPABILITIES },
  });
  for (const m of c['volumeMounts'] as { name: string; readOnly?: boolean }[]) t.equal(m.readOnly, true, `${m.name} is mounted read-only`);
  const hostPaths = spec.volumes.filter((v) => v['hostPath']).map((v) => (v['hostPath'] as { path: string }).path);
  t.same(hostPaths, ['/var/log'], 'the only host path: the kubelet log directories');
  const doc = fs.readFileSync(path.join(repoRoot, 'docs', 'deploy.md'), 'utf8');
  for (const cap of MINIMUM_CAPABILITIES) t.match(doc, new RegExp(`\\| \`CAP_${cap}\` \\|`), `docs/deploy.md explains CAP_${cap}`);
  t.notMatch(JSON.stringify(spec), /SYS_ADMIN|SYS_PTRACE|NET_ADMIN/, 'never SYS_ADMIN or SYS_PTRACE');
  const env = (c['env'] as { name: string; valueFrom?: { fieldRef?: { fieldPath: string } } }[]).map((e) => [e.name, e.valueFrom?.fieldRef?.fieldPath]);
  t.same(env, [
    ['K8S_NODE_NAME', 'spec.nodeName'],
    ['K8S_POD_NAME', 'metadata.name'],
    ['K8S_POD_NAMESPACE', 'metadata.namespace'],
    ['K8S_POD_UID', 'metadata.uid'],
  ], 'the Downward API the agent reads');
}
