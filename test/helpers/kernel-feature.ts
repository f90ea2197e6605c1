// SPDX-License-Identifier: Apache-2.0
/**
 * THE one helper through which a test skips for a missing kernel feature. Every other way of
 * skipping (early returns on `fs.existsSync`, `t.skip` with a hand-written reason, ...) is a bug:
 * it turns a broken kernel feature into a silent green run.
 *
 *   t.test('offcpu sees sched_switch', async (t) => {
 *     if (!(await requireKernelFeature(t, 'tracepoints'))) return; // first thing in the test
 *     ...
 *   });
 *
 * requireKernelFeature() probes the feature for real (src/system/kernel-features.ts: the probe
 * programs are loaded and attached, then removed) and:
 *   - returns true when the feature is present;
 *   - when it is absent and NOT expected on this machine: skips the test with the reason
 *     (TAP "# SKIP <feature> not available: <why>") and returns false;
 *   - when it is absent but expected: FAILS the test with the reason and returns false.
 * Call it before any assertion: a test with no assertions yet is skipped as a whole (plan 0);
 * later, only a skipped assertion is recorded.
 *
 * Which features are expected:
 *   EBPFPROF_EXPECT_FEATURES=btf,perf_event,...  comma-separated feature names (CI sets
 *                                                 "btf,perf_event,tracepoints,raw_tracepoints,uprobes,ringbuf,root");
 *   EBPFPROF_EXPECT_FEATURES=none (or empty)      nothing expected: every missing feature skips;
 *   unset                                         the CI list when running as root on a kernel with
 *                                                 /sys/kernel/btf/vmlinux, else nothing. So a forgotten
 *                                                 variable cannot turn failures into skips on a
 *                                                 CI-like machine.
 *
 * Features: btf, perf_event (perf_event_open of cpu-clock + a perf_event program), tracepoints,
 * raw_tracepoints, tp_btf, fentry, kprobes, uprobes, ringbuf, stack_maps, tracefs, kallsyms
 * (real addresses), bpf_stats, root (euid 0 holding what profiling needs). Tests of the helper
 * itself pass their own `probe` to use made-up feature names.
 */
import * as fs from 'node:fs';
import { FeatureProber, type FeatureId } from '../../src/system/kernel-features';

export type KernelFeature =
  | 'btf'
  | 'perf_event'
  | 'tracepoints'
  | 'raw_tracepoints'
  | 'tp_btf'
  | 'fentry'
  | 'kprobes'
  | 'uprobes'
  | 'ringbuf'
  | 'stack_maps'
  | 'tracefs'
  | 'kallsyms'
  | 'bpf_stats'
  | 'root';

/** What CI expects (and what an unset EBPFPROF_EXPECT_FEATURES means for root on a BTF kernel). */
export const CI_EXPECTED_FEATURES: readonly KernelFeature[] = ['btf', 'perf_event', 'tracepoints', 'raw_tracepoints', 'uprobes', 'ringbuf', 'root'];

export const EXPECT_ENV = 'EBPFPROF_EXPECT_FEATURES';

export interface FeatureStatus {
  present: boolean;
  /** Why it is present or absent (shown in the skip or failure). */
  reason: string;
}

export type FeatureProbe = (feature: string) => Promise<FeatureStatus>;

export interface ExpectedFeatures {
  features: readonly string[];
  /** Where the list came from, for messages. */
  source: string;
}

/** The features that must be present here (see the top of this file). */
export function expectedFeatures(
  env: NodeJS.ProcessEnv = process.env,
  machine: { euid: number; hasBtf: boolean } = { euid: process.geteuid?.() ?? -1, hasBtf: fs.existsSync('/sys/kernel/btf/vmlinux') },
): ExpectedFeatures {
  const raw = env[EXPECT_ENV];
  if (raw !== undefined) {
    const list = raw
      .split(',')
      .map((s) => s.trim())
      .filter((s) => s !== '' && s !== 'none');
    return { features: list, source: `${EXPECT_ENV}=${JSON.stringify(raw)}` };
  }
  if (machine.euid === 0 && machine.hasBtf) {
    return { features: CI_EXPECTED_FEATURES, source: `${EXPECT_ENV} unset: root on a kernel with BTF expects the CI list` };
  }
  return { features: [], source: `${EXPECT_ENV} unset and not root on a BTF kernel: nothing is expected` };
}

