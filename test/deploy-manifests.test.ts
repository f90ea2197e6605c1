// SPDX-License-Identifier: Apache-2.0
// deploy/: every object passes the Kubernetes schema (kubernetes-models 4.5.1), every file is part
// of the kustomization tree, the agent's ConfigMap parses with the agent's own parser, the gateway's
// Collector configuration is accepted by a real Collector, and the DaemonSet's security context is
// exactly the minimum docs/deploy.md documents (and nothing more).
import t from 'tap';
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { parseAllDocuments, parse as parseYaml } from 'yaml';
import { parseAgentConfigText } from '../src/agent/config';
import { collectorBinary, PROFILES_FEATURE_GATE } from './helpers/collector';
import { repoRoot } from './helpers/paths';

const DEPLOY = path.join(repoRoot, 'deploy');

/** The capabilities docs/deploy.md documents, and the only ones the DaemonSet may add. */
const MINIMUM_CAPABILITIES = ['BPF', 'PERFMON', 'SYSLOG', 'DAC_READ_SEARCH'];

interface K8sObject {
  apiVersion: string;
  kind: string;
  metadata: { name: string; namespace?: string };
  [k: string]: unknown;
}

function yamlFiles(dir: string): string[] {
  return fs.readdirSync(dir, { withFileTypes: true }).flatMap((e) => {
    const p = path.join(dir, e.name);
    return e.isDirectory() ? yamlFiles(p) : /\.ya?ml$/.test(e.name) ? [p] : [];
  });
}

/** The files a kustomization includes, recursively (resources: files or directories with their own). */
function kustomize(dir: string, seen: string[] = []): string[] {
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

function objects(): { file: string; obj: K8sObject }[] {
  return yamlFiles(DEPLOY)
    .filter((f) => path.basename(f) !== 'kustomization.yaml')
    .flatMap((file) => parseAllDocuments(fs.readFileSync(file, 'utf8')).map((d) => ({ file, obj: d.toJS() as K8sObject })));
}

function modelClass(o: K8sObject): { new (data: unknown): { validate(): void } } {
  const [group, version] = o.apiVersion.includes('/') ? o.apiVersion.split('/') : ['', o.apiVersion];
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  const mod = require(`kubernetes-models/${group ? `${group}/` : ''}${version}/${o.kind}`) as Record<string, { new (data: unknown): { validate(): void } }>;
  return mod[o.kind]!;
}

function daemonSet(): K8sObject {
  return objects().find((x) => x.obj.kind === 'DaemonSet')!.obj;
}

t.test('every object passes the Kubernetes schema', async (t) => {
  const all = objects();
  t.same(all.map((x) => `${x.obj.kind}/${x.obj.metadata.name}`).sort(), [
    'ConfigMap/ebpfprof-agent',
    'ConfigMap/otel-gateway',
    'DaemonSet/ebpfprof-agent',
    'Deployment/otel-gateway',
    'Namespace/observability',
    'Service/otel-gateway',
    'ServiceAccount/ebpfprof-agent',
  ]);
  for (const { file, obj } of all) {
    const Model = modelClass(obj);
    t.doesNotThrow(() => new Model(obj).validate(), `${path.relative(repoRoot, file)}: ${obj.kind} ${obj.metadata.name} is valid`);
    t.match(fs.readFileSync(file, 'utf8'), /^# SPDX-License-Identifier: Apache-2\.0/, 'SPDX header');
  }
  // The checker catches what it should: a string where an integer belongs.
  const ds = structuredClone(daemonSet()) as unknown as { spec: { template: { spec: { terminationGracePeriodSeconds: unknown } } } };
  ds.spec.template.spec.terminationGracePeriodSeconds = 'soon';
  t.throws(() => new (modelClass(daemonSet()))(ds).validate(), 'a wrong type is refused');
});

t.test('the kustomization tree includes every file exactly once', async (t) => {
  const included = kustomize(DEPLOY);
  t.same([...included].sort(), yamlFiles(DEPLOY).sort(), 'no file left out, none missing');
  t.equal(new Set(included).size, included.length, 'none twice');
  const top = parseYaml(fs.readFileSync(path.join(DEPLOY, 'kustomization.yaml'), 'utf8')) as { namespace: string; images: { name: string }[] };
  t.equal(top.namespace, 'observability');
  t.ok(top.images.some((i) => i.name === (daemonSet() as unknown as { spec: { template: { spec: { containers: { image: string }[] } } } }).spec.template.spec.containers[0]!.image), 'the image name is set by the kustomization');
});

t.test("the DaemonSet's security context is the documented minimum", async (t) => {
  const spec = (daemonSet() as unknown as { spec: { template: { spec: Record<string, unknown> & { containers: Record<string, unknown>[]; volumes: Record<string, unknown>[] } } } }).spec.template.spec;
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
});

t.test("the agent's ConfigMap is a valid agent configuration pointing at the gateway", async (t) => {
  const cm = objects().find((x) => x.obj.kind === 'ConfigMap' && x.obj.metadata.name === 'ebpfprof-agent')!.obj as unknown as { data: Record<string, string> };
  const layer = parseAgentConfigText(cm.data['agent.yaml']!, 'deploy/agent/configmap.yaml');
  t.equal(layer.endpoint, 'http://otel-gateway:4318');
  t.equal(layer.frequencyHz, 19);
  t.equal(layer.controlListen, '127.0.0.1:8790', 'the port the liveness probe asks');
  t.equal(layer.kubernetes?.logRoot, '/host/var/log', 'where the DaemonSet mounts /var/log');
  const svc = objects().find((x) => x.obj.kind === 'Service')!.obj as unknown as { metadata: { name: string }; spec: { ports: { port: number }[] } };
  t.ok(svc.spec.ports.some((p) => p.port === 4318) && layer.endpoint!.includes(`//${svc.metadata.name}:4318`), 'the endpoint is the gateway Service');
});

t.test("a real Collector accepts the gateway's configuration with the profiles feature gate", async (t) => {
  const { binary } = await collectorBinary();
  const cm = objects().find((x) => x.obj.kind === 'ConfigMap' && x.obj.metadata.name === 'otel-gateway')!.obj as unknown as { data: Record<string, string> };
  const file = path.join(t.testdir({}), 'collector.yaml');
  fs.writeFileSync(file, cm.data['collector.yaml']!);
  const deployment = objects().find((x) => x.obj.kind === 'Deployment')!.obj as unknown as { spec: { template: { spec: { containers: { args: string[]; env: { name: string; value: string }[] }[] } } } };
  const container = deployment.spec.template.spec.containers[0]!;
  t.ok(container.args.includes(`--feature-gates=${PROFILES_FEATURE_GATE}`), 'the deployment turns the gate on');
  const env = Object.fromEntries(container.env.map((e) => [e.name, e.value]));
  const validate = (args: string[]): string => {
    try {
      execFileSync(binary, ['validate', `--config=${file}`, ...args], { encoding: 'utf8', env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
      return '';
    } catch (e) {
      return String((e as { stderr?: string }).stderr ?? e);
    }
  };
  t.equal(validate([`--feature-gates=${PROFILES_FEATURE_GATE}`]), '', 'valid');
  t.match(validate([]), /profilesSupport/, 'and without the gate the Collector refuses the profiles pipeline');
});
