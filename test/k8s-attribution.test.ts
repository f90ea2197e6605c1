// SPDX-License-Identifier: Apache-2.0
// Kubernetes attribution without the API server: cgroup paths as kubelets and runtimes write them,
// the kubelet's log directories, the Downward API, and end to end a real process in a real cgroup
// named like a pod's container, next to a kubelet-style log tree.
import t from 'tap';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { spawn } from 'node:child_process';
import { setTimeout as sleep } from 'node:timers/promises';
import { parseCmdline, executableFromLink, ProcessResources } from '../src/agent/process-resources';
import { KubernetesAttribution } from '../src/k8s/attribution';
import { parseCgroupPath, parseProcCgroup } from '../src/k8s/cgroup-path';
import { ownIdentity, readOwnIdentity } from '../src/k8s/downward-api';
import { parseContainerLogName, parsePodLogDirName, PodLogIndex } from '../src/k8s/pod-logs';
import { requireKernelFeature } from './helpers/kernel-feature';
import { intPrng } from './helpers/prng';
import { fakePod, PodCgroup, writeKubeletLogs } from './fixtures/otlp/kubernetes';

const UID = '1b2c3d4e-5f60-4a1b-9c2d-3e4f5a6b7c8d';
const UID_ = UID.replace(/-/g, '_');
const ID = 'a'.repeat(8) + '0123456789abcdef'.repeat(3) + 'f'.repeat(8);
const ID2 = 'b'.repeat(64);

t.test('cgroup paths of kubelets and runtimes', async (t) => {
  const cases: [string, string | null, string | null][] = [
    [`/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod${UID_}.slice/cri-containerd-${ID}.scope`, ID, UID],
    [`/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod${UID_}.slice/crio-${ID}.scope`, ID, UID],
    [`/kubepods.slice/kubepods-pod${UID_}.slice/docker-${ID}.scope`, ID, UID], // guaranteed QoS
    [`/kubepods/burstable/pod${UID}/${ID}`, ID, UID], // cgroupfs driver
    [`/kubepods/pod${UID}/${ID}`, ID, UID],
    [`/../../kubepods-besteffort-pod${UID_}.slice/cri-containerd-${ID}.scope`, ID, UID], // reader in its own cgroup namespace
    [`/docker/${ID2}/kubepods/besteffort/pod${UID}/${ID}`, ID, UID], // kind: the innermost id wins
    [`/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod${UID_}.slice/crio-conmon-${ID}.scope`, null, UID], // CRI-O's monitor
    [`/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod${UID_}.slice`, null, UID],
    [`/docker/${ID}`, ID, null],
    [`/system.slice/docker-${ID}.scope`, ID, null],
    [`/machine.slice/libpod-${ID}.scope/container`, ID, null],
    ['/user.slice/user-1000.slice/session-2.scope', null, null],
    ['/', null, null],
    [`/kubepods/burstable/pod${UID}/${ID.slice(1)}`, null, UID], // 63 hex digits: not a container id
    [`/kubepods/burstable/podnot-a-uid/${ID}`, ID, null],
  ];
  for (const [p, containerId, podUid] of cases) t.same(parseCgroupPath(p), { containerId, podUid }, p);
});

t.test('/proc/PID/cgroup: v2 line first, v1 lines of a hybrid host next', async (t) => {
  t.same(parseProcCgroup(`0::/kubepods/pod${UID}/${ID}\n`), { containerId: ID, podUid: UID });
  const hybrid = `12:pids:/kubepods/burstable/pod${UID}/${ID}\n4:memory:/kubepods/burstable/pod${UID}/${ID}\n1:name=systemd:/kubepods/burstable/pod${UID}/${ID}\n0::/\n`;
  t.same(parseProcCgroup(hybrid), { containerId: ID, podUid: UID }, 'the empty v2 path does not hide the v1 paths');
  t.same(parseProcCgroup(`0::/system.slice/docker-${ID}.scope\n3:cpu:/kubepods/pod${UID}/${ID2}\n`), { containerId: ID2, podUid: UID }, 'a path with pod and container wins');
  t.same(parseProcCgroup(''), { containerId: null, podUid: null });
  t.same(parseProcCgroup('garbage\n\n:::\n'), { containerId: null, podUid: null });
});