export type FeatureDecision = { action: 'run' } | { action: 'skip'; message: string } | { action: 'fail'; message: string };

/** Pure decision: run, skip, or fail a test that needs `feature`. */
export function decideFeature(feature: string, status: FeatureStatus, expected: ExpectedFeatures): FeatureDecision {
  if (status.present) return { action: 'run' };
  if (expected.features.includes(feature)) {
    return { action: 'fail', message: `kernel feature ${feature} is expected on this machine (${expected.source}) but missing: ${status.reason}` };
  }
  return { action: 'skip', message: `${feature} not available: ${status.reason}` };
}

/** Feature name -> doctor checks that must all pass. */
const CHECKS: Record<Exclude<KernelFeature, 'root'>, FeatureId[]> = {
  btf: ['btf'],
  perf_event: ['perf_event_open', 'perf_event'],
  tracepoints: ['tracepoints'],
  raw_tracepoints: ['raw_tracepoints'],
  tp_btf: ['tp_btf'],
  fentry: ['fentry'],
  kprobes: ['kprobes'],
  uprobes: ['uprobes'],
  ringbuf: ['ringbuf'],
  stack_maps: ['stack_maps'],
  tracefs: ['tracefs'],
  kallsyms: ['kallsyms'],
  bpf_stats: ['bpf_stats'],
};

let sharedProber: FeatureProber | undefined;
const statusCache = new Map<string, Promise<FeatureStatus>>();

/** The real probe: doctor's checks, each run at most once per test process. */
export const probeKernelFeature: FeatureProbe = (feature) => {
  let p = statusCache.get(feature);
  if (!p) {
    p = (async (): Promise<FeatureStatus> => {
      sharedProber ??= new FeatureProber();
      if (feature === 'root') {
        const euid = process.geteuid?.() ?? -1;
        if (euid !== 0) return { present: false, reason: `not running as root (euid ${euid})` };
        const caps = await sharedProber.check('capabilities');
        return { present: caps.ok, reason: caps.detail };
      }
      const ids = CHECKS[feature as keyof typeof CHECKS];
      if (!ids) return { present: false, reason: `unknown kernel feature '${feature}' (known: root, ${Object.keys(CHECKS).join(', ')})` };
      for (const id of ids) {
        const c = await sharedProber.check(id);
        if (!c.ok) return { present: false, reason: `${c.name}: ${c.detail}` };
      }
      const last = await sharedProber.check(ids[ids.length - 1]!);
      return { present: true, reason: last.detail };
    })();
    statusCache.set(feature, p);
  }
  return p;
};

/** The parts of a tap Test the helper uses. */
export interface FeatureGate {
  readonly count: number;
  plan(n: number, comment?: string): void;
  pass(message: string, extra: { skip: string }): boolean;
  fail(message: string): boolean;
}

export interface RequireFeatureOptions {
  /** Probe to use instead of the real one (tests of this helper). */
  probe?: FeatureProbe;
  /** Expected features instead of the environment's. */
  expected?: ExpectedFeatures;
}

/**
 * Returns true when `feature` is present. When absent: skips the test (not expected here) or fails
 * it (expected here), and returns false; the caller returns right away.
 */
export async function requireKernelFeature(t: FeatureGate, feature: KernelFeature | (string & {}), options: RequireFeatureOptions = {}): Promise<boolean> {
  if (!options.probe && feature !== 'root' && !(feature in CHECKS)) {
    // A typo must not turn into a silent skip.
    t.fail(`unknown kernel feature '${feature}' (known: root, ${Object.keys(CHECKS).join(', ')})`);
    return false;
  }
  const status = await (options.probe ?? probeKernelFeature)(feature);
  const decision = decideFeature(feature, status, options.expected ?? expectedFeatures());
  switch (decision.action) {
    case 'run':
      return true;
    case 'fail':
      t.fail(decision.message);
      return false;
    case 'skip':
      if (t.count === 0) t.plan(0, decision.message);
      else t.pass(`${feature} not available`, { skip: decision.message });
      return false;
  }
}
