// SPDX-License-Identifier: Apache-2.0
// `ebpfprof tcp`'s tracer on real traffic between two network namespaces made by the test: exact
// byte counts, failed connects, resets over a veth pair; connect latency, RTT and retransmits over a
// path with a known delay and loss (test/helpers/delay-relay.py: this kernel has no tc netem).
import t from 'tap';
import { requireKernelFeature } from './helpers/kernel-feature';
import { delayedPair, vethPair } from './helpers/netns';
import { collectTcp, outputOf, spawnPeer, waitForLine } from './helpers/tcp-trace';

t.test('veth: a connection\'s bytes, RTT, lifetime and owner on both ends', async (t) => {
  if (!(await requireKernelFeature(t, 'btf'))) return;
  if (!(await requireKernelFeature(t, 'root'))) return;
  const pair = vethPair();
  t.teardown(() => pair.close());
  const c = await collectTcp();
  t.teardown(() => c.tracer.close());
  const server = spawnPeer(pair, pair.b, ['server', '5101', '--reply', '3001']);
  t.teardown(() => server.kill());
  await waitForLine(server, 'listening');
  const client = spawnPeer(pair, pair.a, ['client', pair.addressB, '5101', '--send', '123457', '--chunk', '10000']);
  const out = JSON.parse(await outputOf(client)) as Array<{ sent: number; received: number; error: string }>;
  t.same(out, [{ sent: 123457, received: 3001, error: '' }], 'the client did what it says');

  const connect = await c.waitFor((e) => e.type === 'connect' && e.pid === client.pid);
  t.ok(connect, 'the connect was seen with the client as owner');
  t.equal(connect?.remoteAddress, pair.addressB);
  t.equal(connect?.remotePort, 5101);
  t.ok((connect?.connectNs ?? 0) > 0, 'connect latency measured');
  const mine = await c.waitFor((e) => e.type === 'close' && e.pid === client.pid);
  t.ok(mine, 'the client side close was seen');
  t.equal(mine?.role, 'active');
  t.equal(mine?.bytesSent, 123457, 'bytes sent are exactly the data the client wrote');
  t.equal(mine?.bytesReceived, 3001, 'bytes received are exactly the reply');
  t.equal(mine?.localAddress, pair.addressA);
  t.ok((mine?.localPort ?? 0) > 0, 'local port kept until close');
  t.ok((mine?.lifetimeNs ?? 0) >= (mine?.connectNs ?? 0), 'lifetime includes the handshake');
  t.ok((mine?.rttSamples ?? 0) > 0 || (mine?.srttUs ?? 0) > 0, 'RTT measured');
  t.equal(mine?.retransmits, 0, 'no loss on a veth pair');
  const theirs = await c.waitFor((e) => e.type === 'close' && e.pid === server.pid);
  t.ok(theirs, 'the server side close was seen, owned by the server (it closed the socket)');
  t.equal(theirs?.role, 'passive');
  t.equal(theirs?.bytesSent, 3001);
  t.equal(theirs?.bytesReceived, 123457);
  t.equal(theirs?.localPort, 5101);
  t.equal(theirs?.remotePort, mine?.localPort, 'both ends describe the same connection');
  const st = c.tracer.stats();
  t.equal(st.ringBufferFull + st.droppedRecords + st.recordsMalformed, 0, 'no event lost');
});

t.test('veth: a connect to a closed port is a failed connect with a reset', async (t) => {
  if (!(await requireKernelFeature(t, 'btf'))) return;
  if (!(await requireKernelFeature(t, 'root'))) return;
  const pair = vethPair();
  t.teardown(() => pair.close());
  const c = await collectTcp();
  t.teardown(() => c.tracer.close());
  const client = spawnPeer(pair, pair.a, ['refused', pair.addressB, '5199']);
  t.match(await outputOf(client), /ECONNREFUSED/);
  const failed = await c.waitFor((e) => e.type === 'connect-failed' && e.pid === client.pid);
  t.ok(failed, 'failed connect reported');
  t.equal(failed?.error, 'ECONNREFUSED');
  t.equal(failed?.remotePort, 5199);
  t.ok((failed?.resetsReceived ?? 0) >= 1, 'the refusal came as a reset');
  t.notOk(c.events.some((e) => e.type === 'connect' && e.pid === client.pid), 'and never counted as a connect');
});

t.test('veth: a server that aborts: the client counts the reset', async (t) => {
  if (!(await requireKernelFeature(t, 'btf'))) return;
  if (!(await requireKernelFeature(t, 'root'))) return;
  const pair = vethPair();
  t.teardown(() => pair.close());
  const c = await collectTcp();
  t.teardown(() => c.tracer.close());
  const server = spawnPeer(pair, pair.b, ['server', '5102', '--abort']);
  t.teardown(() => server.kill());
  await waitForLine(server, 'listening');
  const client = spawnPeer(pair, pair.a, ['client', pair.addressB, '5102', '--send', '1000', '--count', '3']);
  await outputOf(client);
  await c.waitFor((e) => e.type === 'close' && e.pid === client.pid && e.resetsReceived > 0);
  const closes = c.events.filter((e) => e.type === 'close' && e.pid === client.pid);
  t.equal(closes.length, 3, 'three connections closed');
  t.ok(closes.every((e) => e.resetsReceived >= 1), 'each received a reset');
  t.ok(closes.every((e) => e.error === 'ECONNRESET' || e.error === 'EPIPE'), `error says reset (${closes.map((e) => e.error).join(', ')})`);
  t.ok(c.tracer.stats().resetsSent >= 3, 'the server side sent them (tcp_send_reset)');
});