t.test('cgroup parsing never throws on arbitrary input (fuzz)', async (t) => {
  const rnd = intPrng(4);
  const alphabet = ['/', ':', '-', '_', '.', 'pod', 'kubepods', 'slice', 'scope', 'cri-containerd-', ID, UID, UID_, '\n', '0::', 'a', '9', ' ', '\0', '..'];
  let bad = 0;
  for (let i = 0; i < 5000; i++) {
    const s = Array.from({ length: rnd(30) }, () => alphabet[rnd(alphabet.length)]).join('');
    try {
      const r = parseProcCgroup(s);
      if ((r.containerId !== null && !/^[0-9a-f]{64}$/.test(r.containerId)) || (r.podUid !== null && !/^[0-9a-f-]{36}$/.test(r.podUid))) bad++;
    } catch {
      bad++;
    }
  }
  t.equal(bad, 0, 'only well-formed ids come out, nothing throws');
});

t.test('kubelet log directory names', async (t) => {
  t.same(parsePodLogDirName(`shop_checkout-7d9f_${UID}`), { namespace: 'shop', podName: 'checkout-7d9f', podUid: UID });
  t.same(parsePodLogDirName(`kube-system_coredns-5d78c9869d-abcde_${UID}`), { namespace: 'kube-system', podName: 'coredns-5d78c9869d-abcde', podUid: UID });
  for (const bad of ['shop_checkout', `shop_check_out_${UID}`, `Shop_checkout_${UID}`, `shop_checkout_${UID}x`, '', `_checkout_${UID}`]) t.equal(parsePodLogDirName(bad), null, JSON.stringify(bad));
  t.same(parseContainerLogName(`checkout-7d9f_shop_server-${ID}.log`), { podName: 'checkout-7d9f', namespace: 'shop', containerName: 'server', containerId: ID });
  t.same(parseContainerLogName(`web_default_istio-proxy-${ID}.log`)?.containerName, 'istio-proxy', 'container names with dashes');
  for (const bad of [`web_default_server-${ID}`, `web_default_server-${ID.slice(2)}.log`, `web_server-${ID}.log`, 'x.log']) t.equal(parseContainerLogName(bad), null, bad);
  const rnd = intPrng(5);
  const parts = ['_', '-', '.log', 'a', UID, ID, 'shop', '..', '/', 'Z'];
  for (let i = 0; i < 3000; i++) {
    const s = Array.from({ length: rnd(12) }, () => parts[rnd(parts.length)]).join('');
    parsePodLogDirName(s);
    parseContainerLogName(s);
  }
  t.pass('no input throws');
});

t.test('the pod log index rescans at most once per period, and forgets pods that are gone', async (t) => {
  const root = t.testdir({});
  const a = fakePod('shop', 'cart-1', 'app');
  writeKubeletLogs(root, [a], { [a.podUid]: ['istio-proxy'] });
  fs.mkdirSync(path.join(root, 'pods', 'not-a-pod-dir'), { recursive: true });
  let now = 0;
  const index = new PodLogIndex(root, 2000, () => now);
  t.same(index.pod(a.podUid), { namespace: 'shop', podName: 'cart-1', podUid: a.podUid, containers: ['app', 'istio-proxy'] });
  t.equal(index.container(a.containerId)?.containerName, 'app');
  t.equal(index.stats.entriesSkipped, 1, 'a directory without the kubelet naming is skipped and counted');
  const b = fakePod('shop', 'cart-2', 'app');
  writeKubeletLogs(root, [b]);
  t.equal(index.pod(b.podUid), null, 'a new pod is not seen before the rescan period passed');
  now += 2000;
  t.equal(index.pod(b.podUid)?.podName, 'cart-2', 'seen after it');
  t.equal(index.stats.scans, 2);
  fs.rmSync(path.join(root, 'pods', `shop_cart-1_${a.podUid}`), { recursive: true });
  now += 2000;
  index.rescan();
  t.equal(index.pod(a.podUid), null, 'a deleted pod is forgotten');
  t.same(new PodLogIndex(path.join(root, 'missing')).pod(a.podUid), null, 'a missing root is no pod, not an error');
});

