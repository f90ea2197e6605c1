// SPDX-License-Identifier: Apache-2.0
// deploy/helm/ebpfprof rendered and linted by a real helm (built from its Go module, pinned): with
// its defaults it renders the very objects of the plain manifests after the kustomization's
// namespace and image (so the two cannot drift apart), every rendered object passes the Kubernetes
// schema and `ebpfprof verify`'s manifest checks, and its values do what values.yaml says.
import t, { type Test } from 'tap';
import { execFileSync, spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { parseAllDocuments, parse as parseYaml } from 'yaml';
import { parseAgentConfigText } from '../src/agent/config';
import { manifestChecks, readManifests } from '../src/verify/manifests';
import { helmBinary } from './helpers/helm';
import { checkAgentDaemonSet, DEPLOY, HELM_CHART, type K8sObject, modelClass, objects } from './helpers/k8s-manifests';

/** Labels and annotations the chart adds to what the plain manifests say. */
const CHART_LABELS = ['helm.sh/chart', 'app.kubernetes.io/managed-by'];

let helm = '';
t.before(async () => {
  helm = (await helmBinary()).binary;
});

function render(args: string[] = []): { status: number | null; objects: K8sObject[]; text: string; stderr: string } {
  const r = spawnSync(helm, ['template', 'ebpfprof', HELM_CHART, '--namespace', 'observability', ...args], { encoding: 'utf8', timeout: 60_000 });
  const objs = r.status === 0 ? parseAllDocuments(r.stdout).map((d) => d.toJS() as K8sObject).filter((o) => o !== null) : [];
  return { status: r.status, objects: objs, text: r.stdout, stderr: r.stderr };
}

function find(objs: K8sObject[], kind: string, name: string): K8sObject {
  const o = objs.find((x) => x.kind === kind && x.metadata.name === name);
  if (!o) throw new Error(`no ${kind}/${name} in ${objs.map((x) => `${x.kind}/${x.metadata.name}`).join(', ')}`);
  return o;
}

/** The plain manifests as `kubectl apply -k deploy/` applies them: the kustomization's namespace and images. */
function kustomized(): K8sObject[] {
  const top = parseYaml(fs.readFileSync(path.join(DEPLOY, 'kustomization.yaml'), 'utf8')) as { namespace: string; images: { name: string; newName: string; newTag: string }[] };
  return objects().map(({ obj }) => {
    const o = structuredClone(obj);
    if (o.kind !== 'Namespace') o.metadata.namespace = top.namespace;
    const pod = (o as { spec?: { template?: { spec?: { containers?: { image: string }[] } } } }).spec?.template?.spec;
    for (const c of pod?.containers ?? []) {
      const img = top.images.find((i) => i.name === c.image);
      if (img) c.image = `${img.newName}:${img.newTag}`;
    }
    return o;
  });
}

/** What the chart adds, taken off (after checking it) so the rest compares with the plain object. */
function withoutChartAdditions(t: Test, o: K8sObject): K8sObject {
  const c = structuredClone(o);
  for (const l of CHART_LABELS) {
    t.ok(c.metadata.labels?.[l], `${o.kind}/${o.metadata.name} has ${l}`);
    delete c.metadata.labels![l];
  }
  const template = (c as { spec?: { template?: { metadata?: { annotations?: Record<string, string> } } } }).spec?.template?.metadata;
  if (template?.annotations?.['checksum/config'] !== undefined) {
    t.match(template.annotations['checksum/config'], /^[0-9a-f]{64}$/, `${o.kind}/${o.metadata.name}: its pods roll when the configuration changes`);
    delete template.annotations['checksum/config'];
    if (Object.keys(template.annotations).length === 0) delete template.annotations;
  }
  return c;
}

function configData(o: K8sObject, key: string): string {
  return (o as unknown as { data: Record<string, string> }).data[key]!;
}

t.test('helm lint --strict passes', async (t) => {
  const r = spawnSync(helm, ['lint', '--strict', HELM_CHART], { encoding: 'utf8', timeout: 60_000 });
  t.equal(r.status, 0, r.stdout + r.stderr);
  t.match(r.stdout, /1 chart\(s\) linted, 0 chart\(s\) failed/);
});

t.test('the defaults render the objects of the plain manifests, in the release namespace', async (t) => {
  const r = render();
  t.equal(r.status, 0, r.stderr);
  const plain = kustomized().filter((o) => o.kind !== 'Namespace');
  t.same(r.objects.map((o) => `${o.kind}/${o.metadata.name}`).sort(), plain.map((o) => `${o.kind}/${o.metadata.name}`).sort(), 'the same objects (the namespace is the release\'s: helm install --create-namespace)');
  for (const p of plain) {
    const h = withoutChartAdditions(t, find(r.objects, p.kind, p.metadata.name));
    if (p.kind === 'ConfigMap') {
      // Rendered from values: the same configuration, not necessarily the same text.
      const { data: hd, ...hRest } = h as unknown as { data: Record<string, string> };
      const { data: pd, ...pRest } = p as unknown as { data: Record<string, string> };
      t.same(hRest, pRest, `${p.kind}/${p.metadata.name}: metadata`);
      t.same(Object.keys(hd), Object.keys(pd), `${p.kind}/${p.metadata.name}: keys`);
      for (const k of Object.keys(pd)) {
        if (k === 'agent.yaml') t.same(parseAgentConfigText(hd[k]!, 'chart'), parseAgentConfigText(pd[k]!, 'plain'), 'the agent configuration, as the agent parses it');
        else t.same(parseYaml(hd[k]!), parseYaml(pd[k]!), `${p.metadata.name}: ${k}`);
      }
    } else {
      t.same(h, p, `${p.kind}/${p.metadata.name} is the plain manifest's`);
    }
  }
  checkAgentDaemonSet(t, find(r.objects, 'DaemonSet', 'ebpfprof-agent'));
});

t.test('every rendered object passes the Kubernetes schema and the manifest checks of ebpfprof verify', async (t) => {
  const r = render();
  for (const o of r.objects) t.doesNotThrow(() => new (modelClass(o))(o).validate(), `${o.kind}/${o.metadata.name} is valid`);
  const file = path.join(t.testdir({}), 'rendered.yaml');
  fs.writeFileSync(file, r.text);
  const checks = manifestChecks(file, readManifests(file));
  t.equal(checks.length, 5);
  for (const c of checks) t.same([c.id, c.status], [c.id, 'pass'], `${c.id}: ${c.message}`);
  // A chart's templates are not judged as if they were manifests: verify says it left them out.
  const deploy = manifestChecks(DEPLOY, readManifests(DEPLOY), [HELM_CHART]);
  const skipped = deploy.find((c) => c.id === 'manifests.helm_charts');
  t.equal(skipped?.status, 'skipped');
  t.match(skipped?.message, /1 Helm chart not judged .*helm template/);
});

t.test('values: image, frequency, endpoint, tolerations, resources; no gateway; bad values refused', async (t) => {
  const r = render([
    '--set', 'gateway.enabled=false',
    '--set', 'agent.config.endpoint=https://otlp.example.com:4318',
    '--set', 'agent.config.frequencyHz=99',
    '--set', 'agent.config.tracing.tcp=true',
    '--set', 'agent.image.tag=9.9.9',
    '--set', 'agent.resources.limits.memory=300Mi',
    '--set', 'agent.nodeSelector.kubernetes\\.io/os=linux',
  ]);
  t.equal(r.status, 0, r.stderr);
  t.same(r.objects.map((o) => `${o.kind}/${o.metadata.name}`).sort(), ['ConfigMap/ebpfprof-agent', 'DaemonSet/ebpfprof-agent', 'ServiceAccount/ebpfprof-agent'], 'no gateway objects');
  const cfg = parseAgentConfigText(configData(find(r.objects, 'ConfigMap', 'ebpfprof-agent'), 'agent.yaml'), 'chart');
  t.equal(cfg.endpoint, 'https://otlp.example.com:4318');
  t.equal(cfg.frequencyHz, 99);
  t.equal(cfg.tracing?.tcp, true);
  t.equal(cfg.controlListen, '127.0.0.1:8790', 'the control endpoint stays where the liveness probe asks');
  const pod = (find(r.objects, 'DaemonSet', 'ebpfprof-agent') as unknown as { spec: { template: { spec: { nodeSelector: Record<string, string>; containers: { image: string; resources: { limits: { memory: string } } }[] } } } }).spec.template.spec;
  t.equal(pod.containers[0]!.image, 'ghcr.io/ebpfprof/ebpfprof:9.9.9');
  t.equal(pod.containers[0]!.resources.limits.memory, '300Mi');
  t.same(pod.nodeSelector, { 'kubernetes.io/os': 'linux' });
  // The security context does not depend on values.
  checkAgentDaemonSet(t, find(r.objects, 'DaemonSet', 'ebpfprof-agent'));

  const noEndpoint = render(['--set', 'gateway.enabled=false']);
  t.not(noEndpoint.status, 0, 'no gateway and no endpoint: refused');
  t.match(noEndpoint.stderr, /agent\.config\.endpoint must be set when gateway\.enabled is false/);
  const badFrequency = render(['--set', 'agent.config.frequencyHz=5000']);
  t.equal(badFrequency.status, 0, 'helm renders what it is given ...');
  t.throws(() => parseAgentConfigText(configData(find(badFrequency.objects, 'ConfigMap', 'ebpfprof-agent'), 'agent.yaml'), 'chart'), /frequencyHz/, '... and the agent refuses it with a clear error');
});

t.test('the chart is documented where the plain manifests are', async (t) => {
  const chartValues = parseYaml(fs.readFileSync(path.join(HELM_CHART, 'values.yaml'), 'utf8')) as { gateway: { image: { tag: string } } };
  const plainGateway = find(kustomized(), 'Deployment', 'otel-gateway') as unknown as { spec: { template: { spec: { containers: { image: string }[] } } } };
  t.equal(`otel/opentelemetry-collector-contrib:${chartValues.gateway.image.tag}`, plainGateway.spec.template.spec.containers[0]!.image, 'the same gateway release');
  const readme = fs.readFileSync(path.join(DEPLOY, 'README.md'), 'utf8');
  t.match(readme, /helm install ebpfprof deploy\/helm\/ebpfprof/);
  t.notMatch(readme, /There is no Helm chart/);
  t.ok(execFileSync(helm, ['version', '--short'], { encoding: 'utf8' }).startsWith('v4.'), 'helm 4');
});