t.test('a path with 40 ms one-way delay: connect latency and RTT reflect 80 ms', async (t) => {
  if (!(await requireKernelFeature(t, 'btf'))) return;
  if (!(await requireKernelFeature(t, 'root'))) return;
  const pair = await delayedPair({ delayMs: 40 });
  t.teardown(() => pair.close());
  const c = await collectTcp();
  t.teardown(() => c.tracer.close());
  const server = spawnPeer(pair, pair.b, ['server', '5103', '--reply', '5000']);
  t.teardown(() => server.kill());
  await waitForLine(server, 'listening');
  const client = spawnPeer(pair, pair.a, ['client', pair.addressB, '5103', '--send', '20000', '--count', '3']);
  const out = JSON.parse(await outputOf(client)) as Array<{ sent: number; received: number }>;
  t.same(out.map((r) => r.received), [5000, 5000, 5000], `the client got its replies (relay: ${pair.relayLog()})`);
  await c.waitFor((e) => e.type === 'close' && e.pid === client.pid && c.events.filter((x) => x.type === 'close' && x.pid === client.pid).length >= 3);
  const connects = c.events.filter((e) => e.type === 'connect' && e.pid === client.pid);
  t.equal(connects.length, 3);
  // The relay never forwards a packet early: the handshake takes at least one round trip (80 ms).
  // The upper bound only catches a wrong unit or clock; a busy machine may add scheduling delay.
  for (const e of connects) t.ok(e.connectNs >= 79e6 && e.connectNs < 2e9, `connect latency ${(e.connectNs / 1e6).toFixed(1)} ms ~ 80 ms`);
  const closes = c.events.filter((e) => e.type === 'close' && e.pid === client.pid);
  for (const e of closes) {
    const rttMs = (e.rttSamples > 0 ? e.rttMeanUs : e.srttUs) / 1000;
    t.ok(rttMs >= 76 && rttMs < 2000, `smoothed RTT ${rttMs.toFixed(1)} ms ~ 80 ms (tcp_probe samples: ${e.rttSamples})`);
    t.equal(e.bytesSent, 20000);
    t.equal(e.bytesReceived, 5000);
  }
  // The client half-closes right after writing, so its replies arrive in FIN_WAIT states, where
  // tcp_probe (tcp_rcv_established) does not fire; the server receives in ESTABLISHED.
  await c.waitFor((e) => e.type === 'close' && e.pid === server.pid && c.events.filter((x) => x.type === 'close' && x.pid === server.pid).length >= 3);
  const served = c.events.filter((e) => e.type === 'close' && e.pid === server.pid);
  t.equal(served.length, 3, 'the server side of each connection closed');
  t.ok(served.every((e) => e.rttSamples > 0), 'tcp_probe delivered RTT samples on the receiving side');
  for (const e of served) t.ok(e.rttMinUs >= 76_000 && e.rttMeanUs < 2_000_000, `tcp_probe RTT min ${(e.rttMinUs / 1000).toFixed(1)} ms, mean ${(e.rttMeanUs / 1000).toFixed(1)} ms ~ 80 ms`);
});

t.test('a lossy path: retransmits are counted, bytes stay exact', async (t) => {
  if (!(await requireKernelFeature(t, 'btf'))) return;
  if (!(await requireKernelFeature(t, 'root'))) return;
  // Every 7th data segment from client to server is dropped: a retransmit is certain.
  const pair = await delayedPair({ delayMs: 2, dropEvery: 7 });
  t.teardown(() => pair.close());
  const c = await collectTcp();
  t.teardown(() => c.tracer.close());
  const server = spawnPeer(pair, pair.b, ['server', '5104', '--reply', '100']);
  t.teardown(() => server.kill());
  await waitForLine(server, 'listening');
  const client = spawnPeer(pair, pair.a, ['client', pair.addressB, '5104', '--send', '300000', '--chunk', '1000']);
  const out = JSON.parse(await outputOf(client)) as Array<{ sent: number; received: number }>;
  t.same(out, [{ sent: 300000, received: 100, error: '' }]);
  const close = await c.waitFor((e) => e.type === 'close' && e.pid === client.pid);
  t.ok(close, 'close seen');
  t.ok((close?.retransmits ?? 0) >= 1, `retransmits counted from tcp_retransmit_skb (${close?.retransmits}; kernel total_retrans ${close?.totalRetrans})`);
  t.equal(close?.retransmits, close?.totalRetrans, 'the tracepoint count equals the kernel\'s own count');
  t.equal(close?.bytesSent, 300000, 'retransmitted bytes are not counted twice');
  t.match(pair.relayLog(), /dropped [1-9]/, 'the relay did drop segments');
});
