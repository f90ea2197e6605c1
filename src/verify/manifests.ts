// SPDX-License-Identifier: Apache-2.0
/**
 * `verify --manifests DIR`: every Kubernetes object in DIR's YAML/JSON files judged against the
 * same rules as the running profiler — securityContext (privileged, capabilities against the
 * capability matrix, privilege escalation), host namespaces, host mounts (container runtime sockets
 * above all), and RBAC (what the service account may do to other pods). Pure over parsed objects;
 * readManifests() is the file-reading wrapper.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { parseAllDocuments } from 'yaml';
import { EbpfprofError, errorMessage } from '../errors';
import { judgeCapability } from './capability-matrix';
import { checkFrom, type CheckResult, type Finding } from './report';

export interface ManifestObject {
  file: string;
  kind: string;
  name: string;
  namespace?: string;
  body: Record<string, unknown>;
}

type Obj = Record<string, unknown>;

const asObj = (v: unknown): Obj => (v !== null && typeof v === 'object' && !Array.isArray(v) ? (v as Obj) : {});
const asArr = (v: unknown): Obj[] => (Array.isArray(v) ? v.map(asObj) : []);
const asStrs = (v: unknown): string[] => (Array.isArray(v) ? v.filter((x): x is string => typeof x === 'string') : []);

/** A Helm chart's directory: templates, not manifests, until rendered. */
function isHelmChart(dir: string): boolean {
  return fs.existsSync(path.join(dir, 'Chart.yaml'));
}

function yamlFiles(dir: string): string[] {
  if (isHelmChart(dir)) return [];
  return fs.readdirSync(dir, { withFileTypes: true }).flatMap((e) => {
    const p = path.join(dir, e.name);
    if (e.isDirectory()) return yamlFiles(p);
    return /\.(ya?ml|json)$/.test(e.name) ? [p] : [];
  });
}

/** The Helm charts under `dir` (readManifests leaves them out: `helm template` renders them for judging). */
export function helmChartsUnder(dir: string): string[] {
  try {
    if (!fs.statSync(dir).isDirectory()) return [];
  } catch {
    return [];
  }
  if (isHelmChart(dir)) return [dir];
  return fs
    .readdirSync(dir, { withFileTypes: true })
    .filter((e) => e.isDirectory())
    .flatMap((e) => helmChartsUnder(path.join(dir, e.name)));
}

/**
 * Every object of every YAML/JSON file under `dir` (List kinds unpacked; kustomizations and Helm
 * charts skipped: manifestChecks reports the charts as not judged).
 */
export function readManifests(dir: string): ManifestObject[] {
  let files: string[];
  try {
    files = fs.statSync(dir).isDirectory() ? yamlFiles(dir) : [dir];
  } catch (e) {
    throw new EbpfprofError('EBADARG', `--manifests ${dir}: ${errorMessage(e)}`);
  }
  const out: ManifestObject[] = [];
  for (const file of files.sort()) {
    let docs: unknown[];
    try {
      docs = parseAllDocuments(fs.readFileSync(file, 'utf8')).map((d) => {
        if (d.errors.length > 0) throw d.errors[0];
        return d.toJS() as unknown;
      });
    } catch (e) {
      throw new EbpfprofError('EINPUT', `--manifests: ${file} is not valid YAML: ${errorMessage(e).split('\n')[0]}`);
    }
    for (const doc of docs) out.push(...objectsOf(doc, path.relative(process.cwd(), file) || file));
  }
  return out;
}

function objectsOf(doc: unknown, file: string): ManifestObject[] {
  const o = asObj(doc);
  const kind = typeof o['kind'] === 'string' ? o['kind'] : '';
  if (!kind || kind === 'Kustomization') return [];
  if (kind.endsWith('List')) return asArr(o['items']).flatMap((i) => objectsOf(i, file));
  const meta = asObj(o['metadata']);
  return [{ file, kind, name: String(meta['name'] ?? '?'), ...(typeof meta['namespace'] === 'string' ? { namespace: meta['namespace'] } : {}), body: o }];
}

/** The pod spec inside a workload object, or null. */
export function podSpecOf(o: ManifestObject): Obj | null {
  const spec = asObj(o.body['spec']);
  switch (o.kind) {
    case 'Pod':
      return spec;
    case 'Deployment':
    case 'DaemonSet':
    case 'StatefulSet':
    case 'ReplicaSet':
    case 'ReplicationController':
    case 'Job':
      return asObj(asObj(spec['template'])['spec']);
    case 'CronJob':
      return asObj(asObj(asObj(asObj(spec['jobTemplate'])['spec'])['template'])['spec']);
    default:
      return null;
  }
}

const RUNTIME_SOCKETS = /(^|\/)(docker|containerd|crio|cri-dockerd|podman|dockershim)(\.sock)?$|\.sock$|^\/(var\/)?run\/(docker|containerd|crio|podman)(\/|$)/;
const SENSITIVE_HOST_PATHS = ['/', '/proc', '/sys', '/dev', '/etc', '/root', '/boot', '/var/lib/kubelet', '/var/lib/docker', '/var/lib/containerd', '/run', '/var/run'];

