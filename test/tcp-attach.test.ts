// SPDX-License-Identifier: Apache-2.0
// The attach-method variants of bpf/tcp.bpf.c: kprobe programs pass the verifier (they share the
// tracepoint handlers' code); where kprobes or fentry cannot attach, asking for them fails with a
// clear reason and the tracer falls back and works; the classic-tracepoint and raw_tp variants
// report the same events on real traffic.
import t from 'tap';
import * as net from 'node:net';
import { loadAddon, bpfObjectPath } from '../src/native/addon';
import { checkFeature } from '../src/system/kernel-features';
import { TCP_HOOKS } from '../src/trace/tcp';
import { requireKernelFeature } from './helpers/kernel-feature';
import { collectTcp, type CollectingTracer } from './helpers/tcp-trace';
import { spawnSync } from 'node:child_process';
import { cliPath } from './helpers/paths';

function loadOnly(prefix: string): void {
  const obj = new (loadAddon().BpfObject)(bpfObjectPath('tcp'));
  try {
    for (const p of obj.programNames()) obj.setAutoload(p, p.startsWith(prefix));
    obj.load();
  } finally {
    obj.close();
  }
}

/** One loopback connection with known bytes; resolves when the client side closed. */
async function traffic(): Promise<number> {
  const srv = net.createServer((s) => {
    s.on('data', () => {});
    s.on('end', () => s.end('pong'));
  });
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r));
  const port = (srv.address() as net.AddressInfo).port;
  await new Promise<void>((resolve) => {
    const c = net.connect(port, '127.0.0.1', () => c.end('ping!'));
    c.on('data', () => {});
    c.on('close', () => resolve());
  });
  srv.close();
  return port;
}

type Asserts = Pick<typeof t, 'ok' | 'equal'>;

async function sawTraffic(t: Asserts, c: CollectingTracer): Promise<void> {
  const port = await traffic();
  const close = await c.waitFor((e) => e.type === 'close' && e.pid === process.pid && e.remotePort === port);
  t.ok(close, 'the connection was traced');
  t.equal(close?.bytesSent, 5, 'with its bytes');
  t.equal(close?.bytesReceived, 4);
}

t.test('kprobe variants load through the verifier', async (t) => {
  if (!(await requireKernelFeature(t, 'btf'))) return;
  if (!(await requireKernelFeature(t, 'root'))) return;
  t.doesNotThrow(() => loadOnly('kp_'), 'kprobe/tcp_set_state, tcp_rcv_established, tcp_retransmit_skb, tcp_reset');
  t.doesNotThrow(() => loadOnly('kr_'), 'kretprobe/inet_csk_accept');
  for (const prefix of ['btf_', 'tp_', 'raw_']) t.doesNotThrow(() => loadOnly(prefix), `${prefix}* variants`);
});

t.test('fentry variants load where BPF trampolines are allowed', async (t) => {
  if (!(await requireKernelFeature(t, 'fentry'))) return;
  t.doesNotThrow(() => loadOnly('fe_'));
  t.doesNotThrow(() => loadOnly('fx_'));
});

t.test('asking for kprobes: attached where the kernel has them, else a clear failure and the fallback works', async (t) => {
  if (!(await requireKernelFeature(t, 'btf'))) return;
  if (!(await requireKernelFeature(t, 'root'))) return;
  const kprobes = (await checkFeature('kprobes')).ok;
  const c = await collectTcp({ prefer: 'kprobe' });
  t.teardown(() => c.tracer.close());
  const setState = c.tracer.hooks.find((h) => h.hook === 'sock:inet_sock_set_state')!;
  if (kprobes) {
    t.equal(setState.method, 'kprobe', 'kprobe attached where the kernel has kprobes');
  } else {
    t.equal(setState.method, 'tp_btf', 'fell back to the tracepoint');
    t.equal(setState.failures[0]?.method, 'kprobe');
    t.match(setState.failures[0]?.reason, /^kprobe on tcp_set_state failed \(ENOENT\): this kernel has no kprobes/, 'the failure says why');
    t.match(setState.reason, /^tp_btf, after: kprobe on tcp_set_state failed/);
  }
  await sawTraffic(t, c);
});

t.test('asking for fentry: where trampolines are refused, the load failure is explained and the fallback works', async (t) => {
  if (!(await requireKernelFeature(t, 'btf'))) return;
  if (!(await requireKernelFeature(t, 'root'))) return;
  const fentry = (await checkFeature('fentry')).ok;
  const c = await collectTcp({ prefer: 'fentry' });
  t.teardown(() => c.tracer.close());
  const setState = c.tracer.hooks.find((h) => h.hook === 'sock:inet_sock_set_state')!;
  if (fentry) {
    t.equal(setState.method, 'fentry');
  } else {
    t.not(setState.method, 'fentry');
    t.match(setState.failures[0]?.reason, /fentry on tcp_set_state was refused \(EPERM\)/);
  }
  await sawTraffic(t, c);
});

t.test('every tracepoint method reports the same connection', async (t) => {
  if (!(await requireKernelFeature(t, 'btf'))) return;
  if (!(await requireKernelFeature(t, 'root'))) return;
  if (!(await requireKernelFeature(t, 'tracepoints'))) return;
  for (const method of ['tracepoint', 'raw_tp', 'tp_btf'] as const) {
    const c = await collectTcp({ prefer: method });
    const used = c.tracer.hooks.filter((h) => !TCP_HOOKS.find((x) => x.name === h.hook)?.extra);
    t.ok(used.every((h) => h.method === method), `${method}: every tracepoint hook attached with it`);
    await sawTraffic(t, c);
    await c.tracer.close();
  }
});

t.test('the CLI says which method each hook uses, and why (--verbose)', async (t) => {
  if (!(await requireKernelFeature(t, 'btf'))) return;
  if (!(await requireKernelFeature(t, 'root'))) return;
  const r = spawnSync(process.execPath, [cliPath, 'tcp', '--attach', 'kprobe', '-v', '-d', '300ms', '--json'], { encoding: 'utf8', env: { PATH: process.env.PATH ?? '' } });
  t.equal(r.status, 0, r.stderr);
  t.match(r.stderr, /ebpfprof: tcp: sock:inet_sock_set_state via (kprobe \(asked for\)|tp_btf, after: kprobe on tcp_set_state failed)/);
  t.match(r.stderr, /ebpfprof: tcp: tcp:tcp_probe via /);
});