t.test('attribution joins cgroup ids with the log tree; the only container names itself', async (t) => {
  const root = t.testdir({});
  const single = fakePod('shop', 'single', 'worker');
  const multi = fakePod('shop', 'multi', 'main');
  writeKubeletLogs(root, [multi], { [multi.podUid]: ['sidecar'] });
  // The single-container pod has no /var/log/containers symlink: its one directory names it.
  fs.mkdirSync(path.join(root, 'pods', `shop_single_${single.podUid}`, 'worker'), { recursive: true });
  const k = new KubernetesAttribution({ logRoot: root, nodeName: 'node-7' });
  const cg = (p: typeof single): string => `0::/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod${p.podUid.replace(/-/g, '_')}.slice/cri-containerd-${p.containerId}.scope\n`;
  t.same(k.attributes(cg(multi)), {
    'k8s.node.name': 'node-7',
    'container.id': multi.containerId,
    'k8s.pod.uid': multi.podUid,
    'k8s.namespace.name': 'shop',
    'k8s.pod.name': 'multi',
    'k8s.container.name': 'main',
  });
  t.equal(k.attributes(cg(single))['k8s.container.name'], 'worker');
  const unknown = fakePod();
  t.same(k.attributes(cg(unknown)), { 'k8s.node.name': 'node-7', 'container.id': unknown.containerId, 'k8s.pod.uid': unknown.podUid }, 'a pod the log tree does not know keeps its ids');
  t.same(k.attributes('0::/user.slice\n'), { 'k8s.node.name': 'node-7' }, 'a host process gets only the node');
});

t.test('Downward API: environment first, then the volume files', async (t) => {
  const files: Record<string, string> = { name: 'ebpfprof-agent-x1\n', namespace: 'observability\n', uid: `${UID}\n` };
  t.same(ownIdentity({ K8S_NODE_NAME: 'node-1' }, (n) => files[n] ?? null), { nodeName: 'node-1', podName: 'ebpfprof-agent-x1', podNamespace: 'observability', podUid: UID });
  t.same(ownIdentity({ NODE_NAME: 'n2', K8S_POD_NAME: 'p' }, () => null), { nodeName: 'n2', podName: 'p', podNamespace: null, podUid: null });
  t.same(ownIdentity({ K8S_NODE_NAME: '  ' }, () => '  '), { nodeName: null, podName: null, podNamespace: null, podUid: null }, 'blank values are absent');
  const dir = t.testdir({ name: 'agent-pod', namespace: 'obs' });
  t.same(readOwnIdentity(dir, {}), { nodeName: null, podName: 'agent-pod', podNamespace: 'obs', podUid: null });
});

t.test('command lines and executable links', async (t) => {
  t.equal(parseCmdline(Buffer.from('node\0server.js\0--port\x003000\0')), 'node server.js --port 3000');
  t.equal(parseCmdline(Buffer.from('a\0b\nc\0')), 'a b c', 'control characters become spaces');
  t.equal(parseCmdline(Buffer.from(`x\0${'y'.repeat(5000)}\0`), 100).length, 100, 'capped');
  t.equal(parseCmdline(Buffer.alloc(0)), '');
  t.equal(executableFromLink('/usr/bin/app (deleted)'), '/usr/bin/app');
  t.equal(executableFromLink('/usr/bin/app'), '/usr/bin/app');
});

t.test('a real process in a real pod cgroup gets its pod, namespace, container and node', async (t) => {
  if (!(await requireKernelFeature(t, 'root'))) return;
  const logRoot = t.testdir({});
  const pod = fakePod('payments', 'ledger-5c8d', 'ledger');
  writeKubeletLogs(logRoot, [pod]);
  const cgroup = PodCgroup.create(pod);
  const child = spawn('/bin/sleep', ['300'], { stdio: 'ignore' });
  t.teardown(async () => {
    child.kill('SIGKILL');
    await new Promise((r) => (child.exitCode !== null || child.signalCode !== null ? r(null) : child.once('exit', r)));
    cgroup.remove();
  });
  await new Promise((r) => child.once('spawn', r));
  cgroup.add(child.pid!);
  t.match(fs.readFileSync(`/proc/${child.pid}/cgroup`, 'utf8'), `cri-containerd-${pod.containerId}.scope`, 'the process is in the container cgroup');
  const resources = new ProcessResources({ hostName: 'node-a', kubernetes: new KubernetesAttribution({ logRoot, nodeName: 'node-a' }), extra: { 'deployment.environment.name': 'test' } });
  t.same(resources.get(child.pid!), {
    'host.name': 'node-a',
    'process.executable.name': 'sleep',
    'process.executable.path': fs.realpathSync('/bin/sleep'),
    'process.command_line': '/bin/sleep 300',
    'k8s.node.name': 'node-a',
    'container.id': pod.containerId,
    'k8s.pod.uid': pod.podUid,
    'k8s.namespace.name': 'payments',
    'k8s.pod.name': 'ledger-5c8d',
    'k8s.container.name': 'ledger',
    'service.name': 'ledger',
    'deployment.environment.name': 'test',
  });
  // The agent's own test process is not in a pod.
  const me = resources.get(process.pid);
  t.equal(me['k8s.pod.uid'], undefined);
  t.equal(me['service.name'], `unknown_service:${path.basename(fs.readlinkSync('/proc/self/exe'))}`);
  // A process that is gone keeps the name it was seen with.
  const gone = resources.get(4_194_300, 'ghost');
  t.same(gone, { 'host.name': 'node-a', 'process.executable.name': 'ghost', 'k8s.node.name': 'node-a', 'service.name': 'unknown_service:ghost', 'deployment.environment.name': 'test' });
  t.equal(resources.stats.gone, 1);
  // Attributes are cached; a new window re-checks the start time, and forget() reads again.
  const reads = resources.stats.reads;
  resources.get(child.pid!);
  t.equal(resources.stats.reads, reads, 'cached');
  resources.nextWindow();
  resources.get(child.pid!);
  t.equal(resources.stats.reads, reads, 'same start time: still cached');
  resources.forget(child.pid!);
  resources.get(child.pid!);
  t.equal(resources.stats.reads, reads + 1, 'read again after an exec');
  await sleep(0);
});

