// SPDX-License-Identifier: Apache-2.0
// Our OTLP Profiles read back by the reference consumer: a real OpenTelemetry Collector (built from
// upstream modules at a release with opentelemetry-proto v1.10.0's profiles schema) receives the
// fixtures through the agent's exporter and writes them out as OTLP JSON; every sample, stack,
// thread, frame type and build id must come back as the model had it. A wrong path is refused by
// the Collector and dropped by the exporter without retries.
import t from 'tap';
import { gzipSync } from 'node:zlib';
import { OtlpHttpExporter } from '../src/agent/exporter';
import { profilesUrl } from '../src/agent/config';
import { encodeOtlpProfilesRequest } from '../src/encode/otlp-profiles';
import { collectorBinary, OTELCOL_VERSION, sampleCount, TestCollector } from './helpers/collector';
import { expectedRows, receivedRows } from './fixtures/otlp/rows';
import { basicProfile, kernelWithoutMappingProfile, RICH, richProfile } from './fixtures/profiles/sample-profiles';

t.test('the Collector reads every sample, stack and attribute of the fixtures', async (t) => {
  const build = await collectorBinary();
  t.comment(`Collector ${OTELCOL_VERSION}: ${build.builtInSeconds === null ? 'from the cache' : `built in ${build.builtInSeconds} s`} (${build.binary})`);
  const collector = await TestCollector.start(t.testdir({}));
  t.teardown(() => collector.stop());
  const logs: string[] = [];
  const exporter = new OtlpHttpExporter({
    url: profilesUrl(collector.endpoint),
    headers: {},
    timeoutMs: 10_000,
    retryInitialMs: 100,
    retryMaxMs: 1000,
    maxQueuedRequests: 10,
    maxQueuedBytes: 1 << 24,
    userAgent: 'ebpfprof/test',
    log: (l) => logs.push(l),
  });
  t.teardown(() => exporter.close());
  const fixtures = { basic: basicProfile(), rich: richProfile(), kernel: kernelWithoutMappingProfile() };
  for (const [name, p] of Object.entries(fixtures)) {
    const { bytes, stats } = encodeOtlpProfilesRequest(p, { resourceOf: () => ({ 'host.name': `host-${name}` }) });
    exporter.enqueue({ body: gzipSync(bytes), profiles: stats.profiles, samples: stats.samples, windowStartMs: p.meta.startTimeMs });
  }
  await exporter.flush(Date.now() + 30_000);
  t.equal(exporter.stats.requestsSucceeded, 3, logs.join('\n'));
  t.equal(exporter.stats.profilesRejected, 0);
  const got = await collector.waitFor((ps) => new Set(ps.map((p) => p.request)).size >= 3, 30_000, 'three requests');
  Object.entries(fixtures).forEach(([name, p]) => {
    const mine = got.filter((x) => x.resource['host.name'] === `host-${name}`);
    t.same(receivedRows(mine), expectedRows(p), `${name}: the same rows`);
    t.equal(sampleCount(mine), p.samples.reduce((n, s) => n + s.count, 0));
    for (const x of mine) {
      t.equal(x.sampleType, 'samples/count');
      t.equal(x.periodType, 'cpu/nanoseconds');
      t.equal(x.period, p.meta.periodNs);
      t.equal(x.timeUnixNano, BigInt(p.meta.startTimeMs) * 1_000_000n);
    }
  });
  const frames = got.flatMap((p) => p.samples.flatMap((s) => s.frames));
  t.ok(RICH.kernel.every((k) => frames.some((f) => f.name === k && f.frameType === 'kernel')), 'kernel frames typed kernel');
  t.ok(frames.some((f) => f.name === 'hot_a' && f.buildId === '0123456789abcdef' && f.mappingFile === '/usr/bin/app'), 'build id and file of the mapping');
  t.ok(frames.some((f) => f.name === 'do_syscall_64' && f.mappingFile === '[kernel.kallsyms]'), 'the synthetic kernel mapping');
  t.ok(frames.some((f) => f.frameType === 'v8js'), 'JIT frames of node typed v8js');
});

t.test('a path the Collector does not serve: refused, dropped, not retried', async (t) => {
  const collector = await TestCollector.start(t.testdir({}));
  t.teardown(() => collector.stop());
  const logs: string[] = [];
  const exporter = new OtlpHttpExporter({
    url: `${collector.endpoint}/v1/profiles`,
    headers: {},
    timeoutMs: 10_000,
    retryInitialMs: 100,
    retryMaxMs: 1000,
    maxQueuedRequests: 10,
    maxQueuedBytes: 1 << 24,
    userAgent: 'ebpfprof/test',
    log: (l) => logs.push(l),
  });
  t.teardown(() => exporter.close());
  const { bytes, stats } = encodeOtlpProfilesRequest(basicProfile());
  exporter.enqueue({ body: gzipSync(bytes), profiles: stats.profiles, samples: stats.samples, windowStartMs: 0 });
  await exporter.flush(Date.now() + 30_000);
  t.equal(exporter.stats.requestsRejected, 1);
  t.equal(exporter.stats.attemptsFailed, 0, 'not retried');
  t.match(logs.join('\n'), /refused an export request \(HTTP 404/);
});
