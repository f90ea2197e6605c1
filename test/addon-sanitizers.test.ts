// SPDX-License-Identifier: Apache-2.0
// The addon built with AddressSanitizer and UndefinedBehaviorSanitizer (binding.gyp's sanitize=1)
// and driven through its whole life: load, perf events, ring buffers delivering batches, map reads,
// errors, close, and a process exit with everything still open. Any report fails the test.
import t from 'tap';
import { execFileSync, spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { bpfObjectPath } from '../src/native/addon';
import { requireKernelFeature } from './helpers/kernel-feature';
import { repoRoot } from './helpers/paths';
import { buildDir } from './helpers/workloads';

/** Builds a sanitizer copy of the addon under test/workloads/build (node_modules is found from there). */
function buildSanitizedAddon(): string {
  const dir = path.join(buildDir, 'addon-sanitize');
  fs.rmSync(dir, { recursive: true, force: true });
  fs.mkdirSync(dir, { recursive: true });
  fs.cpSync(path.join(repoRoot, 'addon', 'src'), path.join(dir, 'src'), { recursive: true });
  fs.copyFileSync(path.join(repoRoot, 'addon', 'binding.gyp'), path.join(dir, 'binding.gyp'));
  const nodeGyp = path.join(repoRoot, 'node_modules', 'node-gyp', 'bin', 'node-gyp.js');
  const nodedir = fs.existsSync('/usr/include/node/node_api.h') ? ['--nodedir=/usr'] : [];
  execFileSync(process.execPath, [nodeGyp, 'rebuild', '-C', dir, ...nodedir, '--', '-Dsanitize=1'], { stdio: 'pipe', timeout: 600_000 });
  return path.join(dir, 'build', 'Release', 'ebpfprof_native.node');
}

const EXERCISE = `
const addon = require(process.argv[1]);
const obj = new addon.BpfObject(process.argv[2]);
const u32 = (n) => { const b = Buffer.alloc(4); b.writeUInt32LE(n); return b; };
try { obj.setGlobal('filter_mode', Buffer.alloc(1)); } catch (e) { if (!(e instanceof TypeError)) throw e; }
obj.setMaxEntries('samples', 4096);
obj.setMaxEntries('stacks0', 2);
obj.setMaxEntries('stacks1', 2);
obj.load();
let records = 0;
const rb = obj.openRingBuffer('samples', (batch, n) => { records += n; }, { maxQueuedBatches: 2 });
const cpus = Array.from({ length: addon.numPossibleCpus() }, (_, i) => i).filter((c) => require('fs').existsSync('/sys/devices/system/cpu/cpu' + c));
const perf = obj.attachPerfEvent('on_sample', { type: 1, config: 0, period: 1000000, cpus });
const end = Date.now() + 1500;
(function spin() {
  let x = 0; for (let i = 0; i < 1e6; i++) x += i;
  if (Date.now() < end) return setImmediate(spin);
  perf.setPeriod(2000000);
  const counts = obj.mapEntries('counts0', { delete: true });
  const stacks = obj.mapEntries('stacks0', { delete: true });
  try { obj.mapLookup('stats', Buffer.alloc(1)); } catch (e) { if (!(e instanceof TypeError)) throw e; }
  rb.close().then(() => {
    const s = rb.stats();
    if (process.argv[3] === 'close') { perf.close(); obj.close(); obj.close(); }
    console.log(JSON.stringify({ records, counts: counts.count, stacks: stacks.count, stats: s }));
    // 'leave-open': exit with the ring buffer's replacement and the object still open.
    if (process.argv[3] === 'leave-open') obj.openRingBuffer('events', () => {});
  });
})();
`;

t.test('ASan + UBSan build of the addon: a full life cycle without a report', async (t) => {
  if (!(await requireKernelFeature(t, 'perf_event'))) return;
  const addonPath = buildSanitizedAddon();
  const needed = execFileSync('readelf', ['-d', addonPath], { encoding: 'utf8' });
  t.match(needed, /NEEDED.*libasan\.so/, 'the build really is instrumented (links libasan)');
  t.match(needed, /NEEDED.*libubsan\.so/, 'and libubsan');
  const libasan = execFileSync('gcc', ['-print-file-name=libasan.so'], { encoding: 'utf8' }).trim();
  t.ok(path.isAbsolute(libasan) && fs.existsSync(libasan), `libasan found (${libasan})`);
  for (const mode of ['close', 'leave-open']) {
    const r = spawnSync(process.execPath, ['-e', EXERCISE, addonPath, bpfObjectPath('profile'), mode], {
      encoding: 'utf8',
      timeout: 120_000,
      env: {
        PATH: process.env.PATH ?? '',
        LD_PRELOAD: libasan,
        // Node itself leaks by design at exit; leak checking would report V8, not us.
        ASAN_OPTIONS: 'detect_leaks=0:abort_on_error=0:exitcode=66',
        UBSAN_OPTIONS: 'print_stacktrace=1:halt_on_error=1:exitcode=67',
      },
    });
    t.equal(r.status, 0, `${mode}: exit 0 (signal ${r.signal}); stderr: ${r.stderr.slice(0, 2000)}`);
    t.notMatch(r.stderr, /AddressSanitizer|runtime error:|UndefinedBehaviorSanitizer/, `${mode}: no sanitizer report`);
    const out = JSON.parse(r.stdout.trim().split('\n').pop() ?? '{}') as { records?: number; stats?: { records: number; droppedRecords: number } };
    t.ok((out.records ?? 0) > 0, `${mode}: the fallback ring buffer delivered records (${out.records})`);
    t.equal((out.records ?? 0) + (out.stats?.droppedRecords ?? 0), out.stats?.records, `${mode}: every record read was delivered or counted as dropped`);
  }
});