interface Where {
  label: string;
  file: string;
}

function where(o: ManifestObject, container?: string): Where {
  return { label: `${o.kind}/${o.name}${container ? ` container ${container}` : ''}`, file: o.file };
}

function finding(severity: Finding['severity'], w: Where, message: string, evidence: Record<string, unknown> = {}): Finding {
  return { severity, message: `${w.label}: ${message}`, evidence: { object: w.label, file: w.file, ...evidence } };
}

export interface ManifestFindings {
  privileged: Finding[];
  capabilities: Finding[];
  hostMounts: Finding[];
  hostNamespaces: Finding[];
  rbac: Finding[];
  objects: number;
  workloads: number;
}

function containersOf(spec: Obj): Obj[] {
  return [...asArr(spec['initContainers']), ...asArr(spec['containers']), ...asArr(spec['ephemeralContainers'])];
}

function judgePod(o: ManifestObject, spec: Obj, out: ManifestFindings): void {
  if (spec['hostNetwork'] === true) out.hostNamespaces.push(finding('medium', where(o), 'hostNetwork: true: the profiler needs no host network (its control endpoint is loopback-only)'));
  if (spec['hostIPC'] === true) out.hostNamespaces.push(finding('medium', where(o), 'hostIPC: true: the profiler needs no host IPC namespace'));
  if (spec['hostPID'] === true) out.hostNamespaces.push(finding('info', where(o), 'hostPID: true (needed to see every process of the node in /proc)'));
  const volumes = new Map(asArr(spec['volumes']).map((v) => [String(v['name']), v]));
  for (const c of containersOf(spec)) {
    const name = String(c['name'] ?? '?');
    const w = where(o, name);
    const sc = asObj(c['securityContext']);
    if (sc['privileged'] === true) out.privileged.push(finding('high', w, 'privileged: true: every capability and every device of the host', { field: 'securityContext.privileged' }));
    if (sc['allowPrivilegeEscalation'] !== false) out.privileged.push(finding('low', w, 'allowPrivilegeEscalation is not false: a set-user-ID program in the image could gain privileges', { field: 'securityContext.allowPrivilegeEscalation' }));
    const caps = asObj(sc['capabilities']);
    for (const raw of asStrs(caps['add'])) {
      if (raw.toUpperCase() === 'ALL') {
        out.capabilities.push(finding('high', w, 'capabilities.add: ALL (CAP_SYS_ADMIN and CAP_SYS_PTRACE among them)', { capability: 'ALL' }));
        continue;
      }
      let j;
      try {
        j = judgeCapability(raw);
      } catch {
        out.capabilities.push(finding('medium', w, `capabilities.add: unknown capability ${raw}`, { capability: raw }));
        continue;
      }
      const sev = j.class === 'forbidden' ? 'high' : j.class === 'unneeded' ? 'medium' : 'info';
      out.capabilities.push(finding(sev, w, `capabilities.add: ${j.capability} (${j.class}: ${j.why})`, { capability: j.capability, class: j.class }));
    }
    if (sc['privileged'] !== true && !asStrs(caps['drop']).some((d) => d.toUpperCase() === 'ALL')) {
      out.capabilities.push(finding('medium', w, "capabilities.drop does not list ALL: the runtime's default set (CAP_CHOWN, CAP_DAC_OVERRIDE, CAP_KILL, CAP_SETUID, ...) stays", { field: 'securityContext.capabilities.drop' }));
    }
    for (const m of asArr(c['volumeMounts'])) {
      const v = volumes.get(String(m['name']));
      const hp = v ? asObj(v['hostPath']) : null;
      if (!hp || typeof hp['path'] !== 'string') continue;
      const p = hp['path'].replace(/\/+$/, '') || '/';
      const ro = m['readOnly'] === true;
      if (RUNTIME_SOCKETS.test(p)) {
        out.hostMounts.push(finding('high', w, `mounts the container runtime socket ${p}: whoever holds it can start privileged containers and enter any process`, { hostPath: p, mountPath: m['mountPath'], readOnly: ro }));
      } else if (SENSITIVE_HOST_PATHS.includes(p)) {
        out.hostMounts.push(finding(ro && p !== '/' ? 'medium' : 'high', w, `mounts the host's ${p}${ro ? ' read-only' : ' writable'}`, { hostPath: p, mountPath: m['mountPath'], readOnly: ro }));
      } else if (!ro) {
        out.hostMounts.push(finding('medium', w, `mounts the host path ${p} writable (a profiler only reads)`, { hostPath: p, mountPath: m['mountPath'], readOnly: false }));
      } else {
        out.hostMounts.push(finding('info', w, `mounts the host path ${p} read-only`, { hostPath: p, mountPath: m['mountPath'], readOnly: true }));
      }
    }
  }
}

const ENTERING = ['pods/exec', 'pods/attach', 'pods/portforward', 'pods/ephemeralcontainers', 'nodes/proxy'];
const ESCALATING_VERBS = ['escalate', 'bind', 'impersonate'];
const WRITE_VERBS = ['create', 'update', 'patch', 'delete', 'deletecollection'];
const WORKLOADS = ['pods', 'deployments', 'daemonsets', 'statefulsets', 'replicasets', 'jobs', 'cronjobs'];