t.test('attributes of exactly the process a tracer named (pid and start time), across pid reuse and exec', async (t) => {
  // A /proc of one pid that two programs hold one after the other.
  const root = t.testdir({ '100': {} });
  const dir = path.join(root, '100');
  const become = (exe: string, startTicks: number): void => {
    fs.writeFileSync(path.join(dir, 'stat'), `100 (${path.basename(exe)}) S 1 1 1 0 -1 0 0 0 0 0 0 0 0 0 20 0 1 0 ${startTicks} 0 0\n`);
    fs.rmSync(path.join(dir, 'exe'), { force: true });
    fs.symlinkSync(exe, path.join(dir, 'exe'));
    fs.writeFileSync(path.join(dir, 'cmdline'), `${exe}\0--flag\0`);
    fs.writeFileSync(path.join(dir, 'cgroup'), '0::/user.slice\n');
  };
  const resources = new ProcessResources({ procRoot: root, hostName: 'node-a', kubernetes: new KubernetesAttribution({ nodeName: 'node-a' }) });
  become('/usr/bin/old-prog', 500);
  const oldNs = 500 * 1e7 + 1234; // the BPF start time: ns since boot; /proc has ticks (ns / 1e7)
  t.equal(resources.getExact(100, oldNs, 'old-prog')['process.executable.path'], '/usr/bin/old-prog', 'read while it lives');
  become('/usr/bin/new-prog', 900);
  const newNs = 900 * 1e7;
  t.equal(resources.getExact(100, oldNs, 'old-prog')['process.executable.path'], '/usr/bin/old-prog', 'a late record of the old process: its own attributes, from the cache');
  t.equal(resources.getExact(100, newNs, 'new-prog')['process.executable.path'], '/usr/bin/new-prog', 'the new process: read afresh');
  t.equal(resources.stats.pidReuses, 1);
  t.same(
    resources.getExact(100, oldNs, 'old-prog'),
    { 'host.name': 'node-a', 'k8s.node.name': 'node-a', 'process.executable.name': 'old-prog', 'service.name': 'unknown_service:old-prog' },
    'the old process once the cache holds the new one: only what the record says, never the new program\'s attributes',
  );
  t.equal(resources.get(100)['process.executable.path'], '/usr/bin/new-prog', 'the pid still names the new process');
  // An exec handled after the new image's attributes were read keeps them; one before drops them.
  const readAt = Number(process.hrtime.bigint());
  resources.forgetReadBefore(100, readAt - 1e9);
  const reads = resources.stats.reads;
  resources.getExact(100, newNs, 'new-prog');
  t.equal(resources.stats.reads, reads, 'attributes read after the exec are kept');
  resources.forgetReadBefore(100, Number(process.hrtime.bigint()) + 1e9);
  resources.getExact(100, newNs, 'new-prog');
  t.equal(resources.stats.reads, reads + 1, 'attributes read before the exec are read again');
  resources.forgetExact(100, oldNs);
  t.equal(resources.stats.cached, 1, 'forgetting the old process leaves the new one');
  resources.forgetExact(100, newNs);
  t.equal(resources.stats.cached, 0);
});
