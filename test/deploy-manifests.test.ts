// SPDX-License-Identifier: Apache-2.0
// deploy/: every object passes the Kubernetes schema (kubernetes-models 4.5.1), every file is part
// of the kustomization tree, the agent's ConfigMap parses with the agent's own parser, the gateway's
// Collector configuration is accepted by a real Collector, and the DaemonSet's security context is
// exactly the minimum docs/deploy.md documents (and nothing more).
import t from 'tap';
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { parse as parseYaml } from 'yaml';
import { parseAgentConfigText } from '../src/agent/config';
import { collectorBinary, PROFILES_FEATURE_GATE } from './helpers/collector';
import { checkAgentDaemonSet, DEPLOY, type K8sObject, kustomize, modelClass, objects, yamlFiles } from './helpers/k8s-manifests';
import { repoRoot } from './helpers/paths';

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
  checkAgentDaemonSet(t, daemonSet());
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