function judgeRole(o: ManifestObject, out: ManifestFindings): void {
  const w = where(o);
  for (const rule of asArr(o.body['rules'])) {
    const verbs = asStrs(rule['verbs']);
    const resources = asStrs(rule['resources']);
    const all = (xs: string[]): boolean => xs.includes('*');
    if (all(verbs) && (all(resources) || resources.length === 0)) {
      out.rbac.push(finding('high', w, `rule allows every verb on ${resources.join(', ') || 'every resource'}`, { rule }));
      continue;
    }
    if (all(resources)) out.rbac.push(finding('high', w, `rule allows ${verbs.join(', ')} on every resource`, { rule }));
    for (const r of resources.filter((x) => ENTERING.includes(x))) out.rbac.push(finding('high', w, `may use ${r}: a way into other pods' processes`, { rule, resource: r }));
    for (const v of verbs.filter((x) => ESCALATING_VERBS.includes(x))) out.rbac.push(finding('high', w, `may ${v}: privilege escalation through RBAC`, { rule, verb: v }));
    if (resources.includes('secrets') && verbs.some((v) => v === '*' || ['get', 'list', 'watch'].includes(v))) out.rbac.push(finding('medium', w, 'may read secrets', { rule }));
    const writes = verbs.filter((v) => v === '*' || WRITE_VERBS.includes(v));
    const wl = resources.filter((r) => WORKLOADS.includes(r));
    if (writes.length > 0 && wl.length > 0) out.rbac.push(finding('medium', w, `may ${writes.join(', ')} ${wl.join(', ')}: it could restart or reconfigure the workloads it observes`, { rule }));
  }
}

function judgeBinding(o: ManifestObject, out: ManifestFindings): void {
  const ref = asObj(o.body['roleRef']);
  const name = String(ref['name'] ?? '');
  if (['cluster-admin', 'admin', 'edit'].includes(name)) out.rbac.push(finding('high', where(o), `binds the ${ref['kind'] ?? 'role'} ${name}`, { roleRef: ref }));
}

export function judgeManifests(objects: readonly ManifestObject[]): ManifestFindings {
  const out: ManifestFindings = { privileged: [], capabilities: [], hostMounts: [], hostNamespaces: [], rbac: [], objects: objects.length, workloads: 0 };
  for (const o of objects) {
    const spec = podSpecOf(o);
    if (spec) {
      out.workloads++;
      judgePod(o, spec, out);
    } else if (o.kind === 'Role' || o.kind === 'ClusterRole') judgeRole(o, out);
    else if (o.kind === 'RoleBinding' || o.kind === 'ClusterRoleBinding') judgeBinding(o, out);
  }
  return out;
}

/** The manifest checks of the report. */
export function manifestChecks(dir: string, objects: readonly ManifestObject[], helmCharts: readonly string[] = []): CheckResult[] {
  const f = judgeManifests(objects);
  const mk = (id: string, description: string, findings: Finding[], pass: string): CheckResult =>
    checkFrom(
      { id, category: 'manifests', description, values: { baseline: null, withProfiler: { objects: f.objects, workloads: f.workloads, findings: findings.filter((x) => x.severity !== 'info').length } }, threshold: { op: '==', limit: 0, unit: 'findings above info' } },
      findings,
      pass,
    );
  const where = `${f.workloads} workloads of ${f.objects} objects in ${dir}`;
  return [
    mk('manifests.privileged', 'No container is privileged or may escalate privileges', f.privileged, `no privileged container (${where})`),
    mk('manifests.capabilities', 'Every container drops ALL and adds only capabilities the matrix allows (never SYS_ADMIN or SYS_PTRACE)', f.capabilities, `capabilities within the matrix (${where})`),
    mk('manifests.host_mounts', 'No container runtime (Docker, containerd, CRI-O) socket, no writable or sensitive host path', f.hostMounts, `no runtime socket or writable host path (${where})`),
    mk('manifests.host_namespaces', 'No host network or IPC namespace (hostPID is expected)', f.hostNamespaces, `no host network or IPC (${where})`),
    mk('manifests.rbac', 'RBAC gives no way into other pods (exec, attach, ephemeral containers, nodes/proxy), no wildcard, no escalation', f.rbac, `no RBAC rule of concern (${where})`),
    ...(helmCharts.length === 0
      ? []
      : [
          checkFrom(
            { id: 'manifests.helm_charts', category: 'manifests', description: 'Helm charts are judged once rendered, not as templates', values: { baseline: null, withProfiler: { charts: helmCharts.map((c) => path.relative(process.cwd(), c) || c) } }, threshold: { op: 'none', limit: null, unit: '' } },
            [],
            '',
            `${helmCharts.length} Helm chart${helmCharts.length === 1 ? '' : 's'} not judged (${helmCharts.map((c) => path.relative(process.cwd(), c) || c).join(', ')}): render with \`helm template NAME CHART > rendered.yaml\` and pass --manifests rendered.yaml`,
          ),
        ]),
  ];
}
